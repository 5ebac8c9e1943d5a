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
    """Column names made unique case-insensitively (a DuckDB table's rule), keeping every name
    the source gave: a repeated name gets the first ``_<n>`` suffix no other column has
    (``id, id, id_1`` -> ``id, id_2, id_1``), so a column never takes the name the query gave
    another one (DuckDB's own order, :func:`duckdb_result_names`, would make it ``id, id_1,
    id_1_1``: ``id_1`` then holds the second ``id``)."""
    wanted = [raw or "column" for raw in names]
    taken = {name.lower() for name in wanted}
    seen: set[str] = set()
    out: list[str] = []
    for name in wanted:
        if name.lower() not in seen:
            seen.add(name.lower())
            out.append(name)
            continue
        n = 1
        while f"{name}_{n}".lower() in taken:
            n += 1
        taken.add(f"{name}_{n}".lower())
        out.append(f"{name}_{n}")
    return out


def duckdb_result_names(names: Iterable[str]) -> list[str]:
    """The names DuckDB gives a query's result columns in a table: a repeated name (case-
    insensitively) gets the first ``_<n>`` suffix not used so far, in order (``id, id, id_1`` ->
    ``id, id_1, id_1_1``)."""
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
