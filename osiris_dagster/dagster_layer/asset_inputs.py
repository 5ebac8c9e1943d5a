"""Assets outside the pipeline that a step reads: which deps carry data, and how it arrives.

``x-dagster.steps.<id>.deps`` gives a step lineage to any asset. When the step's query reads a
dep's view (``df_<name>``, or ``input_df`` for a step whose only upstream it is), the step also
loads the dep's latest value, with the dep's own IO manager (Dagster's asset value loader: a
hand-written asset's DataFrame, Arrow table or relation; another pipeline's TableRef), and
:func:`asset_tables` lands it as a table of the run's session, where the step's SQL sees it
like an upstream step's table. The dep stays a plain dependency for Dagster (not an op input),
so a pipeline loads without the asset's definitions, which usually live in another module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import dagster as dg

from osiris_dagster.core.errors import OsirisError, StepError
from osiris_dagster.core.naming import assets_read_by_query, upstream_view_names
from osiris_dagster.oml import Pipeline
from osiris_dagster.oml.model import Step
from osiris_dagster.oml.specs import get_spec
from osiris_dagster.runtime.python_values import supported_types_text, write_value
from osiris_dagster.runtime.runner import TableRef, data_upstreams, start_session, step_table
from osiris_dagster.runtime.session import Session


def data_deps(pipeline: Pipeline, step: Step) -> dict[str, str]:
    """The step's deps whose data its query reads: asset key ("raw/orders") -> view name."""
    spec = get_spec(step.component)
    query = step.config.get("query")
    if spec is None or not spec.query_check or not isinstance(query, str):
        return {}
    views = upstream_view_names(data_upstreams(pipeline, step)).values()
    return assets_read_by_query(query, views, pipeline.dagster.for_step(step.id).deps)


def asset_tables(context: dg.AssetExecutionContext, session: Session, pipeline: Pipeline,
                 step_id: str, views: Mapping[str, str]) -> dict[str, TableRef]:
    """The step's data deps (asset key -> view name) as session tables: view name -> TableRef.
    Raises StepError naming the asset and the step when one cannot be loaded or stored."""
    if not views:
        return {}
    start_session(session, pipeline)
    graph = _asset_graph(context)
    assets = {k: a for a in graph.assets_defs for k in a.keys}
    try:
        with dg.AssetValueLoader(assets, instance=context.instance) as loader:
            values = {key: _load(context, graph, loader, pipeline, step_id, key, view)
                      for key, view in views.items()}
            return store_asset_values(session, pipeline, step_id, values, views)
    except StepError as exc:
        session.log_event("step_error", step_id=step_id, error=exc.reason, cancelled=False,
                          timed_out=False)
        raise


def _asset_graph(context: dg.AssetExecutionContext) -> Any:
    """The code location's asset graph: the repository's in a launched run, the job's under
    ``execute_in_process`` / ``dg.materialize`` (which run without a repository)."""
    try:
        return context.repository_def.asset_graph
    except Exception:  # noqa: BLE001 - Dagster's CheckError: this run has no repository
        return context.job_def.asset_layer.asset_graph


def _load(context: dg.AssetExecutionContext, graph: Any, loader: dg.AssetValueLoader,
          pipeline: Pipeline, step_id: str, key: str, view: str) -> Any:
    dagster_key = dg.AssetKey(key.split("/"))
    where = f"the query reads asset '{key}' as {view}, but"
    partitioned = graph.has(dagster_key) and graph.get(dagster_key).partitions_def is not None
    partition = context.partition_key if partitioned and context.has_partition_key else None
    if context.instance.get_latest_materialization_event(dagster_key) is None:
        raise StepError(pipeline.name, step_id, (
            f"{where} '{key}' has never been materialised: materialise '{key}' first (or "
            "together with this step). An asset outside this code location has no value to "
            "load: define it with @dg.asset in the same Definitions, or do not read it in the "
            "query (a dep the query does not read is lineage only)"), retryable=False)
    try:
        return loader.load_asset_value(dagster_key, partition_key=partition)
    except Exception as exc:  # noqa: BLE001 - the asset's own IO manager failed
        raise StepError(pipeline.name, step_id, (
            f"{where} its IO manager could not load its latest value "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            f"Materialise '{key}' again; its IO manager must keep values between runs (the "
            "default filesystem IO manager does, an in-memory one does not)")) from None


def store_asset_values(session: Session, pipeline: Pipeline, step_id: str,
                       values: Mapping[str, Any], views: Mapping[str, str]
                       ) -> dict[str, TableRef]:
    """Each dep's loaded value (asset key -> value) as a table of ``session``; returns view
    name -> TableRef for :func:`osiris_dagster.runtime.runner.run_step`. An Osiris step's
    TableRef is used where it is, without a copy. Raises StepError (not retryable: the same
    value fails again) naming the asset and the step when a value cannot become a table."""
    refs: dict[str, TableRef] = {}
    for key, value in values.items():
        view = views[key]
        if isinstance(value, TableRef):
            refs[view] = dataclasses.replace(value, step_id=key)
            continue
        table = f"{step_table(pipeline, step_id)}<-{key}"
        try:
            if value is None:
                raise OsirisError(f"it gave no value (None); return one of "
                                  f"{supported_types_text()} from '{key}'")
            rows, columns = write_value(session, table, value)
        except Exception as exc:  # noqa: BLE001 - any failure of the user's value
            reason = session.masker.text(str(exc)).rstrip(". ")
            message = (f"the query reads asset '{key}' as {view}, but its value could not be "
                       f"stored in session {session.session_id}: {reason}. (A dep the query "
                       "does not read stays lineage only.)")
            raise StepError(pipeline.name, step_id, message, retryable=False) from None
        session.log_event("asset_input", step_id=step_id, asset=key, view=view, table=table,
                          rows=rows)
        refs[view] = TableRef(session.session_id, session.location, table, key, rows,
                              columns)
    return refs


def asset_inputs_metadata(refs: Mapping[str, TableRef]) -> dict[str, Any]:
    """The step materialisation's note of the assets it read (view name -> TableRef)."""
    if not refs:
        return {}
    return {"osiris/asset_inputs": dg.MetadataValue.md("\n".join(
        f"- `{ref.step_id}` as `{view}` ({ref.rows} rows)" for view, ref in refs.items()))}
