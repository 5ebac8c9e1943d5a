"""Whether the rows an incremental extractor read reached every step after it, so that its
next run never starts after rows that were read but never delivered.

An incremental extractor's state (its high-water mark) is saved once its own step is accepted
(:func:`osiris_dagster.runtime.runner.commit_state`). Then a step after it may fail (a writer
whose database is down), or never run (the extractor materialised alone): the rows it read are
only in that session's table, and the next run would start after them. So each advance is
recorded here (``delivery.json`` in the extractor's state directory): the session, the state
before it, the steps after the extractor in the pipeline, the tables that hold these rows (the
extractor's, then each one made from such a table) and the steps that have finished on one of
them, in this run or a later one (*Re-execute from failure*, ``--select``).

When the extractor runs again and a step after it has not finished on these rows:

* no writer has written them (every write failed as a whole, or none ran): the state is set
  back to what it was before (:func:`rewind_if_undelivered`), and the extractor reads these rows
  again with the new ones. The tables that held them are *handed back*: a step that would read
  one of them later (a re-execution of the old run) is refused, so no row is written twice.
* a writer has written them and another step has not, or a write may have landed
  (:mod:`unsettled_writes`): setting the state back would write rows twice, and going on would
  lose them for the steps that missed them; the extractor fails, naming those steps and what
  to do.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field

from osiris_dagster.core.errors import OsirisError, StepRefused
from osiris_dagster.oml.model import Pipeline
from osiris_dagster.oml.specs import get_spec
from osiris_dagster.runtime.session import Session
from osiris_dagster.runtime.step_records import StepRecords
from osiris_dagster.runtime.unsettled_writes import UnsettledWrites

FILE = "delivery.json"
_HANDED_BACK_KEPT = 200  # tables of earlier rewinds still refused (the newest ones)

Table = tuple[str, str]  # (session id, step id)


class UndeliveredRowsError(StepRefused):
    """Rows an earlier run read reached some steps after the extractor but not all."""


@dataclass
class Delivery:
    session_id: str  # the session whose extract advanced the state
    state_file: str  # the extractor's state file (in its state directory)
    previous: str | None  # that file's text before the advance (None: there was none)
    waiting_for: list[str]  # the steps after the extractor
    holding: list[list[str]]  # the tables that hold these rows, as [session, step]
    delivered_to: list[str] = field(default_factory=list)  # steps finished on one of them
    handed_back: list[list[str]] = field(default_factory=list)  # tables of earlier rewinds

    def missing(self, pipeline: Pipeline, step_id: str) -> list[str]:
        """The steps after the extractor (now) that have not finished on these rows."""
        after = downstream(pipeline, step_id)
        return [s for s in self.waiting_for if s in after and s not in self.delivered_to]


def downstream(pipeline: Pipeline, step_id: str) -> list[str]:
    """The steps that read ``step_id``'s table, directly or through others, in pipeline order."""
    found: set[str] = {step_id}
    for step in pipeline.steps:  # steps are in topological order
        if any(n in found for n in step.needs):
            found.add(step.id)
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
                              handed_back=handed_back)) if handed_back else ""
    return _dump(Delivery(session.session_id, state_file, previous, after,
                          [[session.session_id, step_id]], handed_back=handed_back))


def refuse_handed_back(session: Session, pipeline: Pipeline, step_id: str,
                       inputs: Iterable[Table]) -> None:
    """Refuse a step that would read a table whose rows were handed back to its extractor's
    next run (they are read, and written, again there)."""
    wanted = {tuple(t) for t in inputs}
    files = records(session)
    for extractor in _extractors_before(session, pipeline, step_id):
        delivery = _parse(files.read(pipeline.name, extractor),
                          files.where(pipeline.name, extractor))
        if delivery is None:
            continue
        back = wanted & {(s, t) for s, t in delivery.handed_back}
        if back:
            session_id, table = sorted(back)[0]
            raise UndeliveredRowsError(
                f"not run: the rows of step '{table}' in session {session_id} were handed back "
                f"to step '{extractor}' when it ran again (a step after it had not received "
                "them), and that run reads them again: running this step on the old table "
                "would deliver them twice. Run the pipeline (or this step) on the newer "
                "session instead.")


def record_finished(session: Session, pipeline: Pipeline, step_id: str,
                    inputs: Collection[Table]) -> None:
    """``step_id`` finished in ``session`` reading ``inputs``: it received the rows of every
    extractor before it whose rows one of these tables holds."""
    if not inputs:
        return
    files = records(session)
    for extractor in _extractors_before(session, pipeline, step_id):
        if not files.read(pipeline.name, extractor):  # no lock taken for nothing
            continue
        with files.changing(pipeline.name, extractor) as body:
            delivery = _parse(body.text, files.where(pipeline.name, extractor))
            if delivery is None or not any(list(t) in delivery.holding for t in inputs):
                continue
            if step_id not in delivery.delivered_to:
                delivery.delivered_to.append(step_id)
            mine = [session.session_id, step_id]
            if mine not in delivery.holding:
                delivery.holding.append(mine)
            body.text = _dump(delivery)


def rewind_if_undelivered(session: Session, pipeline: Pipeline, step_id: str) -> str | None:
    """Before the extractor ``step_id`` runs: if its last rows did not reach every step after
    it, set its state back (returns what happened, for the log) or fail (see the module's
    doc)."""
    files = records(session)
    if not files.read(pipeline.name, step_id):
        return None
    with files.changing(pipeline.name, step_id) as body:
        delivery = _parse(body.text, files.where(pipeline.name, step_id))
        if delivery is None or delivery.session_id == session.session_id:
            return None
        missing = delivery.missing(pipeline, step_id)
        if not missing:
            body.text = _dump(_without_rows(delivery)) if delivery.handed_back else ""
            return None
        written = [s for s in delivery.delivered_to if pipeline.step(s).mode == "write"]
        may_have_landed = _unsettled_on(session, pipeline, missing, delivery.holding)
        if written or may_have_landed:
            raise UndeliveredRowsError(_partial_message(pipeline, step_id, delivery, missing,
                                                        written, may_have_landed))
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


def _partial_message(pipeline: Pipeline, step_id: str, delivery: Delivery, missing: list[str],
                     written: list[str], may_have_landed: Collection[str]) -> str:
    done = (f"they were written by {', '.join(written)}" if written else
            f"a write of {', '.join(sorted(may_have_landed))} may have landed")
    return (f"not run: the rows this step read in session {delivery.session_id} did not reach "
            f"{', '.join(missing)}, and {done}. Reading them again would write them twice; "
            f"going on would lose them for {', '.join(missing)}. Deliver them first: re-execute "
            f"that run from failure in Dagster, or `osiris-dagster run {pipeline.path} --select "
            f"{' --select '.join(missing)}` (which reads the latest tables of the steps before "
            f"them); then run this step again. To skip them for those steps instead, remove "
            f"{FILE} from this step's state directory.")


def _unsettled_on(session: Session, pipeline: Pipeline, steps: Iterable[str],
                  holding: list[list[str]]) -> list[str]:
    """The ``steps`` with an unsettled write (one that may have landed) on a table holding the
    rows."""
    writes = UnsettledWrites(session.settings.sessions_dir, session.records)
    held = {f"{step} = {session_id}/" for session_id, step in holding}
    return [step for step in steps
            for w in writes.of(pipeline.name, step)
            if any(i.startswith(h) for i in w.inputs for h in held)]


def _without_rows(delivery: Delivery) -> Delivery:
    return Delivery(delivery.session_id, delivery.state_file, None, [], [],
                    handed_back=delivery.handed_back)


def _extractors_before(session: Session, pipeline: Pipeline, step_id: str) -> list[str]:
    """The incremental extractors before ``step_id`` (that it reads, directly or through
    others)."""
    return [s.id for s in pipeline.steps
            if is_incremental(pipeline, s.id) and step_id in downstream(pipeline, s.id)]


def is_incremental(pipeline: Pipeline, step_id: str) -> bool:
    spec = get_spec(pipeline.step(step_id).component)
    return spec is not None and spec.incremental


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
