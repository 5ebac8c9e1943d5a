"""Writes that may have landed although their step failed, kept so that nothing runs the same
step on the same input again until a person has checked the target.

A step fails with :class:`~osiris_dagster.core.errors.NotRetryableError` when running it again
could apply its effect twice: a COMMIT whose answer was lost, a REST append stopped after some
batches, a mutation whose answer never came. A run stopped during a COMMIT that then went
through failed too, with its rows written. Dagster's retries skip such a failure, but a person's
*Re-execute from failure*, a materialisation of the step alone, or ``osiris-dagster run
--select`` reads the same upstream table and would write it again. So the failure is recorded
(``unsettled_writes.json`` in the step's state directory, beside incremental state, where
every process of every run looks), keyed by what the step would write: its component, config
(with parameters resolved) and the upstream tables it reads (session and table). A later
attempt with the same key fails at once, naming the earlier failure; one with new input (a new
run's extract) or a changed config (e.g. a write mode that is safe to repeat) runs.
``osiris-dagster unsettled settle PIPELINE STEP`` removes the record once the target is checked.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from osiris_dagster.core.atomic_files import write_text_atomic
from osiris_dagster.core.errors import NotRetryableError
from osiris_dagster.core.file_locks import held_lock
from osiris_dagster.runtime.stores.ducklake_records import LakeRecords

FILE = "unsettled_writes.json"


class UnsettledWriteError(NotRetryableError):
    """The step was not run: an earlier attempt on the same input may have written it."""


@dataclass(frozen=True)
class UnsettledWrite:
    pipeline: str
    step_id: str
    key: str
    session_id: str  # the session of the run whose attempt failed
    failed_at: str  # UTC, ISO 8601
    inputs: tuple[str, ...]  # "<step> = <session>/<table>" per upstream table read
    error: str  # the failure as the step reported it (masked)


def write_key(component: str, config: Mapping[str, Any], inputs: Sequence[tuple[str, str, str]]
              ) -> str:
    """What identifies a write: the component, its config (parameters resolved, connection by
    its reference) and the upstream tables read, as (step, session, table)."""
    text = json.dumps({"component": component, "config": config, "inputs": sorted(inputs)},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


class UnsettledWrites:
    """The records of one sessions root: files under ``<sessions dir>/.state``, or the lake's
    records where every machine reads them."""

    def __init__(self, sessions_dir: Path, records: LakeRecords | None) -> None:
        self._root = sessions_dir
        self._records = records

    def find(self, pipeline: str, step_id: str, key: str) -> UnsettledWrite | None:
        return next((w for w in self._read(pipeline, step_id) if w.key == key), None)

    def record(self, write: UnsettledWrite) -> None:
        with self._changing(write.pipeline, write.step_id) as writes:
            writes[:] = [w for w in writes if w.key != write.key] + [write]

    def settle(self, pipeline: str, step_id: str) -> list[UnsettledWrite]:
        """Remove the step's records; returns them."""
        with self._changing(pipeline, step_id) as writes:
            removed = list(writes)
            writes.clear()
        return removed

    def all(self) -> list[UnsettledWrite]:
        if self._records is not None:
            bodies = self._records.state_files_named(FILE)
        else:
            bodies = [p.read_text(encoding="utf-8")
                      for p in sorted(self._root.glob(f".state/*/*/{FILE}"))]
        return [w for body in bodies for w in _parse(body)]

    def _read(self, pipeline: str, step_id: str) -> list[UnsettledWrite]:
        if self._records is not None:
            return _parse(self._records.state_files(pipeline, step_id).get(FILE, ""))
        path = self._path(pipeline, step_id)
        return _parse(path.read_text(encoding="utf-8")) if path.exists() else []

    @contextmanager
    def _changing(self, pipeline: str, step_id: str) -> Iterator[list[UnsettledWrite]]:
        from osiris_dagster.runtime.workspace import state_dir_of

        if self._records is not None:
            writes = self._read(pipeline, step_id)
            yield writes
            self._records.put_state(pipeline, step_id, FILE, _dump(writes))
            return
        directory = state_dir_of(self._root, pipeline, step_id)
        directory.mkdir(parents=True, exist_ok=True)
        with held_lock(directory / f".{FILE}.lock"):
            writes = self._read(pipeline, step_id)
            yield writes
            path = self._path(pipeline, step_id)
            if writes:
                write_text_atomic(path, _dump(writes))
            else:
                path.unlink(missing_ok=True)

    def _path(self, pipeline: str, step_id: str) -> Path:
        from osiris_dagster.runtime.workspace import state_dir_of

        return state_dir_of(self._root, pipeline, step_id) / FILE


def new_record(pipeline: str, step_id: str, key: str, session_id: str,
               inputs: Sequence[tuple[str, str, str]], error: str) -> UnsettledWrite:
    return UnsettledWrite(pipeline, step_id, key, session_id,
                          time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          tuple(f"{step} = {session}/{table}" for step, session, table in inputs),
                          error)


def refusal(write: UnsettledWrite) -> str:
    """Why the step does not run, and what to do."""
    return (f"not run: an earlier attempt of this step on the same input (session "
            f"{write.session_id}, {write.failed_at}) failed in a way that may have written it "
            f"already, so running it again could write it twice. That attempt said: "
            f"{write.error} -- Check the target first. Then, to run the step again on this "
            f"input, run `osiris-dagster unsettled settle '{write.pipeline}' '{write.step_id}'` "
            "(with the same OSIRIS_SESSIONS_DIR and session store); a new run's input, or a "
            "config that is safe to repeat (e.g. an upsert), runs without it.")


def _parse(body: str) -> list[UnsettledWrite]:
    if not body.strip():
        return []
    return [UnsettledWrite(**{**item, "inputs": tuple(item["inputs"])})
            for item in json.loads(body)]


def _dump(writes: Sequence[UnsettledWrite]) -> str:
    return json.dumps([asdict(w) for w in writes], indent=2) + "\n"
