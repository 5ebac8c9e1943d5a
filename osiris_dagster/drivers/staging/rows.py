"""The streaming path from a database result into the step's table (the ingest path of the
database extractors).

Values leave the database as Arrow record batches of about ``batch_size`` rows: MySQL results
typed by connectorx (:mod:`osiris_dagster.drivers.mysql.arrow`), or as text where that would not
be exact (pymysql's unbuffered cursor); PostgreSQL columns rendered as text by the server
(``COPY ... TO STDOUT`` parsed by Arrow's CSV reader, or a server-side cursor when filter values
must be bound). A ``pyarrow.RecordBatchReader`` over those batches (:class:`RowStream`,
:class:`BatchStream`) is registered in the step's DuckDB connection. ``ctx.create_output`` then
runs one ``SELECT`` that casts each column to its DuckDB type (vectorised, in C++; the casts are
:mod:`osiris_dagster.drivers.staging.columns`) while DuckDB pulls the batches (:func:`ingest`):
rows are never held all at once, there is no DataFrame, and the step's table appears atomically
(or not at all). A value DuckDB cannot represent (a MySQL zero date, a TIME past 24h) raises a
:class:`~osiris_dagster.core.errors.DriverError` naming the column and the value.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from osiris_dagster.core.errors import DriverError
from osiris_dagster.core.naming import quote_ident
from osiris_dagster.drivers.base import StepContext
from osiris_dagster.drivers.duck_types import MAX_DUCK_DECIMAL
from osiris_dagster.drivers.error_text import first_line
from osiris_dagster.drivers.progress import Progress
from osiris_dagster.drivers.staging.columns import (
    SourceColumn,
    ValueProblem,
    select_expression,
    value_problem,
)


class RowStream:
    """A ``RecordBatchReader`` over batches of columns (one Python list per column, as
    :func:`columns_of` makes from row tuples), each turned into one Arrow batch of text (or
    bytes) as DuckDB asks for it.

    Runs on DuckDB's scan thread; an exception is kept in ``error`` (DuckDB only passes on its
    text) so the caller can re-raise the original :class:`DriverError`.
    """

    def __init__(self, columns: Sequence[SourceColumn], batches: Iterator[list[list[Any]]],
                 progress: Progress | None = None, schema: pa.Schema | None = None) -> None:
        self.columns = list(columns)
        self.schema = schema if schema is not None else pa.schema(
            [pa.field(f"c{i}", c.arrow_type) for i, c in enumerate(self.columns)])
        self.typed = schema is not None  # the columns' Arrow types come from the source
        self._batches = batches
        self._progress = progress
        self.error: BaseException | None = None
        self.rows = 0
        self._lock = threading.Lock()

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema, self._generate())

    def _generate(self) -> Iterator[pa.RecordBatch]:
        """The source's batches, counted and reported; a failure is kept in ``error``."""
        try:
            for batch in self._record_batches():
                n = batch.num_rows
                with self._lock:
                    self.rows += n
                if self._progress is not None:
                    self._progress.add(n)
                yield batch
        except BaseException as exc:
            self.error = exc
            raise

    def _record_batches(self) -> Iterator[pa.RecordBatch]:
        """The non-empty batches of the source, as Arrow batches of ``schema``."""
        converters = [(i, c.convert) for i, c in enumerate(self.columns) if c.convert]
        width = len(self.columns)
        for cols in self._batches:
            n = len(cols[0]) if cols else 0
            if not n:
                continue
            for i, fn in converters:
                cols[i] = _converted(fn, cols[i])
            arrays = [pa.array(cols[i], type=self.schema.field(i).type)
                      for i in range(width)]
            yield pa.record_batch(arrays, schema=self.schema)


class BatchStream(RowStream):
    """Like :class:`RowStream`, for sources that already produce Arrow batches: of text columns
    ``c0..cN`` (e.g. PostgreSQL ``COPY ... TO STDOUT`` parsed by Arrow's CSV reader), or of the
    types in ``schema`` (e.g. MySQL results read by connectorx; names are replaced by
    ``c0..cN``)."""

    def __init__(self, columns: Sequence[SourceColumn], batches: Iterator[pa.RecordBatch],
                 progress: Progress | None = None, schema: pa.Schema | None = None) -> None:
        if schema is not None:
            schema = pa.schema([pa.field(f"c{i}", f.type) for i, f in enumerate(schema)])
        super().__init__(columns, iter(()), progress, schema)
        self._arrow_batches = batches

    def _record_batches(self) -> Iterator[pa.RecordBatch]:
        converters = [(i, c.convert) for i, c in enumerate(self.columns) if c.convert]
        for batch in self._arrow_batches:
            if not batch.num_rows:
                continue
            if converters:  # rare types fixed up in Python (e.g. MySQL BIT)
                arrays = list(batch.columns)
                for i, fn in converters:
                    arrays[i] = pa.array(_converted(fn, arrays[i].to_pylist()),
                                         type=self.schema.field(i).type)
                batch = pa.record_batch(arrays, schema=self.schema)
            yield pa.record_batch(batch.columns, schema=self.schema)


def _converted(fn: Callable[[Any], Any], values: Sequence[Any]) -> list[Any]:
    """A column's values through a SourceColumn's ``convert`` (NULLs stay NULL)."""
    return [None if v is None else fn(v) for v in values]


def columns_of(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Row tuples -> one list per column (Arrow builds arrays from lists much faster)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(c) for c in zip(*rows, strict=True)]


def ingest(ctx: StepContext, stream: RowStream, *, describe: str,
           zero_dates_null: bool = False, hint: Callable[[ValueProblem], str] | None = None,
           translate: Callable[[BaseException], BaseException | None] | None = None,
           cast_where: str = "in `query`, or in the view read") -> int:
    """Build the step's table from ``stream`` in one ``create_output`` (atomic, streaming).
    ``cast_where``: where the step's user can cast a column (the advice of a value error)."""
    view = f"__osiris_stream_{ctx.output_table}"
    ctx.con.register(view, stream.reader())
    exprs = [select_expression(c, f"c{i}", zero_dates_null,
                               stream.schema.field(i).type if stream.typed else None)
             for i, c in enumerate(stream.columns)]
    if not exprs:
        raise DriverError(f"{describe}: the result has no columns")
    sql = f"SELECT {', '.join(exprs)} FROM {quote_ident(view)}"
    ctx.size_memory_for_columns(len(exprs))  # a stream cannot be read twice: size it up front
    try:
        return ctx.create_output(sql)
    except duckdb.Error as exc:
        original = stream.error
        if original is not None:
            if translate is not None:
                mapped = translate(original)
                if mapped is not None:
                    raise mapped from None
            if isinstance(original, DriverError):
                raise original from None
            raise DriverError(f"{describe}: reading rows failed: {first_line(original)}") \
                from None
        problem = value_problem(exc)
        if problem is not None:
            col = next((c for c in stream.columns if c.name == problem.column), None)
            kind = f"{col.source_type} -> DuckDB {col.duck_type}" if col else "value"
            extra = hint(problem) if hint else ""
            if col is not None and col.kind == "exact_double":
                extra = (f"A DOUBLE would not give back its digits, and DuckDB's DECIMAL "
                         f"holds at most {MAX_DUCK_DECIMAL} digits: cast the column where it "
                         f"is made ({cast_where}), to a DECIMAL of at most 38 digits that "
                         "holds its values (e.g. numeric(38,10) for an average), to a double "
                         "type if its 15-17 digits are enough, or to text.")
            raise DriverError(
                f"{describe}: column '{problem.column}' holds {problem.value!r}, which cannot be "
                f"converted ({kind}).{(' ' + extra) if extra else ''}") from None
        raise
    finally:
        with contextlib.suppress(duckdb.Error):
            ctx.con.unregister(view)
