"""``graphql.extractor``: POST a GraphQL query (page after page) -> the step's table.

This module is the step's run (:func:`run`, the driver entry point). Its parts, in
``osiris_dagster.drivers.graphql``: :mod:`~osiris_dagster.drivers.graphql.options` (endpoint,
credentials and headers), :mod:`~osiris_dagster.drivers.graphql.fetch` (the client, pagination,
``data_path`` and errors), :mod:`~osiris_dagster.drivers.graphql.document` (whether the query is
a mutation).

What the run does (each part's docstring says the rest, and where it differs from Osiris'
driver):

* **Storage.** Each page is appended to a staging NDJSON file as it arrives (memory stays flat);
  the table is built from it at the end with the union of all columns
  (:class:`~osiris_dagster.drivers.staging.json_records.JsonStager`). No rows and no columns ->
  a table with one VARCHAR column ``_empty`` and zero rows; only null records -> as many rows,
  of that one column.
* Metrics: ``rows_read``, ``requests_made`` (every HTTP attempt, retries included),
  ``pages_fetched``; ``ctx.progress(rows=...)`` after each page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from osiris_dagster.core.naming import quote_ident
from osiris_dagster.drivers.base import DriverResult, StepContext, UpstreamTable
from osiris_dagster.drivers.graphql.fetch import fetch_pages, graphql_client
from osiris_dagster.drivers.graphql.options import Options
from osiris_dagster.drivers.http import client as hc
from osiris_dagster.drivers.staging.json_records import EMPTY_COLUMN, JsonStager


def run(ctx: StepContext, config: Mapping[str, Any], inputs: Sequence[UpstreamTable]
        ) -> DriverResult:
    opts = Options.from_config(config, ctx.connection)
    headers, secrets = opts.request_headers()
    hc.register_secrets(ctx, secrets)
    client = graphql_client(ctx, opts, headers, secrets)
    stager = JsonStager(ctx.tmp_dir, f"graphql-{ctx.step_id}")
    try:
        pages = fetch_pages(ctx, opts, client, stager)
        if stager.rows and not stager.columns:  # only null records: as many rows of NULLs
            rows = ctx.create_output(f"SELECT CAST(NULL AS VARCHAR) AS "
                                     f"{quote_ident(EMPTY_COLUMN)} FROM range({stager.rows})")
        else:
            rows = stager.create_output(ctx)
    finally:
        stager.close()
        client.close()
    ctx.log_metric("rows_read", rows)
    ctx.log_metric("requests_made", client.requests_made)
    ctx.log_metric("pages_fetched", pages)
    return DriverResult(table=ctx.output_table, rows_read=rows, rows_written=rows,
                        extra_metadata={"pages_fetched": pages,
                                        "requests_made": client.requests_made})
