"""Checks of a pipeline document as a whole: keys written twice, secrets written inline,
`oml_version`, `name` and the top-level keys OML v0.1.0 knows."""

from __future__ import annotations

import re
from typing import Any

from osiris_dagster.core.masking import is_secret_key
from osiris_dagster.oml.diagnostics import Collector
from osiris_dagster.oml.yaml_lines import LineDict, not_text_hint

KNOWN_TOP = {"oml_version", "name", "steps", "description", "metadata", "params", "profiles"}
FORBIDDEN_TOP = {"version", "connectors", "tasks", "outputs"}
_NAME_OK = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def check_oml_version(doc: LineDict, out: Collector) -> Any:
    """The document's `oml_version` (as written); a missing or unsupported one is an error."""
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
    return version


def check_name(doc: LineDict, out: Collector) -> Any:
    """The pipeline's `name` (as written); it must be a non-empty string, kebab-case ideally."""
    name = doc.get("name")
    if "name" not in doc:
        out.error(doc.line, "missing required key 'name'")
    elif not isinstance(name, str) or not name.strip():
        out.error(doc.line_of("name"),
                  "'name' must be a non-empty string" + not_text_hint(name))
    elif not _NAME_OK.match(name):
        out.warning(doc.line_of("name"),
                    f"name '{name}' should be lower-case kebab-case (e.g. my-pipeline)")
    return name


def check_top_level_keys(doc: LineDict, out: Collector) -> None:
    """Legacy keys are errors; unknown ones (other than `x-*` extensions) are ignored, with a
    warning."""
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


def check_duplicate_keys(obj: Any, out: Collector) -> None:
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
            check_duplicate_keys(v, out)
    elif isinstance(obj, list):
        for v in obj:
            check_duplicate_keys(v, out)


def check_inline_secrets(doc: LineDict, out: Collector) -> None:
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
