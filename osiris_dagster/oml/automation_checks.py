"""Checks of `x-dagster.schedule` and `x-dagster.sensor` (each one mapping or a list of them):
cron and time zone, the watched glob and its archive, the parameters they set."""

from __future__ import annotations

import glob
import math
from collections.abc import Mapping
from pathlib import Path

from osiris_dagster.oml.config_checks import CONNECTION_REF
from osiris_dagster.oml.cron import cron_problem, cron_warning
from osiris_dagster.oml.diagnostics import Collector
from osiris_dagster.oml.model import ScheduleSettings, SensorSettings, freeze
from osiris_dagster.oml.params import ParamSpec, coerce
from osiris_dagster.oml.watch_globs import archive_holds_watch, archive_in_watch
from osiris_dagster.oml.x_dagster_fields import unknown_keys, valid_timezone
from osiris_dagster.oml.yaml_lines import LineDict, LineList, to_plain

SCHEDULE_KEYS = {"cron", "timezone", "params", "default_status"}
SENSOR_KEYS = {"watch", "param", "settle_seconds", "minimum_interval_seconds",
               "max_runs_per_tick", "default_status", "archive_to", "connection",
               "name_param"}


def entries(block: LineDict, key: str, out: Collector) -> list[LineDict]:
    """`x-dagster.<key>` is one mapping or a list of mappings."""
    raw = block.get(key)
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    good = []
    for i, item in enumerate(items):
        if isinstance(item, LineDict):
            good.append(item)
        else:
            line = raw.line_of(i) if isinstance(raw, LineList) else block.line_of(key)
            out.error(line, f"x-dagster.{key} must be a mapping (or a list of mappings)")
    return good


def schedule_settings(body: LineDict, param_names: set[str], out: Collector
                      ) -> ScheduleSettings | None:
    label = "x-dagster.schedule"
    unknown_keys(body, SCHEDULE_KEYS, label, out)
    cron = body.get("cron")
    ok = True
    if not isinstance(cron, str):
        out.error(body.line_of("cron"), f"{label}.cron is required: a cron string such as "
                                        "'0 6 * * *'")
        ok = False
    else:
        problem = cron_problem(cron)
        if problem:
            out.error(body.line_of("cron"), f"{label}: {problem}")
            ok = False
        elif warning := cron_warning(cron):
            out.warning(body.line_of("cron"), f"{label}: {warning}")
    tz = body.get("timezone")
    if tz is not None and not valid_timezone(tz):
        out.error(body.line_of("timezone"), f"{label}.timezone {tz!r} is not an IANA time zone "
                                            "(e.g. 'Europe/Prague', 'UTC')")
        ok = False
    params = body.get("params") or {}
    if not isinstance(params, dict):
        out.error(body.line_of("params"), f"{label}.params must be a mapping of parameter "
                                          "values")
        ok = False
        params = {}
    for name in params:
        if name not in param_names:
            out.error(params.line_of(name) if isinstance(params, LineDict) else body.line,
                      f"{label}.params sets '{name}', which is not declared under 'params'")
            ok = False
    running = _status(body, label, out)
    if not ok:
        return None
    return ScheduleSettings(cron.strip(), tz, freeze(to_plain(params)), running, body.line)


def check_schedule_params(x_dagster: object, specs: Mapping[str, ParamSpec],
                          out: Collector) -> None:
    """Each schedule's `params` values as its runs take them (the rule of `--param` values):
    one its parameter's type refuses would fail every run the schedule starts."""
    raw = x_dagster.get("schedule") if isinstance(x_dagster, LineDict) else None
    for sched in raw if isinstance(raw, list) else [raw]:
        params = sched.get("params") if isinstance(sched, LineDict) else None
        for name, value in params.items() if isinstance(params, LineDict) else ():
            try:
                coerce(specs.get(str(name)), value, "x-dagster.schedule.params")
            except ValueError as exc:
                out.error(params.line_of(name), f"x-dagster.schedule.params: {exc}; every run "
                                                "the schedule starts would fail")


def sensor_settings(body: LineDict, param_names: set[str], out: Collector
                    ) -> SensorSettings | None:
    label = "x-dagster.sensor"
    unknown_keys(body, SENSOR_KEYS, label, out)
    ok = True
    watch, param = body.get("watch"), body.get("param", "input_path")
    if not isinstance(watch, str) or not watch.strip():
        out.error(body.line_of("watch"), f"{label}.watch is required: a glob such as "
                                         "'incoming/*.csv'")
        ok = False
    elif not glob.has_magic(watch):
        name = watch.strip().rstrip("/") or "/"
        advice = (f"a directory never starts a run: watch the files in it with "
                  f"'{name}/*.csv' (or '{name}/*')")
        if watch.strip().endswith("/"):
            out.error(body.line_of("watch"), f"{label}.watch {watch!r} names a directory; "
                                             f"{advice}")
            ok = False
        else:  # one file watched by name (an export dropped again and again) is fine
            out.warning(body.line_of("watch"), f"{label}.watch {watch!r} has no wildcard: it "
                                               f"matches that one file only; if it names a "
                                               f"directory, {advice}")
    if not isinstance(param, str) or param not in param_names:
        out.error(body.line_of("param"), f"{label}.param {param!r} must name a parameter "
                                         "declared under 'params' (it receives the file's "
                                         "absolute path)")
        ok = False
    name_param = body.get("name_param")
    if name_param is not None and (not isinstance(name_param, str) or
                                   name_param not in param_names):
        out.error(body.line_of("name_param"), f"{label}.name_param {name_param!r} must name a "
                                              "parameter declared under 'params' (it receives "
                                              "the file's name)")
        ok = False
    elif name_param is not None and isinstance(watch, str) and \
            any(glob.has_magic(part) for part in Path(watch.strip()).parts[:-1]):
        out.warning(body.line_of("name_param"),
                    f"{label}.name_param gets only the file's name, and {watch.strip()!r} "
                    "matches files in more than one directory: files of one name in two of "
                    "them (a/orders.csv, b/orders.csv) get the same value, so an output named "
                    f"by ${{params.{name_param}}} holds the last one's rows only. Name outputs "
                    f"by the path (`{param}`), or watch one directory per sensor")
    numbers = {}
    for key, default, minimum, kind in (("settle_seconds", 10.0, 0, (int, float)),
                                        ("minimum_interval_seconds", 30, 1, (int,)),
                                        ("max_runs_per_tick", 20, 1, (int,))):
        value = body.get(key, default)
        if isinstance(value, bool) or not isinstance(value, kind) or \
                (isinstance(value, float) and not math.isfinite(value)) or value < minimum:
            out.error(body.line_of(key), f"{label}.{key} must be a number >= {minimum}, got "
                                         f"{value!r}")
            ok = False
        numbers[key] = value
    archive = body.get("archive_to")
    if archive is not None and (not isinstance(archive, str) or not archive.strip()):
        out.error(body.line_of("archive_to"), f"{label}.archive_to must be a directory path")
        ok = False
    elif isinstance(archive, str) and isinstance(watch, str) and \
            not _archive_outside_watch(body, watch.strip(), archive.strip(), label, out):
        ok = False
    conn = body.get("connection")
    if conn is not None and not (isinstance(conn, str) and CONNECTION_REF.match(conn)
                                 and conn.startswith("@filesystem.")):
        out.error(body.line_of("connection"), f"{label}.connection must be "
                                              "'@filesystem.<alias>'")
        ok = False
    running = _status(body, label, out)
    if not ok:
        return None
    return SensorSettings(watch.strip(), param, float(numbers["settle_seconds"]),
                          int(numbers["minimum_interval_seconds"]),
                          int(numbers["max_runs_per_tick"]), running, archive, conn,
                          name_param, body.line)


def _archive_outside_watch(body: LineDict, watch: str, archive: str, label: str,
                           out: Collector) -> bool:
    """An archive directory the glob still matches makes every archived file a new file: it
    would run again, forever; one that holds the watched directory hides every file from the
    sensor, so none ever runs. Decided here when both are relative (they share the sensor's base
    directory, whatever it is) or both absolute; a mixed pair depends on the base directory, so
    the sensor leaves its resolved archive directory out of the watch instead."""
    if not archive_in_watch(watch, archive):
        if not archive_holds_watch(watch, archive):
            return True
        out.error(body.line_of("archive_to"),
                  f"{label}.archive_to {archive!r} holds the directory the glob {watch!r} "
                  "watches: every file is under the archive, which the sensor never reads, so "
                  "no file would ever run. Archive to a directory beside the watched one "
                  "(e.g. 'processed/' next to 'incoming/')")
        return False
    out.error(body.line_of("archive_to"),
              f"{label}.archive_to {archive!r} is inside the watched glob {watch!r}: every "
              "archived file would match again and re-run forever. Archive to a directory "
              "the glob does not reach (e.g. next to the watched one, or a hidden '.done/'), "
              "or narrow 'watch'")
    return False


def _status(body: LineDict, label: str, out: Collector) -> bool:
    status = body.get("default_status", "stopped")
    if status not in ("running", "stopped"):
        out.error(body.line_of("default_status"),
                  f"{label}.default_status must be 'running' or 'stopped', got {status!r}")
    return status == "running"
