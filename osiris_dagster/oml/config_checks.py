"""Checks of a step's `config` against its component's spec: the connection reference, known
keys and their types, required keys, and keys a write mode needs."""

from __future__ import annotations

import re
from typing import Any

from osiris_dagster.oml.diagnostics import Collector
from osiris_dagster.oml.specs import ComponentSpec, Prop
from osiris_dagster.oml.yaml_lines import LineDict, not_text_hint

CONNECTION_REF = re.compile(r"^@([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$")


def check_config(spec: ComponentSpec, config: dict, raw: LineDict, step: str | None,
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
                out.warning(line_of(key), f"'{key}' is merged over the connection's, if "
                                          f"'{ref}' sets it too: a name set in both takes the "
                                          "step's value", step)

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
    offset = config.get("offset")
    if spec.name == "mysql.extractor" and "query" not in config and \
            isinstance(offset, int) and not isinstance(offset, bool) and offset > 0:
        out.error(line_of("offset"), f"`offset` {offset} on `table` {config.get('table')}: a "
                                     "table is read in no set order, so which rows it skips "
                                     "would be arbitrary; write a `query` with an ORDER BY on "
                                     "columns unique per row and give it the `offset`", step)


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
        hint = not_text_hint(value) if "string" in types else ""
        return f"must be {' or '.join(types)}, got {type(value).__name__} {value!r}{hint}"
    if prop.enum is not None and value not in prop.enum:
        return f"must be one of {', '.join(map(str, prop.enum))}, got {value!r}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if prop.minimum is not None and value < prop.minimum:
            return f"must be >= {prop.minimum}, got {value}"
        if prop.maximum is not None and value > prop.maximum:
            return f"must be <= {prop.maximum}, got {value}"
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
