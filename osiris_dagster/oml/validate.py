"""Load and validate an OML v0.1.0 pipeline, reporting every problem with its line.

This module reads the file, runs the checks in order (the document as a whole, parameters,
partitions, the steps, `x-dagster`: each in its own `*_checks` module), substitutes the
parameters and builds the resolved :class:`~osiris_dagster.oml.model.Pipeline`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from osiris_dagster.core.masking import is_secret_key
from osiris_dagster.oml.automation_checks import check_schedule_params, entries
from osiris_dagster.oml.diagnostics import BySeverity, Collector, Diagnostic
from osiris_dagster.oml.document_checks import (
    check_duplicate_keys,
    check_inline_secrets,
    check_name,
    check_oml_version,
    check_top_level_keys,
)
from osiris_dagster.oml.model import DagsterSettings, Pipeline, Step, freeze
from osiris_dagster.oml.params import declared_params, effective_values, substitute
from osiris_dagster.oml.partition_checks import (
    check_static_keys_fit,
    declare_partition_params,
    partition_settings,
    with_partitions,
)
from osiris_dagster.oml.specs import get_spec
from osiris_dagster.oml.step_checks import check_steps, declared_deps, step_label
from osiris_dagster.oml.x_dagster_checks import check_x_dagster
from osiris_dagster.oml.yaml_lines import LineDict, LineList, load_yaml_with_lines, to_plain


@dataclass
class ValidationResult(BySeverity):
    path: Path
    diagnostics: list[Diagnostic]
    pipeline: Pipeline | None

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
    values_at_run_time: bool = False,
    sensor_gives_its_params: bool = False,
) -> ValidationResult:
    """Parse and check a pipeline; never raises for bad input (problems are diagnostics).

    ``values_at_run_time``: the pipeline is checked to build definitions, and a declared
    parameter without a value here gets one with each run (run config, `--param`): its
    references stay as written instead of being errors, and what depends on its value (a query
    that uses it) is checked when a run resolves it.
    ``sensor_gives_its_params``: the same for the parameters a sensor's run sets (the file's path
    and name), which a file check (``osiris-dagster validate``) need not be given."""
    p = Path(path)
    out = Collector(str(path))
    doc = _read_document(p, text, out)
    if doc is None:
        return ValidationResult(p, out.diagnostics, None)
    pipeline = _check_document(p, doc, out, params, profile,
                               os.environ if env is None else env, values_at_run_time,
                               sensor_gives_its_params)
    return ValidationResult(p, out.diagnostics, pipeline if not out.errors else None)


def _read_document(path: Path, text: str | None, out: Collector) -> LineDict | None:
    """The file's YAML mapping (with lines), or None with the reason in ``out``."""
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            out.error(0, "file not found")
            return None
        except (OSError, UnicodeDecodeError) as exc:
            out.error(0, f"cannot read file: {exc}")
            return None
    try:
        doc = load_yaml_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        out.error(mark.line + 1 if mark else 0, f"invalid YAML: {problem}")
        return None
    except RecursionError:
        out.error(0, "invalid YAML: nested too deeply")
        return None
    if not isinstance(doc, LineDict):
        out.error(1, "a pipeline must be a YAML mapping with oml_version, name and steps")
        return None
    return doc


# ---------------------------------------------------------------------------------------------
def _check_document(path: Path, doc: LineDict, out: Collector, explicit: Mapping[str, Any] | None,
                    profile: str | None, env: Mapping[str, str],
                    values_at_run_time: bool = False,
                    sensor_gives_its_params: bool = False) -> Pipeline | None:
    check_duplicate_keys(doc, out)
    check_inline_secrets(doc, out)

    specs = declared_params(doc, out)
    partitions = partition_settings(doc, out)
    x_dagster = doc.get("x-dagster")
    declare_partition_params(specs, partitions, isinstance(x_dagster, dict) and
                             x_dagster.get("partitions") is not None)
    values, active = effective_values(specs, doc, profile, explicit, env, out)
    for name in (explicit or {}):  # a typo would run with the default: refused
        if name not in specs:
            declared = ", ".join(sorted(specs)) or "none"
            out.error(0, f"parameter '{name}' was given (--param, run config) but is not "
                         f"declared under 'params' (declared: {declared}); check its spelling")

    version = check_oml_version(doc, out)
    name = check_name(doc, out)
    check_top_level_keys(doc, out)

    given = _sensor_params(x_dagster) if sensor_gives_its_params else set()
    deferred = frozenset(n for n in specs if n not in values and
                         (values_at_run_time or n in given))
    resolved_doc = _resolve(doc, values, out, deferred)
    steps_raw = resolved_doc.get("steps")
    steps: list[Step] = []
    if "steps" not in doc:
        out.error(doc.line, "missing required key 'steps'")
    elif not isinstance(steps_raw, LineList) or not steps_raw:
        out.error(doc.line_of("steps"), "'steps' must be a non-empty list")
    else:
        steps = check_steps(steps_raw, out, declared_deps(resolved_doc))

    declared_ids = {step_label(item) for item in steps_raw or []} - {None} \
        if isinstance(steps_raw, list) else set()
    writers = {s.id for s in steps if (sp := get_spec(s.component)) and not sp.produces_table}
    dagster = check_x_dagster(resolved_doc, declared_ids, set(specs), out, writers)
    check_schedule_params(resolved_doc.get("x-dagster"), specs, out)
    if partitions is not None:
        dagster = with_partitions(dagster, partitions, resolved_doc["x-dagster"], out)
        check_static_keys_fit(partitions, specs, resolved_doc["x-dagster"], out)

    if out.errors or not isinstance(name, str):
        return None
    sensitive = frozenset(n for n, s in specs.items() if s.sensitive or is_secret_key(n))
    return _pipeline(path, doc, resolved_doc, name, str(version), steps, values, active,
                     dagster, out, sensitive)


def _sensor_params(x_dagster: Any) -> set[str]:
    """The parameters every run the pipeline's automation starts sets: those each sensor sets
    (`param`, `name_param`), less any a schedule's run leaves out (its `params`). Read without
    checking (:func:`check_x_dagster` reports what is wrong there)."""
    if not isinstance(x_dagster, LineDict):
        return set()
    quiet = Collector("")  # (check_x_dagster reports these)
    sensors = entries(x_dagster, "sensor", quiet)
    if not sensors:
        return set()
    given = set.intersection(*({v for v in (item.get("param"), item.get("name_param"))
                                if isinstance(v, str)} for item in sensors))
    for schedule in entries(x_dagster, "schedule", quiet):
        params = schedule.get("params")
        given &= set(params) if isinstance(params, Mapping) else set()
    return given


def _resolve(doc: LineDict, values: Mapping[str, Any], out: Collector,
             deferred: frozenset[str] = frozenset()) -> LineDict:
    """The document with its parameters substituted (`params` and `profiles` as written); in
    query text a parameter becomes a quoted value. References to ``deferred`` parameters stay."""
    resolved_doc = LineDict()
    resolved_doc.line, resolved_doc.key_lines = doc.line, doc.key_lines
    params = doc.get("params")
    declared = frozenset(str(k) for k in params) if isinstance(params, Mapping) else frozenset()
    for key, value in doc.items():
        if key in ("params", "profiles"):
            resolved_doc[key] = value
        elif key == "steps" and isinstance(value, LineList):
            steps_list = LineList(
                substitute(item, values, out, step_label(item), value.line_of(i),
                           _step_query_language(item), deferred=deferred, declared=declared)
                for i, item in enumerate(value))
            steps_list.line, steps_list.item_lines = value.line, value.item_lines
            resolved_doc[key] = steps_list
        else:
            resolved_doc[key] = substitute(value, values, out, None, doc.line_of(key),
                                           _x_dagster_query_language if key == "x-dagster"
                                           else None, deferred=deferred, declared=declared)
    return resolved_doc


def _pipeline(path: Path, doc: LineDict, resolved_doc: LineDict, name: str, version: str,
              steps: list[Step], values: Mapping[str, Any], active: str | None,
              dagster: DagsterSettings, out: Collector,
              sensitive: frozenset[str] = frozenset()) -> Pipeline:
    plain = to_plain(resolved_doc)
    plain.pop("profiles", None)
    plain["params"] = dict(values)
    return Pipeline(
        path=path.resolve(),
        name=name,
        oml_version=version,
        description=doc.get("description") if isinstance(doc.get("description"), str) else None,
        steps=tuple(steps),
        params=freeze(dict(values)),
        profile=active,
        dagster=dagster,
        resolved=freeze(plain),
        warnings=tuple(out.warnings),
        sensitive_params=sensitive,
    )


def _step_query_language(item: Any) -> Callable[[tuple[Any, ...]], str | None] | None:
    """Where a step's config holds query text (spec `language`), params become quoted values."""
    component = item.get("component") if isinstance(item, dict) else None
    spec = get_spec(component) if isinstance(component, str) else None
    if spec is None:
        return None
    languages = {k: p.language for k, p in spec.properties.items() if p.language}

    def language_at(path: tuple[Any, ...]) -> str | None:
        if len(path) < 2 or path[0] != "config":
            return None
        language = languages.get(path[1])
        return language if len(path) == 2 or language == "env" else None  # env: object values

    return language_at if languages else None


def _x_dagster_query_language(path: tuple[Any, ...]) -> str | None:
    """`x-dagster.steps.<id>.checks.expression` (a string or a list) is DuckDB SQL."""
    return "duckdb" if path[:1] == ("steps",) and path[2:4] == ("checks", "expression") else None


def load_pipeline(path: str | os.PathLike[str], *, params: Mapping[str, Any] | None = None,
                  profile: str | None = None, env: Mapping[str, str] | None = None) -> Pipeline:
    """The resolved pipeline, or PipelineInvalidError listing every error."""
    from osiris_dagster.core.errors import PipelineInvalidError

    result = validate_pipeline(path, params=params, profile=profile, env=env)
    if result.pipeline is None:
        raise PipelineInvalidError(str(path), result.errors)
    return result.pipeline
