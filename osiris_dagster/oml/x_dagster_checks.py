"""Checks of the `x-dagster` block: group, owners, tags, run settings, and each step's
settings (description, owners, tags, timeout, retry, asset checks, schema mode, deps, column
descriptions);
schedules and sensors are checked in :mod:`osiris_dagster.oml.automation_checks`."""

from __future__ import annotations

import importlib
import re
from types import MappingProxyType
from typing import Any

from osiris_dagster.oml.automation_checks import entries, schedule_settings, sensor_settings
from osiris_dagster.oml.diagnostics import Collector
from osiris_dagster.oml.model import DagsterSettings, StepDagster, freeze
from osiris_dagster.oml.x_dagster_fields import owners, retry, tags, timeout, unknown_keys
from osiris_dagster.oml.yaml_lines import LineDict, to_plain

X_DAGSTER_KEYS = {"group", "owners", "tags", "steps", "schedule", "sensor", "timeout_seconds",
                  "retry", "partitions"}
X_DAGSTER_STEP_KEYS = {"description", "owners", "tags", "timeout_seconds", "retry", "checks",
                       "schema", "deps", "columns"}
CHECK_KEYS = {"not_null", "unique", "row_count", "accepted_values", "expression", "freshness",
              "blocking"}
_GROUP_OK = re.compile(r"^[A-Za-z0-9_]+$")


def check_x_dagster(doc: LineDict, step_ids: set[str], param_names: set[str],
                    out: Collector, writers: set[str] | None = None) -> DagsterSettings:
    writers = writers or set()
    block = doc.get("x-dagster")
    if block is None:
        return DagsterSettings()
    if not isinstance(block, LineDict):
        out.error(doc.line_of("x-dagster"), "'x-dagster' must be a mapping")
        return DagsterSettings()
    unknown_keys(block, X_DAGSTER_KEYS, "x-dagster", out)
    group = block.get("group")
    if group is not None and (not isinstance(group, str) or not _GROUP_OK.match(group)):
        out.error(block.line_of("group"), f"x-dagster.group {group!r} must use only letters, "
                                          "digits and '_'")
        group = None
    pipeline_owners = owners(block, "x-dagster.owners", out)
    pipeline_tags = tags(block, "x-dagster.tags", out)
    steps = _steps_settings(block, step_ids, writers, out)
    schedules = tuple(schedule_settings(b, param_names, out)
                      for b in entries(block, "schedule", out))
    sensors = tuple(sensor_settings(b, param_names, out) for b in entries(block, "sensor", out))
    return DagsterSettings(group, pipeline_owners, pipeline_tags, MappingProxyType(steps),
                           tuple(s for s in schedules if s), tuple(s for s in sensors if s),
                           timeout(block, "x-dagster", out), retry(block, "x-dagster", out))


def _steps_settings(block: LineDict, step_ids: set[str], writers: set[str], out: Collector
                    ) -> dict[str, StepDagster]:
    """`x-dagster.steps`: settings by step id, for steps the pipeline has."""
    steps: dict[str, StepDagster] = {}
    raw_steps = block.get("steps")
    if raw_steps is None:
        return steps
    if not isinstance(raw_steps, LineDict):
        out.error(block.line_of("steps"), "x-dagster.steps must map step ids to settings")
        return steps
    for sid, body in raw_steps.items():
        line = raw_steps.line_of(sid)
        if sid not in step_ids:
            out.error(line, f"x-dagster.steps names unknown step '{sid}'")
            continue
        if not isinstance(body, LineDict):
            known = ", ".join(sorted(X_DAGSTER_STEP_KEYS))
            out.error(line, f"settings must be a mapping ({known})", str(sid))
            continue
        steps[str(sid)] = _step_settings(sid, body, writers, out)
    return steps


def _step_settings(sid: Any, body: LineDict, writers: set[str], out: Collector) -> StepDagster:
    for key in body:
        if key not in X_DAGSTER_STEP_KEYS:
            out.error(body.line_of(key), f"unknown key 'x-dagster.steps.{sid}.{key}' (known: "
                                         f"{', '.join(sorted(X_DAGSTER_STEP_KEYS))})", sid)
    desc = body.get("description")
    if desc is not None and not isinstance(desc, str):
        out.error(body.line_of("description"), "description must be a string", sid)
        desc = None
    label = f"x-dagster.steps.{sid}"
    return StepDagster(
        desc, owners(body, "owners", out, sid), tags(body, "tags", out, sid),
        timeout(body, label, out, sid), retry(body, label, out, sid),
        _asset_checks(body, label, out, str(sid), writers),
        _schema_mode(body, label, out, str(sid)), _deps(body, label, out, str(sid)),
        _column_descriptions(body, label, out, str(sid), writers))


def _asset_checks(body: LineDict, label: str, out: Collector, step: str, writers: set[str]
                  ) -> MappingProxyType | None:
    raw = body.get("checks")
    if raw is None:
        return None
    line = body.line_of("checks")
    if not isinstance(raw, LineDict):
        out.error(line, f"{label}.checks must be a mapping of check kinds", step)
        return None
    if step in writers:
        out.error(line, f"{label}.checks: a writer produces no table to check; put the checks "
                        "on the step that feeds it", step)
        return None
    ok = True

    def bad(key: str, what: str) -> None:
        nonlocal ok
        ok = False
        out.error(raw.line_of(key), f"{label}.checks.{key} {what}", step)

    def strings(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v)

    for key, value in raw.items():
        if key not in CHECK_KEYS:
            bad(key, f"is not a check (known: {', '.join(sorted(CHECK_KEYS))})")
        elif key == "not_null" and not strings(value):
            bad(key, "must be a list of column names")
        elif key == "unique" and not (isinstance(value, list) and value and all(
                isinstance(v, str) or strings(v) for v in value)):
            bad(key, "must list columns (or lists of columns for composite keys)")
        elif key == "row_count" and not (isinstance(value, dict) and value and
                                         set(value) <= {"min", "max"} and
                                         all(isinstance(v, int) and not isinstance(v, bool)
                                             for v in value.values())):
            bad(key, "must be {min: N, max: N} with integers")
        elif key == "accepted_values" and not (isinstance(value, dict) and value and all(
                isinstance(v, list) and v for v in value.values())):
            bad(key, "must map column -> list of accepted values")
        elif key == "expression" and not (isinstance(value, str) and value.strip()
                                          or strings(value)):
            bad(key, "must be a SQL boolean expression (or a list of them)")
        elif key == "expression":
            for problem in _expression_problems([value] if isinstance(value, str) else value):
                bad(key, problem)
        elif key == "freshness" and not (
                isinstance(value, dict) and isinstance(value.get("column"), str) and
                isinstance(value.get("max_age_hours"), int | float) and
                not isinstance(value.get("max_age_hours"), bool) and
                set(value) <= {"column", "max_age_hours"}):
            bad(key, "must be {column: <timestamp column>, max_age_hours: N}")
        elif key == "blocking" and not isinstance(value, bool):
            bad(key, "must be true or false")
    return freeze(to_plain(raw)) if ok else None


def _schema_mode(body: LineDict, label: str, out: Collector, step: str) -> str | None:
    value = body.get("schema")
    if value is not None and value not in ("strict", "warn"):
        out.error(body.line_of("schema"), f"{label}.schema must be 'strict' or 'warn'", step)
        return None
    return value


def _deps(body: LineDict, label: str, out: Collector, step: str) -> tuple[str, ...]:
    value = body.get("deps")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() and
                                               "//" not in v for v in value):
        out.error(body.line_of("deps"), f"{label}.deps must be a list of asset keys such as "
                                        "'raw/orders'", step)
        return ()
    return tuple(v.strip().strip("/") for v in value)


def _column_descriptions(body: LineDict, label: str, out: Collector, step: str,
                         writers: set[str]) -> MappingProxyType:
    """`columns: {name: description}`: descriptions for the step table's column schema.

    Whether the table has those columns is only known when the step runs (the SQL decides);
    descriptions of columns it lacks are listed on the materialisation, not an error."""
    raw = body.get("columns")
    if raw is None:
        return MappingProxyType({})
    line = body.line_of("columns")
    if not isinstance(raw, LineDict):
        out.error(line, f"{label}.columns must map column names to descriptions", step)
        return MappingProxyType({})
    if step in writers:
        out.error(line, f"{label}.columns: a writer produces no table to describe; describe "
                        "the columns on the step that produces them", step)
        return MappingProxyType({})
    good: dict[str, str] = {}
    for name, description in raw.items():
        if isinstance(name, bool) or not isinstance(name, str | int) or not str(name).strip():
            out.error(raw.line_of(name), f"{label}.columns: {name!r} is not a column name; "
                                         "quote it", step)
        elif not isinstance(description, str):
            out.error(raw.line_of(name), f"{label}.columns.{name}: the description must be a "
                                         f"string, got {_yaml_kind(description)}", step)
        else:
            good[str(name)] = description.strip()
    return MappingProxyType(good)


def _yaml_kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


# The check of check expressions, named like a component spec's `query_check` (it lives with
# the SQL seal, a layer below is not imported from here)
EXPRESSION_CHECK = "osiris_dagster.drivers.duckdb.seal:expression_problems"


def _expression_problems(expressions: list[str]) -> list[str]:
    """What the run would refuse in check expressions: each is one condition on the step's own
    columns (DuckDB's parser decides, :data:`EXPRESSION_CHECK`). One still holding a parameter
    is judged at run time, once its value is in."""
    plain = [e for e in expressions if "${params." not in e]
    if not plain:
        return []
    module, _, name = EXPRESSION_CHECK.partition(":")
    return [p for p in getattr(importlib.import_module(module), name)(plain) if p]

