"""Schedules and new-file sensors from `x-dagster.schedule` / `x-dagster.sensor`."""

from __future__ import annotations

import errno
import itertools
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._utils.schedules import reverse_cron_string_iterator

from osiris_dagster.core.atomic_files import owned_temporary, publish_new, remove_quietly
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
    utf8_name,
)

TAG_FILE = "osiris/file"
TAG_ARCHIVE_TO = "osiris/archive_to"
TAG_FINGERPRINT = "osiris/file_fingerprint"  # the version of the file the run was started for
# set when the run succeeded but its file could not be archived: the error, and the version left
# at the watched name (the same file, its ctime moved by the rename back): never run again
TAG_ARCHIVE_FAILED = "osiris/archive_failed"
TAG_KEPT_FINGERPRINT = "osiris/file_fingerprint_kept"
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
    if isinstance(partitions, dg.TimeWindowPartitionsDefinition):  # (validated: time ones)
        run_config = params_run_config(res_key, sched.params)

        def _completed(context: dg.ScheduleEvaluationContext
                       ) -> Iterator[dg.RunRequest | dg.SkipReason]:
            tick = _aware(context.scheduled_execution_time, sched.timezone)
            previous = previous_tick(sched.cron, sched.timezone, tick)
            keys = partitions_ended_between(partitions, previous, tick)
            if not keys:
                yield dg.SkipReason(f"no partition ended after the previous tick "
                                    f"({previous.isoformat()}) up to this one "
                                    f"({tick.isoformat()})")
            for key in keys:  # (Dagster takes several requests from a generator, not a list)
                yield dg.RunRequest(run_key=key, partition_key=key, run_config=run_config)

        return dg.ScheduleDefinition(
            name=name, job=job, cron_schedule=sched.cron, execution_timezone=sched.timezone,
            execution_fn=_completed,
            default_status=_status(sched.running, dg.DefaultScheduleStatus),
            description=f"Runs each partition of '{pipeline.name}' once, at the first tick of "
                        f"'{sched.cron}'" + (f" ({sched.timezone})" if sched.timezone else "")
                        + " at or after its end.")
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


def _aware(moment: datetime, timezone: str | None) -> datetime:
    """A tick's time; a naive one (a hand-built context) is read in the schedule's zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(timezone or "UTC"))


def previous_tick(cron: str, timezone: str | None, tick: datetime) -> datetime:
    """The schedule's last tick before ``tick``, by the cron iterator Dagster's daemon ticks by."""
    return next(t for t in reverse_cron_string_iterator(tick.timestamp(), cron, timezone)
                if t.timestamp() < tick.timestamp())


def partitions_ended_between(partitions: dg.TimeWindowPartitionsDefinition,
                             after: datetime, until: datetime) -> list[str]:
    """Keys of the partitions whose window ends in (after, until], oldest first. Consecutive
    ticks' intervals tile time, so each partition is due at exactly one tick, whatever the
    schedule's cron and time zone against the partitions' (DST, a weekly cron over daily
    partitions)."""
    first = partitions.get_partition_key_for_timestamp(after.timestamp(), end_closed=True)
    lo = partitions.time_window_for_partition_key(first).start
    low, high = after.timestamp(), until.timestamp()
    begin = partitions.start.timestamp()
    end = partitions.end.timestamp() if partitions.end else math.inf
    keys = []
    for key in partitions.get_partition_keys_in_time_window(dg.TimeWindow(lo, until)):
        window = partitions.time_window_for_partition_key(key)
        if low < window.end.timestamp() <= high and window.start.timestamp() >= begin \
                and window.end.timestamp() <= end:
            keys.append(key)
    return keys


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
        if archive is not None and _inside(root, archive):
            return dg.SkipReason(
                f"the archive directory {archive} holds the watch directory {root} (pattern "
                f"{pattern}): files under the archive are never picked up, so no file runs; "
                "set archive_to to a directory outside the watched one")
        if archive is not None:  # taken beside their name when archive_to is elsewhere
            finish_interrupted_archives([archive, root], context.instance, context.log)
        cursor = Cursor.parse(context.cursor)
        now_ns = time.time_ns()
        plan = plan_runs(scan(pattern, exclude=archive), cursor, now_ns,
                         settings.settle_seconds, settings.max_runs_per_tick,
                         ran=lambda files: _files_with_runs(context.instance, name, files))
        for f, why in plan.skipped:
            if f.stat_key not in cursor.skipped:  # once, not on every tick
                context.log.warning(f"skipping {_shown_name(f.path, root)}: {why}")
        to_run, already, unarchived = _drop_already_run(context.instance, name, plan.to_run)
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
        present = {f.stat_key for f in [*plan.seen, *already]}  # still in the folder
        plan.cursor.unarchived = {key: why for key, why in
                                  {**cursor.unarchived, **unarchived}.items() if key in present}
        unarchived = plan.cursor.unarchived
        if not requests:
            return dg.SensorResult(skip_reason=dg.SkipReason(_skip_reason(
                pattern, root, archive, plan.settling, [*plan.seen, *already], plan.skipped,
                now_ns, unarchived)),
                cursor=plan.cursor.dump())
        return dg.SensorResult(run_requests=requests, cursor=plan.cursor.dump(),
                               dynamic_partitions_requests=adds or None)

    return _watch


def _drop_already_run(instance: dg.DagsterInstance, sensor: str, planned: list[Planned]
                      ) -> tuple[list[Planned], list[FileVersion], dict[str, str]]:
    """Split off versions this sensor already started a run for (a reset or lost cursor, or a
    file put back after its archive failed, whose ctime the rename moved): the daemon would
    drop the first with only a line in its own log, and run the second again. The skip reason
    names them; the third item maps the stat keys of unarchived ones to why."""
    fresh: list[Planned] = []
    already: list[FileVersion] = []
    for p in planned:
        runs = instance.get_runs(dg.RunsFilter(tags={RUN_KEY_TAG: p.run_key,
                                                     SENSOR_NAME_TAG: sensor}), limit=1)
        if runs:
            already.append(p.file)
        else:
            fresh.append(p)
    unarchived = _unarchived_files(instance, sensor, [p.file for p in fresh])
    already += [p.file for p in fresh if p.file.stat_key in unarchived]
    fresh = [p for p in fresh if p.file.stat_key not in unarchived]
    return fresh, already, unarchived


def _runs_of_files(instance: dg.DagsterInstance, sensor: str, files: list[FileVersion]
                   ) -> Iterator[tuple[Any, list[FileVersion]]]:
    """This sensor's runs for the paths of ``files``, each with those of ``files`` at its
    path."""
    by_path: dict[str, list[FileVersion]] = {}
    for f in files:
        by_path.setdefault(f.path, []).append(f)
    paths = sorted(by_path)
    for i in range(0, len(paths), 500):  # within SQLite's limit of query parameters
        for run in instance.get_runs(dg.RunsFilter(tags={SENSOR_NAME_TAG: sensor,
                                                         TAG_FILE: paths[i:i + 500]})):
            yield run, by_path.get(run.tags.get(TAG_FILE, ""), [])


def _files_with_runs(instance: dg.DagsterInstance, sensor: str, files: list[FileVersion]
                     ) -> set[str]:
    """Stat keys of those file versions this sensor already started a run for (whatever its
    outcome), by the fingerprint the run recorded or the one it left after a failed archive
    (or, for runs of earlier versions, their run key): asked only when files appeared behind
    the cursor's mark or went."""
    out: set[str] = set()
    for run, at_path in _runs_of_files(instance, sensor, files):
        recorded = Fingerprint.parse(run.tags.get(TAG_FINGERPRINT))
        kept = Fingerprint.parse(run.tags.get(TAG_KEPT_FINGERPRINT))
        for f in at_path:
            if (recorded.matches(f) if recorded
                    else run.tags.get(RUN_KEY_TAG) == f.legacy_key) or \
                    (kept is not None and kept.matches(f)):
                out.add(f.stat_key)
    return out


def _unarchived_files(instance: dg.DagsterInstance, sensor: str, files: list[FileVersion]
                      ) -> dict[str, str]:
    """Stat keys of those versions a successful run left in place when their archive failed,
    with the run and the error."""
    out: dict[str, str] = {}
    if not files:
        return out
    for run, at_path in _runs_of_files(instance, sensor, files):
        kept = Fingerprint.parse(run.tags.get(TAG_KEPT_FINGERPRINT))
        for f in at_path:
            if kept is not None and kept.matches(f):
                out[f.stat_key] = (f"run {run.run_id[:8]} read it, archiving failed: "
                                   f"{run.tags.get(TAG_ARCHIVE_FAILED, '?')}")
    return out


def record_failed_archive(instance: dg.DagsterInstance, run_id: str, path: str,
                          delivered: Fingerprint | None, error: OSError) -> str:
    """A successful run could not archive its file, which was put back at its name (the
    rename moved its ctime, so the sensor would take it for a new version and run it again,
    every tick: an append writer would write its rows each time). The run's tags record the
    version left there, which the sensor then never runs; what to tell the person."""
    left = fingerprint(path)
    tags = {TAG_ARCHIVE_FAILED: str(error)[:300]}
    if left is not None and delivered is not None and \
            delivered.differences(left, ctime=False) is None:
        tags[TAG_KEPT_FINGERPRINT] = left.dump()
    instance.add_run_tags(run_id, tags)
    if TAG_KEPT_FINGERPRINT not in tags:
        return f"could not archive {path}: {error}"
    return (f"could not archive {path}: {error}. The file stays at its name; the sensor does not "
            "run this version again (its skip reason names it). Move it to the archive "
            "yourself once the cause is fixed; a changed file runs again.")


def _skip_reason(pattern: str, root: Path, archive: Path | None, settling: list[FileVersion],
                 already: list[FileVersion], skipped: list[tuple[FileVersion, str]],
                 now_ns: int, unarchived: Mapping[str, str] | None = None) -> str:
    unarchived = unarchived or {}
    parts = [f"no new files matching {pattern}"]
    future = sorted(_shown_name(f.path, root) for f in settling
                    if min(f.mtime_ns, f.ctime_ns) > now_ns)
    if len(settling) > len(future):
        parts.append(f"{len(settling) - len(future)} file(s) still being written")
    if future:
        parts.append(f"{len(future)} file(s) dated in the future, waiting for that time (a "
                     "clock ahead on the machine storing them?): " + _listed(future))
    if skipped:
        parts.append(f"{len(skipped)} file(s) skipped: " + _listed(
            sorted(f"{_shown_name(f.path, root)} ({why})" for f, why in skipped)))
    if unarchived:
        parts.append(f"{len(unarchived)} file(s) read by a successful run but not archived, "
                     "not run again until they change: " + _listed(sorted(
                         f"{_shown_name(f.path, root)} ({unarchived[f.stat_key]})"
                         for f in already if f.stat_key in unarchived)))
    already = [f for f in already if f.stat_key not in unarchived]
    if already:
        names = sorted({_shown_name(f.path, root) for f in already})
        parts.append(f"{len(names)} file(s) already have a run (queued, running or done) and "
                     "are unchanged since: " + _listed(names)
                     + " (write, touch or move a file in again to run it again)")
    if archive is not None and _inside(archive, root):
        parts.append(f"files under the archive directory {archive} are not watched")
    return "; ".join(parts)


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - LISTED_NAMES} more" if len(names) > LISTED_NAMES else ""
    return ", ".join(names[:LISTED_NAMES]) + more


def _shown_name(path: str, root: Path) -> str:
    """The path under the watch root; one that is not UTF-8 as the repr of its bytes."""
    try:
        name = str(Path(path).relative_to(root))
    except ValueError:
        name = Path(path).name
    return name if utf8_name(name) else repr(os.fsencode(name))


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


def file_replaced(path: str, recorded: str | None) -> str | None:
    """Before a run reads its file: why the file at ``path`` is not the version the sensor
    started the run for (expected and found), or None when it is (or nothing was recorded)."""
    expected = Fingerprint.parse(recorded)
    if expected is None:
        return None
    found = fingerprint(path)
    change = expected.differences(found)
    if change is None:
        return None
    shown = found.dump() if found else ("no file" if not os.path.lexists(path)
                                        else "a file being written or unreadable")
    return f"expected version {expected.dump()}, found {shown} ({change})"


class NotTheDeliveredVersion(Exception):
    """:func:`archive_file` found another version at the watched name than the one the run
    delivered: nothing was archived, and that version is at ``kept`` (the watched name, or
    beside it when an even newer one took the name meanwhile)."""

    def __init__(self, change: str, kept: Path) -> None:
        super().__init__(change)
        self.change, self.kept = change, kept


def archive_file(path: str, archive_to: str, run_id: str,
                 delivered: Fingerprint | None = None) -> Path:
    """Move a processed file into archive_to, never over a file there, and never a version
    other than ``delivered`` (the one its run read).

    The watched name is first renamed to a private name in archive_to: a rename is atomic, so
    the version there at that instant is the one taken, and a producer's next version landing
    at the name from then on stays there. The taken file is compared with ``delivered`` (inode,
    size, mtime and content digest; the rename moved its ctime). The delivered one is linked
    under the first free name (a link fails when the name is taken, so two runs archiving files
    of one name at once keep both); another one (renamed over the name after the run's last
    check) is put back, never over a file, and NotTheDeliveredVersion raised. Across
    filesystems the private name is beside the watched one, and the file is copied to a
    temporary file in archive_to first, which is linked the same way."""
    src = Path(path)
    dest_dir = Path(archive_to)
    dest_dir.mkdir(parents=True, exist_ok=True)
    held = _take(src, dest_dir, run_id)
    try:
        change = delivered.differences(fingerprint(str(held)), ctime=False) \
            if delivered else None
        if change is None:
            return _archive_held(held, dest_dir, src, run_id)
    except OSError:
        _put_back(held, src, run_id)
        raise
    raise NotTheDeliveredVersion(change, _put_back(held, src, run_id))


def _take(src: Path, dest_dir: Path, run_id: str) -> Path:
    """Rename src to a private name in dest_dir, or beside src when dest_dir is on another
    filesystem (not a temporary file that housekeeping would remove). The name holds the run
    id, so a sensor tick can finish the archive of a run that stopped here
    (:func:`finish_interrupted_archives`)."""
    stem = os.fsdecode(os.fsencode(src.name)[:150])
    private = f".{stem}.{run_id}-{uuid.uuid4().hex[:8]}{_ARCHIVING_SUFFIX}"
    try:
        os.rename(src, dest_dir / private)
        return dest_dir / private
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    os.rename(src, src.with_name(private))
    return src.with_name(private)


_ARCHIVING_SUFFIX = ".archiving"
_ARCHIVING_RUN = re.compile(r"\.(?P<run>[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12})"
                            r"-[0-9a-f]{8}\.archiving")


def finish_interrupted_archives(dirs: Iterable[Path], instance: dg.DagsterInstance,
                                log: Any) -> None:
    """Files a run took to archive (``.<name>.<run id>-<n>.archiving`` in ``dirs``) and then
    stopped before archiving or putting back (its process was killed): once that run is over,
    the version it delivered is archived, and any other version put back under its name (never
    over a file), where this tick's scan finds it. Each is logged on the sensor's tick."""
    for directory in dict.fromkeys(dirs):
        try:
            names = [e.name for e in os.scandir(directory)
                     if e.name.startswith(".") and e.name.endswith(_ARCHIVING_SUFFIX)]
        except OSError:
            continue
        for name in names:
            found = _ARCHIVING_RUN.search(name)
            run = instance.get_run_by_id(found.group("run")) if found else None
            if run is None or not run.is_finished or not run.tags.get(TAG_FILE):
                continue  # still archiving, or not a run of this instance
            _finish_interrupted(directory / name, run, log)


def _finish_interrupted(held: Path, run: Any, log: Any) -> None:
    src, archive_to = Path(run.tags[TAG_FILE]), run.tags.get(TAG_ARCHIVE_TO)
    delivered = Fingerprint.parse(run.tags.get(TAG_FINGERPRINT))
    stopped = f"run {run.run_id} stopped while archiving {src}"
    try:
        change = delivered.differences(fingerprint(str(held)), ctime=False) \
            if delivered else "the run recorded no version"
        if change is None and archive_to:
            dest = _archive_held(held, Path(archive_to), src, run.run_id)
            log.warning(f"{stopped}: the version it read, taken as {held}, is now archived "
                        f"as {dest}")
        else:
            kept = _put_back(held, src, run.run_id)
            log.warning(f"{stopped}: it had taken another version than the one it read "
                        f"({change}), now put back at {kept} for a run of its own")
    except OSError as exc:
        log.warning(f"{stopped}: could not finish with {held}: {exc}")


def _archive_held(held: Path, dest_dir: Path, src: Path, run_id: str) -> Path:
    """Give the taken file its archive name (``<stem>.<run id>.<suffix>`` when src's is
    taken); from beside src (another filesystem) through a copy in dest_dir."""
    if held.parent == dest_dir:
        return _move_under_free_name(held, dest_dir, src, run_id[:8])
    with owned_temporary(dest_dir / src.name, dest_dir) as tmp:
        try:
            shutil.copy2(held, tmp)
            dest = _move_under_free_name(tmp, dest_dir, src, run_id[:8])
        finally:
            remove_quietly(tmp)
    try:
        os.unlink(held)
    except OSError:
        remove_quietly(dest)  # not archived: put back where it was, not in both places
        raise
    return dest


def _put_back(held: Path, src: Path, run_id: str) -> Path:
    """Return a taken file to src, or, when a newer version took that name meanwhile, beside
    it as ``<stem>.not-archived-<run>.<suffix>``; never over a file."""
    try:
        return _move_under_free_name(held, src.parent, src, f"not-archived-{run_id[:8]}")
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror or exc}; the file is at {held}") from exc


# link() errors that mean "copy instead": another filesystem, or one without hard links
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


def _move_under_free_name(file: Path, dest_dir: Path, src: Path, tag: str) -> Path:
    """Move file into dest_dir under the first free name of :func:`_free_names`."""
    for name in _free_names(src, tag):
        if _move_new(file, dest_dir / name):
            return dest_dir / name
    raise AssertionError("unreachable: the names never end")


def _move_new(file: Path, target: Path) -> bool:
    """Move file to target unless a file is there (False: nothing changed): linked, then
    unlinked, so a file landing at target meanwhile is never replaced. Where links are refused
    (a filesystem without them) it is renamed once target is seen free."""
    try:
        if not publish_new(file, target):
            return False
    except OSError as exc:
        if exc.errno not in _NO_LINK or exc.errno == errno.EXDEV:
            raise
        if os.path.lexists(target):
            return False
        os.rename(file, target)
        return True
    try:
        os.unlink(file)
    except OSError:
        remove_quietly(target)  # in one place, not in both
        raise
    return True


def _free_names(src: Path, tag: str) -> Iterator[str]:
    """src's name, then ``<stem>.<tag><suffix>``, then ``<stem>.<tag>.<n><suffix>``; the stem
    cut where a name would pass the 255 bytes a file name may have (a long name met twice)."""
    yield src.name
    yield _fitted(src.stem, f".{tag}{src.suffix}")
    for n in itertools.count(2):
        yield _fitted(src.stem, f".{tag}.{n}{src.suffix}")


_NAME_MAX = 255  # bytes of a file name on Linux, macOS and Windows filesystems


def _fitted(stem: str, tail: str) -> str:
    room = _NAME_MAX - len(os.fsencode(tail))
    raw = os.fsencode(stem)
    if len(raw) <= room:
        return stem + tail
    return raw[:room].decode("utf-8", "ignore") + tail  # never half a character
