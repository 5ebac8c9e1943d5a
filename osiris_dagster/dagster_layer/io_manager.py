"""The IO manager passes table references between Osiris steps, and data to annotated assets.

A step's op writes its table into the run's session database itself (so data never leaves
DuckDB); the value it returns is a small :class:`TableRef`. Loading an input finds the
upstream's table: in this run's session when the upstream ran in this run, otherwise in the
session recorded on the upstream's latest materialisation (a UI "materialise this asset" after
an earlier run). An input without annotation (every Osiris step's) gets the TableRef; a
hand-written asset that annotates its input gets the table as that type, like dagster-duckdb's
type handlers: see :data:`osiris_dagster.runtime.python_values.SUPPORTED_TYPES`.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from osiris_dagster.core.errors import UpstreamMissingError, UpstreamRefusedError
from osiris_dagster.core.settings import Settings
from osiris_dagster.dagster_layer.resources import OsirisResource
from osiris_dagster.dagster_layer.run_sessions import (
    PIPELINE_TAG,
    pipelines_in_job,
    run_session_id,
)
from osiris_dagster.runtime import duckdb_instances
from osiris_dagster.runtime.python_values import (
    UnsupportedTypeError,
    close_readers,
    read_table,
)
from osiris_dagster.runtime.runner import TableRef
from osiris_dagster.runtime.session import Session
from osiris_dagster.runtime.stores import store_for

EPHEMERAL_RUN_ID = "__EPHEMERAL_RUN_ID"
META_SESSION_ID = "osiris/session_id"
META_SESSION_DB = "osiris/session_db"
META_TABLE = "osiris/table"
META_STEP_ID = "osiris/step_id"


class OsirisIOManager(dg.ConfigurableIOManager):
    """Stores nothing: the table is already in the session database when the op returns."""

    osiris: OsirisResource = Field(
        default_factory=OsirisResource,
        description="Where sessions live (the same settings as the steps' osiris resource).")

    def _settings(self) -> Settings:
        return self.osiris.settings()

    def handle_output(self, context: dg.OutputContext, obj: TableRef | None) -> None:
        if obj is None:
            return
        if not isinstance(obj, TableRef):
            raise TypeError(f"OsirisIOManager stores TableRef values, got {type(obj).__name__}; "
                            "return a TableRef (osiris steps do) or use another IO manager")
        if not store_for(self._settings()).exists(obj.location):
            raise UpstreamMissingError(f"session {obj.session_id} ({obj.location}) vanished")
        # No log line here: every context.log call is one more event written to the instance's
        # event log (a SQLite transaction per step); the table, database and row count are in
        # the materialisation's metadata already.

    def load_input(self, context: dg.InputContext) -> Any:
        """The input's TableRef, or its table as the annotated type. What stops an input from
        loading (never materialised, session gone, table refused, a type without an exact
        form) fails the step with our message as its description, which the UI shows as it is
        (not under Dagster's DagsterExecutionLoadInputError and a stack trace); no retry
        would change it."""
        if _loads_for_checks_only(context):
            return None  # the step does not run: its checks read its own table, not this input
        try:
            load_type = _load_type(context)
            ref = self._table_ref(context)
            if load_type is None:
                return ref
            try:
                return read_table(ref.location, ref.table, load_type, self._settings())
            except UnsupportedTypeError as exc:
                raise UnsupportedTypeError(f"{_describe_input(context)}: {exc}") from None
        except (UpstreamMissingError, UpstreamRefusedError, UnsupportedTypeError) as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        duckdb_instances.allow_parking()  # SQL steps of a session share a sealed instance

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        try:
            close_readers()  # relations and readers handed to assets of this run or process
        finally:
            duckdb_instances.stop_parking()  # the session file checkpointed and unlocked

    def _table_ref(self, context: dg.InputContext) -> TableRef:
        upstream = context.upstream_output
        assert upstream is not None
        meta = upstream.definition_metadata or {}
        table = _text(meta.get(META_TABLE))
        step_id = _text(meta.get(META_STEP_ID)) or upstream.asset_key.path[-1]
        run_id = upstream.run_id
        if run_id and run_id != EPHEMERAL_RUN_ID:  # this run's output (or a re-executed run's)
            session_id = _run_session(context, run_id)
            session = Session(self._settings(), session_id)
            if run_id != _current_run(context):  # in its own run Dagster skips the step
                _refuse_refused_table(session, upstream.asset_key, step_id)
            return TableRef(session_id, session.location, table or step_id, step_id, -1)
        ref = self._from_latest_materialisation(context, upstream.asset_key, step_id, table)
        _refuse_refused_table(Session(self._settings(), ref.session_id), upstream.asset_key,
                              step_id)
        return ref

    def _from_latest_materialisation(self, context: dg.InputContext, key: dg.AssetKey,
                                     step_id: str, table: str | None) -> TableRef:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        return latest_table_ref(context.instance, self._settings(), key, step_id, table,
                                partition)


def latest_table_ref(instance: dg.DagsterInstance, settings: Settings, key: dg.AssetKey,
                     step_id: str, table: str | None = None, partition: str | None = None,
                     role: str = "upstream asset") -> TableRef:
    """The table of ``key``'s latest materialisation (of ``partition`` when given), as recorded
    in its metadata, once its session store holds it: what a step of another run reads, and
    what the asset's checks run alone check (``role`` names the asset in the errors). Raises
    UpstreamMissingError naming what to materialise when there is none, or it is gone."""
    name = key.to_user_string()
    if partition is not None:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
        ).records
        event = records[0].event_log_entry if records else None
        name = f"{name}' partition '{partition}"
    else:
        event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        raise UpstreamMissingError(
            f"{role} '{name}' (step '{step_id}') has never been materialised; "
            f"materialise '{name}' first (or materialise the whole pipeline)")
    md = event.asset_materialization.metadata
    location = _text(md.get(META_SESSION_DB))
    session_id = _text(md.get(META_SESSION_ID)) or event.run_id
    table = _text(md.get(META_TABLE)) or table
    if not location or not table:
        raise UpstreamMissingError(
            f"the latest materialisation of '{name}' does not record an osiris session; "
            f"materialise '{name}' again")
    store = store_for(settings)
    what = f"{role} '{name}' (step '{step_id}')"
    if not store.owns(location):
        raise UpstreamMissingError(
            f"{what} was materialised in session {session_id} at {location}, which is not "
            f"in the configured session store ({store.kind}, OSIRIS_SESSION_STORE); "
            f"materialise '{name}' again, or switch the store back")
    if not store.exists(location):
        raise store.missing(what, name, session_id, location)
    rows = md.get("dagster/row_count")
    return TableRef(session_id, location, table, step_id,
                    int(rows.value) if rows is not None else -1)


def runs_checks_only(job: dg.JobDefinition, node: Any) -> bool:
    """Whether the job's node (a NodeHandle) runs only checks of its asset: the run selects
    some of its checks, not the asset ("Execute checks" in the UI)."""
    assets = job.asset_layer.get_assets_def_for_node(node)
    return assets is not None and not assets.keys


def _loads_for_checks_only(context: dg.InputContext) -> bool:
    """Whether the Osiris step loading this input runs only its asset's checks, which read its
    own table (an upstream refused or gone must not fail them)."""
    try:
        step = context.step_context
        osiris_step = context.op_def.tags.get(PIPELINE_TAG) is not None
    except (dg.DagsterInvariantViolationError, AttributeError):
        return False
    return osiris_step and runs_checks_only(step.job_def, step.node_handle)


def _current_run(context: dg.InputContext) -> str | None:
    try:
        return context.step_context.run_id
    except (dg.DagsterInvariantViolationError, AttributeError):
        return None


def _refuse_refused_table(session: Session, key: dg.AssetKey, step_id: str) -> None:
    """A table refused after its step's driver finished (a failed blocking check, its file
    changed while read) stopped the steps after it in its own run; a step of another run
    (``--select``, a re-execution, one asset materialised from the UI) must not read it
    either."""
    refusal = session.table_refusal(step_id)
    if refusal is not None:
        name = key.to_user_string()
        raise UpstreamRefusedError(
            f"upstream asset '{name}' (step '{step_id}') made its table in session "
            f"{session.session_id}, but the step then failed ({refusal.splitlines()[0]}), so "
            f"the table is not passed on. Fix the cause and materialise '{name}' again.")


def _run_session(context: dg.InputContext, run_id: str) -> str:
    """The session of the upstream's pipeline (its op's tag, which no translator changes) in
    the run that wrote it (see :mod:`run_sessions <osiris_dagster.dagster_layer.run_sessions>`),
    decided from this run's job as the step that wrote it decided (a re-execution runs the same
    job). Without a job or an op (an input context built by hand) the run's one session, as
    for a run of one pipeline."""
    try:
        pipeline = context.upstream_output.op_def.tags.get(PIPELINE_TAG)
        job = context.step_context.job_def
    except (dg.DagsterInvariantViolationError, AttributeError):
        return run_id
    if pipeline is None:  # not an Osiris step
        return run_id
    return run_session_id(run_id, pipeline, pipelines_in_job(job))


def _load_type(context: dg.InputContext) -> Any:
    """The input's annotation when it asks for data; None for no annotation, Any or TableRef
    (an Osiris step's inputs, and today's behaviour for a hand-written asset)."""
    dagster_type = context.dagster_type
    typing_type = getattr(dagster_type, "typing_type", Any) if dagster_type else Any
    return None if typing_type is Any or typing_type is TableRef else typing_type


def _describe_input(context: dg.InputContext) -> str:
    upstream = context.upstream_output
    step = upstream.asset_key.to_user_string() if upstream is not None and \
        upstream.has_asset_key else "?"
    return f"asset '{context.op_def.name}', input '{context.name}' (from Osiris step '{step}')"


def _text(value: object) -> str | None:
    if value is None:
        return None
    inner = getattr(value, "value", value)
    if inner is None:
        return None
    return str(getattr(inner, "path", inner))
