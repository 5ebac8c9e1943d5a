"""Running one step of a pipeline inside a session. No Dagster here: the Dagster layer calls
:func:`run_step` from each asset, and tests can call it with nothing but files."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from osiris_dagster.core import memory
from osiris_dagster.core.errors import (
    DriverError,
    FailedAfterCommitError,
    NotRetryableError,
    OsirisError,
    OutcomeUnknownError,
    StepCancelled,
    StepError,
    StepRefused,
    StepTimeout,
    UpstreamMissingError,
)
from osiris_dagster.core.masking import Masker, mask_url_queries
from osiris_dagster.core.naming import SINGLE_INPUT_VIEW, table_names, upstream_view_names
from osiris_dagster.drivers import (
    Driver,
    DriverResult,
    get_driver,
    repeats_safely,
    supported_components,
)
from osiris_dagster.oml.model import Pipeline, Step, thaw
from osiris_dagster.oml.specs import data_upstreams, get_spec
from osiris_dagster.runtime.checks import (
    CheckOutcome,
    CheckSpec,
    run_checks,
)
from osiris_dagster.runtime.connections import (
    CONNECTION_OPTIONAL,
    Connections,
    ResolvedConnection,
)
from osiris_dagster.runtime.deliveries import (
    advanced,
    hand_back,
    receiving,
    record_finished,
    rewind_if_undelivered,
)
from osiris_dagster.runtime.deliveries import records as delivery_records
from osiris_dagster.runtime.session import Session, state_json
from osiris_dagster.runtime.step_records import StepRecords
from osiris_dagster.runtime.unsettled_writes import (
    STARTED,
    UnreadableRecordError,
    UnsettledWriteError,
    UnsettledWrites,
    WriteInProgress,
    held_back_note,
    new_record,
    refusal,
    still_writing_refusal,
    write_key,
)
from osiris_dagster.runtime.workspace import ProgressCallback, StepWorkspace


@dataclass(frozen=True)
class TableRef:
    """What crosses an asset boundary: where a step's table is, never the data itself."""

    session_id: str
    location: str  # the store's name for the session: its DuckDB file, or ducklake:<session>
    table: str
    step_id: str
    rows: int
    columns: tuple[tuple[str, str], ...] = ()


@dataclass
class StepOutcome:
    step_id: str
    ref: TableRef | None
    result: DriverResult
    duration_s: float
    preview: tuple[list[str], list[tuple[Any, ...]]] | None = None
    connection_ref: str | None = None
    checks: list[CheckOutcome] = field(default_factory=list)


def step_table(pipeline: Pipeline, step_id: str) -> str:
    return table_names(s.id for s in pipeline.steps)[step_id]


def start_session(session: Session, pipeline: Pipeline) -> None:
    """First step of a run: create the directory, write the manifest, log run_start (once,
    of steps starting in several processes)."""
    if session.records is not None:  # the store's records are shared by every worker
        session.ensure()
        if session.records.claim(session.session_id, "run_start"):
            _begin(session, pipeline)
        return
    if session.manifest_path.exists():
        return
    session.ensure()
    with session.log_lock():
        if session.manifest_path.exists():
            return
        _begin(session, pipeline)


def _begin(session: Session, pipeline: Pipeline) -> None:
    session.write_manifest(manifest(pipeline, session.session_id))
    session.log_event("run_start", session_id=session.session_id,
                      session_dir=str(session.dir), pipeline=pipeline.name,
                      pipeline_file=str(pipeline.path), profile=pipeline.profile,
                      fingerprint=pipeline.fingerprint)


def manifest(pipeline: Pipeline, session_id: str) -> dict[str, Any]:
    return {
        "meta": {"oml_version": pipeline.oml_version, "profile": pipeline.profile,
                 "session_id": session_id, "fingerprint": pipeline.fingerprint,
                 "pipeline_file": str(pipeline.path), "generated_by": "osiris-dagster"},
        "name": pipeline.name,
        "params": thaw(pipeline.params),
        "steps": [
            {"id": s.id, "component": s.component, "mode": s.mode, "needs": list(s.needs),
             "implicit_needs": s.implicit_needs, "table": step_table(pipeline, s.id)
             if get_spec(s.component) and get_spec(s.component).produces_table else None,
             "fingerprint": s.fingerprint, "config": thaw(s.config)}
            for s in pipeline.steps
        ],
    }


def run_step(
    pipeline: Pipeline,
    step_id: str,
    session: Session,
    upstream_refs: Mapping[str, TableRef],
    connections: Connections,
    on_progress: ProgressCallback | None = None,
    on_workspace: Callable[[StepWorkspace | None], None] | None = None,
    timeout_seconds: float | None = None,
    checks: Sequence[CheckSpec] = (),
    asset_refs: Mapping[str, TableRef] | None = None,
    selected: Collection[str] = (),
    retried_on_failure: bool = False,
    on_notice: Callable[[str, str], None] | None = None,
    check_stop: Callable[[], None] | None = None,
) -> StepOutcome:
    """Run one step; returns its outcome or raises StepError (secrets masked, events logged).

    ``retried_on_failure``: Dagster runs the step again if this attempt fails with a retryable
    error (its retry policy has attempts left); the step's error event says so, and the session
    is not ended as failed while that retry is to come (:func:`finish_run_if_done`).

    ``on_notice(step_id, text)`` gets what a person watching the run should read in its log
    besides progress (an incremental state set back before the step reads).

    ``check_stop()`` raises when the run is being stopped (Dagster: its status is CANCELING);
    it is called before the driver starts and about every second while it runs, which stops
    the step even when the interrupt meant for it was lost (see :func:`_interruptible`).

    The driver's incremental state (``outcome.result.pending_state``) is NOT saved here: the
    caller saves it with :func:`commit_state` once the step's output is accepted.

    The driver runs in a worker thread while this thread waits, so a run termination
    (KeyboardInterrupt / Dagster's interrupt) or the step's timeout interrupts DuckDB at once
    instead of after the query; the interrupted step leaves no partial output.

    ``asset_refs`` maps a view name (``df_<name>``) to the table of an asset outside the
    pipeline that the step's query reads (see
    :func:`osiris_dagster.core.naming.assets_read_by_query`); it is attached like an upstream
    step's table.

    ``selected`` are the ids of the steps this run executes: a SQL step whose table one of
    them reads with SQL leaves its sealed instance to it (see :func:`sql_step_follows`).
    """
    step = pipeline.step(step_id)
    spec = get_spec(step.component)
    assert spec is not None  # validated
    session.masker.add(pipeline.sensitive_values())  # before anything is written
    session.masker.add_url_queries([s.config for s in pipeline.steps])
    mask_every_connection(pipeline, connections, session.masker)
    start_session(session, pipeline)
    session.log_event("step_start", step_id=step.id, driver=step.component)
    started = time.monotonic()
    write: tuple[str, list[tuple[str, str, str]]] | None = None
    workspace: StepWorkspace | None = None
    read = [(ref.session_id, up) for up, ref in upstream_refs.items()]
    # the lock a writer holds while it writes (unsettled_writes.UnsettledWrites.writing)
    with contextlib.ExitStack() as writing:
        held = contextlib.ExitStack()  # the lock of a step receiving incremental rows (deliveries)
        try:
            driver = _driver(step)
            resolved = _resolve_connection(step, spec.family, connections, session.masker)
            config = {**spec.defaults(), **{k: v for k, v in thaw(step.config).items()
                                            if k != "connection"}}
            _write_cleaned_config(session, step, config, resolved)
            if spec.family not in _LOCAL_FAMILIES and not repeats_safely(step.component, config):
                key, write_inputs, legacy_key = _write_identity(session, step, upstream_refs,
                                                                asset_refs or {})
                write = (key, write_inputs)
                if step.mode == "write":  # held while it writes: its record is not 'ended'
                    writing.enter_context(_writing(session, pipeline, step, write))
                _refuse_unsettled(session, pipeline, step, write, legacy_key)
                _record_started(session, pipeline, step, write)
            held.enter_context(receiving(session, pipeline, step.id, read))
            if spec.incremental:
                rewound = rewind_if_undelivered(session, pipeline, step.id)
                if rewound is not None:
                    session.log_event("state_rewound", step_id=step.id, detail=rewound)
                    if on_notice:
                        on_notice(step.id, rewound)
            with StepWorkspace(session, pipeline_name=pipeline.name, step_id=step.id,
                               output_table=step_table(pipeline, step.id),
                               connection=resolved.values if resolved else None,
                               base_dir=resolved.base_dir if resolved else None,
                               on_progress=on_progress, on_notice=on_notice,
                               sealed_reuse=step.component in SEALED_COMPONENTS,
                               park_when_done=step.component in SEALED_COMPONENTS and
                               sql_step_follows(pipeline, step.id, selected)) as ws:
                workspace = ws
                if on_workspace:
                    on_workspace(ws)
                try:
                    inputs = _attach_inputs(ws, pipeline, step, upstream_refs, asset_refs or {})
                    result = _with_memory_retries(
                        ws, step.component,
                        lambda: _interruptible(ws, lambda: driver(ws, config, inputs),
                                               timeout_seconds, check_stop))
                    ref, preview, check_outcomes = _output(ws, session, step, result, checks)
                finally:
                    if on_workspace:
                        on_workspace(None)
        except BaseException as caught:
            held.close()
            error = _failed(session, pipeline, step, write, _after_commit(caught, workspace),
                            time.monotonic() - started, retried_on_failure)
            if error is None:
                raise  # KeyboardInterrupt, Dagster's interrupt: let the run stop
            raise error from None
        duration = time.monotonic() - started
        try:
            try:
                _record_delivery(session, pipeline, step, read)
            finally:
                held.close()
            if write is not None:
                _forget_started(session, pipeline, step, write)
            _log_success(session, step, result, duration, check_outcomes,
                         _direct_inputs(upstream_refs, asset_refs or {}))
        except Exception as caught:  # the session's bookkeeping (a full disk)
            exc = _after_commit(caught, workspace)
            if exc is caught:
                raise
            error = _failed(session, pipeline, step, write, exc, duration, retried_on_failure)
            assert error is not None  # an Exception: never a stop
            raise error from None
        return StepOutcome(step.id, ref, result, duration, preview,
                           resolved.ref if resolved else None, check_outcomes)


# Families whose steps only read and write local files and session tables: running them again
# gives the same end state, so no unsettled write is kept for them.
_LOCAL_FAMILIES = {"filesystem", "duckdb"}


def _direct_inputs(upstream_refs: Mapping[str, TableRef],
                   asset_refs: Mapping[str, TableRef]) -> list[tuple[str, str, str]]:
    return [(name, ref.session_id, ref.table)
            for name, ref in [*upstream_refs.items(), *asset_refs.items()]]


def _write_identity(session: Session, step: Step, upstream_refs: Mapping[str, TableRef],
                    asset_refs: Mapping[str, TableRef]
                    ) -> tuple[str, list[tuple[str, str, str]], str]:
    """The key of what the step would write (see :mod:`unsettled_writes`), its inputs, and
    the key the inputs alone give (how records were keyed before: still refused). The key is
    made from the tables its inputs were made from, back to the extractors' tables
    (:func:`_made_from`): a SQL step run again on the same extract makes a new table of the same
    rows, and writing those again must be refused as well."""
    inputs = _direct_inputs(upstream_refs, asset_refs)
    roots = _made_from(session, inputs)
    return write_key(step.component, roots), inputs, write_key(step.component, inputs)


def _made_from(session: Session, inputs: Sequence[tuple[str, str, str]]
               ) -> list[tuple[str, str, str]]:
    """The tables (step, session, table) that ``inputs`` were made from: following each
    step's recorded inputs (its ``step_complete`` event) back to tables made from none (an
    extractor's, a hand-written asset's, a step of an older release that recorded none)."""
    events: dict[str, list[dict[str, Any]]] = {}
    roots: set[tuple[str, str, str]] = set()
    todo, seen = list(inputs), set()
    while todo:
        item = todo.pop()
        if item in seen:
            continue
        seen.add(item)
        step_id, session_id, table = item
        if session_id not in events:
            try:
                events[session_id] = Session(session.settings, session_id).read_events()
            except (OSError, ValueError, duckdb.Error):
                events[session_id] = []
        made = [e for e in events[session_id] if e.get("event") == "step_complete"
                and e.get("step_id") == step_id and e.get("table") == table]
        recorded = made[-1].get("inputs") if made else None
        if recorded:
            todo.extend(tuple(i) for i in recorded)
        else:
            roots.add(item)
    return sorted(roots) or sorted(set(inputs))  # (recorded inputs that only go round)


def _refuse_unsettled(session: Session, pipeline: Pipeline, step: Step,
                      write: tuple[str, list[tuple[str, str, str]]],
                      legacy_key: str | None = None) -> None:
    try:
        records = _unsettled(session)
        earlier = records.find(pipeline.name, step.id, write[0]) or (
            records.find(pipeline.name, step.id, legacy_key) if legacy_key else None)
    except UnreadableRecordError as exc:  # refused too: it may hold this input's record
        raise UnsettledWriteError(f"not run: {exc}") from None
    if earlier is not None:
        session.log_event("unsettled_write_refused", step_id=step.id,
                          earlier_session=earlier.session_id, failed_at=earlier.failed_at)
        raise UnsettledWriteError(refusal(earlier))


@contextlib.contextmanager
def _writing(session: Session, pipeline: Pipeline, step: Step,
             write: tuple[str, list[tuple[str, str, str]]]) -> Iterator[None]:
    """Hold the step's writing lock for this input, or refuse when another process holds it (a
    run writing the same input now)."""
    unsettled = _unsettled(session)
    try:
        with unsettled.writing(pipeline.name, step.id, write[0]):
            yield
    except WriteInProgress:
        earlier = unsettled.find(pipeline.name, step.id, write[0])
        session.log_event("unsettled_write_refused", step_id=step.id, still_writing=True,
                          earlier_session=earlier.session_id if earlier else None)
        raise UnsettledWriteError(still_writing_refusal(earlier, step.id)) from None


def _record_delivery(session: Session, pipeline: Pipeline, step: Step,
                     read: Sequence[tuple[str, str]]) -> None:
    """The finished step received the rows of the incremental extractors before it (see
    :mod:`deliveries`). Not recorded, an extractor's next run would read them again for it."""
    try:
        record_finished(session, pipeline, step.id, read)
    except (OSError, duckdb.Error, OsirisError) as exc:
        message = (f"the step finished, but that it received its rows could not be recorded "
                   f"({type(exc).__name__}: {exc}): the next run of the extractor before it "
                   "would read them again, or refuse to run. Check free space and permissions "
                   "of the sessions directory's .state.")
        session.log_event("step_error", step_id=step.id, error=message, cancelled=False,
                          timed_out=False)
        raise StepError(pipeline.name, step.id, message, retryable=False) from None


def _failed(session: Session, pipeline: Pipeline, step: Step,
            write: tuple[str, list[tuple[str, str, str]]] | None, exc: BaseException,
            duration: float, retried_on_failure: bool) -> StepError | None:
    """The one way a step fails: its error logged (masked, with its duration), its write
    recorded as unsettled when it may have landed (else its 'started' record forgotten);
    returns the StepError to raise, or None for a stop (KeyboardInterrupt, Dagster's
    interrupt), which the caller lets through."""
    retryable = isinstance(exc, Exception) and not isinstance(exc, NotRetryableError)
    try:
        message = _log_failure(session, step, exc, duration,
                               will_retry=retried_on_failure and retryable)
    except (OSError, duckdb.Error):  # the log itself cannot be written (a full disk)
        message = _describe(exc, session.masker)
    if write is not None and _may_have_landed(step, exc):
        message += _record_unsettled(session, pipeline, step, write, message)
    elif write is not None and not isinstance(exc, StepRefused):
        _forget_started(session, pipeline, step, write)
    if not isinstance(exc, Exception):
        return None
    return StepError(pipeline.name, step.id, message, retryable=retryable)


def _after_commit(exc: BaseException, ws: StepWorkspace | None) -> BaseException:
    """An error raised after the step's write was committed (a log write on a full disk, the
    step's bookkeeping) as :class:`FailedAfterCommitError`: not retried, recorded as an
    unsettled write (see :func:`_may_have_landed`)."""
    if ws is None or not ws.committed or not isinstance(exc, Exception) or \
            isinstance(exc, NotRetryableError):
        return exc
    return FailedAfterCommitError(
        f"{_describe_full(exc)} (after the write's COMMIT succeeded: its rows are in the "
        "target, so the step is not run again)")


def _may_have_landed(step: Step, exc: BaseException) -> bool:
    """Whether the failed step's write may be in its target (running it again could write it
    twice): its driver said so, or the run stopped while a writer's COMMIT went through (an
    extractor that finished meanwhile wrote only its session table)."""
    if isinstance(exc, StepRefused):  # not run at all
        return False
    return isinstance(exc, NotRetryableError) or \
        step.mode == "write" and getattr(exc, "osiris_finished", None) is not None


def _record_unsettled(session: Session, pipeline: Pipeline, step: Step,
                      write: tuple[str, list[tuple[str, str, str]]], message: str) -> str:
    """Record the failure; returns what to add to the step's error (that a re-run is held
    back, or that it could not be recorded and so is not)."""
    record = new_record(pipeline.name, step.id, write[0], session.session_id, write[1],
                        message, _target_named(step))
    try:
        _unsettled(session).record(record)
    except (OSError, duckdb.Error, UnreadableRecordError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        session.log_event("unsettled_write_not_recorded", step_id=step.id, error=reason)
        return (f" (This could not be recorded as an unsettled write ({reason}), so nothing "
                "holds back a re-run on the same input: check the target before one.)")
    session.log_event("unsettled_write_recorded", step_id=step.id, key=write[0])
    return held_back_note(pipeline.name, step.id)


def _record_started(session: Session, pipeline: Pipeline, step: Step,
                    write: tuple[str, list[tuple[str, str, str]]]) -> None:
    """Before a writer writes: a record that stays if this process dies during the write (a
    COMMIT that went through would otherwise be written again unseen). Where it cannot be
    kept (a read-only .state), the write goes on without it, as before."""
    if step.mode != "write":
        return
    try:
        _unsettled(session).record(new_record(pipeline.name, step.id, write[0],
                                              session.session_id, write[1], STARTED,
                                              _target_named(step)))
    except (OSError, duckdb.Error, UnreadableRecordError) as exc:
        session.log_event("unsettled_write_not_recorded", step_id=step.id,
                          error=f"{type(exc).__name__}: {exc}")


def _forget_started(session: Session, pipeline: Pipeline, step: Step,
                    write: tuple[str, list[tuple[str, str, str]]]) -> None:
    """The write ended without doubt: its record of having started goes (left, it would only
    hold back a re-run on this input until settled)."""
    if step.mode != "write":
        return
    try:
        _unsettled(session).forget(pipeline.name, step.id, write[0])
    except (OSError, duckdb.Error, UnreadableRecordError) as exc:
        session.log_event("unsettled_write_not_cleared", step_id=step.id,
                          error=f"{type(exc).__name__}: {exc}")


def _target_named(step: Step) -> str:
    """Where the step writes, as its config says (`@mysql.main`, table `schema.orders`), for
    the person checking an unsettled write."""
    config = step.config
    parts = [str(step.connection_ref or f"the default {step.component} connection")]
    table = config.get("table") if isinstance(config, Mapping) else None
    if table:
        schema = config.get("schema")
        parts.append(f"table {schema}.{table}" if schema else f"table {table}")
    return ", ".join(parts)


def _unsettled(session: Session) -> UnsettledWrites:
    return UnsettledWrites(session.settings.sessions_dir, session.records)


def _driver(step: Step) -> Driver:
    """The step's driver; a component without one validates but cannot run."""
    driver = get_driver(step.component)
    if driver is None:
        raise OsirisError(
            f"component '{step.component}' has no driver in osiris-dagster yet: the "
            "pipeline validates, but this step cannot run. Use a supported component "
            f"({', '.join(supported_components())}) or wait for the driver.")
    return driver


def _output(ws: StepWorkspace, session: Session, step: Step, result: DriverResult,
            checks: Sequence[CheckSpec]
            ) -> tuple[TableRef | None, tuple[list[str], list[tuple[Any, ...]]] | None,
                       list[CheckOutcome]]:
    """Where the step's table is, its first rows and its checks' outcomes (none for a step
    that produced no table)."""
    if result.table is None:
        return None, None, []
    columns = tuple(ws.output_columns())
    ref = TableRef(session.session_id, session.location, result.table,
                   step.id, result.rows_written, columns)
    preview = ws.preview_rows(10, shown=True)
    if checks:  # check expressions are SQL from the pipeline file: sealed too. run_checks
        # runs only those the seal accepts, which call no table function that changes the
        # DuckDB instance (drivers.duckdb.seal.check_expression)
        ws.seal_sql_access(leaves_instance_unchanged=True)
    return ref, preview, run_checks(ws.con, ws.output_relation, checks)


def _log_failure(session: Session, step: Step, exc: BaseException, duration: float,
                 will_retry: bool = False) -> str:
    """Log the step's error (masked) and duration; returns the message for people."""
    cancelled = not isinstance(exc, Exception) or isinstance(exc, StepCancelled)
    message = "cancelled: the run was terminated" if cancelled else \
        _describe(exc, session.masker)
    finished = getattr(exc, "osiris_finished", None) if cancelled else None
    if finished is not None:  # the stop came during a COMMIT that then went through
        where = f" to {session.masker.text(finished.target)}" if finished.target else ""
        message = (f"cancelled: the run was terminated while the step was finishing, and it "
                   f"finished: its {finished.rows_written} rows were written{where}. Running "
                   "the step again writes them again.")
    session.log_event("step_error", step_id=step.id, driver=step.component,
                      duration=round(duration, 3), error=message, cancelled=cancelled,
                      timed_out=isinstance(exc, StepTimeout) or
                      isinstance(exc, OutcomeUnknownError) and exc.reason == "timeout",
                      **({"will_retry": True} if will_retry else {}))
    session.log_metric(f"step_{step.id}_duration", round(duration, 3), unit="seconds")
    return message


def _log_success(session: Session, step: Step, result: DriverResult, duration: float,
                 check_outcomes: Sequence[CheckOutcome],
                 inputs: Sequence[tuple[str, str, str]] = ()) -> None:
    """``inputs``: the tables the step read, (step, session, table) each: what its table was
    made from (:func:`_made_from`)."""
    session.log_metric(f"step_{step.id}_duration", round(duration, 3), unit="seconds")
    session.log_event("step_complete", step_id=step.id, driver=step.component,
                      rows_read=result.rows_read, rows_written=result.rows_written,
                      duration=round(duration, 3), table=result.table, target=result.target,
                      inputs=[list(i) for i in inputs])
    for c in check_outcomes:
        session.log_event("check", step_id=step.id, check=c.spec.name, passed=c.passed,
                          failing_rows=c.failing_rows, blocking=c.spec.blocking,
                          detail=c.detail)


def commit_state(pipeline: Pipeline, session: Session, outcome: StepOutcome) -> None:
    """Save the step's incremental state (its high-water mark) now that its output is accepted:
    table committed, checks passed, materialisation recorded. Until then the rows it read are
    not delivered, and a mark saved earlier would make the next run start after rows that never
    landed; a step that fails before this point leaves the state as it was."""
    pending = outcome.result.pending_state
    if pending is None:
        return
    state = StepRecords(session.settings.sessions_dir, session.records, pending.path.name)
    delivery = delivery_records(session)
    try:  # locks in the order the extractor's rewind takes them: delivery, then state
        with delivery.changing(pipeline.name, outcome.step_id) as record, \
                state.changing(pipeline.name, outcome.step_id) as saved:
            if saved.text != (pending.replaces or ""):
                raise _StateChanged
            record.text = advanced(record.text, delivery.where(pipeline.name, outcome.step_id),
                                   session, pipeline, outcome.step_id, pending.path.name,
                                   pending.replaces)
            delivery.save(pipeline.name, outcome.step_id, record)  # first: state needs it
            saved.text = state_json(pending.document)
    except _StateChanged:
        hand_back(session, pipeline, outcome.step_id)  # its table is materialised: refused
        raise StepError(pipeline.name, outcome.step_id, _STATE_CHANGED) from None
    except (OSError, duckdb.Error, OsirisError) as exc:
        message = (f"the step's table was materialised, but its incremental state could not be "
                   f"saved to {pending.path} ({type(exc).__name__}: {exc}); the next run reads "
                   "these rows again. Check free space and permissions of that directory "
                   "(and, with the ducklake store, that its catalog is reachable).")
        raise StepError(pipeline.name, outcome.step_id, message) from None
    session.log_event("state_committed", step_id=outcome.step_id, path=str(pending.path))


class _StateChanged(Exception):
    """Another run saved the step's incremental state since the step read it."""


_STATE_CHANGED = (
    "another run changed this step's incremental state while this one ran (two runs read from "
    "the same high-water mark): the rows this run read overlap what that run delivers, so they "
    "are not delivered here (the steps after this one do not run) and the state stays as that "
    "run left it. Run again to go on from there.")


# Steps whose connection is sealed (workspace.SEALED_SETTINGS) before their SQL runs.
SEALED_COMPONENTS = frozenset({"duckdb.processor"})


def sql_step_follows(pipeline: Pipeline, step_id: str, selected: Collection[str]) -> bool:
    """Whether a selected SQL step reads ``step_id``'s table (it can then run in the sealed
    instance ``step_id`` leaves parked; a step with no such reader releases its file at once)."""
    return any(step_id in s.needs and s.component in SEALED_COMPONENTS
               for s in pipeline.steps if s.id in selected)


# Steps that only read files or session tables and write atomically: safe to run again.
RERUNNABLE_COMPONENTS = frozenset({"filesystem.csv_extractor", "duckdb.processor",
                                   "filesystem.csv_writer"})


def _with_memory_retries(ws: StepWorkspace, component: str,
                         attempt: Callable[[], DriverResult]) -> DriverResult:
    """Run the step; if DuckDB ran out of its memory_limit (tables with hundreds of columns
    need more than long, narrow ones) and the step can run again, retry it with the limit
    doubled, up to OSIRIS_DUCKDB_MEMORY_LIMIT_MAX. Otherwise say which setting to raise."""
    while True:
        try:
            return attempt()
        except Exception as exc:
            if not memory.is_out_of_memory(exc):
                raise
            rerunnable = component in RERUNNABLE_COMPONENTS
            raised = memory.next_limit(ws.memory_limit, ws.memory_ceiling) \
                if rerunnable and ws.memory_limit else None
            if raised is None:
                raise _out_of_memory(ws, exc, rerunnable) from None
            ws.set_memory_limit(raised, ws.session.masker.shortened(
                str(exc).splitlines()[0], 300))


def _out_of_memory(ws: StepWorkspace, exc: Exception, rerunnable: bool) -> DriverError:
    settings = ws.session.settings
    limit = memory.format_size(ws.memory_limit) if ws.memory_limit else settings.memory_limit
    fix = (f"raise OSIRIS_DUCKDB_MEMORY_LIMIT_MAX (the most a step may be given, now "
           f"{settings.memory_limit_max})" if rerunnable else
           "this step reads a stream it cannot read twice, so raise OSIRIS_DUCKDB_MEMORY_LIMIT")
    detail = ws.session.masker.shortened(str(exc).splitlines()[0], 300).rstrip(". ")
    return DriverError(
        f"DuckDB ran out of memory under memory_limit {limit}: {detail}."
        f" Tables with hundreds of columns need more memory than long, narrow ones: {fix}, "
        "e.g. to 4GB.")


def _interruptible(ws: StepWorkspace, work: Callable[[], DriverResult],
                   timeout_seconds: float | None,
                   check_stop: Callable[[], None] | None = None) -> DriverResult:
    """Run ``work`` in a thread the caller can stop (a timeout, Ctrl-C, Dagster's terminate).

    Whether the worker has finished is told by an event it sets, never by
    ``Thread.is_alive()``: on CPython 3.11 an interrupt that lands in ``Thread.join`` leaves
    ``is_alive()`` False while the thread still runs, and the step's query went on and committed
    its table after the step was reported cancelled.

    ``check_stop()`` (when given) is called first and about every second: what it raises stops
    the worker as an interrupt does. Dagster's interrupt is an exception raised by a signal
    handler, and one that lands in a garbage-collector callback is discarded: the run's status
    still says it is being cancelled."""
    if check_stop is not None:
        check_stop()
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=target, name=f"osiris-step-{ws.step_id}", daemon=True)
    deadline = time.monotonic() + timeout_seconds if timeout_seconds else None
    timed_out = False
    next_check = time.monotonic() + _STOP_CHECK_SECONDS
    worker.start()
    try:
        while not done.wait(0.2):
            now = time.monotonic()
            if deadline is not None and now > deadline:
                timed_out = True
                break
            if check_stop is not None and now >= next_check:
                next_check = now + _STOP_CHECK_SECONDS
                check_stop()
        if timed_out:
            _stop_worker(ws, done)
    except BaseException as stop:
        _stop_worker(ws, done)
        if "result" in box:  # it finished while the run stopped: its output has landed
            ws.session.log_event("step_finished_while_stopped", step_id=ws.step_id,
                                 rows_written=box["result"].rows_written)
            with contextlib.suppress(AttributeError):  # read by _log_failure
                stop.osiris_finished = box["result"]  # type: ignore[attr-defined]
        raise
    if timed_out:  # outside the block above, which would wait for the worker a second time
        _after_timeout(ws, box, done, timeout_seconds or 0)
    if "error" in box:
        raise box["error"]
    return box["result"]


def _after_timeout(ws: StepWorkspace, box: dict[str, Any], done: threading.Event,
                   timeout_seconds: float) -> None:
    """What a step that reached its timeout did once told to stop. Stopped by it: a
    :class:`StepTimeout` (run again by a retry). Finished on its own meanwhile, or already
    committing (a database COMMIT, which nothing interrupts, was under way): its own result or
    error stands, since its output may have landed and a retry after a "timeout" would write it
    again. Not finished within the grace period while committing: nobody can tell whether its
    write will still land, so it is not retried."""
    limit = f"its timeout of {timeout_seconds:g}s (x-dagster timeout_seconds)"
    if not done.is_set() and not ws.commit_started:  # a read, or a write not yet committing
        raise StepTimeout(f"the step ran longer than {limit}; told to stop, it had not ended "
                          f"{STOP_GRACE_SECONDS:g}s later (it writes nothing that a new "
                          "attempt could duplicate)")
    if not done.is_set():
        raise OutcomeUnknownError(
            f"the step ran longer than {limit} and did not stop when told to: what it was "
            "writing may still land. Check its target before running it again.",
            reason="timeout")
    error = box.get("error")
    if "result" in box:
        ws.session.log_event("step_timeout_too_late", step_id=ws.step_id,
                             timeout_seconds=timeout_seconds)
    elif isinstance(error, Exception) and not ws.commit_started and \
            not isinstance(error, NotRetryableError):
        raise StepTimeout(f"the step ran longer than {limit} and was stopped") from None
    # else: the writer's own error, which says whether its COMMIT's outcome is known


STOP_GRACE_SECONDS = 30.0  # how long a step told to stop may take to end
_STOP_CHECK_SECONDS = 1.0  # how often a running step asks whether its run is being stopped


def _stop_worker(ws: StepWorkspace, done: threading.Event) -> None:
    """Interrupt the driver and wait until it has finished (at most STOP_GRACE_SECONDS), even
    through repeated interrupts of our own."""
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while not done.is_set() and time.monotonic() < deadline:
        ws.interrupt()
        try:
            done.wait(0.2)
        except BaseException:  # noqa: BLE001, S110 - a second Ctrl-C / interrupt: keep stopping
            continue


def mask_every_connection(pipeline: Pipeline, connections: Connections, masker: Masker
                           ) -> None:
    """Register the secrets of every connection the pipeline's steps name, not only this
    step's: a step's error or log may show another step's secret (a server echoing a request,
    a query literal, the manifest's pipeline text). One that cannot be resolved here (a
    variable not set for a step this run does not execute) is left to its own step."""
    for other in pipeline.steps:
        spec = get_spec(other.component)
        if spec is not None:
            with contextlib.suppress(OsirisError):
                _resolve_connection(other, spec.family, connections, masker)


def _resolve_connection(step: Step, family: str, connections: Connections, masker: Masker
                        ) -> ResolvedConnection | None:
    ref = step.connection_ref
    if ref is None and family in CONNECTION_OPTIONAL:
        return None
    return connections.resolve(family, ref, masker)


def _write_cleaned_config(session: Session, step: Step, config: Mapping[str, Any],
                          resolved: ResolvedConnection | None) -> None:
    data: dict[str, Any] = {"component": step.component, "mode": step.mode, **config}
    if resolved is not None:
        data["connection"] = resolved.ref
        data["resolved_connection"] = mask_url_queries(dict(resolved.values))
    session.write_json_artifact(step.id, "cleaned_config.json", data)


def _attach_inputs(ws: StepWorkspace, pipeline: Pipeline, step: Step,
                   upstream_refs: Mapping[str, TableRef],
                   asset_refs: Mapping[str, TableRef]) -> list:
    ups = data_upstreams(pipeline, step)
    views = upstream_view_names(ups)
    tables: list[tuple[str, str, str, TableRef]] = []  # (name, what, view, table)
    for up in ups:
        ref = upstream_refs.get(up)
        if ref is None:
            raise UpstreamMissingError(f"no output of upstream step '{up}' was provided")
        if not ws.session.store.exists(ref.location):
            raise ws.session.store.missing(f"upstream step '{up}'", up, ref.session_id,
                                           ref.location)
        tables.append((up, f"upstream step '{up}'", views[up], ref))
    tables += [(ref.step_id, f"asset '{ref.step_id}'", view, ref)
               for view, ref in asset_refs.items()]
    extra = [SINGLE_INPUT_VIEW] if len(tables) == 1 else []
    inputs = []
    for name, what, view, ref in tables:
        try:
            inputs.append(ws.add_upstream(name, view, ref.location, ref.table, extra))
        except duckdb.CatalogException:
            raise UpstreamMissingError(
                f"table '{ref.table}' of {what} is missing from session "
                f"{ref.session_id}; materialise '{name}' again") from None
    return inputs


MAX_MESSAGE = 4000


def _describe(exc: BaseException, masker: Masker) -> str:
    """The error for people, masked, then capped (so a 10 MB SQL literal never becomes a 10 MB
    message; cut first, a secret across the cut would show its first characters)."""
    text = masker.text(_describe_full(exc))
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + f"... ({len(text) - MAX_MESSAGE} more characters)"
    return text


def _describe_full(exc: BaseException) -> str:
    if isinstance(exc, OsirisError | DriverError):
        return str(exc)
    if isinstance(exc, duckdb.Error):
        first = "\n".join(str(exc).strip().splitlines()[:6])
        return f"DuckDB error: {first}"
    return f"{type(exc).__name__}: {exc}"


def finish_run_if_done(session: Session, pipeline: Pipeline, selected: Iterable[str]
                       ) -> str | None:
    """Log run_end once every selected step has finished or cannot run (an upstream failed).
    A step counts by its latest attempt; one that failed and will be retried has not finished.

    Returns the run's status ("success"/"failure") only to the call that logged run_end. The
    events are read and run_end appended under the session's log lock, so of several processes
    finishing steps of one session at once exactly one writes it.
    """
    with session.locked_events() as events:
        if any(e.get("event") == "run_end" for e in events):
            return None
        last = {e.get("step_id"): e for e in events  # a retried step: its latest attempt
                if e.get("event") in ("step_complete", "step_error")}
        done = {sid for sid, e in last.items() if e["event"] == "step_complete"}
        failed = {sid for sid, e in last.items()
                  if e["event"] == "step_error" and not e.get("will_retry")}
        selected = set(selected)
        blocked: set[str] = set()
        changed = True
        while changed:  # needs may point forward in the file: iterate to a fixpoint
            changed = False
            for s in pipeline.steps:
                if s.id in selected and s.id not in done | failed | blocked and \
                        any(n in failed or n in blocked for n in s.needs):
                    blocked.add(s.id)
                    changed = True
        if not selected <= (done | failed | blocked):
            return None
        status = "success" if not failed and not blocked else "failure"
        logged = session.log_once("run_end", status=status,
                                  steps_completed=len(done & selected),
                                  steps_failed=sorted(failed & selected),
                                  steps_skipped=sorted(blocked))
        return status if logged else None
