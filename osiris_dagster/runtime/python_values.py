"""Python values to and from session tables: how hand-written assets and Osiris steps trade data.

A hand-written asset's value (a pandas or polars DataFrame, a ``pyarrow.Table`` or
``RecordBatchReader``, a DuckDB relation) becomes a table of a session with
:func:`write_value`; it is streamed into DuckDB through Arrow where the value allows.
:func:`read_table` gives a session table back as the type a hand-written asset asks for.

Connections that read a session file are read-only and in-memory (the file is ATTACHed, as
steps do). Eager types (DataFrames, Arrow tables) close theirs before returning. A relation or a
record batch reader needs its connection while it is used: the connection stays open until the
value is dropped, or until :func:`close_readers` closes it (the Dagster layer calls it before a
step of this process writes that session: DuckDB lets one process attach a file only once).
No Dagster here.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import duckdb

from osiris_dagster.core.errors import OsirisError
from osiris_dagster.core.naming import quote_ident
from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime.session import SESSION_TIME_ZONE, Session
from osiris_dagster.runtime.stores import store_for

SUPPORTED_TYPES = ("duckdb.DuckDBPyRelation", "pyarrow.Table", "pyarrow.RecordBatchReader",
                   "pandas.DataFrame", "polars.DataFrame (when polars is installed)")
READER_BATCH_ROWS = 100_000
_SOURCE = "__osiris_python_value"

# read-only connections still open in this process -> the session file each reads
_open: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, str] = weakref.WeakKeyDictionary()
_open_lock = threading.Lock()


class UnsupportedTypeError(OsirisError):
    """A value or an annotation that is none of :data:`SUPPORTED_TYPES`."""


def supported_types_text() -> str:
    return ", ".join(SUPPORTED_TYPES)


# -- a Python value into a session table ------------------------------------------------------
def write_value(session: Session, table: str, value: Any) -> tuple[int, tuple[tuple[str, str],
                                                                             ...]]:
    """Create (or replace) ``table`` in the session's database from ``value``; returns its row
    count and columns. Raises UnsupportedTypeError for a value DuckDB cannot scan."""
    source = _scannable(value)
    con = session.open_workspace_connection()
    target = f"{session.table_prefix}.{quote_ident(table)}"
    try:
        con.register(_SOURCE, source)
        con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM {quote_ident(_SOURCE)}")
        rows = int(con.execute(f"SELECT count(*) FROM {target}").fetchone()[0])
        columns = tuple((str(r[0]), str(r[1]))
                        for r in con.execute(f"DESCRIBE {target}").fetchall())
    finally:
        con.close()
    return rows, columns


def _scannable(value: Any) -> Any:
    """Something ``register`` accepts, without copying where it can: DataFrames and Arrow
    tables are scanned in place, readers and relations are streamed batch by batch."""
    import pandas as pd
    import pyarrow as pa

    if isinstance(value, pd.DataFrame | pa.Table | pa.RecordBatchReader):
        return value
    if isinstance(value, duckdb.DuckDBPyRelation):  # of another connection: stream it
        return _arrow_reader(value)
    if type(value).__module__.split(".")[0] == "polars" and \
            type(value).__name__ in ("DataFrame", "LazyFrame"):
        return (value.collect() if hasattr(value, "collect") else value).to_arrow()
    unsupported = (f"a {_type_name(value)} cannot become a table; return one of "
                   f"{supported_types_text()}")
    if hasattr(value, "__arrow_c_stream__"):  # any Arrow PyCapsule stream (pyarrow >= 15)
        try:
            return pa.RecordBatchReader.from_stream(value)
        except (pa.ArrowException, TypeError, ValueError) as exc:  # a column, not a table
            raise UnsupportedTypeError(f"{unsupported} ({exc})") from None
    raise UnsupportedTypeError(unsupported)


# -- a session table as a Python value --------------------------------------------------------
def read_table(location: str, table: str, load_type: Any, settings: Settings) -> Any:
    """The table ``table`` of the session at ``location`` as ``load_type`` (one of
    SUPPORTED_TYPES).

    Raises UnsupportedTypeError before opening anything when the type is not supported."""
    convert = _converter(load_type)
    con, prefix = _reader_connection(location, settings)
    try:
        relation = con.sql(f"SELECT * FROM {prefix}.{quote_ident(table)}")
        value, keep_open = convert(con, relation)
    except BaseException:
        con.close()
        raise
    if not keep_open:
        con.close()
    return value


def _converter(load_type: Any) -> Callable[[duckdb.DuckDBPyConnection,
                                             duckdb.DuckDBPyRelation], tuple[Any, bool]]:
    import pandas as pd
    import pyarrow as pa

    if load_type is duckdb.DuckDBPyRelation:
        return lambda con, rel: (rel, True)
    if load_type is pa.Table:
        return lambda con, rel: (rel.to_arrow_table(), False)
    if load_type is pa.RecordBatchReader:
        return lambda con, rel: (_closing_reader(con, rel), True)
    if load_type is pd.DataFrame:
        return lambda con, rel: (rel.df(), False)
    if getattr(load_type, "__module__", "").split(".")[0] == "polars" and \
            getattr(load_type, "__name__", "") == "DataFrame":
        return lambda con, rel: (rel.pl(), False)
    raise UnsupportedTypeError(f"cannot load a table as {_type_name(load_type, is_type=True)}; "
                               f"annotate the input as one of {supported_types_text()}")


def _closing_reader(con: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation
                    ) -> Any:
    """A RecordBatchReader that closes its connection once read to the end (or dropped)."""
    import pyarrow as pa

    reader = _arrow_reader(rel)

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        finally:
            con.close()

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def _arrow_reader(rel: duckdb.DuckDBPyRelation) -> Any:
    stream = getattr(rel, "to_arrow_reader", None) or rel.fetch_record_batch  # duckdb < 1.5
    return stream(READER_BATCH_ROWS)


def _reader_connection(location: str, settings: Settings
                       ) -> tuple[duckdb.DuckDBPyConnection, str]:
    con = duckdb.connect(":memory:", config={"memory_limit": settings.memory_limit})
    try:
        con.execute(f"SET TimeZone = '{SESSION_TIME_ZONE}'")
        prefix = store_for(settings).attach_reader(con, location, "src")
    except BaseException:
        con.close()
        raise
    with _open_lock:
        _open[con] = location
    return con, prefix


def close_readers(location: str | None = None) -> int:
    """Close this process's read-only connections to the session at ``location`` (to any
    session when None) that are still open: a relation or reader handed to an asset that has
    finished. Returns how many were closed."""
    wanted = location
    with _open_lock:
        found = [con for con, where in list(_open.items()) if wanted in (None, where)]
        for con in found:
            del _open[con]
    for con in found:
        with contextlib.suppress(duckdb.Error):
            con.close()
    return len(found)


def _type_name(value: Any, is_type: bool = False) -> str:
    kind = value if is_type else type(value)
    if not isinstance(kind, type):  # a typing construct: `pd.DataFrame | None`, `list[int]`
        return repr(kind)
    module = getattr(kind, "__module__", "")
    name = getattr(kind, "__qualname__", None) or repr(kind)
    return name if module in ("builtins", "") else f"{module}.{name}"
