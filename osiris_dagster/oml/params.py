"""OML parameters: declaration, precedence and `${params.x}` substitution.

Precedence, lowest to highest: OML default < env `OSIRIS_PARAM_<NAME>` < active profile's params
< explicit values (CLI `--param`, Dagster run config). A string that is exactly one reference
takes the parameter's value with its type; references inside longer strings are substituted as
text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from osiris_dagster.oml.diagnostics import Collector
from osiris_dagster.oml.sql_params import PARAM_REF, SqlParamError
from osiris_dagster.oml.sql_params import render as render_query
from osiris_dagster.oml.yaml_lines import LineDict, LineList

ENV_PREFIX = "OSIRIS_PARAM_"
_SPEC_KEYS = {"default", "description", "type", "enum", "min", "max", "sensitive", "required"}
_TYPES = {"string": str, "str": str, "integer": int, "int": int, "number": float,
          "float": float, "boolean": bool, "bool": bool}


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any = None
    has_default: bool = False
    description: str = ""
    type: type | None = None  # from `type:` or the default's type
    sensitive: bool = False
    line: int = 0


def declared_params(doc: Mapping[str, Any], out: Collector) -> dict[str, ParamSpec]:
    raw = doc.get("params")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        out.error(_line(doc, "params"), "'params' must be a mapping of name -> default")
        return {}
    specs: dict[str, ParamSpec] = {}
    for name, value in raw.items():
        line = raw.line_of(name) if isinstance(raw, LineDict) else 0
        if not isinstance(name, str):
            out.error(line, f"parameter name {name!r} is not text: YAML reads an unquoted "
                            "`off`, `on`, `yes`, `no`, `true`, `false` or `null` as a boolean "
                            "or null, and digits as a number; quote the name (`'off': 0`)")
            spellings = _YAML_SPELLINGS[name] if name is None or isinstance(name, bool) \
                else (str(name),)  # (1 == True: never looked up by value)
            default = value.get("default") if isinstance(value, dict) else value
            for spelling in spellings:  # so that no follow-on error names it again
                specs.setdefault(spelling, ParamSpec(spelling, default, True, "", None, False,
                                                     line))
            continue
        if isinstance(value, dict) and value and set(value) <= _SPEC_KEYS:
            declared_type = value.get("type")
            ptype = _TYPES.get(str(declared_type)) if declared_type is not None else None
            if declared_type is not None and ptype is None:
                out.error(line, f"parameter '{name}': unknown type '{declared_type}' "
                                f"(use one of {', '.join(sorted(_TYPES))})")
            default = value.get("default")
            has_default = "default" in value
            if ptype is None and has_default and default is not None:
                ptype = type(default)
            specs[str(name)] = ParamSpec(str(name), default, has_default,
                                         str(value.get("description") or ""), ptype,
                                         bool(value.get("sensitive")), line)
        else:
            specs[str(name)] = ParamSpec(str(name), value, True, "",
                                         type(value) if value is not None else None, False, line)
    return specs


# How an unquoted name YAML reads as this value may have been written (a reference to it then
# resolves, so a name already reported is not reported again as unresolved)
_YAML_SPELLINGS: dict[Any, tuple[str, ...]] = {
    True: ("true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"),
    False: ("false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"),
    None: ("null", "Null", "NULL", "~"),
}


def coerce(spec: ParamSpec | None, value: Any, source: str) -> Any:
    """Give a value the parameter's type: a string from the environment or the CLI is parsed,
    another value (a profile's, the run config's) is kept where the type holds it exactly
    (``2`` as float is ``2.0``, ``2.0`` as int is ``2``, both up to 2**53) and refused
    otherwise (``2.5`` or ``true`` for an int). A string parameter keeps any value as given."""
    if spec is None or spec.type is None or value is None or spec.type is str:
        return value
    if not isinstance(value, str):
        return _typed(spec, value, source)
    if spec.type is int:
        return _integer(spec, value, source)
    if spec.type is float:
        return _number(spec, value, source)
    if spec.type is bool:
        low = value.strip().lower()
        if low in {"true", "1", "yes", "on"}:
            return True
        if low in {"false", "0", "no", "off"}:
            return False
        raise ValueError(f"parameter '{spec.name}' expects a boolean, got {value!r} from {source}")
    return value


_INTEGER_TEXT = re.compile(r"-?(0|[1-9][0-9]*)", re.ASCII)
_NUMBER_TEXT = re.compile(r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
_TYPE_NAMES = {int: "an integer", float: "a number", bool: "a boolean"}  # as `type:` says
_KEEP_AS_TEXT = ("declare the parameter `type: string` (or quote its default) to keep the text "
                 "as written")


def _integer(spec: ParamSpec, value: str, source: str) -> int:
    """The integer a text writes: Python's int() also reads '05', '+5', ' 5', '1_0' and other
    scripts' digits, and the parameter then reads '5' or '10' where it is text (a path
    `2024-${params.month}` became `2024-5`)."""
    if _INTEGER_TEXT.fullmatch(value) and value != "-0":
        return int(value)
    try:
        number: int | None = int(value)
    except ValueError:
        number = None
    written = (f", which is not how the integer {number} is written (it would read "
               f"'{number}' wherever the parameter is text): pass {number}" if number is not None
               else ": write it as digits with an optional leading '-'")
    raise ValueError(f"parameter '{spec.name}' expects an integer, got {value!r} from "
                     f"{source}{written}, or {_KEEP_AS_TEXT}")


def _number(spec: ParamSpec, value: str, source: str) -> float:
    """A plain decimal text (``1``, ``-0.25``, ``1e3``, ``.5``); float() also reads spaces,
    '+', '_', 'inf', 'nan' and other scripts' digits."""
    if not _NUMBER_TEXT.fullmatch(value):
        raise ValueError(f"parameter '{spec.name}' expects a number, got {value!r} from {source}: "
                         "write it as a plain decimal number (digits, one '.', an optional "
                         f"leading '-' and exponent), or {_KEEP_AS_TEXT}")
    return float(value)


def _typed(spec: ParamSpec, value: Any, source: str) -> Any:
    """A value that is not a string as the parameter's type, exactly, or a ValueError."""
    kind = spec.type
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is int and isinstance(value, float) and value.is_integer() and \
            abs(value) <= 2**53:  # beyond, the float may already be another integer
        return int(value)
    if kind is float and isinstance(value, float):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool) and \
            abs(value) <= 2**53:  # beyond, a double may not hold the integer
        return float(value)
    if kind not in (bool, int, float):
        return value
    raise ValueError(f"parameter '{spec.name}' expects {_TYPE_NAMES[kind]}, got {value!r} "
                     f"({type(value).__name__}) from {source}")


def effective_values(
    specs: Mapping[str, ParamSpec],
    doc: Mapping[str, Any],
    profile: str | None,
    explicit: Mapping[str, Any] | None,
    env: Mapping[str, str],
    out: Collector,
) -> tuple[dict[str, Any], str | None]:
    """Merge the four sources; returns (values, active profile name)."""
    values: dict[str, Any] = {n: s.default for n, s in specs.items() if s.has_default}
    by_lower = {n.lower(): n for n in specs}

    for key, raw in env.items():
        if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX):
            lowered = key[len(ENV_PREFIX):].lower()
            name = by_lower.get(lowered, lowered)
            _set(values, specs, name, raw, f"environment variable {key}", out)

    profiles = doc.get("profiles")
    active = None
    if profiles is not None and not isinstance(profiles, dict):
        out.error(_line(doc, "profiles"), "'profiles' must be a mapping of name -> {params: ...}")
        profiles = None
    if profile:
        if not profiles or profile not in profiles:
            names = ", ".join(sorted(profiles or {})) or "none"
            out.error(_line(doc, "profiles"),
                      f"profile '{profile}' (asked for by --profile, or by `profile` in the "
                      f"run config) is not defined in this pipeline (profiles: {names})")
        else:
            active = profile
    elif profiles and env.get("OSIRIS_PROFILE") in profiles:
        active = env["OSIRIS_PROFILE"]  # a global setting: ignored by pipelines without it
    elif profiles and "dev" in profiles:
        active = "dev"  # Osiris's default profile
    if active:
        body = profiles[active]
        pparams = body.get("params") if isinstance(body, dict) else None
        if body is not None and (not isinstance(body, dict) or
                                 (pparams is not None and not isinstance(pparams, dict))):
            out.error(profiles.line_of(active) if isinstance(profiles, LineDict) else 0,
                      f"profile '{active}' must be a mapping with a 'params' mapping")
        for name, value in (pparams or {}).items():
            _set(values, specs, str(name), value, f"profile '{active}'", out)

    for name, value in (explicit or {}).items():
        _set(values, specs, str(name), value, "an explicit --param / run config value", out)
    return values, active


def _set(values: dict[str, Any], specs: Mapping[str, ParamSpec], name: str, value: Any,
         source: str, out: Collector) -> None:
    try:
        values[name] = coerce(specs.get(name), value, source)
    except ValueError as exc:
        out.error(specs[name].line if name in specs else 0, str(exc))
        values.setdefault(name, value)  # refused, not missing: no 'unresolved' error too


LanguageAt = Callable[[tuple[Any, ...]], "str | None"]


def unresolved_message(name: str, declared: bool = False) -> str:
    if declared:  # under 'params', without a default
        return (f"parameter '{name}' has no value: it is declared without a default, so give "
                f"it one: pass --param {name}=VALUE, set {ENV_PREFIX}{name.upper()}, set it in "
                "the active profile, or add a default")
    return (f"unresolved parameter '{name}': declare it under 'params', set "
            f"{ENV_PREFIX}{name.upper()}, or pass --param {name}=VALUE")


def substitute(obj: Any, values: Mapping[str, Any], out: Collector, step: str | None = None,
               line: int = 0, language_at: LanguageAt | None = None,
               path: tuple[Any, ...] = (), deferred: frozenset[str] = frozenset(),
               declared: frozenset[str] = frozenset()) -> Any:
    """Copy of obj with `${params.x}` replaced; unresolved references are reported with lines,
    except those to ``deferred`` parameters (declared, their value comes with the run): those
    are kept as written.

    ``language_at(path)`` names the query language of the string at ``path`` (e.g.
    ``("config", "query")`` -> "duckdb"); there a reference becomes a quoted value of that
    language instead of text (see :mod:`osiris_dagster.oml.sql_params`).
    """
    def sub(value: Any, key: Any, at: int) -> Any:
        return substitute(value, values, out, step, at, language_at, (*path, key), deferred,
                          declared)

    def missing(name: str) -> None:
        if name not in deferred:
            out.error(line, unresolved_message(name, name in declared), step)

    if isinstance(obj, LineDict):
        new = LineDict()
        new.line, new.key_lines, new.duplicates = obj.line, obj.key_lines, obj.duplicates
        for k, v in obj.items():
            new[k] = sub(v, k, obj.line_of(k))
        return new
    if isinstance(obj, dict):
        return {k: sub(v, k, line) for k, v in obj.items()}
    if isinstance(obj, LineList):
        new_list = LineList(sub(v, i, obj.line_of(i)) for i, v in enumerate(obj))
        new_list.line, new_list.item_lines = obj.line, obj.item_lines
        return new_list
    if isinstance(obj, list):
        return [sub(v, i, line) for i, v in enumerate(obj)]
    if isinstance(obj, str) and "${params." in obj:
        language = language_at(path) if language_at else None
        if language == "env":
            _refuse_env_references(obj, values, out, step, line, path)
        elif language:
            return _render_query(obj, values, out, step, line, language, missing)
        whole = PARAM_REF.fullmatch(obj.strip())
        if whole:
            name = whole.group(1).strip()
            if name in values:
                return values[name]
            missing(name)
            return obj

        def repl(m: re.Match[str]) -> str:
            name = m.group(1).strip()
            if name not in values:
                missing(name)
                return m.group(0)
            return _text(values[name])

        return PARAM_REF.sub(repl, obj)
    return obj


def _refuse_env_references(text: str, values: Mapping[str, Any], out: Collector,
                           step: str | None, line: int, path: tuple[Any, ...]) -> None:
    """A parameter is data: in an option whose `${VAR}`s the driver resolves from the
    environment after the parameters, a `${` that the parameters' values make (alone, or with
    the text around them: `$` + `{VAR}`) would be read as a variable (and could send any
    variable of the run's environment to the server)."""
    def value(m: re.Match[str]) -> str:
        name = m.group(1).strip()
        return _text(values[name]) if name in values else "\0"  # \0 joins no `${`

    written = PARAM_REF.sub("\0", text).count("${")  # the pipeline's own references
    if PARAM_REF.sub(value, text).count("${") <= written:
        return
    names = [m.group(1).strip() for m in PARAM_REF.finditer(text)
             if m.group(1).strip() in values]
    option = ".".join(str(p) for p in path[1:])
    shown = ", ".join(f"'{n}'" for n in dict.fromkeys(names))
    out.error(line, f"parameter {shown} makes '${{' in `{option}` (its value, or with the text "
              f"around it), but `{option}` reads `${{VAR}}` from the environment after the "
              "parameters are in, so it would be read as a variable: a parameter is data, "
              "never a reference; pass a value that makes no '${', or reference the variable "
              "in the pipeline itself", step)


_LONE_PARAM_IN_LIST = re.compile(r"\bIN\s*\(\s*\$\{params\.([^}]+)\}\s*\)", re.IGNORECASE)


def _render_query(text: str, values: Mapping[str, Any], out: Collector, step: str | None,
                  line: int, language: str, missing: Callable[[str], None]) -> str:
    for match in _LONE_PARAM_IN_LIST.finditer(text):  # Osiris pasted 'a,b' in as a list
        name = match.group(1).strip()
        out.warning(line, f"`IN (${{params.{name}}})` compares with one value: a parameter is "
                    "bound as one literal, never pasted in as SQL text, so a value 'a,b' "
                    "matches only the text 'a,b' (Osiris' text substitution made it a list). "
                    f"For a list in one parameter, write `IN (SELECT unnest(string_split("
                    f"${{params.{name}}}, ',')))`.", step)
    try:
        return render_query(text, values, language, missing)
    except SqlParamError as exc:
        out.error(line, f"{exc} (parameters in {language} text are values, never code)", step)
        return text


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _line(doc: Mapping[str, Any], key: str) -> int:
    return doc.line_of(key) if isinstance(doc, LineDict) else 0
