"""The environment a run sees: the process environment plus ``./.env``, and the one ``${VAR}``
substituter (for the connections file and for the step options that may reference variables).

Values are never printed: errors name the variable and the field that needs it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from osiris_dagster.core.errors import ConnectionError_

ENV_REF = re.compile(r"\$\{([^}]+)\}")


def load_dotenv(path: Path) -> dict[str, str]:
    """The KEY=VALUE pairs of a .env file, parsed by python-dotenv (quotes, escapes, multiline
    values, comments, `export`), so that values mean what they mean to every other .env tool.

    Not `dotenv.load_dotenv`: os.environ is never changed. `${VAR}` is not expanded (the
    connections file expands it, from the merged environment). A key without `=` has no value
    and is left out; a missing file gives no values."""
    if not path.is_file():
        return {}
    values = dotenv_values(path, interpolate=False, encoding="utf-8")
    return {key: value for key, value in values.items() if value is not None}


def environment(cwd: Path | None = None) -> dict[str, str]:
    """The process environment plus `.env` of the working directory (never overriding it)."""
    merged = load_dotenv((cwd or Path.cwd()) / ".env")
    merged.update(os.environ)
    return merged


def substitute_env(value: Any, env: Mapping[str, str], field_name: str, where: str = "",
                   error: type[Exception] = ConnectionError_) -> Any:
    """``value`` (a string, or the strings inside mappings and lists) with every ``${VAR}``
    replaced from ``env``: the one `${VAR}` substituter, for connections and for the step options
    that may reference the environment. An unset or empty variable raises ``error`` naming the
    variable, the field and ``where`` (never a value). ``${params.x}`` is not this: the OML
    loader substitutes parameters before a step runs."""
    if isinstance(value, Mapping):
        return {k: substitute_env(v, env, f"{field_name}.{k}", where, error)
                for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, env, field_name, where, error) for v in value]
    if not isinstance(value, str):
        return value

    def repl(m: re.Match[str]) -> str:
        var = m.group(1)
        got = env.get(var)
        if not got:
            state = "is not set" if got is None else "is set but empty"
            place = f" {where}" if where else ""
            raise error(f"environment variable '{var}' {state} (needed by field '{field_name}'"
                        f"{place}); export it or add it to .env in the working directory")
        return got

    return ENV_REF.sub(repl, value)
