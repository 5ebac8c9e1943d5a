"""duckdb.processor: the step's SQL runs where the data already is; nothing leaves DuckDB.

The query sees each upstream as ``df_<sanitised id>`` (and ``input_df`` when there is exactly one
upstream) and nothing else of the session. Queries without upstreams (``SELECT 1``,
``range(...)``) work too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb

from ..errors import DriverError
from .base import DriverResult, StepContext, UpstreamTable


def run(ctx: StepContext, config: Mapping[str, Any], inputs: Sequence[UpstreamTable]
        ) -> DriverResult:
    query = str(config.get("query") or "").strip()
    while query.endswith(";"):
        query = query[:-1].rstrip()
    if not query:
        raise DriverError("config 'query' is empty; give the SQL to run")
    rows_read = 0
    for upstream in inputs:
        rows_read += int(ctx.con.execute(f"SELECT count(*) FROM {upstream.relation}")
                         .fetchone()[0])
    try:
        rows = ctx.create_output(query)
    except duckdb.ParserException as exc:
        raise DriverError(f"SQL syntax error: {_first_lines(exc)}. "
                          "Only a single SELECT (or WITH ... SELECT) query is allowed.") from exc
    except duckdb.CatalogException as exc:
        names = ", ".join(u.view_name for u in inputs) or "none (this step has no upstream)"
        extra = " and input_df" if len(inputs) == 1 else ""
        raise DriverError(f"{_first_lines(exc)}. Tables visible to this query: {names}{extra}"
                          ) from exc
    except duckdb.Error as exc:
        raise DriverError(f"DuckDB error: {_first_lines(exc)}") from exc
    ctx.log_metric("rows_read", rows_read)
    ctx.log_metric("rows_written", rows)
    return DriverResult(table=ctx.output_table, rows_read=rows_read, rows_written=rows)


def _first_lines(exc: Exception, n: int = 6) -> str:
    return "\n".join(str(exc).strip().splitlines()[:n])
