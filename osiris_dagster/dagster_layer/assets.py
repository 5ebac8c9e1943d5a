"""The asset factory: one Dagster asset per pipeline step, one job per pipeline.

Each asset's op resolves the pipeline with the run's parameters, runs its step through
:func:`osiris_dagster.runtime.runner.run_step` in the run's session, and returns a TableRef
(extractors,
processors) or a MaterializeResult (writers). The IO manager hands TableRefs downstream.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.storage.tags import RETRY_ON_ASSET_OR_OP_FAILURE_TAG, RETRY_STRATEGY_TAG

from osiris_dagster.core.errors import OsirisError, PipelineInvalidError, StepError
from osiris_dagster.core.masking import Masker
from osiris_dagster.core.naming import dagster_name
from osiris_dagster.dagster_layer.asset_inputs import (
    asset_inputs_metadata,
    asset_tables,
    data_deps,
)
from osiris_dagster.dagster_layer.automation import (
    TAG_ARCHIVE_TO,
    TAG_FILE,
    TAG_FINGERPRINT,
    NotTheDeliveredVersion,
    archive_file,
    build_schedules,
    build_sensors,
    file_change,
    file_replaced,
    record_failed_archive,
)
from osiris_dagster.dagster_layer.check_runs import check_latest_table, masker_for
from osiris_dagster.dagster_layer.column_metadata import (
    UNMATCHED_DESCRIPTIONS,
    StepColumns,
    column_metadata,
    schema_changes,
)
from osiris_dagster.dagster_layer.io_manager import (
    META_SESSION_DB,
    META_SESSION_ID,
    META_TABLE,
    runs_checks_only,
)
from osiris_dagster.dagster_layer.partitions import partition_params
from osiris_dagster.dagster_layer.resources import OsirisResource
from osiris_dagster.dagster_layer.run_sessions import (
    PIPELINE_TAG,
    pipelines_in_job,
    run_session_id,
)
from osiris_dagster.dagster_layer.translator import OsirisStepData, OsirisTranslator
from osiris_dagster.oml import Pipeline, validate_pipeline
from osiris_dagster.oml.model import Step, canonical_json
from osiris_dagster.runtime.checks import CheckOutcome, CheckSpec, specs_from_config
from osiris_dagster.runtime.connections import Connections
from osiris_dagster.runtime.deliveries import hand_back
from osiris_dagster.runtime.filewatch import Fingerprint
from osiris_dagster.runtime.python_values import close_readers
from osiris_dagster.runtime.runner import (
    StepOutcome,
    TableRef,
    commit_state,
    data_upstreams,
    finish_run_if_done,
    run_step,
    start_session,
)
from osiris_dagster.runtime.session import Session
from osiris_dagster.runtime.workspace import resolve_step_path

progress_log = logging.getLogger("osiris_dagster.progress")
# Every context.log line is an event written to the instance's event log (a SQLite transaction),
# and a driver reports progress per page or per second: Dagster's log gets a step's first
# progress line and then at most one per this many seconds (the default heartbeat). The session's
# events and the CLI get every line.
DAGSTER_LOG_PROGRESS_EVERY_S = 10.0

IO_MANAGER_KEY = "osiris_io_manager"
RESOURCE_KEY = "osiris"
_PY_TO_DAGSTER = {bool: dg.Bool, int: dg.Int, float: dg.Float, str: dg.String}


@dataclass
class OsirisPipelineDefs:
    """Everything Dagster needs for one pipeline file."""

    pipeline: Pipeline
    assets: list[dg.AssetsDefinition]
    job: dg.UnresolvedAssetJobDefinition
    params_resource_key: str
    params_resource: dg.ResourceDefinition
    asset_keys: dict[str, dg.AssetKey] = field(default_factory=dict)
    schedules: list[dg.ScheduleDefinition] = field(default_factory=list)
    sensors: list[dg.SensorDefinition] = field(default_factory=list)


def params_resource_key(pipeline: Pipeline) -> str:
    return dagster_name("osiris_params", pipeline.name)


def build_osiris_assets(pipeline_path: str | Path, translator: OsirisTranslator | None = None,
                        text: str | None = None, connections_file: str | None = None
                        ) -> OsirisPipelineDefs:
    """Assets, job, params resource, schedules and sensors for one pipeline file
    (raises PipelineInvalidError)."""
    path = Path(pipeline_path).resolve()
    text = path.read_text(encoding="utf-8") if text is None else text
    result = validate_pipeline(path, text=text, values_at_run_time=True)
    if result.pipeline is None:
        raise PipelineInvalidError(str(pipeline_path), result.errors)
    pipeline = result.pipeline
    translator = translator or OsirisTranslator()
    specs = {s.id: translator.get_asset_spec(OsirisStepData(pipeline, s)) for s in pipeline.steps}
    keys = {sid: spec.key for sid, spec in specs.items()}
    res_key = params_resource_key(pipeline)
    assets = [
        _step_asset(pipeline, step.id, specs, keys, text, res_key, translator)
        for step in pipeline.steps
    ]
    job = dg.define_asset_job(
        name=dagster_name(pipeline.name),
        selection=dg.AssetSelection.assets(*keys.values()),
        description=pipeline.description or f"All steps of Osiris pipeline '{pipeline.name}'.",
        tags={"osiris/pipeline": dagster_name(pipeline.name)},
    )
    return OsirisPipelineDefs(pipeline, assets, job, res_key, params_resource(pipeline, text),
                              dict(keys), build_schedules(pipeline, job, res_key),
                              build_sensors(pipeline, text, job, res_key, connections_file))


def _param_specs(pipeline: Pipeline, text: str) -> dict[str, Any]:
    from osiris_dagster.oml.diagnostics import Collector
    from osiris_dagster.oml.params import declared_params
    from osiris_dagster.oml.yaml_lines import load_yaml_with_lines

    return declared_params(load_yaml_with_lines(text), Collector(str(pipeline.path)))


def params_resource(pipeline: Pipeline, text: str) -> dg.ResourceDefinition:
    """Run config for parameters: `resources: {<key>: {config: {params: {...}, profile: ...}}}`.

    The launchpad shows each parameter with its OML default and description. A value equal to
    the OML default counts as "not given", so OSIRIS_PARAM_<NAME> and the profile still apply
    (OML default < env < profile < explicit, as in Osiris); any other value is explicit and wins,
    as is every value under ``explicit_params`` (the command line's ``--param``).
    """
    specs = _param_specs(pipeline, text)
    fields = {}
    for name, spec in specs.items():
        dtype = _PY_TO_DAGSTER.get(spec.type, dg.Any) if spec.type else dg.Any
        desc = spec.description or f"Parameter '{name}'."
        if spec.has_default and spec.default is not None:
            desc += (" Left at this default, OSIRIS_PARAM_" + name.upper() + " or the profile "
                     "may still set it.")
            fields[name] = dg.Field(dtype, default_value=spec.default, description=desc)
        else:
            fields[name] = dg.Field(dtype, is_required=False, description=desc)
    profiles = doc_profiles(text)
    schema = {
        "params": dg.Field(dg.Permissive(fields), is_required=False,
                           description=f"Parameters of pipeline '{pipeline.name}'."),
        "explicit_params": dg.Field(
            dg.Permissive(), is_required=False,
            description="Parameter values that win over OSIRIS_PARAM_<NAME> and the profile even "
                        "when equal to the OML default (what `osiris-dagster run --param` "
                        "passes)."),
        "profile": dg.Field(dg.String, is_required=False,
                            description="Profile whose params apply (default 'dev' when defined)."
                                        + (f" Profiles: {', '.join(profiles)}." if profiles
                                           else "")),
    }
    return dg.ResourceDefinition(resource_fn=lambda init: dict(init.resource_config or {}),
                                 config_schema=schema,
                                 description=f"Run parameters of pipeline '{pipeline.name}'")


def doc_profiles(text: str) -> list[str]:
    from osiris_dagster.oml.yaml_lines import load_yaml_with_lines

    doc = load_yaml_with_lines(text)
    profiles = doc.get("profiles") if isinstance(doc, dict) else None
    return [str(p) for p in profiles] if isinstance(profiles, dict) else []


def _step_asset(pipeline: Pipeline, step_id: str, specs: Mapping[str, dg.AssetSpec],
                keys: Mapping[str, dg.AssetKey], text: str, res_key: str,
                translator: OsirisTranslator) -> dg.AssetsDefinition:
    step = pipeline.step(step_id)
    spec = specs[step_id]
    data_ups = data_upstreams(pipeline, step)
    ins = {f"in_{i}": dg.AssetIn(key=keys[up]) for i, up in enumerate(data_ups)}
    input_steps = {f"in_{i}": up for i, up in enumerate(data_ups)}
    asset_views = data_deps(pipeline, step)  # deps whose data the query reads
    # lineage sources: upstream steps by id, and the hand-written assets the query reads by key
    sources = {key: dg.AssetKey(key.split("/")) for key in asset_views}
    columns = StepColumns({**sources, **{up: keys[up] for up in data_ups}},
                          pipeline.dagster.for_step(step_id).columns)
    ordering = [keys[n] for n in step.needs if n not in data_ups]
    # deps the translator added beyond the pipeline's own steps (which are wired above)
    own = {keys[n] for n in step.needs} | {
        translator.get_asset_key(pipeline, pipeline.step(n)) for n in step.needs}
    ordering += [d.asset_key for d in spec.deps if d.asset_key not in own]
    checks = specs_from_config(pipeline.dagster.for_step(step_id).checks)
    check_specs = [dg.AssetCheckSpec(c.name, asset=spec.key, blocking=c.blocking,
                                     description=c.description) for c in checks]
    # a run of only its checks yields no output (see can_subset below)
    out = dg.AssetOut.from_spec(spec.replace_attributes(deps=[]), io_manager_key=IO_MANAGER_KEY,
                                is_required=not check_specs)

    @dg.multi_asset(
        name=dagster_name(pipeline.name, step.id),
        outs={"result": out},
        ins=ins,
        deps=ordering,
        required_resource_keys={RESOURCE_KEY, res_key},
        op_tags={PIPELINE_TAG: dagster_name(pipeline.name)},
        retry_policy=retry_policy(pipeline, step.id),
        check_specs=check_specs or None,
        # its checks run without the step ("Execute checks"), or the step without some checks
        can_subset=bool(check_specs),
    )
    def _compute(context, **inputs):  # noqa: ANN001 (dagster inspects annotations)
        if spec.key not in context.selected_asset_keys:  # only checks of the asset selected
            yield from _run_checks_alone(context, pipeline, step_id, text, res_key, spec.key)
            return
        yield from _execute_step(context, pipeline, step_id, text, res_key,
                                 {input_steps[k]: v for k, v in inputs.items()}, spec.key,
                                 asset_views, columns)

    return _compute


def retry_policy(pipeline: Pipeline, step_id: str) -> dg.RetryPolicy | None:
    """The step's own `retry`, else the pipeline's — except for append-mode database writers
    and GraphQL mutations, which a pipeline-wide retry skips (a retry would duplicate rows, or
    apply the mutation again) unless the step asks."""
    step = pipeline.step(step_id)
    settings = pipeline.dagster.for_step(step_id).retry
    if settings is None and not applies_once(step):
        settings = pipeline.dagster.retry
    if settings is None or settings.max_retries == 0:
        return None
    return dg.RetryPolicy(
        max_retries=settings.max_retries,
        delay=settings.delay_seconds or None,
        backoff={"exponential": dg.Backoff.EXPONENTIAL, "linear": dg.Backoff.LINEAR}.get(
            settings.backoff or ""),
        jitter={"full": dg.Jitter.FULL, "plus_minus": dg.Jitter.PLUS_MINUS}.get(
            settings.jitter or ""),
    )


def applies_once(step: Any) -> bool:
    """Whether running the step again adds to its target again: an append-mode database writer
    or a GraphQL mutation."""
    if step.component == "graphql.extractor":
        from osiris_dagster.drivers.graphql.document import is_mutation

        return is_mutation(str(step.config.get("query") or ""))
    return is_append_writer(step)


def is_append_writer(step: Any) -> bool:
    from osiris_dagster.oml.specs import get_spec

    spec = get_spec(step.component)
    if spec is None or spec.produces_table or step.component == "filesystem.csv_writer":
        return False
    key = "write_mode" if "write_mode" in spec.properties else "mode"
    mode = step.config.get(key, spec.properties[key].default if key in spec.properties
                           else None)
    return mode == "append"


def _pipeline_of_run(context: dg.AssetExecutionContext, template: Pipeline, step_id: str,
                     text: str, res_key: str) -> Pipeline:
    """The pipeline with this run's parameters (its run config and, for a partitioned one,
    its partition, which a run must name)."""
    _refuse_without_partition(context, template, step_id)
    run_cfg: dict[str, Any] = dict(getattr(context.resources, res_key) or {})
    partition = partition_params(template, context)
    if partition:  # the partition's values are given, even when equal to a default
        run_cfg["explicit_params"] = {**(run_cfg.get("explicit_params") or {}), **partition}
    return _resolve_for_run(template, text, run_cfg)


def _cancelling(context: dg.AssetExecutionContext) -> dg.DagsterRunStatus | None:
    """The run's status when it is being cancelled (CANCELING, CANCELED), else None."""
    try:
        run = context.instance.get_run_by_id(context.run_id)
    except Exception:  # noqa: BLE001 - run storage out of reach: the signal still works
        return None
    if run is not None and run.status in (dg.DagsterRunStatus.CANCELING,
                                          dg.DagsterRunStatus.CANCELED):
        return run.status
    return None


def _stop_when_cancelling(context: dg.AssetExecutionContext) -> Callable[[], None]:
    """Raises Dagster's interrupt when the run is being cancelled. Dagster's terminate marks
    the run CANCELING, then interrupts its process with a signal; the exception the signal
    handler raises is discarded when it lands in a garbage-collector callback (about one
    terminate in ten at a step boundary), and the run went on to write."""

    def check() -> None:
        status = _cancelling(context)
        if status is not None:
            raise DagsterExecutionInterruptedError(
                f"run {context.run_id} is being cancelled ({status.value})")
    return check


def _cancelled(context: dg.AssetExecutionContext, pipeline_name: str, step_id: str
               ) -> dg.Failure | None:
    """The step's failure when its run is being cancelled, else None. Dagster runs a step its
    retry policy covers again after an interrupt too: a terminate then took max_retries x the
    delay, ending in "Exceeded max_retries". A Failure that allows no retry ends it at once
    (the run still ends CANCELED: its failed steps in a CANCELING run)."""
    if _cancelling(context) is None:
        return None
    return dg.Failure(description=f"pipeline '{pipeline_name}', step '{step_id}': cancelled: "
                                  "the run was terminated", allow_retries=False)


def _execute_step(context: dg.AssetExecutionContext, template: Pipeline, step_id: str,
                  text: str, res_key: str, upstream_refs: Mapping[str, TableRef],
                  key: dg.AssetKey, asset_views: Mapping[str, str] | None = None,
                  columns: StepColumns | None = None) -> Iterator[Any]:
    check_stop = _stop_when_cancelling(context)
    stopped = _cancelled(context, template.name, step_id)
    if stopped is not None:  # a terminate's interrupt lost between two steps: the next does
        raise stopped  # not start
    osiris: OsirisResource = getattr(context.resources, RESOURCE_KEY)
    pipeline = _pipeline_of_run(context, template, step_id, text, res_key)
    masker = Masker()
    session_id = run_session_id(context.run_id, dagster_name(pipeline.name),
                                pipelines_in_job(context.job_def))
    session = Session(osiris.settings(), session_id, masker)
    if session_id == context.run_id and context.run_id not in _SESSION_DIR_TAGGED:
        # (a re-execution carries its parent's tag, naming the parent's session); a run of
        # several pipelines has a session per pipeline: see their materialisations
        _SESSION_DIR_TAGGED.add(context.run_id)  # once per run and process: a tag write
        tagged = context.run.tags.get("osiris/session_dir")  # costs a run-storage write
        if tagged is None or os.path.abspath(tagged) != os.path.abspath(session.dir):
            context.instance.add_run_tags(context.run_id,
                                          {"osiris/session_dir": str(session.dir)})
    progress_log.info("start", extra={"osiris": {"event": "step_start", "step_id": step_id,
                                                 "component": pipeline.step(step_id).component,
                                                 "session_id": session.session_id,
                                                 "session_dir": str(session.dir)}})
    close_readers(session.location)  # relations given to finished assets of this process
    selected = _selected_steps(context, pipeline)
    chosen = _selected_check_names(context, key)
    checks = _checks_to_run(context, pipeline, step_id, chosen)
    reads_file = _reads_sensor_file(context, pipeline.step(step_id),
                                    lambda: osiris.connections(pipeline.path))
    if reads_file:
        _refuse_replaced_file(context, session, pipeline, step_id, selected)
    try:
        asset_refs = asset_tables(context, session, pipeline, step_id, asset_views or {})
        outcome = run_step(pipeline, step_id, session, upstream_refs,
                           osiris.connections(pipeline.path),
                           on_progress=_progress_reporter(context, masker),
                           timeout_seconds=pipeline.dagster.step_timeout(step_id),
                           checks=checks,
                           asset_refs=asset_refs, selected=selected,
                           retried_on_failure=_retried_on_failure(context, pipeline, step_id),
                           on_notice=_notice_reporter(context, masker),
                           check_stop=check_stop)
    except (DagsterExecutionInterruptedError, KeyboardInterrupt):
        stopped = _cancelled(context, pipeline.name, step_id)
        if stopped is None:
            raise  # Ctrl-C of `osiris-dagster run`, or an interrupt outside a terminate
        raise stopped from None
    except StepError as exc:
        progress_log.info("error", extra={"osiris": {"event": "step_error", "step_id": step_id,
                                                     "error": exc.reason}})
        _finish(context, session, pipeline, selected)
        if not exc.retryable:
            _no_run_retry(context)
        raise _step_failure(session, exc) from None
    if reads_file:
        _refuse_replaced_file(context, session, pipeline, step_id, selected, after_read=True)
    if applies_once(pipeline.step(step_id)):
        _retry_from_failure_only(context, step_id)
    progress_log.info("done", extra={"osiris": {
        "event": "step_complete", "step_id": step_id, "rows_read": outcome.result.rows_read,
        "rows_written": outcome.result.rows_written, "duration": outcome.duration_s,
        "target": masker.text(outcome.result.target) if outcome.result.target else None,
        "table": outcome.result.table}})
    for check in outcome.checks:
        if not check.passed:
            progress_log.info("check", extra={"osiris": {
                "event": "check_failed", "step_id": step_id, "check": check.spec.name,
                "blocking": check.spec.blocking, "detail": masker.text(check.detail)}})
    metadata = materialisation_metadata(session, outcome, columns) | \
        asset_inputs_metadata(asset_refs)
    if UNMATCHED_DESCRIPTIONS in metadata:  # a typo in a described column's name
        _notice_reporter(context, masker)(
            step_id, metadata[UNMATCHED_DESCRIPTIONS].value.replace("<id>", step_id))
    _record_schema_changes(context, session, pipeline, step_id, key, outcome, metadata,
                           selected)
    # The materialisation's own metadata, not the Output's: Dagster copies an Output's metadata
    # into the STEP_OUTPUT event as well (one more serialisation and event-log write per asset).
    context.add_asset_metadata(metadata, asset_key=key)
    try:
        if outcome.ref is None:
            yield dg.MaterializeResult()
        else:
            yield dg.Output(outcome.ref)
            yield from _check_results(key, [c for c in outcome.checks if c.spec.name in chosen],
                                      dict(outcome.ref.columns), session.masker)
    except GeneratorExit:  # Dagster ended the step here: its IO manager raised, or the run
        _fail_step(context, session, pipeline, selected, step_id,  # was stopped
                   "the step's output was not stored (its IO manager failed, or the run was "
                   "stopped; Dagster's event log has the error)")
        raise
    # Dagster resumes here once it accepted the output (the IO manager stored it) and recorded
    # the check results; an IO manager that raises closes this generator at the yield. Only
    # now may the run end as a success and its file be archived.
    try:
        _commit_state(context, pipeline, session, outcome)
    except dg.Failure as exc:
        _fail_step(context, session, pipeline, selected, step_id, exc.description or str(exc),
                   will_retry=_retried_on_failure(context, pipeline, step_id))
        raise
    blocking = [c.spec.name for c in outcome.checks if c.spec.blocking and not c.passed]
    unselected = [name for name in blocking if name not in chosen]
    message = f"blocking check(s) failed: {', '.join(blocking)}" + (
        f" ({', '.join(unselected)} not selected in this run: a blocking check runs whenever "
        "its step does, as it decides whether the table is passed on)" if unselected else "")
    if blocking:  # Dagster fails the step once this generator returns
        _fail_step(context, session, pipeline, selected, step_id, message)
    else:
        _finish(context, session, pipeline, selected)
    if unselected:  # ... but only for the check results it was given
        raise dg.Failure(description=f"pipeline '{pipeline.name}', step '{step_id}': {message}",
                         allow_retries=False)


def _selected_check_names(context: dg.AssetExecutionContext, key: dg.AssetKey) -> set[str]:
    """The step's checks this run selected: all of them unless the run was launched for some
    (Dagster takes results only for these)."""
    return {k.name for k in context.selected_asset_check_keys if k.asset_key == key}


def _checks_to_run(context: dg.AssetExecutionContext, pipeline: Pipeline, step_id: str,
                   chosen: AbstractSet[str]) -> list[CheckSpec]:
    """The selected checks, and every blocking one: a blocking check decides whether the step's
    table reaches the steps after it (in this run and in later ones) and whether its incremental
    state advances, so leaving it out of a selection does not let an unchecked table through.
    Its result goes to the session's events and, when it fails, the step's failure (Dagster
    takes no result for a check it did not select)."""
    specs = specs_from_config(pipeline.dagster.for_step(step_id).checks)
    extra = [s.name for s in specs if s.blocking and s.name not in chosen]
    if extra:
        context.log.info(f"step '{step_id}': blocking check(s) {', '.join(extra)} run though "
                         "not selected: they decide whether the table is passed on")
    return [s for s in specs if s.name in chosen or s.blocking]


def _run_checks_alone(context: dg.AssetExecutionContext, template: Pipeline, step_id: str,
                      text: str, res_key: str, key: dg.AssetKey
                      ) -> Iterator[dg.AssetCheckResult]:
    """Only checks of the step's asset are selected ("Execute checks" in the UI): they run on
    the table of the asset's latest materialisation (see :mod:`check_runs
    <osiris_dagster.dagster_layer.check_runs>`), and the step does not run. The run's parameters
    (and partition) resolve the checks and the values to mask as in the step's own run."""
    osiris: OsirisResource = getattr(context.resources, RESOURCE_KEY)
    pipeline = _pipeline_of_run(context, template, step_id, text, res_key)
    chosen = _selected_check_names(context, key)
    specs = [s for s in specs_from_config(pipeline.dagster.for_step(step_id).checks)
             if s.name in chosen]
    masker = masker_for(pipeline, osiris.connections(pipeline.path))
    checked = check_latest_table(context.instance, osiris.settings(), pipeline.name, step_id,
                                 key, specs, context.partition_key
                                 if template.dagster.partitions is not None else None)
    ref = checked.ref
    context.log.info(f"step '{step_id}': check(s) {', '.join(s.name for s in specs)} ran on "
                     f"table '{ref.table}' of session {ref.session_id}, which the asset's latest "
                     "materialisation recorded; the step did not run")
    yield from _check_results(key, checked.outcomes, checked.column_types, masker)


def _progress_reporter(context: dg.AssetExecutionContext, masker: Masker
                       ) -> Callable[[str, dict[str, Any]], None]:
    """Every progress line goes to the session and the CLI; Dagster's event log gets the first
    and then at most one per DAGSTER_LOG_PROGRESS_EVERY_S (each is an event write)."""
    last_dagster_log: list[float] = []

    def on_progress(sid: str, fields: dict[str, Any]) -> None:
        fields = masker.value(fields)
        now = time.monotonic()
        if not last_dagster_log or now - last_dagster_log[0] >= DAGSTER_LOG_PROGRESS_EVERY_S:
            last_dagster_log[:] = [now]
            parts = [f"{k}={v}" for k, v in fields.items()]
            context.log.info(f"step '{sid}' progress: {' '.join(parts)}")
        progress_log.info("progress", extra={"osiris": {"event": "progress", "step_id": sid,
                                                        **fields}})

    return on_progress


def _notice_reporter(context: dg.AssetExecutionContext, masker: Masker
                     ) -> Callable[[str, str], None]:
    """A notice goes to Dagster's run log (a warning) and to the CLI."""
    def on_notice(sid: str, text: str) -> None:
        text = masker.text(text)
        context.log.warning(f"step '{sid}': {text}")
        progress_log.info("notice", extra={"osiris": {"event": "notice", "step_id": sid,
                                                      "message": text}})

    return on_notice


def _retried_on_failure(context: dg.AssetExecutionContext, pipeline: Pipeline,
                        step_id: str) -> bool:
    """Whether Dagster runs this step again if this attempt fails retryably: its retry
    policy (see :func:`retry_policy`) has attempts left."""
    policy = retry_policy(pipeline, step_id)
    return policy is not None and context.retry_number < policy.max_retries


def _refuse_without_partition(context: dg.AssetExecutionContext, pipeline: Pipeline,
                              step_id: str) -> None:
    """A partitioned pipeline's step runs for one partition. Launched without one (`dagster
    job execute`, the launchpad with no partition picked) its first step wrote an unpartitioned
    materialisation of a partitioned asset and the next failed inside Dagster."""
    settings = pipeline.dagster.partitions
    if settings is None or context.has_partition_key:
        return
    _no_run_retry(context)
    raise dg.Failure(
        description=f"pipeline '{pipeline.name}', step '{step_id}': the pipeline has "
                    f"{settings.kind} partitions, so a run is for one partition, and this run "
                    "names none (or a range). Pick a partition in the launchpad, launch with "
                    "the tag dagster/partition=<key> (or a backfill), or use `osiris-dagster "
                    "run --partition <key>`.", allow_retries=False)


def _retry_from_failure_only(context: dg.AssetExecutionContext, step_id: str) -> None:
    """Once a step that applies once (see :func:`applies_once`) has written, a run retry with
    ``dagster/retry_strategy: ALL_STEPS`` would write again: the run's retries re-execute from
    its failed steps instead (Dagster's default strategy). The run's tags are read from the
    instance: ``context.run`` holds them as they were when the run started, so a second such
    step retagged and warned again."""
    run = context.instance.get_run_by_id(context.run_id) or context.run
    if run.tags.get(RETRY_STRATEGY_TAG) != "ALL_STEPS":
        return
    context.instance.add_run_tags(context.run_id, {RETRY_STRATEGY_TAG: "FROM_FAILURE"})
    context.log.warning(
        f"step '{step_id}' has written to its target, which a second run would add to again: "
        "a retry of this run re-executes from its failed steps, not ALL_STEPS")


def _no_run_retry(context: dg.AssetExecutionContext) -> None:
    """A step failure that a retry could make worse (rows written twice) is not retried by the
    step's retry policy (``allow_retries=False``) nor, with this run tag, by Dagster's run
    retries (``run_retries`` in the instance's dagster.yaml), which re-execute a failed run from
    its failed steps."""
    context.instance.add_run_tags(context.run_id, {RETRY_ON_ASSET_OR_OP_FAILURE_TAG: "false"})


def _step_failure(session: Session, exc: StepError) -> dg.Failure:
    metadata: dict[str, Any] = {"osiris/session_id": session.session_id,
                                "osiris/session_dir": dg.MetadataValue.path(str(session.dir))}
    if session.records is None:  # else they are in the store: `osiris-dagster sessions show`
        metadata["osiris/events"] = dg.MetadataValue.path(str(session.events_path))
    return dg.Failure(description=str(exc), metadata=metadata, allow_retries=exc.retryable)


_SESSION_DIR_TAGGED: set[str] = set()  # runs whose osiris/session_dir this process checked


def _record_schema_changes(context: dg.AssetExecutionContext, session: Session,
                           pipeline: Pipeline, step_id: str, key: dg.AssetKey,
                           outcome: StepOutcome, metadata: dict[str, Any],
                           selected: Sequence[str]) -> None:
    """Columns added, removed or retyped since the last materialisation (of the run's
    partition, in a partitioned run): noted in the metadata and the session; with
    `schema: strict` the step fails."""
    partition = context.partition_key if context.has_partition_key else None
    settings = pipeline.dagster.partitions
    previous, compared = previous_column_schema(
        context.instance, key, partition, settings is not None and settings.kind == "static")
    changes = schema_changes(previous, outcome.ref.columns, session.masker) if outcome.ref \
        else []
    if not changes:
        return
    metadata["osiris/schema_changes"] = dg.MetadataValue.md("\n".join(f"- {c}" for c in changes))
    session.log_event("schema_changed", step_id=step_id, changes=changes)
    context.log.warning(f"schema of '{key.to_user_string()}' changed: " + "; ".join(changes))
    if pipeline.dagster.for_step(step_id).schema == "strict":
        of = "" if partition is None else (
            f" of partition '{compared}'" if compared == partition else
            f" of partition '{compared}' (partition '{partition}' runs for the first time)")
        message = (f"pipeline '{pipeline.name}', step '{step_id}': the table's columns "
                   f"changed since the last materialisation{of} (schema: strict): "
                   + "; ".join(changes) + ". To accept the change, materialise "
                   + ("this partition" if partition is not None else "the step")
                   + f" once with x-dagster.steps.{step_id}.schema set to `warn` (its columns "
                   "then become the ones compared), then set it back to `strict`")
        _fail_step(context, session, pipeline, selected, step_id, message)
        raise dg.Failure(description=message)


def _check_results(key: dg.AssetKey, checks: Sequence[CheckOutcome],
                   column_types: Mapping[str, str], mask: Masker
                   ) -> Iterator[dg.AssetCheckResult]:
    """The step's asset checks; their texts and samples (typed by the table's
    ``column_types``) go through the session's masker."""
    for c in checks:
        sample = {"sample": rows_table(list(c.sample[0]), [tuple(r.values()) for r in c.sample],
                                       column_types, mask)} if c.sample else {}
        yield dg.AssetCheckResult(
            asset_key=key, check_name=c.spec.name, passed=c.passed,
            severity=dg.AssetCheckSeverity.ERROR if c.spec.blocking
            else dg.AssetCheckSeverity.WARN,
            description=c.spec.description,
            metadata={"failing_rows": dg.MetadataValue.int(c.failing_rows),
                      "detail": mask.value(c.detail), **sample})


def _commit_state(context: dg.AssetExecutionContext, pipeline: Pipeline, session: Session,
                  outcome: StepOutcome) -> None:
    """Advance the step's incremental state, at the one point where its output is accepted.

    Dagster resumes this generator only after it handled the yielded output: the IO manager ran
    and the materialisation and check results are in the event log (if the IO manager raises,
    the generator is closed at the ``yield`` and this never runs). A failed blocking check
    fails the step right after, so the state stays where it was then too."""
    if outcome.result.pending_state is None:
        return
    failed = [c.spec.name for c in outcome.checks if c.spec.blocking and not c.passed]
    if failed:
        session.log_event("state_not_committed", step_id=outcome.step_id,
                          reason="blocking check failed: " + ", ".join(failed))
        hand_back(session, pipeline, outcome.step_id)  # the table is materialised: refused
        context.log.warning(f"step '{outcome.step_id}': incremental state not advanced "
                            f"(blocking check {', '.join(failed)} failed); the next run reads "
                            "these rows again")
        return
    try:
        commit_state(pipeline, session, outcome)
    except StepError as exc:
        raise dg.Failure(description=str(exc)) from None


def previous_column_schema(instance: dg.DagsterInstance, key: dg.AssetKey,
                           partition: str | None = None, static: bool = False
                           ) -> tuple[dg.TableSchema | None, str | None]:
    """The column schema the step's table is compared with, read when the step has its table
    and before its own materialisation is stored (so also when another run materialised the
    asset while this run went on): the latest materialisation of the run's ``partition``, the
    table this one replaces; for a partition materialised for the first time, the asset's
    latest of any partition when the partitions are one series (time, or a sensor's files: a
    day, a file, is compared with the one before), none for ``static`` keys (each holds its
    own data: `eu` is not compared with `us`). (A read of every step's latest
    materialisation at the run's second step would save ~0.4 ms per step and compare a later
    step with what it replaced then.) Also the partition compared with (None: none)."""
    if partition is not None:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1).records
        if records or static:
            return _column_schema(records[0].event_log_entry if records else None), partition
    latest = instance.get_latest_materialization_event(key)
    mat = latest.asset_materialization if latest else None
    return _column_schema(latest), (mat.partition if mat else None)


def _column_schema(event: Any) -> dg.TableSchema | None:
    """The `dagster/column_schema` of a materialisation's event log entry, if any."""
    mat = event.asset_materialization if event else None
    value = mat.metadata.get("dagster/column_schema") if mat else None
    return getattr(value, "schema", None)


def _resolve_for_run(template: Pipeline, text: str, run_cfg: Mapping[str, Any]) -> Pipeline:
    """The pipeline with this run's parameters; they may change values, never the structure.

    Every step of a run asks for the same resolution: it is computed once per (file text, run
    config, OSIRIS_* environment) instead of re-parsing and re-validating the whole file in
    each step (O(steps^2) per run)."""
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("OSIRIS_")))
    key = (str(template.path), text, canonical_json(dict(run_cfg)), env)
    cached = _RESOLVED.get(key)
    if cached is None:
        cached = _resolve_uncached(template, text, run_cfg)
        if len(_RESOLVED) >= 64:
            _RESOLVED.clear()
        _RESOLVED[key] = cached
    return cached


_RESOLVED: dict[tuple[Any, ...], Pipeline] = {}


def _resolve_uncached(template: Pipeline, text: str, run_cfg: Mapping[str, Any]) -> Pipeline:
    specs = _param_specs(template, text)
    explicit = {k: v for k, v in (run_cfg.get("params") or {}).items()
                if not (k in specs and specs[k].has_default and v == specs[k].default)}
    explicit.update(run_cfg.get("explicit_params") or {})
    result = validate_pipeline(template.path, text=text, params=explicit,
                               profile=run_cfg.get("profile"))
    if result.pipeline is None:
        raise dg.Failure(description=str(PipelineInvalidError(str(template.path),
                                                              result.errors)))
    if result.pipeline.structure() != template.structure():
        raise dg.Failure(description=f"pipeline '{template.name}': parameters must not change "
                                     "step ids, components or needs; reload the code location")
    return result.pipeline


def _fail_step(context: dg.AssetExecutionContext, session: Session, pipeline: Pipeline,
               selected: Sequence[str], step_id: str, message: str,
               will_retry: bool = False) -> None:
    """Record in the session that the step failed after all (its driver had succeeded, or it
    never started), then end the run there if that was its last step: as a failure, and
    without archiving its file. ``will_retry``: Dagster runs the step again, so the run has
    not ended."""
    session.log_event("step_error", step_id=step_id, error=message, cancelled=False,
                      timed_out=False, **({"will_retry": True} if will_retry else {}))
    progress_log.info("error", extra={"osiris": {"event": "step_error", "step_id": step_id,
                                                 "error": session.masker.text(message)}})
    _finish(context, session, pipeline, selected)


def _refuse_replaced_file(context: dg.AssetExecutionContext, session: Session,
                          pipeline: Pipeline, step_id: str, selected: Sequence[str],
                          after_read: bool = False) -> None:
    """Fail the step that reads the sensor's file (see :func:`_reads_sensor_file`) when the
    file is no longer the version the sensor started this run for. Before the read: replaced by a
    newer export of the same name while the run waited in the queue, this run would read that
    version, which the sensor starts a run of its own for. ``after_read``: it changed while the
    step read it (its writer appended to it), so the table may hold rows of two versions, and
    passing it on would write those rows twice into an append target. The run fails (not
    retried), the file stays."""
    tags = context.run.tags
    path = tags[TAG_FILE]
    found = file_replaced(path, tags.get(TAG_FINGERPRINT))
    if found is None:
        return
    if after_read:
        message = (f"{path} changed while this step read it ({found}): its table may hold "
                   "part of the new version, so it is not passed on; the sensor starts a run "
                   "for the version there now")
        session.log_event("file_changed_during_read", path=path, change=found)
    else:
        why = ("It is gone (archived by the run that read it, or deleted), so this run "
               "reads nothing" if not os.path.lexists(path) else
               "It changed after the sensor's tick, so this run does not read it; the sensor "
               "starts a run for the version there now")
        parent = context.run.parent_run_id
        again = (f". This run re-executes run {parent}: a re-execution reads only the version "
                 "the sensor started that run for" if parent else "")
        message = (f"{path} is not the version of the file the sensor started this run for: "
                   f"{found}. {why}{again}")
        session.masker.add(pipeline.sensitive_values())  # before anything is written
        start_session(session, pipeline)
        session.log_event("file_changed_before_run", path=path, change=found)
    _fail_step(context, session, pipeline, selected, step_id, message)
    _no_run_retry(context)
    raise dg.Failure(description=message, allow_retries=False)


def _reads_sensor_file(context: dg.AssetExecutionContext, step: Step,
                       connections: Callable[[], Connections]) -> bool:
    """Whether this step of a sensor's run reads the sensor's file: a step that is not a
    writer (a writer reads its upstream table, never the file) whose config holds the file's
    path (the sensor's ``param``), or whose ``path``, resolved as its driver resolves it
    (against its @filesystem connection's base_dir, else the working directory), is that file
    (a ``name_param`` under a connection's base_dir, ``in/${params.input_name}``)."""
    path = context.run.tags.get(TAG_FILE)
    if not path or step.mode == "write":
        return False
    if _mentions(step.config, path):
        return True
    raw = step.config.get("path")
    if not isinstance(raw, str) or not raw:
        return False
    ref = step.connection_ref
    relative = not os.path.isabs(os.path.expanduser(raw))  # else no base_dir is needed
    try:
        base = connections().resolve("filesystem", ref).base_dir if relative and \
            ref is not None and ref.startswith("@filesystem.") else None
        read = resolve_step_path(raw, base)  # as the driver resolves it
    except OsirisError:
        return True  # cannot tell where it reads: checked (the step fails on it too)
    return os.path.realpath(read) == os.path.realpath(path)


def _mentions(value: Any, text: str) -> bool:
    if isinstance(value, str):
        return text in value
    if isinstance(value, Mapping):
        return any(_mentions(v, text) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_mentions(v, text) for v in value)
    return False


def _finish(context: dg.AssetExecutionContext, session: Session, pipeline: Pipeline,
            selected: Sequence[str]) -> None:
    """Log run_end once the run's ``selected`` steps are done; archive the sensor's file."""
    try:
        status = finish_run_if_done(session, pipeline, selected)
    except Exception as exc:  # bookkeeping must never fail a step
        context.log.warning(f"could not update run_end in {session.events_path}: {exc}")
        return
    tags = context.run.tags
    if status == "success" and tags.get(TAG_FILE) and tags.get(TAG_ARCHIVE_TO):
        _archive_input(context, session, tags)


def _archive_input(context: dg.AssetExecutionContext, session: Session,
                   tags: Mapping[str, str]) -> None:
    """Move the sensor's file to archive_to, unless it is no longer the version the sensor
    started this run for (its writer was still appending, or renamed its next version over it,
    even while this archives it): then that version stays, and has a new run key, so the next
    tick runs it."""
    path = tags[TAG_FILE]
    change = file_change(path, tags.get(TAG_FINGERPRINT))
    if change:
        context.log.warning(
            f"{path} changed after the sensor started this run for it ({change}); this run "
            "may have read only part of it. Not archived: left in place for the next sensor "
            "tick, which runs it again.")
        session.log_event("file_changed_during_run", path=path, change=change)
        return
    try:
        dest = archive_file(path, tags[TAG_ARCHIVE_TO], context.run_id,
                            Fingerprint.parse(tags.get(TAG_FINGERPRINT)))
    except NotTheDeliveredVersion as exc:
        where = (f"was left at {exc.kept} for the next sensor tick, which runs it"
                 if exc.kept == Path(path) else
                 f"was kept at {exc.kept}, since an even newer version took its name: the "
                 "sensor runs it only if its watch pattern matches that name; otherwise move "
                 "it back under its name once the newer version has run")
        context.log.warning(
            f"{path} was replaced after this run's last check ({exc.change}): the version this "
            f"run read is no longer there, so nothing was archived. The version found there "
            f"{where}.")
        session.log_event("file_changed_during_run", path=path, change=exc.change,
                          kept=str(exc.kept))
    except OSError as exc:
        context.log.warning(record_failed_archive(
            context.instance, context.run_id, path,
            Fingerprint.parse(tags.get(TAG_FINGERPRINT)), exc))
        session.log_event("file_archive_failed", path=path, error=str(exc))
    else:
        context.log.info(f"archived {path} -> {dest}")
        session.log_event("file_archived", path=path, archived_to=str(dest))


def _selected_steps(context: dg.AssetExecutionContext, pipeline: Pipeline) -> Sequence[str]:
    """Steps this run executes: the job's (possibly subsetted) nodes that materialise their
    asset (a node selected for checks only runs no step: :func:`_run_checks_alone`), narrowed
    to step_keys_to_execute on re-execution."""
    by_op = {dagster_name(pipeline.name, s.id): s.id for s in pipeline.steps}
    from dagster._core.definitions.dependency import NodeHandle

    in_job = {node.name for node in context.job_def.nodes
              if not runs_checks_only(context.job_def, NodeHandle(node.name, None))}
    step_keys = context.run.step_keys_to_execute
    if step_keys is not None:
        in_job &= {k.split("[")[0] for k in step_keys}
    return [sid for op, sid in by_op.items() if op in in_job]


def materialisation_metadata(session: Session, outcome: StepOutcome,
                             columns: StepColumns | None = None) -> dict[str, Any]:
    """The materialisation's metadata; every text in it goes through the session's masker (a
    target path or URL, a driver's extra metadata and the preview may hold a secret value)."""
    result = outcome.result
    mask = session.masker
    target = mask.text(result.target) if result.target else None
    md: dict[str, Any] = {
        META_SESSION_ID: session.session_id,
        "osiris/session_dir": dg.MetadataValue.path(str(session.dir)),
        "rows_read": dg.MetadataValue.int(result.rows_read),
        "rows_written": dg.MetadataValue.int(result.rows_written),
        "duration_s": dg.MetadataValue.float(round(outcome.duration_s, 3)),
    }
    if outcome.ref is not None:
        ref = outcome.ref
        md["dagster/row_count"] = dg.MetadataValue.int(ref.rows)
        md["dagster/table_name"] = session.store.table_name(session.session_id, ref.table)
        if session.store.kind == "duckdb":
            md["dagster/uri"] = Path(ref.location).as_uri()
            md[META_SESSION_DB] = dg.MetadataValue.path(ref.location)
        else:
            md[META_SESSION_DB] = ref.location
        md[META_TABLE] = ref.table
        if outcome.preview is not None:
            names, rows = outcome.preview
            md["preview"] = rows_table(names, rows, dict(ref.columns), mask)
    if target:
        if "://" in target:  # a database or API target (never with credentials)
            md["target"] = (dg.MetadataValue.url(target)
                            if target.startswith(("http://", "https://")) else target)
            md["dagster/uri"] = target
        else:
            md["target"] = dg.MetadataValue.path(target)
            md["dagster/uri"] = Path(target).as_uri()
    md.update(column_metadata(outcome.ref.columns if outcome.ref else None,
                              result.column_lineage, columns, mask))
    for k, v in result.extra_metadata.items():
        md[k] = mask.value(v) if isinstance(v, str | dict | list) else v
    return md


def rows_table(names: Sequence[str], rows: Sequence[Sequence[Any]],
               column_types: Mapping[str, str], mask: Masker) -> dg.TableMetadataValue:
    """A few rows of a step's table (the preview, a check's failing sample) as Dagster table
    metadata, typed by the step's column schema. Every text goes through the masker before it
    is cut to PREVIEW_CELL_CHARS, and every value becomes one a TableRecord accepts."""
    shown = [mask.text(str(n)) for n in names]
    schema = dg.TableSchema(columns=[dg.TableColumn(s, mask.text(column_types.get(n, "unknown")))
                                     for s, n in zip(shown, names, strict=True)])
    records = [dg.TableRecord({s: preview_cell(v, mask) for s, v in zip(shown, row, strict=True)})
               for row in rows]
    return dg.MetadataValue.table(records=records, schema=schema)


PREVIEW_CELL_CHARS = 80
_JS_SAFE_INT = 2**53  # larger integers lose digits as JSON numbers in the UI: shown as text


def _json_keys(value: Any) -> Any:
    """``value`` with every mapping key one JSON takes: a MAP keyed by dates, decimals or
    UUIDs failed json.dumps (and the step, after its table was written)."""
    if isinstance(value, dict):
        return {k if isinstance(k, str | int | float | bool) or k is None else str(k):
                _json_keys(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_keys(v) for v in value]
    return value


def preview_cell(value: Any, mask: Masker) -> str | int | float | bool | None:
    """One value as TableRecord takes it (str/int/float/bool/None): DECIMAL, dates and times,
    BLOB, LIST/STRUCT/MAP and huge integers become text, masked, then cut to a readable length."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and -_JS_SAFE_INT <= value <= _JS_SAFE_INT:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        text = "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02X}"  # as DuckDB shows a BLOB
                       for b in bytes(value))
    elif isinstance(value, datetime.date | datetime.time):
        text = value.isoformat()
    elif isinstance(value, dict | list | tuple):  # STRUCT, MAP, LIST: secret-named fields too
        text = json.dumps(_json_keys(mask.value(value)), default=str, ensure_ascii=False)
    else:
        text = str(value)
    text = mask.text(text)
    return text if len(text) <= PREVIEW_CELL_CHARS else text[:PREVIEW_CELL_CHARS - 3] + "..."


