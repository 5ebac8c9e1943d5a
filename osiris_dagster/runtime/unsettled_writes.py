"""Writes that may have landed although their step failed, kept so that nothing runs the same
step on the same input again until a person has checked the target.

A step fails with :class:`~osiris_dagster.core.errors.NotRetryableError` when running it again
could apply its effect twice: a COMMIT whose answer was lost, a REST append stopped after some
batches, a mutation whose answer never came. A writer whose run was stopped during a COMMIT
that then went through failed too, with its rows written. Dagster's retries skip such a
failure, but a person's *Re-execute from failure*, a materialisation of the step alone, or
``osiris-dagster run --select`` reads the same upstream table and would write it again. So the
failure is recorded (``unsettled_writes.json`` in the step's state directory, beside
incremental state, where every process of every run looks), keyed by the component and the
tables its input was made from (the runner follows each step's recorded inputs back to the
extractors' tables, session and table: a SQL step run again on the same extract makes a new
table of the same rows), whatever else its config says (another alias of the same database,
another batch size). A later attempt on the same input fails at
once, naming the earlier failure, unless its config repeats safely (an upsert or replace:
:func:`osiris_dagster.drivers.repeats_safely`); one with new input (a new run's extract) runs.
``osiris-dagster unsettled settle PIPELINE STEP`` removes the record once the target is checked.

A writer's attempt is recorded before it starts (:data:`STARTED`) and the record removed when
it ends without doubt: a process killed while its COMMIT went through (out of memory, a lost
machine) leaves the record, so its input is not written again unseen. While the attempt runs,
its process holds an exclusive lock on ``.writing-<key>.lock`` beside the record
(:meth:`UnsettledWrites.writing`; the kernel releases it when the process dies), so a record
of a write still going on is told from one whose process ended: it refuses a re-run as
"still writing", and ``settle`` leaves it alone. (The ducklake store has no such lock: there a
started record is taken as ended.)
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from osiris_dagster.core.errors import OsirisError, StepRefused
from osiris_dagster.core.file_locks import lock_or_none
from osiris_dagster.runtime.step_records import StepRecords
from osiris_dagster.runtime.stores.ducklake_records import LakeRecords

FILE = "unsettled_writes.json"
STARTED = ("the step started writing, and the process running it ended before it could say "
           "how the write went (killed, out of memory, its machine lost): its rows may be in "
           "the target")


class UnsettledWriteError(StepRefused):
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
    written: bool = False  # settled as written: the rows are in the target, never write again
    target: str = ""  # where the step writes, as its config names it (connection and table)


def write_key(component: str, inputs: Sequence[tuple[str, str, str]]) -> str:
    """What identifies a write: the component and the upstream tables it reads, as (step,
    session, table). Not its config: pointing the step at another alias of the same database
    must not let the same rows through again."""
    text = json.dumps({"component": component, "inputs": sorted(inputs)}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


class UnsettledWrites:
    """The records of one sessions root: files under ``<sessions dir>/.state``, or the lake's
    records where every machine reads them."""

    def __init__(self, sessions_dir: Path, records: LakeRecords | None) -> None:
        self._files = StepRecords(sessions_dir, records, FILE)

    @contextmanager
    def writing(self, pipeline: str, step_id: str, key: str) -> Iterator[None]:
        """Held by the process of an attempt while it writes (see the module's doc); raises
        :class:`WriteInProgress` when another process holds it now."""
        if self._files.lake:
            yield
            return
        path = self._lock_path(pipeline, step_id, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:  # a .state that cannot be written: the write goes on, as before
            yield
            return
        # removed while held, so one file per key does not pile up
        with lock_or_none(path, removed_after=True) as free:
            if not free:
                raise WriteInProgress(path)
            yield

    def still_writing(self, write: UnsettledWrite) -> bool:
        """Whether the attempt of a started record is still writing (its process holds its
        lock); False for any other record, and with the ducklake store."""
        if write.error != STARTED or self._files.lake:
            return False
        path = self._lock_path(write.pipeline, write.step_id, write.key)
        if not path.exists():
            return False
        with lock_or_none(path) as free:
            return not free

    def _lock_path(self, pipeline: str, step_id: str, key: str) -> Path:
        return self._files.path(pipeline, step_id).with_name(f".writing-{key}.lock")

    def find(self, pipeline: str, step_id: str, key: str) -> UnsettledWrite | None:
        return next((w for w in self._read(pipeline, step_id)
                     if (w.pipeline, w.step_id, w.key) == (pipeline, step_id, key)), None)

    def of(self, pipeline: str, step_id: str) -> list[UnsettledWrite]:
        """The step's records."""
        return [w for w in self._read(pipeline, step_id)
                if (w.pipeline, w.step_id) == (pipeline, step_id)]

    def record(self, write: UnsettledWrite) -> None:
        with self._changing(write.pipeline, write.step_id) as writes:
            writes[:] = [w for w in writes if (w.pipeline, w.step_id, w.key) !=
                         (write.pipeline, write.step_id, write.key)] + [write]

    def forget(self, pipeline: str, step_id: str, key: str) -> None:
        """Remove the record of one input (an attempt that ended without leaving it unsure)."""
        if self.find(pipeline, step_id, key) is None:
            return
        with self._changing(pipeline, step_id) as writes:
            writes[:] = [w for w in writes if (w.pipeline, w.step_id, w.key) !=
                         (pipeline, step_id, key)]

    def settle_as_written(self, pipeline: str, step_id: str) -> list[UnsettledWrite]:
        """The step's records, kept as written: the rows are in the target, so the step is
        still refused on that input, and the incremental extractor before it counts them as
        delivered. Returns those that were not yet."""
        with self._changing(pipeline, step_id) as writes:
            changed = [w for w in writes if (w.pipeline, w.step_id) == (pipeline, step_id)
                       and not w.written]
            writes[:] = [replace(w, written=True) if w in changed else w for w in writes]
        return changed

    def settle(self, pipeline: str, step_id: str) -> list[UnsettledWrite]:
        """Remove the step's records (a file that cannot be read goes whole); returns them.
        Callers first refuse records still being written (:meth:`still_writing`)."""
        try:
            if not any((w.pipeline, w.step_id) == (pipeline, step_id)
                       for w in self._read(pipeline, step_id)):
                return []  # nothing to settle: nothing made, no lock file left behind
        except UnreadableRecordError as exc:
            self._files.remove(pipeline, step_id)
            return [exc.placeholder(pipeline, step_id)]
        with self._changing(pipeline, step_id) as writes:
            removed = [w for w in writes if (w.pipeline, w.step_id) == (pipeline, step_id)]
            writes[:] = [w for w in writes if w not in removed]
        return removed

    def all(self) -> list[UnsettledWrite]:
        return [w for where, body in self._files.all() for w in _parse(body, where)]

    def _read(self, pipeline: str, step_id: str) -> list[UnsettledWrite]:
        return _parse(self._files.read(pipeline, step_id), self._files.where(pipeline, step_id))

    @contextmanager
    def _changing(self, pipeline: str, step_id: str) -> Iterator[list[UnsettledWrite]]:
        with self._files.changing(pipeline, step_id) as body:
            writes = _parse(body.text, self._files.where(pipeline, step_id))
            yield writes
            body.text = _dump(writes) if writes else ""


def new_record(pipeline: str, step_id: str, key: str, session_id: str,
               inputs: Sequence[tuple[str, str, str]], error: str,
               target: str = "") -> UnsettledWrite:
    return UnsettledWrite(pipeline, step_id, key, session_id,
                          time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          tuple(f"{step} = {session}/{table}" for step, session, table in inputs),
                          error, target=target)


class UnreadableRecordError(OsirisError):
    """A record file that is not what this module writes (edited by hand, cut short)."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"the unsettled-write record {where} cannot be read ({reason}); "
                         "check its target, then remove it with `osiris-dagster unsettled "
                         "settle PIPELINE STEP`")
        self.where = where

    def placeholder(self, pipeline: str, step_id: str) -> UnsettledWrite:
        return UnsettledWrite(pipeline, step_id, "", "?", "?", (), str(self))


def settle_command(pipeline: str, step_id: str) -> str:
    return f"osiris-dagster unsettled settle {shlex.quote(pipeline)} {shlex.quote(step_id)}"


class WriteInProgress(OsirisError):
    """Another process is writing the same step's same input now (it holds the lock)."""


def still_writing_refusal(write: UnsettledWrite | None, step_id: str) -> str:
    where = f" in session {write.session_id} (started {write.failed_at})" if write else ""
    return (f"not run: step '{step_id}' is still writing the same input{where}; running it "
            "again now could write it twice. Run again once that run has ended: if it fails "
            "unsure, it leaves an unsettled write to check (`osiris-dagster unsettled list`).")


def refusal(write: UnsettledWrite) -> str:
    """Why the step does not run, and what to do."""
    if write.written and not write.inputs:
        return (f"not run: an earlier attempt of this step (session {write.session_id}, "
                f"{write.failed_at}) wrote what it sends (settled as written). The step reads "
                "no table, so every run of it sends the same request, and this one would apply "
                "it again. When it should be applied again (the next scheduled run), run "
                f"`{settle_command(write.pipeline, write.step_id)}` first: that removes the "
                "record, and the step runs again.")
    if write.written:
        return (f"not run: an earlier attempt of this step on the same input (session "
                f"{write.session_id}, {write.failed_at}) wrote it (settled as written), so "
                "running it again would write it twice. A new run's input runs; to write this "
                f"input again anyway, run `{settle_command(write.pipeline, write.step_id)}`.")
    into = f" into {write.target}" if write.target else ""
    return (f"not run: an earlier attempt of this step on the same input (session "
            f"{write.session_id}, {write.failed_at}) failed in a way that may have written it "
            f"already{into}, so running it again could write it twice. That attempt said: "
            f"{write.error} -- Check the target first. If the rows are not there, run "
            f"`{settle_command(write.pipeline, write.step_id)}` to run the step again on this "
            f"input; if they are, `{settle_command(write.pipeline, write.step_id)} --written` "
            "(nothing writes them again). Use the same OSIRIS_SESSIONS_DIR and session store; "
            "a new run's input, or a config that is safe to repeat (an upsert or a replace), "
            "runs without it.")


def held_back_note(pipeline: str, step_id: str) -> str:
    """Added to the error of a failure that was recorded: what a re-run will do."""
    return (f" (Recorded as an unsettled write: running this step again on the same input is "
            f"refused until `{settle_command(pipeline, step_id)}`.)")


def _parse(body: str, where: str) -> list[UnsettledWrite]:
    if not body.strip():
        return []
    try:
        return [UnsettledWrite(**{**item, "inputs": tuple(item["inputs"])})
                for item in json.loads(body)]
    except (ValueError, TypeError, KeyError) as exc:
        raise UnreadableRecordError(where, f"{type(exc).__name__}: {exc}") from None


def _dump(writes: Sequence[UnsettledWrite]) -> str:
    return json.dumps([asdict(w) for w in writes], indent=2) + "\n"
