"""Whether the rows an incremental extractor read reached every step after it, so that its
next run never starts after rows that were read but never delivered.

An incremental extractor's state (its high-water mark) is saved once its own step is accepted
(:func:`osiris_dagster.runtime.runner.commit_state`). Then a step after it may fail (a writer
whose database is down), or never run (the extractor materialised alone): the rows it read are
only in that session's table, and the next run would start after them. So each advance is
recorded here (``delivery.json`` in the extractor's state directory): the session, the state
before it, the steps after the extractor in the pipeline, the tables that hold these rows (the
extractor's, then each one made from such a table) and the steps that have finished on one of
them, in this run or a later one (*Re-execute from failure*, ``--select``), writers apart.

When the extractor runs again and a step after it has not finished on these rows:

* no writer has written them (every write failed as a whole, or none ran): the state is set
  back to what it was before (:func:`rewind_if_undelivered`), and the extractor reads these rows
  again with the new ones. The tables that held them are *handed back*: a step that would read
  one of them later (a re-execution of the old run) is refused, so no row is written twice.
* a writer has written them and another step has not, or a write may have landed (an unsettled
  write, :mod:`unsettled_writes`; one settled as written counts as written): setting the state
  back would write rows twice, and going on would lose them for the steps that missed them; the
  extractor fails, naming those steps and what to do (``osiris-dagster deliveries skip`` gives
  them up).
* a step after it is still running on them (another run, slower than the schedule): the
  extractor fails for now; it may run once that step has ended. (Each step after an
  incremental extractor holds a shared lock on ``.delivery-in-flight.lock`` in the extractor's
  state directory while it runs; with the ducklake store, whose records have no lock, runs on
  other machines are not seen.)

A table the extractor made but whose state was not saved (a blocking check failed, another run
saved first) is handed back at once: its rows are read again by the next run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from osiris_dagster.core.errors import DriverError, OsirisError, StepRefused
from osiris_dagster.core.file_locks import held_lock, lock_or_none
from osiris_dagster.oml.model import Pipeline
from osiris_dagster.oml.specs import data_upstreams, get_spec
from osiris_dagster.runtime.session import Session
from osiris_dagster.runtime.step_records import StepRecords
from osiris_dagster.runtime.stores.ducklake_records import LakeRecords
from osiris_dagster.runtime.unsettled_writes import UnsettledWrites

FILE = "delivery.json"
IN_FLIGHT = ".delivery-in-flight.lock"
_HANDED_BACK_KEPT = 200  # tables of earlier rewinds still refused (the newest ones)

Table = tuple[str, str]  # (session id, step id)


class UndeliveredRowsError(StepRefused):
    """Rows an earlier run read reached some steps after the extractor but not all."""


@dataclass
class Delivery:
    session_id: str  # the session whose extract advanced the state
    state_file: str  # the extractor's state file (in its state directory)
    previous: str | None  # that file's text before the advance (None: there was none)
    waiting_for: list[str]  # the steps after the extractor when it advanced
    holding: list[list[str]]  # the tables that hold these rows, as [session, step]
    delivered_to: list[str] = field(default_factory=list)  # steps finished on one of them
    written_by: list[str] = field(default_factory=list)  # those of them that write out
    handed_back: list[list[str]] = field(default_factory=list)  # tables of earlier rewinds
    pipeline: str = ""  # whose extractor (for `osiris-dagster deliveries`)
    step_id: str = ""

    def missing(self) -> list[str]:
        """The steps after the extractor that have not finished on these rows (also one
        renamed or removed since: its rows went nowhere)."""
        return [s for s in self.waiting_for if s not in self.delivered_to]


def downstream(pipeline: Pipeline, step_id: str) -> list[str]:
    """The steps that read ``step_id``'s table, directly or through others' tables, in
    pipeline order (whatever order the file lists them in). A step that only comes after one
    of them (its `needs` names a writer, which makes no table) reads none of their rows."""
    found: set[str] = {step_id}
    grew = True
    while grew:
        grew = False
        for step in pipeline.steps:
            if step.id not in found and any(n in found for n in data_upstreams(pipeline, step)):
                found.add(step.id)
                grew = True
    return [s.id for s in pipeline.steps if s.id in found and s.id != step_id]


def records(session: Session) -> StepRecords:
    return StepRecords(session.settings.sessions_dir, session.records, FILE)


def state_records(session: Session, name: str) -> StepRecords:
    return StepRecords(session.settings.sessions_dir, session.records, name)


def advanced(record: str, where: str, session: Session, pipeline: Pipeline, step_id: str,
             state_file: str, previous: str | None) -> str:
    """The delivery record ``record`` (its text) once the extractor's state advanced in
    ``session``: from then on its rows must reach every step after it (with no step after it,
    only the tables handed back earlier are kept)."""
    earlier = _parse(record, where)
    handed_back = earlier.handed_back if earlier is not None else []
    after = downstream(pipeline, step_id)
    if not after:
        return _dump(Delivery(session.session_id, state_file, previous, [], [],
                              handed_back=handed_back, pipeline=pipeline.name,
                              step_id=step_id)) if handed_back else ""
    return _dump(Delivery(session.session_id, state_file, previous, after,
                          [[session.session_id, step_id]], handed_back=handed_back,
                          pipeline=pipeline.name, step_id=step_id))


def hand_back(session: Session, pipeline: Pipeline, step_id: str) -> None:
    """The extractor's table of ``session`` was materialised but its state not saved: its rows
    are the next run's, so a step that would read this table later is refused."""
    files = records(session)
    with files.changing(pipeline.name, step_id) as body:
        delivery = _parse(body.text, files.where(pipeline.name, step_id)) or \
            Delivery(session.session_id, "", None, [], [])
        table = [session.session_id, step_id]
        if table not in delivery.handed_back:
            delivery.handed_back = (delivery.handed_back + [table])[-_HANDED_BACK_KEPT:]
        body.text = _dump(delivery)


@contextlib.contextmanager
def receiving(session: Session, pipeline: Pipeline, step_id: str,
              inputs: Iterable[Table]) -> Iterator[None]:
    """While a step after incremental extractors runs: their next runs do not set their state
    back under it (a shared lock each; see the module's doc), and a table handed back to one of
    them is refused."""
    extractors = _extractors_before(pipeline, step_id)
    with contextlib.ExitStack() as locks:
        if session.records is None:
            files = records(session)
            for extractor in extractors:
                path = files.path(pipeline.name, extractor).with_name(IN_FLIGHT)
                path.parent.mkdir(parents=True, exist_ok=True)
                locks.enter_context(held_lock(path, shared=True))
        _refuse_handed_back(session, pipeline, extractors, inputs)
        yield


def _refuse_handed_back(session: Session, pipeline: Pipeline, extractors: list[str],
                        inputs: Iterable[Table]) -> None:
    wanted = {tuple(t) for t in inputs}
    if not wanted:
        return
    files = records(session)
    for extractor in extractors:
        delivery = _parse(files.read(pipeline.name, extractor),
                          files.where(pipeline.name, extractor))
        if delivery is None:
            continue
        back = wanted & {(s, t) for s, t in delivery.handed_back}
        if back:
            session_id, table = sorted(back)[0]
            raise UndeliveredRowsError(
                f"not run: the rows of step '{table}' in session {session_id} were handed back "
                f"to step '{extractor}' (a step after it had not received them, or its state "
                "was not saved), and its next run reads them again: running this step on the "
                "old table would deliver them twice. Run the pipeline (or this step) on a newer "
                "session instead.")


def record_finished(session: Session, pipeline: Pipeline, step_id: str,
                    inputs: Collection[Table]) -> None:
    """``step_id`` finished in ``session`` reading ``inputs``: it received the rows of every
    extractor before it whose rows one of these tables holds."""
    if not inputs:
        return
    files = records(session)
    writes = pipeline.step(step_id).mode == "write"
    for extractor in _extractors_before(pipeline, step_id):
        if not files.read(pipeline.name, extractor):  # no lock taken for nothing
            continue
        with files.changing(pipeline.name, extractor) as body:
            delivery = _parse(body.text, files.where(pipeline.name, extractor))
            if delivery is None or not any(list(t) in delivery.holding for t in inputs):
                continue
            _received(delivery, step_id, writes)
            mine = [session.session_id, step_id]
            if mine not in delivery.holding:
                delivery.holding.append(mine)
            body.text = _dump(delivery)


def _received(delivery: Delivery, step_id: str, writes: bool) -> None:
    if step_id not in delivery.delivered_to:
        delivery.delivered_to.append(step_id)
    if writes and step_id not in delivery.written_by:
        delivery.written_by.append(step_id)


def rewind_if_undelivered(session: Session, pipeline: Pipeline, step_id: str) -> str | None:
    """Before the extractor ``step_id`` runs: if its last rows did not reach every step after
    it, set its state back (returns what happened, for the log) or fail (see the module's
    doc)."""
    files = records(session)
    if not files.read(pipeline.name, step_id):
        return None
    # the in-flight lock outermost: released only once the record (handing tables back) is
    # saved, so a step of the old run that starts meanwhile finds them handed back
    with _no_step_in_flight(session, files, pipeline, step_id), \
            files.changing(pipeline.name, step_id) as body:
        delivery = _parse(body.text, files.where(pipeline.name, step_id))
        if delivery is None or delivery.session_id == session.session_id:
            return None
        written, may_have_landed = _unsettled_on(session, pipeline, delivery)
        for step in written:  # settled as written: received
            _received(delivery, step, True)
        missing = delivery.missing()
        if not missing:
            body.text = _dump(_without_rows(delivery)) if delivery.handed_back else ""
            return None
        if delivery.written_by or may_have_landed:
            raise UndeliveredRowsError(_partial_message(pipeline, step_id, delivery, missing,
                                                        may_have_landed))
        state = state_records(session, delivery.state_file)
        with state.changing(pipeline.name, step_id) as saved:  # locks: delivery, then state
            saved.text = delivery.previous or ""
            state.save(pipeline.name, step_id, saved)  # first: the tables are handed back
        rewound = _without_rows(delivery)  # only once the state is set back
        rewound.handed_back = (delivery.handed_back + delivery.holding)[-_HANDED_BACK_KEPT:]
        body.text = _dump(rewound)
    return (f"the rows this step read in session {delivery.session_id} did not reach "
            f"{', '.join(missing)}: its incremental state was set back, and it reads them again "
            "now (the old session's tables are not delivered again)")


@contextlib.contextmanager
def _no_step_in_flight(session: Session, files: StepRecords, pipeline: Pipeline,
                       step_id: str) -> Iterator[None]:
    """Fail while a step after the extractor (of another run) still works on its rows: it may
    yet deliver them, and setting the state back under it would deliver them twice."""
    if session.records is not None:
        yield
        return
    path = files.path(pipeline.name, step_id).with_name(IN_FLIGHT)
    with lock_or_none(path) as held:
        if not held:
            raise DriverError(
                "not run yet: a step after this one, in another run, is still working on the "
                "rows this step read last (it may yet deliver them; it holds a shared lock on "
                f"{path}). Run again once that run has ended (`osiris-dagster sessions list` "
                "shows the unfinished ones).")
        yield


def _partial_message(pipeline: Pipeline, step_id: str, delivery: Delivery, missing: list[str],
                     may_have_landed: Collection[str]) -> str:
    parts = []
    if delivery.written_by:
        parts.append(f"they were written by {', '.join(delivery.written_by)}")
    if may_have_landed:
        parts.append(f"a write of {', '.join(sorted(may_have_landed))} may have landed (see "
                     "`osiris-dagster unsettled list`)")
    gone = [s for s in missing if s not in {x.id for x in pipeline.steps}]
    names = ", ".join(f"{s} (no longer in the pipeline)" if s in gone else s for s in missing)
    skip_it = f"`osiris-dagster deliveries skip '{pipeline.name}' '{step_id}'`"
    lead = (f"not run: the rows this step read in session {delivery.session_id} did not reach "
            f"{names}, and {' and '.join(parts)}. Reading them again would write them twice; "
            "going on would lose them for those steps.")
    present = [s for s in missing if s not in gone]
    if not present:
        return f"{lead} To give them up for those steps (no step of the pipeline is left to " \
               f"deliver them to): {skip_it}."
    return (f"{lead} Deliver them first: re-execute the run of session "
            f"{delivery.session_id} from failure in Dagster (with the Dagster home that run "
            f"used), or, if its tables are still the latest of the steps before them, "
            f"`osiris-dagster run {pipeline.path} --select {' --select '.join(present)}`; then "
            f"run this step again. To give them up for those steps instead: {skip_it}.")


def _unsettled_on(session: Session, pipeline: Pipeline, delivery: Delivery
                  ) -> tuple[list[str], list[str]]:
    """The missing steps with an unsettled write on a table holding the rows: (settled as
    written, may have landed)."""
    writes = UnsettledWrites(session.settings.sessions_dir, session.records)
    held = {f"{step} = {session_id}/" for session_id, step in delivery.holding}
    written: list[str] = []
    maybe: list[str] = []
    for step in delivery.missing():
        for w in writes.of(pipeline.name, step):
            if any(i.startswith(h) for i in w.inputs for h in held):
                (written if w.written else maybe).append(step)
    return written, [s for s in dict.fromkeys(maybe) if s not in written]


def _without_rows(delivery: Delivery) -> Delivery:
    return Delivery(delivery.session_id, delivery.state_file, None, [], [],
                    handed_back=delivery.handed_back, pipeline=delivery.pipeline,
                    step_id=delivery.step_id)


def _extractors_before(pipeline: Pipeline, step_id: str) -> list[str]:
    """The incremental extractors before ``step_id`` (that it reads, directly or through
    others)."""
    return [s.id for s in pipeline.steps
            if is_incremental(pipeline, s.id) and step_id in downstream(pipeline, s.id)]


def is_incremental(pipeline: Pipeline, step_id: str) -> bool:
    spec = get_spec(pipeline.step(step_id).component)
    return spec is not None and spec.incremental


# -- osiris-dagster deliveries ---------------------------------------------------------------------
def pending(sessions_dir: Path, store_records: LakeRecords | None
            ) -> list[tuple[str, Delivery]]:
    """(where, record) of every extractor whose last rows have not reached every step."""
    files = StepRecords(sessions_dir, store_records, FILE)
    found = []
    for where, text in files.all():
        delivery = _parse(text, where)
        if delivery is not None and delivery.missing():
            found.append((where, delivery))
    return found


def skip(sessions_dir: Path, store_records: LakeRecords | None, pipeline: str, step_id: str
         ) -> Delivery | None:
    """Give up delivering the extractor's last rows to the steps that missed them (its next
    run goes on after them); the tables handed back stay refused. None: nothing pending."""
    files = StepRecords(sessions_dir, store_records, FILE)
    with files.changing(pipeline, step_id) as body:
        delivery = _parse(body.text, files.where(pipeline, step_id))
        if delivery is None or not delivery.missing():
            return None
        body.text = _dump(_without_rows(delivery)) if delivery.handed_back else ""
        return delivery


class UnreadableDeliveryError(OsirisError):
    """A delivery record that is not what this module writes."""


def _parse(text: str, where: str) -> Delivery | None:
    if not text.strip():
        return None
    try:
        return Delivery(**json.loads(text))
    except (ValueError, TypeError) as exc:
        raise UnreadableDeliveryError(
            f"the delivery record {where} cannot be read ({type(exc).__name__}: {exc}); "
            "remove it (its extractor then goes on after the rows it read last)") from None


def _dump(delivery: Delivery) -> str:
    return json.dumps(asdict(delivery), indent=1) + "\n"
