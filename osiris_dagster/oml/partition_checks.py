"""`x-dagster.partitions`: read before the parameters are resolved, because a run's partition
fills the `partition_*` parameters; and the rule that schedules need time partitions."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, timedelta

from osiris_dagster.oml.diagnostics import Collector
from osiris_dagster.oml.model import (
    TIME_PARTITION_KINDS,
    TIME_PARTITION_PARAMS,
    DagsterSettings,
    PartitionSettings,
)
from osiris_dagster.oml.params import ParamSpec, coerce
from osiris_dagster.oml.x_dagster_fields import valid_timezone
from osiris_dagster.oml.yaml_lines import LineDict, LineList


def partition_settings(doc: LineDict, out: Collector) -> PartitionSettings | None:
    block = doc.get("x-dagster")
    raw = block.get("partitions") if isinstance(block, LineDict) else None
    if raw is None:
        return None
    line = block.line_of("partitions")
    kinds = (*TIME_PARTITION_KINDS, "static", "dynamic")
    if not isinstance(raw, LineDict) or len(raw) != 1 or next(iter(raw)) not in kinds:
        out.error(line, "x-dagster.partitions must be one of {daily: {start: 'YYYY-MM-DD'}} "
                        "(or hourly/weekly/monthly), {static: [keys]}, {dynamic: <name>}")
        return None
    kind, body = next(iter(raw.items()))
    line = raw.line_of(kind)
    label = f"x-dagster.partitions.{kind}"
    if kind == "static":
        if not isinstance(body, list) or not body or not all(
                isinstance(k, str | int) and str(k).strip() for k in body):
            out.error(line, f"{label} must be a non-empty list of partition keys")
            return None
        keys = tuple(str(k) for k in body)
        if len(set(keys)) != len(keys):
            out.error(line, f"{label} has duplicate keys")
            return None
        if not _static_keys_ok(body, keys, label, line, out):
            return None
        return PartitionSettings("static", keys=keys)
    if kind == "dynamic":
        if not isinstance(body, str) or not re.fullmatch(r"[A-Za-z0-9_]+", body):
            out.error(line, f"{label} must name the dynamic partitions, e.g. 'files'")
            return None
        return PartitionSettings("dynamic", name=body)
    if not isinstance(body, LineDict) or not set(body) <= {"start", "end", "timezone"}:
        out.error(line, f"{label} must be {{start: 'YYYY-MM-DD', end: ..., timezone: ...}}")
        return None
    start, end, tz = body.get("start"), body.get("end"), body.get("timezone")
    bounds: dict[str, str | None] = {"end": None}
    for key, value in (("start", start), ("end", end)):
        if value is None and key == "end":
            continue
        bounds[key] = _time_bound(kind, value)
        if bounds[key] is None:
            out.error(body.line_of(key), f"{label}.{key} must be {_BOUND_FORMS[kind == 'hourly']}"
                                         f", got {value!r}")
            return None
    if tz is not None and not valid_timezone(tz):
        out.error(body.line_of("timezone"), f"{label}.timezone {tz!r} is not an IANA time zone")
        return None
    if not _bounds_ok(kind, bounds, body, label, out):
        return None
    return PartitionSettings(kind, bounds["start"], bounds["end"], tz)


# Dagster's INVALID_PARTITION_SUBSTRINGS (dagster/_core/definitions/partitions/utils/base.py),
# restated so that `validate` needs no Dagster import; a test keeps them equal. "..." is
# Dagster's partition range separator in the UI; the rest do not display.
INVALID_PARTITION_SUBSTRINGS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")


def _static_keys_ok(body: object, keys: tuple[str, ...], label: str, line: int,
                    out: Collector) -> bool:
    """Keys Dagster refuses are errors (the file would load as `osiris_invalid/...`); a key
    that is a path (`..`, `a/b`) is a warning: `${params.partition_key}` in a path puts that
    partition's output outside the directory meant, or in a subdirectory."""
    lines = body.item_lines if isinstance(body, LineList) else []
    ok = True
    for i, key in enumerate(keys):
        at = lines[i] if i < len(lines) else line
        bad = [s for s in INVALID_PARTITION_SUBSTRINGS if s in key]
        if bad:
            out.error(at, f"{label}: key {key!r} holds {', '.join(map(repr, bad))}, which "
                          "Dagster refuses in a partition key ('...' is its range separator, "
                          "the others control characters)")
            ok = False
        elif key in (".", "..") or "/" in key or "\\" in key:
            out.warning(at, f"{label}: key {key!r} is a path: `${{params.partition_key}}` in a "
                            "file path (out/${params.partition_key}.csv) then writes "
                            + ("outside the directory meant" if ".." in key.replace("\\", "/")
                               .split("/") else "into another directory")
                            + "; use letters, digits, '-' and '_'")
    return ok


def _bounds_ok(kind: str, bounds: dict[str, str | None], body: LineDict, label: str,
               out: Collector) -> bool:
    """`start` and `end` on a partition boundary (a week starts on Sunday, a month on its 1st),
    else Dagster moves them to the next one and the days between are in no partition; and
    `end` (exclusive: the last partition ends there) after `start`."""
    ok = True
    for key in ("start", "end"):
        value = bounds.get(key)
        near = _nearest_boundaries(kind, value) if value else None
        if near:
            before, after = near
            cut = (f"the partitions would start at {after}, and the days from {value} on would "
                   "be in none" if key == "start" else
                   f"the last partition would end at {before}, and the days from {before} on "
                   "would be in none")
            out.error(body.line_of(key), f"{label}.{key} {value} is not the start of a "
                                         f"{_UNIT[kind]} ({_UNIT_RULE[kind]}): {cut}; use "
                                         f"{before} or {after}")
            ok = False
    start, end = bounds.get("start"), bounds.get("end")
    if ok and start and end and end <= start:
        out.error(body.line_of("end"), f"{label}.end {end} must be after start {start}: `end` "
                                       "is exclusive (the last partition ends there), so there "
                                       "would be no partition")
        ok = False
    return ok


_UNIT = {"weekly": "week", "monthly": "month"}
_UNIT_RULE = {"weekly": "weeks run Sunday to Sunday", "monthly": "months start on the 1st"}


def _nearest_boundaries(kind: str, value: str) -> tuple[str, str] | None:
    """For a weekly or monthly bound off its boundary, the boundaries before and after it."""
    if kind not in _UNIT:
        return None  # (hours and days: every value _time_bound takes is one)
    day = date.fromisoformat(value)
    if kind == "weekly":
        back = (day.weekday() + 1) % 7  # days since Sunday
        return None if back == 0 else (str(day - timedelta(days=back)),
                                       str(day + timedelta(days=7 - back)))
    if day.day == 1:
        return None
    nxt = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return str(day.replace(day=1)), str(nxt)


_BOUND = re.compile(r"(\d{4}-\d{2}-\d{2})(?:[ T-](\d{2}):(\d{2})(?::(\d{2}))?)?")
_BOUND_FORMS = ("a date YYYY-MM-DD",
                "a date YYYY-MM-DD or an hour YYYY-MM-DD HH:00 (or YYYY-MM-DDTHH:00, "
                "YYYY-MM-DD-HH:00)")


def _time_bound(kind: str, value: object) -> str | None:
    """A time partition's `start`/`end` in the form Dagster's definition parses (hourly:
    ``YYYY-MM-DD-HH:MM``, else ``YYYY-MM-DD``); None for what is not a day (or, hourly, an hour)
    in one of the forms the README gives. A time of day is only allowed at midnight, or on the
    hour for hourly partitions: it is never cut off silently."""
    text = str(value) if isinstance(value, date) else value  # unquoted YAML: date, datetime
    found = _BOUND.fullmatch(text.strip()) if isinstance(text, str) else None
    if found is None:
        return None
    try:
        day = date.fromisoformat(found[1])
    except ValueError:
        return None
    hour, minute, second = (int(g or 0) for g in found.groups()[1:])
    if hour > 23 or minute or second or (hour and kind != "hourly"):
        return None
    return f"{day.isoformat()}-{hour:02d}:00" if kind == "hourly" else day.isoformat()


def declare_partition_params(specs: dict[str, ParamSpec],
                             partitions: PartitionSettings | None, declared: bool = False
                             ) -> None:
    """The `partition_*` parameters a pipeline does not declare itself: implicit, the run's
    partition fills them. ``declared``: the pipeline has an `x-dagster.partitions` that is not
    valid (its own error says why): its references are not also reported as unresolved."""
    defaults = _partition_param_defaults(partitions) if partitions is not None or not declared \
        else dict.fromkeys(TIME_PARTITION_PARAMS, "")
    for name, default in defaults.items():
        if name not in specs:  # implicit: the run's partition fills them
            specs[name] = ParamSpec(name, default, True, f"The run's {name.replace('_', ' ')}.",
                                    str, False, 0)


def with_partitions(dagster: DagsterSettings, partitions: PartitionSettings,
                    x_dagster: LineDict, out: Collector) -> DagsterSettings:
    """The settings with their partitions; static or dynamic partitions refuse a schedule, and
    any but dynamic ones a sensor (its runs have no partition key: every one would fail)."""
    dagster = replace(dagster, partitions=partitions)
    if partitions.kind in ("static", "dynamic") and dagster.schedules:
        out.error(x_dagster.line_of("schedule"),
                  f"x-dagster.schedule needs time partitions (hourly, daily, weekly, "
                  f"monthly) or none; these partitions are {partitions.kind}")
    elif len(dagster.schedules) > 1:
        out.error(x_dagster.line_of("schedule"),
                  f"x-dagster.schedule: {len(dagster.schedules)} schedules over time "
                  "partitions would each run every partition (an append writer would write "
                  "its rows once per schedule); give one schedule, whose cron may tick as "
                  "often as needed (e.g. '0 6,18 * * *')")
    if partitions.kind != "dynamic" and dagster.sensors:
        out.error(x_dagster.line_of("sensor"),
                  f"x-dagster.sensor needs partitions {{dynamic: <name>}} (one per file) or "
                  f"none; these partitions are {partitions.kind}, and a run the sensor starts "
                  "for a file has no partition of them, so each would fail. Remove "
                  "`partitions`, or use {dynamic: files}")
    elif len({(s.param, s.name_param) for s in dagster.sensors}) > 1:
        out.error(x_dagster.line_of("sensor"),
                  "x-dagster.sensor: the sensors feeding dynamic partitions must set the same "
                  "`param` (and `name_param`): a partition's own run (a backfill, a "
                  "re-materialisation) sets them from its key, the file's path")
    _schedules_leave_partition_params(x_dagster, partitions, out)
    return dagster


def _schedules_leave_partition_params(x_dagster: LineDict, partitions: PartitionSettings,
                                      out: Collector) -> None:
    """A schedule's `params` never set what the run's partition sets: the partition would
    win, silently."""
    raw = x_dagster.get("schedule")
    for sched in raw if isinstance(raw, list) else [raw]:
        params = sched.get("params") if isinstance(sched, LineDict) else None
        for name in params if isinstance(params, LineDict) else ():
            if name in _partition_param_defaults(partitions):
                out.error(params.line_of(name),
                          f"x-dagster.schedule.params sets '{name}', which each run's "
                          f"partition sets (the {partitions.kind} partition the tick runs): "
                          "remove it")


def _partition_param_defaults(p: PartitionSettings | None) -> dict[str, str]:
    """Values `${params.partition_*}` take while validating (a run uses its own partition)."""
    if p is None:
        return {}
    if p.is_time:
        return dict.fromkeys(p.param_names, p.start or "")
    return {"partition_key": p.keys[0] if p.keys else "__partition_key__"}


def check_static_keys_fit(partitions: PartitionSettings, specs: dict[str, ParamSpec],
                          x_dagster: LineDict, out: Collector) -> None:
    """Each static key becomes the text of `partition_key` in its runs: a declared integer or
    number `partition_key` must take every key exactly (a month key '05' read as 5 fails each
    of its runs), so such a key fails validation at the partitions."""
    spec = specs.get("partition_key")
    if partitions.kind != "static" or spec is None or spec.type in (None, str):
        return
    for key in partitions.keys:
        try:
            coerce(spec, key, f"static partition key {key!r}")
        except ValueError as exc:
            out.error(x_dagster.line_of("partitions"),
                      f"{exc}; a partition key is text: declare `partition_key` with "
                      "`type: string` to keep it as written")
            return

