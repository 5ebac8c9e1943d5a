"""A few rows of a table or query as Python values, for previews and check samples.

DuckDB hands values to Python as Python objects, and an INTERVAL becomes a ``timedelta``, which
holds at most 999,999,999 days: ``INTERVAL 2147483647 DAYS``, a value DuckDB keeps, raised
OverflowError and failed the step after its table was written. Columns whose type holds an
INTERVAL (also in a LIST, STRUCT or MAP) come as DuckDB's text of them instead.
"""

from __future__ import annotations

from typing import Any

import duckdb

from osiris_dagster.core.naming import quote_ident


def first_rows(con: duckdb.DuckDBPyConnection, query: str, limit: int, *,
               shown: bool = False) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The column names and first ``limit`` rows of the SELECT ``query``; intervals as DuckDB's
    text. ``shown`` (a preview, a check's sample): dates and times too, which keeps what
    Python's types cannot (infinity, not year 9999; nanoseconds; TIME 24:00:00; years BC)."""
    described = con.execute(f"DESCRIBE {query}").fetchall()
    names = [str(r[0]) for r in described]
    columns = [f"CAST({quote_ident(name)} AS VARCHAR) AS {quote_ident(name)}"
               if _as_text(str(kind), shown) else quote_ident(name)
               for name, kind in ((r[0], r[1]) for r in described)]
    if not columns:
        return names, []
    rows = con.execute(f"SELECT {', '.join(columns)} FROM ({query}) LIMIT {int(limit)}"
                       ).fetchall()
    return names, rows


def _as_text(kind: str, shown: bool) -> bool:
    upper = kind.upper()
    return "INTERVAL" in upper or shown and upper.startswith(("DATE", "TIME"))
