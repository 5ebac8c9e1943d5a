"""One named text file per pipeline step that outlives sessions: ``<sessions dir>/.state/
<pipeline>/<step>/<name>``, or, with a store that keeps records (ducklake), the lake's state
records, where every machine reads them. Incremental state, unsettled writes and deliveries
are such files. A change is a read-modify-write under the step's lock for that name (files;
the lake's records have no lock: see the README's limits of the ducklake store)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from osiris_dagster.core.atomic_files import write_text_atomic
from osiris_dagster.core.file_locks import held_lock
from osiris_dagster.runtime.stores.ducklake_records import LakeRecords


@dataclass
class Body:
    """A record's text while it changes; an empty text removes the record."""

    text: str
    saved: str | None = None  # the text :meth:`StepRecords.save` wrote already


class StepRecords:
    """The files named ``name`` of the steps of one sessions root."""

    def __init__(self, sessions_dir: Path, records: LakeRecords | None, name: str) -> None:
        self._root = sessions_dir
        self._records = records
        self.name = name

    @property
    def lake(self) -> bool:
        """Whether the records are the lake's (no local file, no file lock)."""
        return self._records is not None

    def where(self, pipeline: str, step_id: str) -> str:
        """The record's place, for messages."""
        if self._records is not None:
            return f"the lake's state record {self.name!r} of {pipeline}/{step_id}"
        return str(self.path(pipeline, step_id))

    def read(self, pipeline: str, step_id: str) -> str:
        """The record's text; empty when there is none."""
        if self._records is not None:
            return self._records.state_files(pipeline, step_id).get(self.name, "")
        path = self.path(pipeline, step_id)
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def all(self) -> list[tuple[str, str]]:
        """(where, text) of every step's record."""
        if self._records is not None:
            return [("the lake's state records", b)
                    for b in self._records.state_files_named(self.name)]
        return [(str(p), p.read_text(encoding="utf-8"))
                for p in sorted(self._root.glob(f".state/*/*/{self.name}"))]

    def remove(self, pipeline: str, step_id: str) -> None:
        self.save(pipeline, step_id, Body(""))

    @contextmanager
    def changing(self, pipeline: str, step_id: str) -> Iterator[Body]:
        """The record's text to change in place; saved (or removed, when emptied) after, if the
        block does not raise. Files: under an exclusive lock of the step's directory for this
        name, so changes of concurrent runs do not overwrite each other."""
        with self._lock(pipeline, step_id):
            body = Body(self.read(pipeline, step_id))
            before = body.text
            yield body
            if body.text != (before if body.saved is None else body.saved):
                self.save(pipeline, step_id, body)

    def _lock(self, pipeline: str, step_id: str) -> AbstractContextManager[object]:
        if self._records is not None:  # the lake's records have no lock
            return nullcontext()
        path = self.path(pipeline, step_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        return held_lock(path.parent / f".{self.name}.lock")

    def save(self, pipeline: str, step_id: str, body: Body) -> None:
        """Write ``body`` now, inside :meth:`changing` (whose end then writes it only if it
        changed again): for two records whose order of writing matters."""
        if self._records is not None:
            self._records.put_state(pipeline, step_id, self.name, body.text)
        elif body.text:
            write_text_atomic(self.path(pipeline, step_id), body.text)
        else:
            self.path(pipeline, step_id).unlink(missing_ok=True)
        body.saved = body.text

    def path(self, pipeline: str, step_id: str) -> Path:
        from osiris_dagster.runtime.workspace import state_dir_of

        return state_dir_of(self._root, pipeline, step_id) / self.name
