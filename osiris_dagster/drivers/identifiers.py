"""Names in the SQL the database drivers build: checked (a non-empty string without NUL), quoted
for MySQL (backticks) or PostgreSQL (double quotes), and made unique the way a DuckDB table needs.
DuckDB's own quoting is :func:`osiris_dagster.core.naming.quote_ident`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from osiris_dagster.core.errors import DriverError


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or "\x00" in name:
        raise DriverError(f"invalid {what} name {name!r}: it must be a non-empty string")
    return name


def mysql_ident(name: str, what: str = "identifier") -> str:
    """A MySQL identifier in backticks (embedded backticks doubled)."""
    return "`" + _check_name(name, what).replace("`", "``") + "`"


def pg_ident(name: str, what: str = "identifier") -> str:
    """A PostgreSQL identifier in double quotes (embedded quotes doubled)."""
    return '"' + _check_name(name, what).replace('"', '""') + '"'


def unique_names(names: Iterable[str]) -> list[str]:
    """Column names made unique case-insensitively (DuckDB's rule): ``id, id`` -> ``id, id_1``."""
    seen: set[str] = set()
    out: list[str] = []
    for raw in names:
        name = raw or "column"
        candidate, n = name, 0
        while candidate.lower() in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate.lower())
        out.append(candidate)
    return out
