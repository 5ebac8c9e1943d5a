"""Schedules and new-file sensors from `x-dagster.schedule` / `x-dagster.sensor`."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from osiris_dagster.core.environment import environment
from osiris_dagster.core.errors import OsirisError
from osiris_dagster.core.naming import dagster_name
from osiris_dagster.dagster_layer.partitions import partitions_definition
from osiris_dagster.oml.model import Pipeline, ScheduleSettings, SensorSettings
from osiris_dagster.oml.params import PARAM_REF
from osiris_dagster.oml.watch_globs import watch_pattern, watch_root
from osiris_dagster.oml.yaml_lines import load_yaml_with_lines
from osiris_dagster.runtime.connections import Connections, find_connections_file
from osiris_dagster.runtime.filewatch import (
    Cursor,
    FileVersion,
    Fingerprint,
    Planned,
    fingerprint,
    plan_runs,
    scan,
)

TAG_FILE = "osiris/file"
TAG_ARCHIVE_TO = "osiris/archive_to"
TAG_FINGERPRINT = "osiris/file_fingerprint"  # the version of the file the run was started for
RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"
LISTED_NAMES = 5


def _status(running: bool, kind: type) -> Any:
    return kind.RUNNING if running else kind.STOPPED


def params_run_config(res_key: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Run config for parameter values the pipeline gives (a schedule's `params`, a sensor's
    file name): explicit, so they win over OSIRIS_PARAM_<NAME> and the profile even when equal
    to the OML default (see ``params_resource``)."""
    if not params:
        return {}
    return {"resources": {res_key: {"config": {"explicit_params": dict(params)}}}}


def build_schedules(pipeline: Pipeline, job: Any, res_key: str
                    ) -> list[dg.ScheduleDefinition]:
    out = []
    for i, sched in enumerate(pipeline.dagster.schedules):
        name = dagster_name(pipeline.name) + "_schedule" + (f"_{i + 1}" if i else "")
        out.append(_schedule(pipeline, sched, job, res_key, name))
    return out


def _schedule(pipeline: Pipeline, sched: ScheduleSettings, job: Any, res_key: str, name: str
              ) -> dg.ScheduleDefinition:
    partitions = partitions_definition(pipeline)
    if partitions is not None:  # time partitions (validated): run the last complete one
        run_config = params_run_config(res_key, sched.params)

        def _latest(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
            keys = partitions.get_partition_keys(current_time=context.scheduled_execution_time)
            if not keys:
                return dg.SkipReason("no complete partition yet")
            key = keys[-1]
            return dg.RunRequest(run_key=key, partition_key=key, run_config=run_config)

        return dg.ScheduleDefinition(
            name=name, job=job, cron_schedule=sched.cron, execution_timezone=sched.timezone,
            execution_fn=_latest,
            default_status=_status(sched.running, dg.DefaultScheduleStatus),
            description=f"Runs the latest complete partition of '{pipeline.name}' on "
                        f"'{sched.cron}'.")
    return dg.ScheduleDefinition(
        name=name,
        job=job,
        cron_schedule=sched.cron,
        execution_timezone=sched.timezone,
        run_config=params_run_config(res_key, sched.params),
        default_status=_status(sched.running, dg.DefaultScheduleStatus),
        description=f"Runs pipeline '{pipeline.name}' on '{sched.cron}'"
                    + (f" ({sched.timezone})" if sched.timezone else "")
                    + (f" with params {dict(sched.params)}" if sched.params else "") + ".",
    )


def build_sensors(pipeline: Pipeline, text: str, job: Any, res_key: str,
                  connections_file: str | None = None) -> list[dg.SensorDefinition]:
    out = []
    for i, settings in enumerate(pipeline.dagster.sensors):
        name = dagster_name(pipeline.name) + "_sensor" + (f"_{i + 1}" if i else "")
        out.append(_sensor(pipeline, text, settings, job, res_key, name, connections_file))
    return out


def sensor_base_dir(pipeline: Pipeline, text: str, settings: SensorSettings,
                    connections_file: str | None) -> Path:
    """Where a relative watch glob points: the sensor's own `connection`, else the
    `@filesystem` connection of the step that reads the file parameter, else the cwd."""
    ref = settings.connection or _consumer_connection(text, settings.param)
    if ref is None:
        return Path.cwd()
    conns = Connections(find_connections_file(connections_file, pipeline.path), environment())
    base = conns.resolve("filesystem", ref).base_dir
    return base or Path.cwd()


def _consumer_connection(text: str, param: str) -> str | None:
    doc = load_yaml_with_lines(text)
    for step in doc.get("steps") or []:
        config = step.get("config") if isinstance(step, dict) else None
        if not isinstance(config, dict):
            continue
        uses = any(isinstance(v, str) and any(m.group(1).strip() == param
                                              for m in PARAM_REF.finditer(v))
                   for v in config.values())
        ref = config.get("connection")
        if uses and isinstance(ref, str) and ref.startswith("@filesystem."):
            return ref
    return None


def _sensor(pipeline: Pipeline, text: str, settings: SensorSettings, job: Any, res_key: str,
            name: str, connections_file: str | None) -> dg.SensorDefinition:
    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=settings.minimum_interval_seconds,
        default_status=_status(settings.running, dg.DefaultSensorStatus),
        description=f"Starts pipeline '{pipeline.name}' for each new or changed file matching "
                    f"'{settings.watch}' (path in param '{settings.param}').",
    )
    def _watch(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        try:
            base = sensor_base_dir(pipeline, text, settings, connections_file)
        except OsirisError as exc:
            return dg.SkipReason(f"cannot resolve the watch directory: {exc}")
        pattern = watch_pattern(settings.watch, base)
        root = watch_root(pattern)
        if not root.is_dir():
            return dg.SkipReason(f"watch directory {root} does not exist (pattern {pattern})")
        archive = _archive_dir(settings, base)
        cursor = Cursor.parse(context.cursor)
        plan = plan_runs(scan(pattern, exclude=archive), cursor, time.time_ns(),
                         settings.settle_seconds, settings.max_runs_per_tick)
        to_run, already = _drop_already_run(context.instance, name, plan.to_run)
        dynamic = pipeline.dagster.partitions if pipeline.dagster.partitions and \
            pipeline.dagster.partitions.kind == "dynamic" else None
        requests = [
            dg.RunRequest(
                run_key=p.run_key,
                run_config=params_run_config(res_key, _file_params(settings, p.file.path)),
                tags={TAG_FILE: p.file.path, TAG_FINGERPRINT: p.fingerprint.dump(),
                      **({TAG_ARCHIVE_TO: str(archive)} if archive else {})},
                partition_key=p.file.path if dynamic else None,
            )
            for p in to_run
        ]
        adds = [dg.AddDynamicPartitionsRequest(dynamic.name, [p.file.path for p in to_run])] \
            if dynamic and to_run else []
        if not requests:
            return dg.SensorResult(skip_reason=dg.SkipReason(_skip_reason(
                pattern, root, archive, plan.settling, [*plan.seen, *already])),
                cursor=plan.cursor.dump())
        return dg.SensorResult(run_requests=requests, cursor=plan.cursor.dump(),
                               dynamic_partitions_requests=adds or None)

    return _watch


def _drop_already_run(instance: dg.DagsterInstance, sensor: str, planned: list[Planned]
                      ) -> tuple[list[Planned], list[FileVersion]]:
    """Split off versions this sensor already started a run for (a reset or lost cursor): the
    daemon would drop them with only a line in its own log; the skip reason names them."""
    fresh: list[Planned] = []
    already: list[FileVersion] = []
    for p in planned:
        runs = instance.get_runs(dg.RunsFilter(tags={RUN_KEY_TAG: p.run_key,
                                                     SENSOR_NAME_TAG: sensor}), limit=1)
        if runs:
            already.append(p.file)
        else:
            fresh.append(p)
    return fresh, already


def _skip_reason(pattern: str, root: Path, archive: Path | None, settling: list[FileVersion],
                 already: list[FileVersion]) -> str:
    parts = [f"no new files matching {pattern}"]
    if settling:
        parts.append(f"{len(settling)} file(s) still being written")
    if already:
        names = sorted({_shown_name(f.path, root) for f in already})
        more = f" and {len(names) - LISTED_NAMES} more" if len(names) > LISTED_NAMES else ""
        parts.append(f"{len(names)} file(s) already run and unchanged since: "
                     + ", ".join(names[:LISTED_NAMES]) + more
                     + " (write, touch or move a file in again to run it again)")
    if archive is not None and _inside(archive, root):
        parts.append(f"files under the archive directory {archive} are not watched")
    return "; ".join(parts)


def _shown_name(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name


def _inside(path: Path, directory: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(directory))


def _file_params(settings: SensorSettings, path: str) -> dict[str, str]:
    params = {settings.param: path}
    if settings.name_param:
        params[settings.name_param] = Path(path).name
    return params


def _archive_dir(settings: SensorSettings, base: Path) -> Path | None:
    if not settings.archive_to:
        return None
    p = Path(os.path.expanduser(settings.archive_to))
    return p if p.is_absolute() else base / p


def file_change(path: str, recorded: str | None) -> str | None:
    """How the file differs from the version the sensor started the run for, in words; None
    when it is the same, or when the run was not started with a fingerprint."""
    expected = Fingerprint.parse(recorded)
    if expected is None or not os.path.lexists(path):
        return None  # nothing to compare with, or gone: archiving reports that itself
    return expected.differences(fingerprint(path))


def archive_file(path: str, archive_to: str, run_id: str) -> Path:
    """Move a processed file into archive_to (never overwriting an earlier archived file)."""
    src = Path(path)
    dest_dir = Path(archive_to)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    if dest.exists():
        dest = dest_dir / f"{src.stem}.{run_id[:8]}{src.suffix}"
    shutil.move(str(src), str(dest))
    return dest
