"""Load and validate an OML v0.1.0 pipeline, reporting every problem with its line."""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from osiris_dagster.core.masking import is_secret_key
from osiris_dagster.core.naming import (
    assets_read_by_query,
    query_visible_names,
    upstream_view_names,
)
from osiris_dagster.oml.cron import cron_problem, cron_warning
from osiris_dagster.oml.diagnostics import Collector, Diagnostic
from osiris_dagster.oml.model import (
    TIME_PARTITION_KINDS,
    DagsterSettings,
    PartitionSettings,
    Pipeline,
    RetrySettings,
    ScheduleSettings,
    SensorSettings,
    Step,
    StepDagster,
    freeze,
)
from osiris_dagster.oml.params import declared_params, effective_values, substitute
from osiris_dagster.oml.specs import OML_MODES, ComponentSpec, Prop, get_spec
from osiris_dagster.oml.watch_globs import archive_in_watch
from osiris_dagster.oml.yaml_lines import LineDict, LineList, load_yaml_with_lines, to_plain

KNOWN_TOP = {"oml_version", "name", "steps", "description", "metadata", "params", "profiles"}
FORBIDDEN_TOP = {"version", "connectors", "tasks", "outputs"}
KNOWN_STEP = {"id", "component", "mode", "needs", "config"}
IGNORED_STEP = {"inputs", "outputs", "retry", "timeout", "when", "branch", "fan_out", "fan_in",
                "hints", "labels", "description"}
X_DAGSTER_KEYS = {"group", "owners", "tags", "steps", "schedule", "sensor", "timeout_seconds",
                  "retry", "partitions"}
RETRY_KEYS = {"max_retries", "delay_seconds", "backoff", "jitter"}
SCHEDULE_KEYS = {"cron", "timezone", "params", "default_status"}
SENSOR_KEYS = {"watch", "param", "settle_seconds", "minimum_interval_seconds",
               "max_runs_per_tick", "default_status", "archive_to", "connection",
               "name_param"}
X_DAGSTER_STEP_KEYS = {"description", "owners", "tags", "timeout_seconds", "retry", "checks",
                       "schema", "deps"}
CHECK_KEYS = {"not_null", "unique", "row_count", "accepted_values", "expression", "freshness",
              "blocking"}
CONNECTION_REF = re.compile(r"^@([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$")
_NAME_OK = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_GROUP_OK = re.compile(r"^[A-Za-z0-9_]+$")
_TAG_KEY_OK = re.compile(r"^([A-Za-z0-9_.-]{1,63}/)?[A-Za-z0-9_.-]{1,63}$")
_TAG_VALUE_OK = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")
_OWNER_OK = re.compile(r"^(team:[A-Za-z0-9_-]+|[^@\s]+@[^@\s]+\.[^@\s]+)$")


@dataclass
class ValidationResult:
    path: Path
    diagnostics: list[Diagnostic]
    pipeline: Pipeline | None

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


def validate_pipeline(
    path: str | os.PathLike[str],
    *,
    params: Mapping[str, Any] | None = None,
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
    text: str | None = None,
) -> ValidationResult:
    """Parse and check a pipeline; never raises for bad input (problems are diagnostics)."""
    p = Path(path)
    out = Collector(str(path))
    if text is None:
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            out.error(0, "file not found")
            return ValidationResult(p, out.items, None)
        except (OSError, UnicodeDecodeError) as exc:
            out.error(0, f"cannot read file: {exc}")
            return ValidationResult(p, out.items, None)
    try:
        doc = load_yaml_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        out.error(mark.line + 1 if mark else 0, f"invalid YAML: {problem}")
        return ValidationResult(p, out.items, None)
    except RecursionError:
        out.error(0, "invalid YAML: nested too deeply")
        return ValidationResult(p, out.items, None)
    if not isinstance(doc, LineDict):
        out.error(1, "a pipeline must be a YAML mapping with oml_version, name and steps")
        return ValidationResult(p, out.items, None)

    pipeline = _check_document(p, doc, out, params, profile,
                               os.environ if env is None else env)
    return ValidationResult(p, out.items, pipeline if not out.errors else None)


# ---------------------------------------------------------------------------------------------
def _check_document(path: Path, doc: LineDict, out: Collector, explicit: Mapping[str, Any] | None,
                    profile: str | None, env: Mapping[str, str]) -> Pipeline | None:
    _duplicates(doc, out)
    _check_inline_secrets(doc, out)

    specs = declared_params(doc, out)
    partitions = _partitions(doc, out)
    for name, default in _partition_param_defaults(partitions).items():
        if name not in specs:  # implicit: the run's partition fills them
            from osiris_dagster.oml.params import ParamSpec

            specs[name] = ParamSpec(name, default, True, f"The run's {name.replace('_', ' ')}.",
                                    str, False, 0)
    values, active = effective_values(specs, doc, profile, explicit, env, out)
    for name in (explicit or {}):
        if name not in specs:
            out.warning(0, f"parameter '{name}' was given but is not declared under 'params'")

    version = doc.get("oml_version")
    if "oml_version" not in doc:
        out.error(doc.line, "missing required key 'oml_version' (use \"0.1.0\")")
    elif not isinstance(version, str):
        out.error(doc.line_of("oml_version"),
                  "'oml_version' must be a string: quote it, oml_version: \"0.1.0\"")
    elif not version.startswith("0."):
        out.error(doc.line_of("oml_version"), f"unsupported oml_version '{version}' (use 0.1.0)")
    elif version != "0.1.0":
        out.warning(doc.line_of("oml_version"), f"oml_version '{version}' is not 0.1.0")

    name = doc.get("name")
    if "name" not in doc:
        out.error(doc.line, "missing required key 'name'")
    elif not isinstance(name, str) or not name.strip():
        out.error(doc.line_of("name"), "'name' must be a non-empty string")
    elif not _NAME_OK.match(name):
        out.warning(doc.line_of("name"),
                    f"name '{name}' should be lower-case kebab-case (e.g. my-pipeline)")

    for key in doc:
        if key in FORBIDDEN_TOP:
            out.error(doc.line_of(key), f"legacy key '{key}' is not allowed in OML v0.1.0; "
                                        "describe the pipeline as 'steps'")
        elif key not in KNOWN_TOP and not (isinstance(key, str) and key.startswith("x-")):
            if key == "schedule":
                out.warning(doc.line_of(key), "'schedule' is ignored; schedules belong in "
                                              "'x-dagster'")
            else:
                out.warning(doc.line_of(key), f"unknown top-level key '{key}' is ignored")

    resolved_doc = LineDict()
    resolved_doc.line, resolved_doc.key_lines = doc.line, doc.key_lines
    for key, value in doc.items():
        if key in ("params", "profiles"):
            resolved_doc[key] = value
        elif key == "steps" and isinstance(value, LineList):
            steps_list = LineList(
                substitute(item, values, out, _step_label(item), value.line_of(i),
                           _step_query_language(item))
                for i, item in enumerate(value))
            steps_list.line, steps_list.item_lines = value.line, value.item_lines
            resolved_doc[key] = steps_list
        else:
            resolved_doc[key] = substitute(value, values, out, None, doc.line_of(key),
                                           _x_dagster_query_language if key == "x-dagster"
                                           else None)

    steps_raw = resolved_doc.get("steps")
    steps: list[Step] = []
    if "steps" not in doc:
        out.error(doc.line, "missing required key 'steps'")
    elif not isinstance(steps_raw, LineList) or not steps_raw:
        out.error(doc.line_of("steps"), "'steps' must be a non-empty list")
    else:
        steps = _check_steps(steps_raw, out, _declared_deps(resolved_doc))

    declared_ids = {_step_label(item) for item in steps_raw or []} - {None} \
        if isinstance(steps_raw, list) else set()
    writers = {s.id for s in steps if (sp := get_spec(s.component)) and not sp.produces_table}
    dagster = _check_x_dagster(resolved_doc, declared_ids, set(specs), out, writers)
    if partitions is not None:
        from dataclasses import replace

        dagster = replace(dagster, partitions=partitions)
        if partitions.kind in ("static", "dynamic") and dagster.schedules:
            out.error(resolved_doc["x-dagster"].line_of("schedule"),
                      f"x-dagster.schedule needs time partitions (hourly, daily, weekly, "
                      f"monthly) or none; these partitions are {partitions.kind}")

    if out.errors or not isinstance(name, str):
        return None
    plain = to_plain(resolved_doc)
    plain.pop("profiles", None)
    plain["params"] = dict(values)
    return Pipeline(
        path=path.resolve(),
        name=name,
        oml_version=str(version),
        description=doc.get("description") if isinstance(doc.get("description"), str) else None,
        steps=tuple(steps),
        params=freeze(dict(values)),
        profile=active,
        dagster=dagster,
        resolved=freeze(plain),
        warnings=tuple(out.warnings),
    )


def _step_query_language(item: Any) -> Callable[[tuple[Any, ...]], str | None] | None:
    """Where a step's config holds query text (spec `language`), params become quoted values."""
    component = item.get("component") if isinstance(item, dict) else None
    spec = get_spec(component) if isinstance(component, str) else None
    if spec is None:
        return None
    languages = {k: p.language for k, p in spec.properties.items() if p.language}

    def language_at(path: tuple[Any, ...]) -> str | None:
        return languages.get(path[1]) if len(path) == 2 and path[0] == "config" else None

    return language_at if languages else None


def _x_dagster_query_language(path: tuple[Any, ...]) -> str | None:
    """`x-dagster.steps.<id>.checks.expression` (a string or a list) is DuckDB SQL."""
    return "duckdb" if path[:1] == ("steps",) and path[2:4] == ("checks", "expression") else None


def _step_label(item: Any) -> str | None:
    sid = item.get("id") if isinstance(item, dict) else None
    return sid if isinstance(sid, str) and sid.strip() else None


def _duplicates(obj: Any, out: Collector) -> None:
    """Keys written twice in one mapping (a key a merge key `<<` brings in may be overridden:
    that is no duplicate), and keys several merged maps give without an own value."""
    if isinstance(obj, LineDict):
        for key, line in obj.duplicates:
            out.error(line, f"duplicate key '{key}' (the earlier value would be lost)")
        for key, line in obj.merge_conflicts:
            out.warning(line, f"key '{key}' comes from more than one merged map: the first "
                              "map listed wins (YAML merge rules), but PyYAML-based tools such "
                              "as Osiris may take a later one; set the key here to be sure")
        for v in obj.values():
            _duplicates(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _duplicates(v, out)


def _check_inline_secrets(doc: LineDict, out: Collector) -> None:
    """A secret-named key with a literal value: secrets belong in osiris_connections.yaml."""

    def walk(obj: Any, where: str, step: str | None) -> None:
        if isinstance(obj, LineDict):
            for key, value in obj.items():
                k = str(key)
                if _is_secret_name(k) and _is_literal(value):
                    out.error(obj.line_of(key),
                              f"inline secret in '{where}{k}': do not put credentials in the "
                              "pipeline; put them in osiris_connections.yaml (with ${ENV_VAR} "
                              "references) and use config.connection: '@family.alias'", step)
                else:
                    walk(value, f"{where}{k}.", step)
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                step_id = step
                if where == "steps." and isinstance(v, dict) and isinstance(v.get("id"), str):
                    step_id = v["id"]
                walk(v, f"{where}{i}." if where != "steps." else "", step_id)

    for key, value in doc.items():
        if isinstance(key, str) and key.startswith("x-"):
            continue
        if key == "params" and isinstance(value, LineDict):
            for name, body in value.items():
                default = body.get("default") if isinstance(body, dict) else body
                if _is_secret_name(str(name)) and _is_literal(default):
                    out.error(value.line_of(name),
                              f"inline secret in parameter '{name}': a secret's value must not "
                              "be in the pipeline; put it in osiris_connections.yaml (with "
                              "${ENV_VAR} references) and use config.connection: '@family.alias'")
            continue
        if key == "profiles":
            continue
        walk(value, f"{key}.", None)


def _is_secret_name(key: str) -> bool:
    """The masker's own test (one list of secret names for masking and validation): a key whose
    value would be masked in every output must not hold a literal in the pipeline file.
    Configuration that only looks secret-ish (primary_key, upsert_keys, url) is NOT_SECRET there.
    HTTP header names are judged like field names (``X-Api-Key`` -> ``x_api_key``)."""
    return is_secret_key(key.replace("-", "_"))


def _is_literal(value: Any) -> bool:
    """A hard-coded value (not a ${...} reference); numbers count: 123456 is a password too."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int | float):
        return True
    return isinstance(value, str) and bool(value.strip()) and "${" not in value


def _check_steps(steps_raw: LineList, out: Collector,
                 deps: Mapping[str, Sequence[str]] | None = None) -> list[Step]:
    ids: dict[str, int] = {}
    entries: list[tuple[int, LineDict, str | None]] = []
    for index, raw in enumerate(steps_raw):
        line = steps_raw.line_of(index)
        if not isinstance(raw, LineDict):
            out.error(line, f"steps[{index}] must be a mapping with id, component, mode, config")
            continue
        sid = raw.get("id")
        if "id" not in raw:
            out.error(raw.line, f"steps[{index}] is missing required key 'id'")
            sid = None
        elif not isinstance(sid, str) or not sid.strip():
            out.error(raw.line_of("id"), f"steps[{index}].id must be a non-empty string")
            sid = None
        elif sid in ids:
            out.error(raw.line_of("id"), f"duplicate step id (first defined on line {ids[sid]})",
                      sid)
        else:
            ids[sid] = raw.line_of("id")
        entries.append((index, raw, sid))

    steps: list[Step] = []
    graph: dict[str, tuple[tuple[str, ...], int]] = {}
    previous: str | None = None
    for index, raw, sid in entries:
        duplicate = sid is not None and ids.get(sid) != raw.line_of("id")
        step, needs = _check_step(index, raw, sid, previous, ids, out)
        if step is not None and not duplicate:
            steps.append(step)
        if sid is not None and needs is not None and not duplicate:
            graph[sid] = (tuple(n for n in needs if n in ids and n != sid), raw.line)
        previous = sid if sid is not None else previous
    _check_cycles(graph, out)
    raws = {sid: raw for _i, raw, sid in entries if sid is not None}
    _check_writer_inputs(steps, raws, out)
    _check_queries(steps, raws, out, deps or {})
    return steps if len(steps) == len(entries) else []


def _check_writer_inputs(steps: list[Step], raws: Mapping[str, LineDict],
                         out: Collector) -> None:
    """A writer writes the rows of an upstream step; without an upstream that produces a
    table it could only fail at run time. (A step without `needs` depends on the previous
    step, as Osiris compiles it; `needs: []` means none; the first step has none.)"""
    by_id = {s.id: s for s in steps}
    for step in steps:
        spec = get_spec(step.component)
        if spec is None or spec.produces_table or any(n not in by_id for n in step.needs):
            continue  # not a writer, or an upstream already reported as invalid
        if any((up := get_spec(by_id[n].component)) and up.produces_table for n in step.needs):
            continue
        raw = raws.get(step.id)
        line = raw.line_of("needs") if raw is not None and not step.implicit_needs else step.line
        if step.needs:
            names = ", ".join(f"'{n}'" for n in step.needs)
            previous = ", the previous step" if step.implicit_needs else ""
            why = (f"its upstream {names} (a writer{previous}) produces no table"
                   if len(step.needs) == 1 else
                   f"its upstreams {names} (writers) produce no table")
        elif step.implicit_needs:
            why = "it is the first step, so it has no upstream"
        else:
            why = "it has `needs: []`, so it has no upstream"
        out.error(line, f"a writer writes the rows of an upstream step, but {why}: list the "
                        "step whose rows it writes in `needs` (a step without `needs` depends "
                        "on the previous step)", step.id)


def _check_queries(steps: list[Step], raws: Mapping[str, LineDict], out: Collector,
                   deps: Mapping[str, Sequence[str]]) -> None:
    """A component's own check of its queries (spec `query_check`), e.g. that a
    duckdb.processor query is one SELECT over its upstream views: refused at `validate`, not at
    run time. Each check gets all of its component's queries at once."""
    by_id = {s.id: s for s in steps}
    batches: dict[str, list[tuple[Step, str, list[str]]]] = {}
    for step in steps:
        spec = get_spec(step.component)
        query = step.config.get("query")
        if spec is None or not spec.query_check or not isinstance(query, str) or \
                any(n not in by_id for n in step.needs):
            continue
        tables = [n for n in step.needs
                  if (up := get_spec(by_id[n].component)) and up.produces_table]
        views = list(upstream_view_names(tables).values())
        views += assets_read_by_query(query, views, deps.get(step.id, ())).values()
        visible = query_visible_names(views)
        batches.setdefault(spec.query_check, []).append((step, query, visible))
    for check, items in batches.items():
        module, _, name = check.partition(":")
        found = getattr(importlib.import_module(module), name)([(q, v) for _, q, v in items])
        for (step, _query, _visible), problem in zip(items, found, strict=True):
            if problem:
                config = raws[step.id].get("config") if step.id in raws else None
                line = config.line_of("query") if isinstance(config, LineDict) else step.line
                out.error(line, problem, step.id)


def _check_step(index: int, raw: LineDict, sid: str | None, previous: str | None,
                ids: Mapping[str, int], out: Collector
                ) -> tuple[Step | None, tuple[str, ...] | None]:
    """The step if valid, and its needs if they could be read (for the cycle check)."""
    label = sid
    ok = sid is not None
    for key in raw:
        if key in KNOWN_STEP or (isinstance(key, str) and key.startswith("x-")):
            continue
        if key in IGNORED_STEP:
            out.warning(raw.line_of(key), f"step key '{key}' has no effect in OML v0.1.0 and is "
                                          "ignored", label)
        else:
            out.warning(raw.line_of(key), f"unknown step key '{key}' is ignored", label)

    component = raw.get("component")
    spec: ComponentSpec | None = None
    if "component" not in raw:
        out.error(raw.line, "missing required key 'component'", label)
        ok = False
    elif not isinstance(component, str):
        out.error(raw.line_of("component"), "'component' must be a string", label)
        ok = False
    else:
        spec = get_spec(component)
        if spec is None:
            from osiris_dagster.oml.specs import SPECS

            out.error(raw.line_of("component"), f"unknown component '{component}' (known: "
                                                f"{', '.join(sorted(SPECS))})", label)
            ok = False

    mode = raw.get("mode")
    if "mode" not in raw:
        out.error(raw.line, "missing required key 'mode' (read, transform or write)", label)
        ok = False
    elif mode not in OML_MODES:
        out.error(raw.line_of("mode"), f"mode '{mode}' is not one of read, transform, write",
                  label)
        ok = False
    elif spec is not None and OML_MODES[mode] not in spec.modes:
        allowed = ", ".join(m for m, c in OML_MODES.items() if c in spec.modes)
        out.error(raw.line_of("mode"), f"mode '{mode}' is not allowed for component "
                                       f"'{spec.name}' (allowed: {allowed})", label)
        ok = False

    needs: tuple[str, ...] = ()
    needs_ok = True
    implicit = "needs" not in raw
    if implicit:
        needs = (previous,) if previous is not None and index > 0 else ()
    else:
        raw_needs = raw.get("needs")
        if raw_needs is None:
            raw_needs = LineList()
        if not isinstance(raw_needs, list) or not all(isinstance(n, str) for n in raw_needs):
            out.error(raw.line_of("needs"), "'needs' must be a list of step ids", label)
            ok = needs_ok = False
        else:
            seen: set[str] = set()
            for i, n in enumerate(raw_needs):
                nline = raw_needs.line_of(i) if isinstance(raw_needs, LineList) else \
                    raw.line_of("needs")
                if n == sid:
                    out.error(nline, "a step cannot depend on itself", label)
                    ok = False
                elif n not in ids:
                    out.error(nline, f"needs unknown step '{n}' (steps: {', '.join(ids)})", label)
                    ok = False
                elif n in seen:
                    out.warning(nline, f"'{n}' is listed twice in needs", label)
                seen.add(n)
            needs = tuple(dict.fromkeys(raw_needs))

    config = raw.get("config", LineDict())
    if config is None:
        config = LineDict()
    if not isinstance(config, dict):
        out.error(raw.line_of("config"), "'config' must be a mapping", label)
        ok = False
    elif spec is not None:
        _check_config(spec, config, raw, label, out)

    usable_needs = needs if needs_ok else None
    if not ok or spec is None or sid is None:
        return None, usable_needs
    return Step(id=sid, component=spec.name, mode=str(mode), needs=needs,
                implicit_needs=implicit, config=freeze(to_plain(config)), line=raw.line), \
        usable_needs


def _check_config(spec: ComponentSpec, config: dict, raw: LineDict, step: str | None,
                  out: Collector) -> None:
    line_of = config.line_of if isinstance(config, LineDict) else (lambda _k: raw.line)
    ref = config.get("connection")
    has_ref = False
    if "connection" in config:
        m = CONNECTION_REF.match(ref) if isinstance(ref, str) else None
        if not m:
            out.error(line_of("connection"), f"connection must look like '@family.alias', got "
                                             f"{ref!r}", step)
        elif m.group(1) != spec.family:
            out.error(line_of("connection"), f"connection '{ref}' is of family '{m.group(1)}' "
                                             f"but component '{spec.name}' needs "
                                             f"'@{spec.family}.<alias>'", step)
        else:
            has_ref = True

    for key, value in config.items():
        if key == "connection":
            continue
        prop = spec.properties.get(key)
        if prop is None:
            known = ", ".join(sorted(spec.properties))
            out.error(line_of(key), f"unknown config key '{key}' for {spec.name} "
                                    f"(known keys: {known})", step)
            continue
        problem = _type_problem(prop, value)
        if problem:
            out.error(line_of(key), f"config '{key}' {problem}", step)
        if has_ref and key in spec.connection_fields:
            policy = spec.connection_fields[key]
            if policy == "forbidden":
                out.error(line_of(key), f"'{key}' comes from the connection '{ref}' and must not "
                                        "be set in the step", step)
            elif policy == "warning":
                out.warning(line_of(key), f"'{key}' overrides the value from connection "
                                          f"'{ref}'", step)

    # With a connection reference (or for components whose credentials always come from a
    # connection, resolved to the family's default alias), connection fields are not required.
    exempt = set(spec.connection_fields) if (has_ref or spec.secrets) else set()
    for key in spec.required:
        if key not in config and key not in exempt:
            out.error(line_of("connection") if "connection" in config else raw.line_of("config"),
                      f"missing required config key '{key}' for {spec.name}", step)

    _check_write_keys(spec, config, line_of, raw, step, out)
    if spec.name == "mysql.extractor" and "query" not in config and "table" not in config:
        out.error(raw.line_of("config"), "mysql.extractor needs 'query' or 'table'", step)


def _check_write_keys(spec: ComponentSpec, config: dict, line_of: Any, raw: LineDict,
                      step: str | None, out: Collector) -> None:
    if spec.name == "supabase.writer":
        mode = config.get("write_mode", config.get("mode"))
        if mode in ("replace", "upsert") and not config.get("primary_key"):
            out.error(line_of("write_mode" if "write_mode" in config else "mode"),
                      f"write_mode '{mode}' needs 'primary_key' (the column(s) that identify a "
                      "row)", step)
    elif spec.name == "mysql.writer" and config.get("mode") == "upsert" and \
            not config.get("upsert_keys"):
        out.error(line_of("mode"), "mode 'upsert' needs 'upsert_keys'", step)


def _type_problem(prop: Prop, value: Any) -> str | None:
    if isinstance(value, str) and "${" in value:
        return None  # resolved later (environment references)
    types = prop.type if isinstance(prop.type, tuple) else (prop.type,)
    if not any(_is_type(value, t) for t in types):
        return f"must be {' or '.join(types)}, got {type(value).__name__} {value!r}"
    if prop.enum is not None and value not in prop.enum:
        return f"must be one of {', '.join(map(str, prop.enum))}, got {value!r}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if prop.minimum is not None and value < prop.minimum:
            return f"must be >= {prop.minimum:g}, got {value}"
        if prop.maximum is not None and value > prop.maximum:
            return f"must be <= {prop.maximum:g}, got {value}"
    if isinstance(value, str):
        if prop.max_length is not None and len(value) > prop.max_length:
            return f"must be at most {prop.max_length} character(s), got {value!r}"
        if prop.min_length is not None and len(value) < prop.min_length:
            return "must not be empty"
    return None


def _is_type(value: Any, t: str) -> bool:
    if t == "string":
        return isinstance(value, str)
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "array":
        return isinstance(value, list)
    if t == "object":
        return isinstance(value, dict)
    return True


def _check_cycles(nodes: Mapping[str, tuple[tuple[str, ...], int]], out: Collector) -> None:
    graph = {sid: needs for sid, (needs, _line) in nodes.items()}
    lines = {sid: line for sid, (_needs, line) in nodes.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done
    reported: set[frozenset[str]] = set()

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    out.error(lines[nxt], "dependency cycle: " + " -> ".join(cycle), nxt)
            elif state.get(nxt) is None:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for sid in graph:
        if sid not in state:
            visit(sid, [])


def _check_x_dagster(doc: LineDict, step_ids: set[str], param_names: set[str],
                     out: Collector, writers: set[str] | None = None) -> DagsterSettings:
    writers = writers or set()
    block = doc.get("x-dagster")
    if block is None:
        return DagsterSettings()
    if not isinstance(block, LineDict):
        out.error(doc.line_of("x-dagster"), "'x-dagster' must be a mapping")
        return DagsterSettings()
    for key in block:
        if key not in X_DAGSTER_KEYS:
            out.error(block.line_of(key), f"unknown key 'x-dagster.{key}' (known: "
                                          f"{', '.join(sorted(X_DAGSTER_KEYS))})")
    group = block.get("group")
    if group is not None and (not isinstance(group, str) or not _GROUP_OK.match(group)):
        out.error(block.line_of("group"), f"x-dagster.group {group!r} must use only letters, "
                                          "digits and '_'")
        group = None
    owners = _owners(block, "x-dagster.owners", out)
    tags = _tags(block, "x-dagster.tags", out)
    steps: dict[str, StepDagster] = {}
    raw_steps = block.get("steps")
    if raw_steps is not None:
        if not isinstance(raw_steps, LineDict):
            out.error(block.line_of("steps"), "x-dagster.steps must map step ids to settings")
        else:
            for sid, body in raw_steps.items():
                line = raw_steps.line_of(sid)
                if sid not in step_ids:
                    out.error(line, f"x-dagster.steps names unknown step '{sid}'")
                    continue
                if not isinstance(body, LineDict):
                    out.error(line, "settings must be a mapping (description, owners, tags)",
                              str(sid))
                    continue
                for key in body:
                    if key not in X_DAGSTER_STEP_KEYS:
                        out.error(body.line_of(key), f"unknown key 'x-dagster.steps.{sid}.{key}'"
                                                     " (known: description, owners, tags)", sid)
                desc = body.get("description")
                if desc is not None and not isinstance(desc, str):
                    out.error(body.line_of("description"), "description must be a string", sid)
                    desc = None
                label = f"x-dagster.steps.{sid}"
                steps[str(sid)] = StepDagster(
                    desc, _owners(body, "owners", out, sid), _tags(body, "tags", out, sid),
                    _timeout(body, label, out, sid), _retry(body, label, out, sid),
                    _checks(body, label, out, str(sid), writers), _schema_mode(body, label, out,
                                                                               str(sid)),
                    _deps(body, label, out, str(sid)))
    schedules = tuple(_schedule(b, param_names, out) for b in _entries(block, "schedule", out))
    sensors = tuple(_sensor(b, param_names, out) for b in _entries(block, "sensor", out))
    return DagsterSettings(group, owners, tags, MappingProxyType(steps),
                           tuple(s for s in schedules if s), tuple(s for s in sensors if s),
                           _timeout(block, "x-dagster", out), _retry(block, "x-dagster", out))


def _checks(body: LineDict, label: str, out: Collector, step: str, writers: set[str]
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


def _declared_deps(doc: LineDict) -> dict[str, list[str]]:
    """``x-dagster.steps.<id>.deps`` as written, for the query check (which runs before the
    x-dagster block is checked): a step's query may read the deps' ``df_<name>`` views."""
    block = doc.get("x-dagster")
    steps = block.get("steps") if isinstance(block, dict) else None
    out: dict[str, list[str]] = {}
    for sid, body in (steps.items() if isinstance(steps, dict) else ()):
        value = body.get("deps") if isinstance(body, dict) else None
        if isinstance(value, list):
            out[str(sid)] = [v.strip().strip("/") for v in value if isinstance(v, str)]
    return out


def _partitions(doc: LineDict, out: Collector) -> PartitionSettings | None:
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
    from datetime import date

    for key, value in (("start", start), ("end", end)):
        if value is None and key == "end":
            continue
        try:
            date.fromisoformat(str(value)[:10])
        except ValueError:
            out.error(body.line_of(key), f"{label}.{key} must be a date YYYY-MM-DD, got "
                                         f"{value!r}")
            return None
    if tz is not None and not _valid_timezone(tz):
        out.error(body.line_of("timezone"), f"{label}.timezone {tz!r} is not an IANA time zone")
        return None
    return PartitionSettings(kind, str(start)[:10], str(end)[:10] if end else None, tz)


def _partition_param_defaults(p: PartitionSettings | None) -> dict[str, str]:
    """Values `${params.partition_*}` take while validating (a run uses its own partition)."""
    if p is None:
        return {}
    if p.is_time:
        return {"partition_key": p.start or "", "partition_start": p.start or "",
                "partition_end": p.start or ""}
    return {"partition_key": p.keys[0] if p.keys else "__partition_key__"}


def _timeout(block: LineDict, label: str, out: Collector, step: str | None = None
             ) -> float | None:
    value = block.get("timeout_seconds")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        out.error(block.line_of("timeout_seconds"), f"{label}.timeout_seconds must be a "
                                                    f"positive number, got {value!r}", step)
        return None
    return float(value)


def _retry(block: LineDict, label: str, out: Collector, step: str | None = None
           ) -> RetrySettings | None:
    body = block.get("retry")
    if body is None:
        return None
    if not isinstance(body, LineDict):
        out.error(block.line_of("retry"), f"{label}.retry must be a mapping (max_retries, "
                                          "delay_seconds, backoff, jitter)", step)
        return None
    for key in body:
        if key not in RETRY_KEYS:
            out.error(body.line_of(key), f"unknown key '{label}.retry.{key}' (known: "
                                         f"{', '.join(sorted(RETRY_KEYS))})", step)
    ok = True
    retries = body.get("max_retries", 1)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        out.error(body.line_of("max_retries"), f"{label}.retry.max_retries must be an integer "
                                               ">= 0", step)
        ok = False
    delay = body.get("delay_seconds", 0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
        out.error(body.line_of("delay_seconds"), f"{label}.retry.delay_seconds must be a "
                                                 "number >= 0", step)
        ok = False
    backoff, jitter = body.get("backoff"), body.get("jitter")
    if backoff is not None and backoff not in ("exponential", "linear"):
        out.error(body.line_of("backoff"), f"{label}.retry.backoff must be 'exponential' or "
                                           "'linear'", step)
        ok = False
    if jitter is not None and jitter not in ("full", "plus_minus"):
        out.error(body.line_of("jitter"), f"{label}.retry.jitter must be 'full' or "
                                          "'plus_minus'", step)
        ok = False
    return RetrySettings(retries, float(delay), backoff, jitter) if ok else None


def _entries(block: LineDict, key: str, out: Collector) -> list[LineDict]:
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


def _status(body: LineDict, label: str, out: Collector) -> bool:
    status = body.get("default_status", "stopped")
    if status not in ("running", "stopped"):
        out.error(body.line_of("default_status"),
                  f"{label}.default_status must be 'running' or 'stopped', got {status!r}")
    return status == "running"


def _unknown_keys(body: LineDict, allowed: set[str], label: str, out: Collector) -> None:
    for key in body:
        if key not in allowed:
            out.error(body.line_of(key), f"unknown key '{label}.{key}' (known: "
                                         f"{', '.join(sorted(allowed))})")


def _schedule(body: LineDict, param_names: set[str], out: Collector) -> ScheduleSettings | None:
    label = "x-dagster.schedule"
    _unknown_keys(body, SCHEDULE_KEYS, label, out)
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
    if tz is not None and not _valid_timezone(tz):
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


def _sensor(body: LineDict, param_names: set[str], out: Collector) -> SensorSettings | None:
    label = "x-dagster.sensor"
    _unknown_keys(body, SENSOR_KEYS, label, out)
    ok = True
    watch, param = body.get("watch"), body.get("param", "input_path")
    if not isinstance(watch, str) or not watch.strip():
        out.error(body.line_of("watch"), f"{label}.watch is required: a glob such as "
                                         "'incoming/*.csv'")
        ok = False
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
    numbers = {}
    for key, default, minimum, kind in (("settle_seconds", 10.0, 0, (int, float)),
                                        ("minimum_interval_seconds", 30, 1, (int,)),
                                        ("max_runs_per_tick", 20, 1, (int,))):
        value = body.get(key, default)
        if isinstance(value, bool) or not isinstance(value, kind) or value < minimum:
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
    would run again, forever. Decided here when both are relative (they share the sensor's base
    directory, whatever it is) or both absolute; a mixed pair depends on the base directory, so
    the sensor leaves its resolved archive directory out of the watch instead."""
    if not archive_in_watch(watch, archive):
        return True
    out.error(body.line_of("archive_to"),
              f"{label}.archive_to {archive!r} is inside the watched glob {watch!r}: every "
              "archived file would match again and re-run forever. Archive to a directory "
              "the glob does not reach (e.g. next to the watched one, or a hidden '.done/'), "
              "or narrow 'watch'")
    return False


def _valid_timezone(name: object) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(name, str) or not name.strip():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _owners(block: LineDict, label: str, out: Collector, step: str | None = None
            ) -> tuple[str, ...]:
    owners = block.get("owners")
    if owners is None:
        return ()
    if not isinstance(owners, list) or not all(isinstance(o, str) for o in owners):
        out.error(block.line_of("owners"), f"{label} must be a list of strings", step)
        return ()
    good = []
    for o in owners:
        if _OWNER_OK.match(o):
            good.append(o)
        else:
            out.error(block.line_of("owners"), f"{label}: owner {o!r} must be an email address "
                                               "or 'team:<name>'", step)
    return tuple(good)


def _tags(block: LineDict, label: str, out: Collector, step: str | None = None
          ) -> MappingProxyType:
    tags = block.get("tags")
    if tags is None:
        return MappingProxyType({})
    if not isinstance(tags, dict):
        out.error(block.line_of("tags"), f"{label} must be a mapping of key -> value", step)
        return MappingProxyType({})
    good: dict[str, str] = {}
    for k, v in tags.items():
        value = "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        line = tags.line_of(k) if isinstance(tags, LineDict) else block.line_of("tags")
        if not _TAG_KEY_OK.match(str(k)):
            out.error(line, f"{label}: tag key {k!r} may use letters, digits, '_', '.', '-' "
                            "(and one '/' prefix), at most 63 characters", step)
        elif not _TAG_VALUE_OK.match(value):
            out.error(line, f"{label}: tag value {value!r} may use letters, digits, '_', '.', "
                            "'-', at most 63 characters", step)
        else:
            good[str(k)] = value
    return MappingProxyType(good)


def load_pipeline(path: str | os.PathLike[str], *, params: Mapping[str, Any] | None = None,
                  profile: str | None = None, env: Mapping[str, str] | None = None) -> Pipeline:
    """The resolved pipeline, or PipelineInvalidError listing every error."""
    from osiris_dagster.core.errors import PipelineInvalidError

    result = validate_pipeline(path, params=params, profile=profile, env=env)
    if result.pipeline is None:
        raise PipelineInvalidError(str(path), result.errors)
    return result.pipeline
