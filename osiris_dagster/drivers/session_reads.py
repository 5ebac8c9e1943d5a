"""What a driver reads from the step's DuckDB connection: the upstream table a writer sends out,
its columns, one value of a query, and a query's rows as Arrow batches.

**Egress path (writers).** Rows leave DuckDB as Arrow batches read on a cursor of the step's
connection (:func:`arrow_batches`), never the whole table at once; :func:`row_lists` regroups them
into lists of exactly the writer's ``batch_size``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.base import StepContext, UpstreamTable

T = TypeVar("T")


def first_upstream(component: str, ctx: StepContext,
                   inputs: Sequence[UpstreamTable]) -> tuple[str, list[tuple[str, str]]]:
    """A writer's input: the relation of its first upstream table and its ``(name, DuckDB
    type)`` columns; a writer without an upstream fails saying what to add."""
    if not inputs:
        raise DriverError(f"{component} needs an upstream step with data: add the step that "
                          "produces the rows to this step's `needs`")
    relation = inputs[0].relation
    return relation, list(inputs[0].columns) or duck_columns(ctx.con, relation)


@contextlib.contextmanager
def arrow_batches(con: duckdb.DuckDBPyConnection, sql: str,
                  batch_size: int) -> Iterator[pa.RecordBatchReader]:
    """Stream a query's rows as Arrow batches of about ``batch_size`` rows.

    Runs on a cursor (a second connection to the same DuckDB instance: it sees the step's
    views and the attached session), so a pending result on the step's connection cannot get
    in the way and the step's connection stays usable while the batches are read.
    """
    cur = con.cursor()
    try:
        yield cur.sql(sql).to_arrow_reader(max(1, int(batch_size)))
    finally:
        with contextlib.suppress(duckdb.Error):
            cur.close()


def row_lists(con: duckdb.DuckDBPyConnection, sql: str, size: int,
              rows_of: Callable[[pa.RecordBatch], list[T]]) -> Iterator[list[T]]:
    """A query's rows (``rows_of`` turns each Arrow batch into a writer's rows) in lists of
    exactly ``size`` rows, the last one shorter."""
    with arrow_batches(con, sql, size) as reader:
        pending: list[T] = []
        for batch in reader:
            pending.extend(rows_of(batch))
            while len(pending) >= size:
                yield pending[:size]
                pending = pending[size:]
        if pending:
            yield pending


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None) -> Any:
    """The first value of a query (the result is read to its end, leaving nothing pending)."""
    rows = con.execute(sql, params).fetchall()
    return rows[0][0] if rows else None


def duck_columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    """The ``(name, DuckDB type)`` columns of a relation."""
    rows = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def refuse_null_keys(con: duckdb.DuckDBPyConnection, relation: str, keys: Sequence[str],
                     who: str, option: str, mode: str) -> None:
    """Fail when a key column of the rows a writer matches by key holds NULL: a NULL key
    matches no row (``ON CONFLICT``, ``ON DUPLICATE KEY``, a delete by key), so such a row is
    inserted again by every run and every retry, while the write counts as safe to repeat."""
    from osiris_dagster.core.naming import quote_ident

    if not keys:
        return
    nulls = " OR ".join(f"{quote_ident(k)} IS NULL" for k in keys)
    count = int(scalar(con, f"SELECT count(*) FROM {relation} WHERE {nulls}") or 0)
    if count:
        raise DriverError(
            f"{who}: {count} input row(s) have NULL in `{option}` ({', '.join(keys)}). A NULL "
            f"key matches no row, so {mode} would insert those rows again on every run and "
            "every retry. Nothing was written. Filter them out or give them a key in an "
            "upstream step (e.g. WHERE key IS NOT NULL), or use an append mode for such rows.")
