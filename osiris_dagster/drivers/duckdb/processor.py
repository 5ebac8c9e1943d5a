"""duckdb.processor: the step's SQL runs where the data already is; nothing leaves DuckDB.

The query sees each upstream as ``df_<sanitised id>`` (and ``input_df`` when there is exactly one
upstream) and nothing else: it must be one SELECT (checked by DuckDB's parser, see
:mod:`osiris_dagster.drivers.duckdb.seal`), and it runs on a connection without file, network,
extension or settings access. Queries without upstreams (``SELECT 1``, ``range(...)``) work too.

Once the table exists, the step reports which upstream columns each of its columns comes from
(:mod:`osiris_dagster.drivers.duckdb.step_lineage`); a query whose lineage cannot be traced says
why in ``DriverResult.column_lineage`` and the step goes on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb

from osiris_dagster.core.errors import DriverError
from osiris_dagster.core.naming import query_visible_names
from osiris_dagster.drivers.base import (
    DriverResult,
    StepColumnLineage,
    StepContext,
    UpstreamTable,
)
from osiris_dagster.drivers.duckdb.seal import NO_TABLES_VISIBLE, check_query, first_lines
from osiris_dagster.drivers.duckdb.step_lineage import step_column_lineage


def run(ctx: StepContext, config: Mapping[str, Any], inputs: Sequence[UpstreamTable]
        ) -> DriverResult:
    query = str(config.get("query") or "").strip()
    while query.endswith(";"):
        query = query[:-1].rstrip()
    if not query:
        raise DriverError("config 'query' is empty; give the SQL to run")
    visible = visible_views(inputs)
    check_query(ctx.con, query, visible)  # it calls only table functions that make rows
    rows_read = 0
    for upstream in inputs:
        rows_read += int(ctx.con.execute(f"SELECT count(*) FROM {upstream.relation}")
                         .fetchone()[0])
    ctx.seal_sql_access(leaves_instance_unchanged=True)
    try:
        rows = ctx.create_output(query + "\n")  # a trailing -- comment must not eat the rest
    except duckdb.PermissionException as exc:
        raise DriverError(f"refused by DuckDB: {first_lines(exc)}. A duckdb.processor step "
                          "has no file, network, ATTACH, extension or settings access: read "
                          "files with filesystem.csv_extractor and write them with "
                          "filesystem.csv_writer") from exc
    except duckdb.CatalogException as exc:
        raise DriverError(f"{first_lines(exc)}. Tables visible to this query: "
                          f"{', '.join(visible) or NO_TABLES_VISIBLE}") from exc
    except duckdb.Error as exc:
        if "configuration has been locked" in str(exc):
            raise DriverError(f"refused by DuckDB: {first_lines(exc)}. A duckdb.processor "
                              "step cannot change DuckDB settings") from exc
        raise DriverError(f"DuckDB error: {first_lines(exc)}") from exc
    ctx.log_metric("rows_read", rows_read)
    ctx.log_metric("rows_written", rows)
    return DriverResult(table=ctx.output_table, rows_read=rows_read, rows_written=rows,
                        column_lineage=column_lineage(ctx, query, inputs))


def column_lineage(ctx: StepContext, query: str, inputs: Sequence[UpstreamTable]
                   ) -> StepColumnLineage:
    """The output table's column lineage; never raises (lineage is advisory, the step's table
    is already built): a failure becomes the lineage's ``problem``, also logged as an event."""
    try:
        output = [name for name, _ in ctx.output_columns()]
        lineage = step_column_lineage(ctx.state_dir, query, inputs, output)
    except Exception as exc:  # noqa: BLE001 - must not fail a step whose table is built
        lineage = StepColumnLineage.unknown(
            f"internal error while working out the lineage ({type(exc).__name__}: "
            f"{first_lines(exc)})")
    if lineage.problem is not None:
        ctx.log_event("column_lineage_unavailable", problem=lineage.problem)
    return lineage


def visible_views(inputs: Sequence[UpstreamTable]) -> list[str]:
    """The names the query may read: ``df_<id>`` per upstream, ``input_df`` for a single one."""
    return query_visible_names(u.view_name for u in inputs)

