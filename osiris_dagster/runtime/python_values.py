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
import dataclasses
import decimal
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


class InexactValueError(UnsupportedTypeError):
    """A value the requested type cannot keep exactly (a column is named in the message)."""


def supported_types_text() -> str:
    return ", ".join(SUPPORTED_TYPES)


# -- a Python value into a session table ------------------------------------------------------
def write_value(session: Session, table: str, value: Any) -> tuple[int, tuple[tuple[str, str],
                                                                             ...]]:
    """Create (or replace) ``table`` in the session's database from ``value``; returns its row
    count and columns. Raises UnsupportedTypeError for a value DuckDB cannot scan, and
    InexactValueError (naming the column) for one it would not store exactly."""
    source = _scannable(value)
    con = session.open_workspace_connection()
    target = f"{session.table_prefix}.{quote_ident(table)}"
    try:
        for name, scanned in source.scans.items():
            con.register(name, scanned)
        try:
            con.execute(f"CREATE OR REPLACE TABLE {target} AS {source.select}")
        except duckdb.Error:
            if source.refused:  # our check, raised inside DuckDB's scan of a stream
                raise source.refused[0] from None
            raise
        try:
            for column, values in source.verify.items():
                stored = con.execute(f"SELECT {quote_ident(column)} FROM {target}").fetchall()
                _check_same(column, values, [row[0] for row in stored], "DuckDB")
        except InexactValueError:
            con.execute(f"DROP TABLE {target}")
            raise
        rows = int(con.execute(f"SELECT count(*) FROM {target}").fetchall()[0][0])
        columns = tuple((str(r[0]), str(r[1]))
                        for r in con.execute(f"DESCRIBE {target}").fetchall())
    finally:
        con.close()
    return rows, columns


@dataclasses.dataclass
class _Source:
    """What :func:`write_value` registers (view name -> value DuckDB scans), the SELECT it
    stores, and the columns whose stored values it compares with the value's (name -> the
    value's Python objects)."""

    scans: dict[str, Any]
    select: str = f"SELECT * FROM {quote_ident(_SOURCE)}"
    verify: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    refused: list[InexactValueError] = dataclasses.field(default_factory=list)  # by a stream


def _scannable(value: Any) -> _Source:
    """What DuckDB scans for ``value``, without copying where it can: DataFrames and Arrow
    tables are scanned in place, readers and relations are streamed batch by batch. Refuses
    (naming the column) what DuckDB would not store exactly."""
    import pandas as pd
    import pyarrow as pa

    if isinstance(value, pd.DataFrame):
        return _pandas_source(value)
    if isinstance(value, pa.Table):
        return _Source({_SOURCE: _checked_arrow(value)})
    if isinstance(value, pa.RecordBatchReader):
        return _streamed(value)
    if isinstance(value, duckdb.DuckDBPyRelation):  # of another connection: stream it
        return _Source({_SOURCE: _arrow_reader(_arrow_exact(value))})
    if type(value).__module__.split(".")[0] == "polars" and \
            type(value).__name__ in ("DataFrame", "LazyFrame"):
        frame = value.collect() if hasattr(value, "collect") else value
        return _Source({_SOURCE: _checked_arrow(frame.to_arrow())})
    unsupported = (f"a {_type_name(value)} cannot become a table; return one of "
                   f"{supported_types_text()}")
    if hasattr(value, "__arrow_c_stream__"):  # any Arrow PyCapsule stream (pyarrow >= 15)
        try:
            return _streamed(pa.RecordBatchReader.from_stream(value))
        except (pa.ArrowException, TypeError, ValueError) as exc:  # a column, not a table
            raise UnsupportedTypeError(f"{unsupported} ({exc})") from None
    raise UnsupportedTypeError(unsupported)


# A pandas DataFrame: DuckDB scans its columns in place, except those it would change. DuckDB
# types an object column from a sample of its values (Decimals became FLOAT, mixed ints and
# strings VARCHAR, dicts MAP(VARCHAR, VARCHAR)) and keeps tz-aware timestamps and timedeltas
# to the microsecond only: these columns go through Arrow (pyarrow refuses mixed types and keeps
# Decimals as decimal128), and are compared with the values they came from.
def _pandas_source(frame: Any) -> _Source:
    import pandas as pd
    import pyarrow as pa

    if isinstance(frame.columns, pd.MultiIndex):
        raise InexactValueError(
            f"its columns are a MultiIndex ({', '.join(map(str, frame.columns[:3]))}"
            f"{', ...' if len(frame.columns) > 3 else ''}), which has no table equivalent; "
            "give the columns one level of names, e.g. "
            "df.columns = ['_'.join(map(str, c)) for c in df.columns]")
    frame = _index_as_columns(frame)
    names = [str(c) for c in frame.columns]
    _check_names(names)
    frame = frame.set_axis(names, axis=1) if names != list(frame.columns) else frame
    arrow: dict[str, Any] = {}
    verify: dict[str, list[Any]] = {}
    hugeint: set[str] = set()
    for name in names:
        series = frame[name]
        dtype = series.dtype
        if isinstance(dtype, pd.ArrowDtype) or (
                isinstance(dtype, pd.DatetimeTZDtype) and dtype.unit == "ns") or \
                (dtype.kind == "m" and str(dtype).endswith("[ns]")):
            arrow[name] = pa.array(series)  # an Array, or a ChunkedArray (ArrowDtype)
        elif pd.api.types.is_object_dtype(dtype):
            values = series.tolist()
            column = _object_column(name, values)
            if column is None:  # pyarrow refused it: DuckDB scans it, then it is compared
                verify[name] = values
                continue
            if pa.types.is_decimal(column.type) and _big_int_columns(values):
                hugeint.add(name)
            arrow[name] = column
    if not arrow:
        return _Source({_SOURCE: frame}, verify=verify)
    arrow_table = _checked_arrow(pa.table(arrow))
    rest = [n for n in names if n not in arrow]
    scans: dict[str, Any] = {f"{_SOURCE}_arrow": arrow_table}
    if rest:
        scans[_SOURCE] = frame[rest]

    def pick(name: str) -> str:
        if name not in arrow:
            return f"p.{quote_ident(name)}"
        column = f"a.{quote_ident(name)}"
        return f"CAST({column} AS HUGEINT) AS {quote_ident(name)}" if name in hugeint \
            else column

    joined = f"{quote_ident(_SOURCE + '_arrow')} a" if not rest else \
        f"{quote_ident(_SOURCE)} p POSITIONAL JOIN {quote_ident(_SOURCE + '_arrow')} a"
    select = f"SELECT {', '.join(pick(n) for n in names)} FROM {joined}" if names else \
        f"SELECT * FROM {joined}"
    return _Source(scans, select, verify)


def _index_as_columns(frame: Any) -> Any:
    """The frame with its index as its first columns (as ``reset_index()``) when the index
    carries data: it has a name (``groupby``, ``set_index``), several levels, or labels that are
    not integers (a ``DatetimeIndex``). An unnamed integer index is row labels (a RangeIndex,
    or what filtering or sorting a frame leaves of one) and is left out."""
    import pandas as pd

    index = frame.index
    if index.nlevels == 1 and index.name is None and (
            isinstance(index, pd.RangeIndex) or pd.api.types.is_integer_dtype(index.dtype)):
        return frame
    try:
        return frame.reset_index()
    except ValueError as exc:  # "cannot insert customer_id, already exists"
        raise InexactValueError(
            f"its index ({', '.join(map(str, index.names))}) becomes columns, but {exc}: "
            "rename the index (df.rename_axis('...')), or drop it (df.reset_index(drop=True))"
        ) from None


def _check_names(names: list[str]) -> None:
    """Refuse column names DuckDB cannot tell apart: its names are case-insensitive."""
    seen: dict[str, str] = {}
    for name in names:
        key = name.lower()
        if key in seen:
            what = f"the column '{name}' twice" if seen[key] == name else \
                f"the columns '{seen[key]}' and '{name}'"
            raise InexactValueError(
                f"it has {what}: DuckDB's column names are case-insensitive, so a query "
                "could not tell them apart (DuckDB would rename one); rename one")
        seen[key] = name


def _object_column(name: str, values: list[Any]) -> Any:
    """A pandas object column as an Arrow array holding the same values; None when pyarrow
    cannot type it (then DuckDB does, and the stored values are compared). Raises
    InexactValueError naming the column when the values would change."""
    import pyarrow as pa

    try:
        try:
            column = pa.array(values, from_pandas=True)
        except OverflowError:  # a Python int beyond int64
            if not _big_int_columns(values):
                raise
            column = pa.array(values, type=pa.decimal128(38, 0), from_pandas=True)
    except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
        kinds = sorted({type(v).__name__ for v in values if not _missing(v)})
        if len(kinds) > 1:
            raise InexactValueError(
                f"column '{name}' mixes {', '.join(kinds)} values ({exc}); a table column has "
                f"one type: convert it, e.g. df['{name}'].astype(str), or split it") from None
        return None
    _check_same(name, values, column.to_pylist(), "Arrow")
    return column


def _big_int_columns(values: list[Any]) -> bool:
    """Whether every value is a Python int (not a bool) or missing, and one is beyond int64."""
    ints = [v for v in values if not _missing(v)]
    return bool(ints) and all(type(v) is int for v in ints) and \
        any(not _INT64[0] <= v <= _INT64[1] for v in ints)


def _check_same(name: str, source: list[Any], stored: list[Any], where: str) -> None:
    for row, (before, after) in enumerate(zip(source, stored, strict=True)):
        if not _same(before, after):
            raise InexactValueError(
                f"column '{name}' would not be kept exactly: row {row} is {before!r} "
                f"({type(before).__name__}), {where} makes it {after!r}; give the column one "
                f"type that holds its values (e.g. Decimal, str), or convert it yourself")


def _missing(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))  # None, NaN, NaT, pd.NA, Decimal('NaN')
    except (TypeError, ValueError):  # a list or an array: not a scalar
        return False


def _same(source: Any, stored: Any) -> bool:
    """Whether ``stored`` (read back from Arrow or DuckDB) is ``source``: equal, and of the
    same kind (True is not 1.0, '1' is not 1)."""
    import numpy as np

    if isinstance(source, np.ndarray):
        source = source.tolist()
    elif isinstance(source, np.generic):
        source = source.item()
    if _missing(source):
        return stored is None or _missing(stored)
    if stored is None:
        return False
    if isinstance(source, bool) or isinstance(stored, bool):
        return type(source) is type(stored) and source == stored
    if isinstance(source, list | tuple):
        return isinstance(stored, list | tuple) and len(source) == len(stored) and \
            all(_same(a, b) for a, b in zip(source, stored, strict=True))
    if isinstance(source, dict):  # a STRUCT adds the other rows' keys, as NULL
        keys = {str(k): v for k, v in source.items()}
        return isinstance(stored, dict) and set(keys) <= set(stored) and \
            all(_same(keys.get(k), v) for k, v in stored.items())
    numbers = (int, float, decimal.Decimal)
    if isinstance(source, numbers) != isinstance(stored, numbers):
        return False
    try:
        return bool(source == stored)
    except (TypeError, ValueError):
        return False


def _checked_arrow(table: Any) -> Any:
    """An Arrow table DuckDB stores exactly; refuses (naming the column) clashing names, decimals
    beyond 38 digits and durations with nanoseconds (DuckDB's INTERVAL keeps microseconds)."""
    _check_names(list(table.schema.names))
    for field in table.schema:
        _check_arrow_field(field)
        if _is_ns_duration(field.type):
            _check_ns(field.name, table.column(field.name))
    return table


def _streamed(reader: Any) -> _Source:
    """The reader, checking what :func:`_checked_arrow` checks batch by batch."""
    source = _Source({})
    source.scans[_SOURCE] = _checked_reader(reader, source.refused)
    return source


def _checked_reader(reader: Any, refused: list[InexactValueError]) -> Any:
    import pyarrow as pa

    schema = reader.schema
    _check_names(list(schema.names))
    for field in schema:
        _check_arrow_field(field)
    durations = [f.name for f in schema if _is_ns_duration(f.type)]
    if not durations:
        return reader

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            try:
                for name in durations:
                    _check_ns(name, batch.column(name))
            except InexactValueError as exc:
                refused.append(exc)
                raise
            yield batch

    return pa.RecordBatchReader.from_batches(schema, batches())


def _check_arrow_field(field: Any) -> None:
    import pyarrow as pa

    if pa.types.is_decimal256(field.type) or (pa.types.is_decimal(field.type) and
                                              field.type.precision > 38):
        raise InexactValueError(
            f"column '{field.name}' holds decimals of {field.type.precision} digits; DuckDB's "
            "DECIMAL holds 38: round them, or convert the column to str")


def _is_ns_duration(kind: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_duration(kind) and kind.unit == "ns"


def _check_ns(name: str, column: Any) -> None:
    import pyarrow as pa

    try:
        column.cast(pa.duration("us"))  # a safe cast: refuses to drop nanoseconds
    except pa.ArrowInvalid:
        raise InexactValueError(
            f"column '{name}' holds durations with nanoseconds; DuckDB's INTERVAL keeps "
            "microseconds: round them (e.g. df['c'].dt.round('us')), or store the nanoseconds "
            "as an integer column") from None


# -- a session table as a Python value --------------------------------------------------------
def read_table(location: str, table: str, load_type: Any, settings: Settings) -> Any:
    """The table ``table`` of the session at ``location`` as ``load_type`` (one of
    SUPPORTED_TYPES).

    Raises UnsupportedTypeError before opening anything when the type is not supported."""
    convert = _converter(load_type)
    con, prefix = reader_connection(location, settings)
    try:
        relation = con.sql(f"SELECT * FROM {prefix}.{quote_ident(table)}")
        if load_type is not duckdb.DuckDBPyRelation:
            _refuse_types_without_form(relation)
            _refuse_changed_times(relation, pandas=load_type is _pandas_type())
        value, keep_open = convert(con, relation)
    except BaseException:
        con.close()
        raise
    if not keep_open:
        con.close()
    return value


# Types no conversion keeps, named whatever is asked for but a DuckDB relation: (type ids,
# what they are and what to do, the error). A BIGNUM (VARINT) has no pandas type (DuckDB raised
# its NotImplementedException, naming no column) and reached Arrow and polars as opaque bytes.
_NO_FORM: tuple[tuple[frozenset[str], str, type[UnsupportedTypeError]], ...] = (
    (frozenset({"bignum", "varint"}),
     "BIGNUM (integers of any size), which pandas, Arrow and polars have no type for: cast "
     "them in the step's SQL to VARCHAR, or to a DECIMAL or HUGEINT that holds them, or read a "
     "DuckDB relation", UnsupportedTypeError),
    (frozenset({"time with time zone"}),
     "TIME WITH TIME ZONE, which pandas cannot take and Arrow and polars read without its "
     "offset (10:00:00+02 became 10:00:00): cast it in the step's SQL to VARCHAR, or to "
     "TIME once moved to one zone", InexactValueError),
    (frozenset({"bit"}), "BIT, which reaches pandas, Arrow and polars as DuckDB's internal "
                         "bytes: cast it to VARCHAR ('0101') in the step's SQL",
     InexactValueError))


def _refuse_types_without_form(rel: duckdb.DuckDBPyRelation) -> None:
    """Name the columns of a type (also inside lists, structs and maps) that no conversion
    keeps (:data:`_NO_FORM`)."""
    for type_ids, what, error in _NO_FORM:
        found = [name for name, _ in _columns_holding(rel, set(type_ids))]
        if found:
            raise error(f"column(s) {', '.join(repr(n) for n in found)} are {what}")


_DATES_AND_TIMESTAMPS = frozenset({"date", "timestamp", "timestamp_s", "timestamp_ms",
                                   "timestamp_ns", "timestamp with time zone"})
_TIMES = frozenset({"time", "time_ns"})
_PLAIN_TEMPORAL = frozenset({"DATE", "TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS",
                             "TIMESTAMP WITH TIME ZONE", "TIME", "TIME_NS"})


def _pandas_type() -> Any:
    import pandas as pd

    return pd.DataFrame


def _refuse_changed_times(rel: duckdb.DuckDBPyRelation, pandas: bool) -> None:
    """Name the first column whose dates or times the requested type would change: an
    infinite DATE or TIMESTAMP
    (pandas showed the largest timestamp, year 294247, Arrow and polars DuckDB's raw number);
    TIME '24:00:00' read through Arrow (00:00:00 there, NULL in polars; pandas reads plain TIME
    columns as text and keeps it). Values nested in a list or struct are judged by the
    column's text."""
    checks: list[tuple[str, str, str]] = []  # (column, what it holds, aggregate)
    for name, kind in zip(rel.columns, rel.types, strict=True):
        ids, column = _type_ids(kind), quote_ident(name)
        nested = kind.id not in _DATES_AND_TIMESTAMPS | _TIMES
        text = f"CAST({column} AS VARCHAR)"
        if ids & _DATES_AND_TIMESTAMPS:
            checks.append((name, "infinite", f"bool_or({text} LIKE '%infinity%')" if nested
                           else f"bool_or(isinf({column}))"))
        if ids & _TIMES and (not pandas or _pandas_reads_through_arrow(kind)):
            checks.append((name, "24:00:00", f"bool_or({text} LIKE '%24:00:00%')" if nested
                           else f"bool_or({column} >= '24:00:00'::{kind})"))
    if not checks:
        return
    found = rel.aggregate(", ".join(check for _, _, check in checks)).fetchall()[0]
    for (name, holds, _), hit in zip(checks, found, strict=True):
        if not hit:
            continue
        kind = dict(zip(rel.columns, map(str, rel.types), strict=True))[name]
        judged = "" if kind.upper() in _PLAIN_TEMPORAL else (
            " (nested values are judged by the column's text, so a text field holding it in "
            "the same struct counts too)")
        if holds == "infinite":
            raise InexactValueError(
                f"column '{name}' ({kind}) holds an infinite value ('infinity' or "
                f"'-infinity'){judged}, which pandas, Arrow and polars have no form for "
                "(pandas showed the year 294247): make it NULL or a date in the step's SQL "
                "(CASE WHEN isinf(c) THEN NULL ELSE c END), cast it to VARCHAR, or read a "
                "DuckDB relation")
        raise InexactValueError(
            f"column '{name}' ({kind}) holds the time 24:00:00{judged}, which Arrow reads as "
            "00:00:00 and polars as NULL: cast it to VARCHAR in the step's SQL, or read a "
            "plain TIME column as pandas.DataFrame (it keeps the text)")


def _converter(load_type: Any) -> Callable[[duckdb.DuckDBPyConnection,
                                             duckdb.DuckDBPyRelation], tuple[Any, bool]]:
    import pandas as pd
    import pyarrow as pa

    if load_type is duckdb.DuckDBPyRelation:
        return lambda con, rel: (rel, True)
    if load_type is pa.Table:
        return lambda con, rel: (_arrow_exact(rel).to_arrow_table(), False)
    if load_type is pa.RecordBatchReader:
        return lambda con, rel: (_closing_reader(con, _arrow_exact(rel)), True)
    if load_type is pd.DataFrame:
        return lambda con, rel: (_pandas_frame(rel), False)
    if getattr(load_type, "__module__", "").split(".")[0] == "polars" and \
            getattr(load_type, "__name__", "") == "DataFrame":
        return lambda con, rel: (_polars_frame(_arrow_exact(rel)), False)
    raise UnsupportedTypeError(f"cannot load a table as {_type_name(load_type, is_type=True)}; "
                               f"annotate the input as one of {supported_types_text()}")


# DuckDB types that DuckDB's own pandas conversion (``rel.df()``) does not keep exactly: DECIMAL
# and HUGEINT become float64, an INTERVAL's months become 30 days, UHUGEINT is refused, a
# TIME_NS becomes datetime.time (microseconds).
_NOT_NUMPY_EXACT = frozenset({"decimal", "hugeint", "uhugeint", "interval", "time_ns"})
_NUMPY_CAST = frozenset({"hugeint", "uhugeint", "interval"})  # top-level: cast or checked
_INT64 = (-(2**63), 2**63 - 1)
_UINT64_MAX = 2**64 - 1


def _pandas_frame(rel: duckdb.DuckDBPyRelation) -> Any:
    """The relation as a pandas DataFrame whose values are the table's, exactly.

    Columns of the common types come from ``rel.df()`` as before (ints, floats, strings,
    timestamps, dates...). A DECIMAL column becomes ``pd.ArrowDtype(pa.decimal128(p, s))``;
    a HUGEINT (UHUGEINT) column int64 (uint64; Int64/UInt64 with NULLs) when every value fits,
    else Python ints (object); an INTERVAL column timedelta64[us] when no value has months
    (a day is 24 hours: sessions run in UTC), else InexactValueError naming the column; a
    TIME_NS column ``pd.ArrowDtype(pa.time64("ns"))``; a LIST/STRUCT/MAP/ARRAY/UNION holding
    any of these the ArrowDtype of its Arrow type."""
    import pandas as pd

    names, kinds = list(rel.columns), list(rel.types)
    if not any(_type_ids(kind) & _NOT_NUMPY_EXACT for kind in kinds):
        return rel.df()
    checks = {name: _fit_check(quote_ident(name), kind.id)
              for name, kind in zip(names, kinds, strict=True)
              if kind.id in ("hugeint", "uhugeint", "interval")}
    facts = dict(zip(checks, rel.aggregate(", ".join(checks.values())).fetchall()[0],
                     strict=True)) if checks else {}
    numpy_side: list[str] = []  # select expressions for rel.df()
    arrow_side: list[str] = []  # columns read through Arrow
    big_ints: list[str] = []  # read as text, made Python ints
    for name, kind in zip(names, kinds, strict=True):
        column = quote_ident(name)
        ids = _type_ids(kind)
        if kind.id in ("hugeint", "uhugeint"):
            small = "BIGINT" if kind.id == "hugeint" else "UBIGINT"
            if facts[name] is False:  # NULL when every value is NULL
                big_ints.append(name)
                small = "VARCHAR"
            numpy_side.append(f"CAST({column} AS {small}) AS {column}")
        elif kind.id == "interval":
            if facts[name]:  # a value has months
                raise InexactValueError(
                    f"column '{name}' is an INTERVAL with months: a pandas Timedelta has no "
                    "months (DuckDB's pandas conversion counts one as 30 days). Annotate the "
                    "input as pyarrow.Table (its month_day_nano_interval keeps them), or "
                    "split the interval in the step's SQL, e.g. datepart('year', c) * 12 + "
                    "datepart('month', c) AS c_months")
            numpy_side.append(column)
        elif _pandas_reads_through_arrow(kind):  # DECIMAL, TIME_NS, or a type holding one
            if "uhugeint" in ids and kind.id != "decimal":
                raise InexactValueError(
                    f"column '{name}' ({kind}) holds UHUGEINT values, which Arrow and pandas "
                    "cannot keep inside a nested type; cast them in the step's SQL (to "
                    "VARCHAR, or to UBIGINT when they fit)")
            arrow_side.append(name)
        else:
            numpy_side.append(column)
    frame = rel.project(", ".join(numpy_side)).df() if numpy_side else None
    arrow = rel.project(", ".join(quote_ident(n) for n in arrow_side)).to_arrow_table() \
        if arrow_side else None
    if frame is None:
        frame = pd.DataFrame(index=pd.RangeIndex(arrow.num_rows))
    for name in big_ints:
        frame[name] = pd.Series([int(v) if isinstance(v, str) else None for v in frame[name]],
                                index=frame.index, dtype=object)
    for name in arrow_side:
        frame.insert(names.index(name), name,
                     pd.Series(pd.arrays.ArrowExtensionArray(arrow.column(name)),
                               index=frame.index))
    return frame


def _pandas_reads_through_arrow(kind: Any) -> bool:
    """Whether :func:`_pandas_frame` reads a column of this type through Arrow."""
    return kind.id not in _NUMPY_CAST and bool(_type_ids(kind) & _NOT_NUMPY_EXACT)


def _type_ids(kind: Any) -> set[str]:
    """The type ids of a DuckDB type and of every type nested in it."""
    ids = {kind.id}
    if kind.id in ("list", "array", "struct", "map", "union"):
        for _, child in kind.children:
            if type(child).__name__ == "DuckDBPyType":  # not an array's size, an enum value
                ids |= _type_ids(child)
    return ids


def _columns_holding(rel: duckdb.DuckDBPyRelation, type_ids: set[str]
                     ) -> list[tuple[str, str]]:
    """(name, type) of the columns whose type is, or holds in a list, struct or map, one of
    ``type_ids``."""
    return [(name, str(kind)) for name, kind in zip(rel.columns, rel.types, strict=True)
            if _type_ids(kind) & type_ids]


def _fit_check(column: str, type_id: str) -> str:
    """An aggregate: for a (U)HUGEINT column, whether every value fits (u)int64; for an
    INTERVAL column, whether some value has months."""
    if type_id == "hugeint":
        return f"bool_and({column} BETWEEN {_INT64[0]} AND {_INT64[1]})"
    if type_id == "uhugeint":
        return f"bool_and({column} <= {_UINT64_MAX})"
    return (f"bool_or(datepart('year', {column}) <> 0 OR "
            f"datepart('month', {column}) <> 0)")


def _polars_frame(rel: duckdb.DuckDBPyRelation) -> Any:
    """``rel.pl()``; polars has no type for an INTERVAL (it failed with "could not import from
    month_day_nano_interval type", naming no column): such columns are named instead."""
    intervals = [name for name, _ in _columns_holding(rel, {"interval"})]
    if intervals:
        raise UnsupportedTypeError(
            f"column(s) {', '.join(repr(n) for n in intervals)} are INTERVAL, which polars "
            "cannot take (it has no months-days-nanoseconds type): read the table as "
            "pyarrow.Table, or turn the interval into numbers in the step's SQL (e.g. "
            "epoch(col) for seconds)")
    return rel.pl()


def _fits_decimal38(column: str, kind: str) -> str:
    """An aggregate: whether every (U)HUGEINT of ``column`` has at most 38 digits. Nested in a
    list or struct, by the column's text: no run of 39 digits (a text field of 39 digits in
    the same struct counts too, and is refused with it)."""
    if kind in ("HUGEINT", "UHUGEINT"):
        low = f" AND {column} > -{_DECIMAL38}::HUGEINT" if kind == "HUGEINT" else ""
        return f"bool_and({column} < {_DECIMAL38}::{kind}{low})"
    return f"bool_and(NOT regexp_matches(CAST({column} AS VARCHAR), '[0-9]{{39}}'))"


_DECIMAL38 = 10**38  # DuckDB gives Arrow a (U)HUGEINT as decimal128(38, 0)


def _arrow_exact(rel: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """``rel``, once its HUGEINT and UHUGEINT columns are known to fit what DuckDB gives Arrow
    (and so polars) for them, ``decimal128(38, 0)``: a value of 39 digits made an invalid
    decimal, and a UHUGEINT above 2**127 came back negative. Else InexactValueError naming
    the column."""
    wide = _columns_holding(rel, {"hugeint", "uhugeint"})  # also inside lists and structs
    if not wide:
        return rel
    checks = ", ".join(_fits_decimal38(quote_ident(n), k) for n, k in wide)
    row = (rel.aggregate(checks).fetchall() or [()])[0]
    for (name, kind), fits in zip(wide, row, strict=True):
        if fits is False:
            raise InexactValueError(
                f"column '{name}' ({kind}) holds values of 39 digits, which Arrow's "
                "decimal128(38, 0), the type DuckDB gives Arrow and polars for a (U)HUGEINT, "
                "cannot hold; read it as pandas.DataFrame (exact Python ints), or cast it to "
                "VARCHAR in the step's SQL")
    return rel


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


def reader_connection(location: str, settings: Settings
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
