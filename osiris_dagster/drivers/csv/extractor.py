"""``filesystem.csv_extractor``: one CSV file -> the step's table, read by DuckDB's ``read_csv``.

Osiris reads the file with ``pandas.read_csv``; we produce the same table contents without pandas
on the data path (DuckDB streams and spills, pandas held the whole file in memory). How each
pandas behaviour is reproduced, and where we deliberately differ:

* **Dialect.** Always explicit: the configured delimiter, ``"`` as quote and escape (RFC 4180),
  ``strict_mode`` and no comment character unless configured; DuckDB's sniffer is off, so it can
  neither decide the file is one text column nor that ``#`` starts a comment.
  A quote the file never closes fails the step with its line, also where DuckDB's single-threaded
  reader (used after a quoted line break) would read it as NULL
  (:mod:`unclosed_quote <.unclosed_quote>`).
* **Header.** We find the header row ourselves (streaming,
  :func:`~osiris_dagster.drivers.csv.records.inspect_layout`) with pandas' ``skiprows``/``header:
  N`` rules and name columns like pandas: duplicate names get ``.1``, ``.2``; an empty name
  becomes ``Unnamed: <i>``; ``header: false`` gives ``0, 1, 2...``.
  DuckDB identifiers are case-insensitive, so a name equal to an earlier one ignoring case also
  gets a ``.N`` suffix, in the file's order (``id,ID`` -> ``id, ID.1``; pandas would keep
  ``a`` and ``A``): the event ``columns_renamed`` and the asset's ``columns_renamed`` metadata
  list them. A ``header: N`` past the rows of the file fails, as in pandas; ``skip_rows``
  past them gives the table of an empty file (pandas' EmptyDataError, an empty DataFrame in
  Osiris). DuckDB then reads only the data part.
* **Rows.** Short rows are padded with NULL (pandas does too); a row with more fields than the
  header is an error naming its physical line, unless the fields past the header are empty
  or NA markers (a trailing delimiter, ``1,2,``: DuckDB drops them; pandas would take the first
  column as the index); with ``keep_default_na: false`` only empty fields, or ``na_values`` when
  they include ``""``. Blank lines are skipped (``skip_blank_lines:
  false`` turns them into all-NULL rows), and so are lines of only spaces and tabs (with
  ``skip_blank_lines: false`` a row of that text), which DuckDB reads as rows. Where DuckDB
  would differ, it reads a scratch copy of the data part instead of the file: after a preamble
  its ``skip`` cannot step over exactly (blank or comment lines, quoted line breaks), and,
  without the blank lines and lines of only spaces that pandas drops (records found by Python's
  csv module, slower; each copied as its own bytes, so DuckDB reads it as in the file), for
  ``skip_blank_lines: false`` or a one-column file when a byte scan finds blank lines,
  when the read meets a row that may be a line of only spaces (it stops there), with
  ``comment`` when a byte scan finds a field of spaces before the comment character
  (``1, #note``: DuckDB drops the record whole; the copy holds it up to that character), and
  when one finds a field that starts with spaces and a quote (``1, "y"``: DuckDB reads ``y``,
  pandas `` "y"``; the copy quotes that record's fields as csv.reader read them), and with
  ``comment`` in a file mixing CRLF and LF line ends (DuckDB dropped the first character after
  an inline comment ending at a bare LF; the copy's records all end with one line break).
* **Line numbers** in errors are physical lines of the user's file: where DuckDB's rejects table
  places the bad record (:mod:`rejects <.rejects>`), counted from its byte position (DuckDB's
  own line count is short by one per record with a quoted line break before it); otherwise,
  and for values our type checks refuse, found by re-scanning the file with Python's csv module
  (:mod:`error_lines <.error_lines>`).
* **NULLs.** pandas' default NA strings (:data:`PANDAS_NA_VALUES`: ``""``, ``NA``, ``NULL``,
  ``N/A``, ``NaN``, ``None``, ...) plus ``na_values``, so numeric columns with such markers still
  read as numbers. A default that holds the delimiter (``N/A`` with ``/``, ``#N/A N/A`` with a
  space) can only be a quoted field: DuckDB refuses it as a NULL string, so the read makes it
  NULL (pandas does too); an ``na_values`` entry holding the delimiter is an error.
  ``keep_default_na: false`` (pandas' option) drops the default list: only
  ``na_values`` are NULL, and an empty field (quoted or not), like a field a short row lacks or a
  blank line kept by ``skip_blank_lines: false``, is the empty string (so a numeric column with
  one is text, as in pandas), except where pandas reads it as missing: in a ``parse_dates`` list
  column (pandas: NaT) and in a column whose ``dtype`` is a nullable pandas type (``Int64``,
  ``Float64``, ...). DuckDB's reader then gets ``""`` as its only NULL string (unless
  ``na_values`` has it) and the read maps NULL back to ``''`` and ``na_values`` to NULL
  (:meth:`_Extraction._value`).
* **Types.** Decided from every value, never from a sample alone (:mod:`types <.types>` has
  the rules): a column gets the first of BOOLEAN, BIGINT, DOUBLE (and with ``parse_dates: true``
  DATE, TIMESTAMP, TIMESTAMPTZ) that each of its values takes *faithfully*, else VARCHAR. So
  ``00501``, ``0x1F``, ``yes`` or an integer past BIGINT (``100000000000000000000``, never
  DOUBLE's ``1e+20``) keep a column text, ``19.99``, ``1e3``, ``+5`` or ``-0`` make it DOUBLE,
  a time of day makes a DATE column TIMESTAMP, offsets make it TIMESTAMPTZ (a mix of values with
  and without an offset stays text). The types are guessed from the first 20,480 rows; the pass
  that creates the table checks every value against them; a value that does not fit stops it,
  its column gets the next type that value fits, and the table is created again (event
  ``csv_type_widened``); after three such values, one pass types every column from all rows
  first: the result is always the one the whole file calls for. A
  ``parse_dates`` list column must be DATE, TIMESTAMP or TIMESTAMPTZ; a value that fits none is
  an error naming file, line and column. ``dtype`` columns are read as text too and cast to the
  declared type only when it holds the value exactly (:func:`types.faithful <.types.faithful>`):
  ``19.99`` as ``int64``, ``1.239`` as ``DECIMAL(10,2)``, ``0x1F``/``00501`` as an integer or
  ``yes`` as ``bool`` fail the step naming file, line, column, value and dtype (DuckDB's cast
  would round or reinterpret them; pandas refuses them too).
  Unlike pandas, integer columns with NULLs stay BIGINT (pandas turns them into floats), and an
  all-empty column is VARCHAR.
* **Time zones.** Naive timestamps stay TIMESTAMP (no zone is assumed); values with an offset are
  TIMESTAMPTZ instants. Nothing depends on the host's time zone: the step connection's DuckDB
  ``TimeZone`` is UTC (see ``session.py``).
* **Empty input.** A 0-byte file (or one with only blank/comment lines) has no columns; a DuckDB
  table needs one, so the table gets the configured ``columns`` as VARCHAR, or else a single
  VARCHAR column ``_empty``, and zero rows. ``filesystem.csv_writer`` writes such a table back as
  an empty file, as Osiris does. A header-only file gives its columns (VARCHAR, or ``dtype``) and
  zero rows.
* **Encodings and compression.** utf-8 (``ascii`` is read as utf-8) and latin-1 are read by
  DuckDB; utf-16 (either byte order, BOM-detected) is transcoded to a scratch file first, since
  DuckDB's reader mis-reads big-endian files. gzip is read by DuckDB; bz2, xz and zip are
  stream-decompressed into a scratch file under ``ctx.tmp_dir`` and deleted afterwards.
* ``chunk_size`` is accepted and ignored (DuckDB streams on its own).
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb

from osiris_dagster.core.errors import DriverError
from osiris_dagster.core.naming import quote_ident, quote_literal
from osiris_dagster.drivers.base import (
    DriverResult,
    StepContext,
    UpstreamTable,
    heartbeat,
    stopped,
)
from osiris_dagster.drivers.csv import types as ct
from osiris_dagster.drivers.csv.compression import infer_compression
from osiris_dagster.drivers.csv.data_part import (
    copy_from_offset,
    may_have_blank_lines,
    may_have_spaced_comments,
    may_mix_line_ends,
    mixes_in_lone_crs,
    rewrite_blank_lines,
    spaced_quotes,
)
from osiris_dagster.drivers.csv.empty_file import EMPTY_FILE_COLUMN
from osiris_dagster.drivers.csv.error_lines import find_value_line
from osiris_dagster.drivers.csv.read_csv_call import Reader
from osiris_dagster.drivers.csv.read_errors import FailedRead
from osiris_dagster.drivers.csv.records import MAX_LINE_BYTES, Layout, inspect_layout
from osiris_dagster.drivers.csv.scratch import Scratch
from osiris_dagster.drivers.csv.source import Source, prepare_source
from osiris_dagster.drivers.csv.unclosed_quote import (
    find_unclosed_quote,
    spaced_opening_quote,
    unclosed_quote_error,
)

PANDAS_NA_VALUES: tuple[str, ...] = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)

SAMPLE_ROWS = 20480  # rows the first guess of the types is made from (DuckDB's sample size)
# A late value that does not fit its column costs one more read of the file; after the third,
# one pass types every column from all rows instead (_Extraction._detect_whole_file: about a
# read's cost), so a file with such values in many columns (a footer row of text below numbers)
# is read four times plus that pass, not once per column; exactly three such columns pay the
# pass in vain. Measured in benchmarks/csv_types.py.
WIDENINGS_BEFORE_WHOLE_FILE_TYPES = 3

_PANDAS_DTYPES = {
    "str": "VARCHAR", "object": "VARCHAR", "string": "VARCHAR", "category": "VARCHAR",
    "int": "BIGINT", "int64": "BIGINT", "Int64": "BIGINT", "int32": "INTEGER",
    "Int32": "INTEGER", "int16": "SMALLINT", "Int16": "SMALLINT", "int8": "TINYINT",
    "Int8": "TINYINT", "float": "DOUBLE", "float64": "DOUBLE", "Float64": "DOUBLE",
    "float32": "FLOAT", "Float32": "FLOAT", "bool": "BOOLEAN", "boolean": "BOOLEAN",
    "datetime64": "TIMESTAMP", "datetime64[ns]": "TIMESTAMP", "datetime64[us]": "TIMESTAMP",
    "datetime64[ms]": "TIMESTAMP", "datetime64[s]": "TIMESTAMP",
}
# pandas' nullable extension dtypes: an empty field is <NA> in them, also with keep_default_na off
_NULLABLE_DTYPES = frozenset(
    f"{kind}{bits}" for kind in ("Int", "UInt") for bits in (8, 16, 32, 64)
) | {"Float32", "Float64"}
_SQL_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_ ]*(\(\s*\d+\s*(,\s*\d+\s*)?\))?")
_ENCODINGS = {
    "utf-8": "utf-8", "utf8": "utf-8", "ascii": "ascii", "us-ascii": "ascii",
    "latin-1": "latin-1", "latin1": "latin-1", "iso-8859-1": "latin-1", "iso8859-1": "latin-1",
    "utf-16": "utf-16", "utf16": "utf-16",
}
# The two failures a read recovers from are told apart by DuckDB's message, not by its rejects
# table: the padding one is not a rejected record (DuckDB raises it even with store_rejects), and
# asking the rejects table about an over-long row would cost a full extra read of a file that the
# retry then reads fine.
_LINE_SIZE = "Maximum line size"
# error() text of the read's guard: a row that may be a line of only spaces and tabs, which
# pandas skips and DuckDB reads as a row (see _Extraction._space_line_guard)
_SPACE_LINE = "osiris_csv_space_line"
_PARALLEL_PADDING = "does not support null_padding in conjunction with quoted new lines"


# -- options --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    """The step config, checked for what only the driver can know is impossible."""

    path: str
    delimiter: str = ","
    encoding: str = "utf-8"  # normalised: utf-8, latin-1 or utf-16
    header: bool | int = True
    columns: tuple[str, ...] | None = None
    skip_rows: int = 0
    limit: int | None = None
    parse_dates: bool | tuple[str, ...] = False
    dtype: Mapping[str, str] = field(default_factory=dict)
    na_values: tuple[str, ...] = ()
    keep_default_na: bool = True
    skip_blank_lines: bool = True
    comment: str | None = None
    compression: str = "infer"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Options:
        mode = config.get("mode")
        if mode not in (None, "extract", "read"):
            raise DriverError(f"filesystem.csv_extractor: mode {mode!r} is not supported here; "
                              "use mode: extract")
        path = config.get("path")
        if not isinstance(path, str) or not path.strip():
            raise DriverError("filesystem.csv_extractor needs `path`: the CSV file to read")
        delimiter = _one_char(config.get("delimiter", ","), "delimiter")
        comment = config.get("comment")
        comment = _one_char(comment, "comment") if comment not in (None, "") else None
        if delimiter in ('"', "\n", "\r"):
            raise DriverError(f"delimiter {delimiter!r} cannot be used: it is the quote character "
                              "or a line break")
        if comment is not None and comment in (delimiter, '"'):
            raise DriverError(f"comment character {comment!r} cannot be the delimiter or the "
                              "quote character")
        na_values = _na_values(config.get("na_values"))
        return cls(
            path=path,
            delimiter=delimiter,
            encoding=_encoding(config.get("encoding", "utf-8")),
            header=_header(config.get("header", True)),
            columns=_names(config.get("columns"), "columns"),
            skip_rows=_non_negative(config.get("skip_rows", 0), "skip_rows"),
            limit=_limit(config.get("limit")),
            parse_dates=_parse_dates(config.get("parse_dates", False)),
            dtype=_dtype(config.get("dtype")),
            na_values=na_values,
            keep_default_na=_bool(config.get("keep_default_na", True), "keep_default_na"),
            skip_blank_lines=bool(config.get("skip_blank_lines", True)),
            comment=comment,
            compression=str(config.get("compression") or "infer").lower(),
        )

    @property
    def date_columns(self) -> tuple[str, ...]:
        return self.parse_dates if isinstance(self.parse_dates, tuple) else ()

    @property
    def null_strings(self) -> tuple[str, ...]:
        """The strings DuckDB's reader reads as NULL (its ``nullstr``): pandas' defaults and
        ``na_values``; with ``keep_default_na: false`` only ``na_values`` when they include the
        empty string, else just ``""``, which the read maps back (see :attr:`empty_is_text`).
        Never a string holding the delimiter (DuckDB refuses it; see
        :attr:`nulls_after_read`)."""
        if self.keep_default_na:
            return tuple(v for v in dict.fromkeys((*PANDAS_NA_VALUES, *self.na_values))
                         if self.delimiter not in v)
        if "" in self.na_values:
            return tuple(v for v in dict.fromkeys(self.na_values) if self.delimiter not in v)
        return ("",)

    @property
    def nulls_after_read(self) -> tuple[str, ...]:
        """The strings the read itself makes NULL, past DuckDB's reader: with
        :attr:`empty_is_text` the ``na_values``; else the NA strings (pandas' defaults and
        ``na_values``) that hold the delimiter (``N/A`` with ``/``, ``#N/A N/A`` with a space).
        Such a string can only be a quoted field, which pandas reads as NA like any other;
        DuckDB refuses a NULL string holding its delimiter."""
        if self.empty_is_text:
            return tuple(dict.fromkeys(self.na_values))
        defaults = PANDAS_NA_VALUES if self.keep_default_na else ()
        return tuple(v for v in dict.fromkeys((*defaults, *self.na_values))
                     if self.delimiter in v)

    @property
    def empty_is_text(self) -> bool:
        """Whether an empty field is the empty string, not NULL (``keep_default_na: false``
        without ``""`` in ``na_values``). DuckDB's reader cannot say so: it pads a short row with
        NULL whatever its null strings, and drops only fields past the header that are null
        strings (a trailing delimiter). It reads ``""`` as NULL; the read turns NULL into ``''``
        and the ``na_values`` into NULL."""
        return not self.keep_default_na and "" not in self.na_values

    @property
    def empty_is_null(self) -> frozenset[str]:
        """Columns where pandas reads an empty field as missing even with
        ``keep_default_na: false``: ``parse_dates`` list columns (NaT) and ``dtype`` columns of a
        nullable pandas type (``Int64``: <NA>; ``int64`` refuses it, so it is an error here)."""
        nullable = {n for n, spec in self.dtype.items() if spec.strip() in _NULLABLE_DTYPES}
        return frozenset((*self.date_columns, *nullable))


def _one_char(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) != 1:
        raise DriverError(f"`{name}` must be a single character, got {value!r}")
    return value


def _encoding(value: Any) -> str:
    key = str(value).strip().lower().replace("_", "-")
    if key not in _ENCODINGS:
        raise DriverError(f"unsupported encoding {value!r}: use utf-8, ascii, latin-1, "
                          "iso-8859-1 or utf-16")
    return _ENCODINGS[key]


def _header(value: Any) -> bool | int:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value >= 0:
        return value
    raise DriverError(f"`header` must be true, false or a row number >= 0, got {value!r}")


def _non_negative(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DriverError(f"`{name}` must be an integer >= 0, got {value!r}")
    return value


def _limit(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DriverError(f"`limit` must be an integer >= 1, got {value!r}")
    return value


def _names(value: Any, option: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise DriverError(f"`{option}` must be a list of column names, got {value!r}")
    names = tuple(str(v) for v in value)
    if len(set(names)) != len(names):
        raise DriverError(f"`{option}` lists a column twice: {list(names)}")
    return names


def _parse_dates(value: Any) -> bool | tuple[str, ...]:
    if isinstance(value, bool):
        return value
    return _names(value, "parse_dates") or False


def _dtype(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DriverError(f"`dtype` must map column names to types, got {value!r}")
    return {str(k): str(v) for k, v in value.items()}


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise DriverError(f"`{name}` must be true or false, got {value!r}")
    return value


def _na_values(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


# -- entry point ----------------------------------------------------------------------------------
def run(ctx: StepContext, config: Mapping[str, Any],
        inputs: Sequence[UpstreamTable]) -> DriverResult:
    """Read ``config['path']`` into the step's table; returns the row count."""
    opts = Options.from_config(config)
    origin = _resolve_file(ctx, opts.path)
    with Scratch(Path(ctx.tmp_dir), f"csv_{ctx.step_id}") as scratch:
        source = prepare_source(origin, infer_compression(origin, opts.compression),
                                opts.encoding, scratch)
        layout = _inspect(source, opts)
        if layout is None or not layout.has_data:
            rows = ctx.create_output(_empty_select(ctx.con, opts, layout, origin))
        else:
            rows = _Extraction(ctx, opts, source, layout, scratch).run()
    ctx.log_metric("rows_read", rows)
    metadata: dict[str, Any] = {"source_path": str(origin)}
    renamed = renamed_columns(layout) if layout is not None else {}
    if renamed:  # the names a SQL step and `columns` must use: an event and the asset's metadata
        ctx.log_event("columns_renamed", renamed=renamed)
        ctx.notice(_renamed_notice(renamed))
        metadata["columns_renamed"] = renamed
    return DriverResult(table=ctx.output_table, rows_read=rows, rows_written=rows,
                        extra_metadata=metadata)


def _resolve_file(ctx: StepContext, raw: str) -> Path:
    path = ctx.resolve_path(raw)
    if not path.exists():
        base = ""
        if not os.path.isabs(os.path.expanduser(raw)):
            base = f" (relative paths resolve against {ctx.base_dir or Path.cwd()})"
        raise DriverError(f"CSV file not found: {path}{base}. Check `path` and the connection's "
                          "base_dir.")
    if path.is_dir():
        raise DriverError(f"{path} is a directory; `path` must name one CSV file")
    return path


def _inspect(source: Source, opts: Options) -> Layout | None:
    try:
        return inspect_layout(source, delimiter=opts.delimiter, comment=opts.comment,
                              skip_rows=opts.skip_rows, header=opts.header,
                              skip_blank_lines=opts.skip_blank_lines)
    except (OSError, EOFError, zlib.error) as exc:
        hint = " Check the `compression` option." if source.gzip else ""
        raise DriverError(f"{source.origin}: cannot read the file: {exc}.{hint}") from exc


# -- column names and declared types --------------------------------------------------------------
def column_names(layout: Layout) -> list[str]:
    """pandas' names, made unique case-insensitively for DuckDB: in the file's order, a name
    equal to an earlier one but for case gets the first free ``.N`` (``id,ID`` -> ``id,
    ID.1``), as pandas names an exact repeat."""
    return _dedup(_pandas_names(layout), str.lower)


def renamed_columns(layout: Layout) -> dict[str, str]:
    """pandas' name -> the column's, where they differ (names differing only in case)."""
    names = _pandas_names(layout)
    return {old: new for old, new in zip(names, column_names(layout), strict=True) if old != new}


def _pandas_names(layout: Layout) -> list[str]:
    """pandas' names (C parser rules)."""
    if layout.header is None:
        return [str(i) for i in range(layout.width)]
    raw = [name if name != "" else f"Unnamed: {i}" for i, name in enumerate(layout.header)]
    # pandas names the header's names first, then the blank ones: `,Unnamed: 0` (a file
    # re-exported with its index) is `Unnamed: 0.1, Unnamed: 0`, the real name keeps its column
    order = [i for i, name in enumerate(layout.header) if name != ""] + \
        [i for i, name in enumerate(layout.header) if name == ""]
    named = dict(zip(order, _dedup([raw[i] for i in order], lambda n: n), strict=True))
    return [named[i] for i in range(len(raw))]


def _dedup(names: list[str], key: Any) -> list[str]:
    """pandas ``_get_header`` deduplication: ``a, a, a.1`` -> ``a, a.2, a.1``."""
    present = {key(n) for n in names}
    counts: dict[str, int] = {}
    out: list[str] = []
    for name in names:
        base, cur = name, counts.get(key(name), 0)
        while cur > 0:
            counts[key(base)] = cur + 1
            name = f"{base}.{cur}"
            cur = cur + 1 if key(name) in present else counts.get(key(name), 0)
        out.append(name)
        counts[key(name)] = cur + 1
    return out


def declared_types(con: duckdb.DuckDBPyConnection, opts: Options) -> dict[str, str]:
    """``dtype`` mapped to DuckDB types (pandas names or DuckDB type names)."""
    if set(opts.dtype) & set(opts.date_columns):
        both = sorted(set(opts.dtype) & set(opts.date_columns))
        raise DriverError(f"columns {both} are in both `dtype` and `parse_dates`; keep one")
    return {col: _duckdb_type(con, col, spec) for col, spec in opts.dtype.items()}


def _duckdb_type(con: duckdb.DuckDBPyConnection, column: str, spec: str) -> str:
    mapped = _PANDAS_DTYPES.get(spec) or _PANDAS_DTYPES.get(spec.lower())
    if mapped:
        return mapped
    if _SQL_TYPE.fullmatch(spec.strip()):
        try:
            return str(con.execute(f"SELECT typeof(CAST(NULL AS {spec.strip()}))").fetchone()[0])
        except duckdb.Error:
            pass
    raise DriverError(
        f"dtype for column {column!r}: unknown type {spec!r}. Use a pandas dtype (str, int64, "
        "Int64, int32, float64, bool, datetime64[ns], category) or a DuckDB type (VARCHAR, "
        "BIGINT, DOUBLE, DECIMAL(18,2), DATE, ...)"
    )


def _require_columns(wanted: Sequence[str], names: Sequence[str], option: str,
                     origin: Path) -> None:
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DriverError(f"{origin}: `{option}` names columns not in the file: {missing}. "
                          f"Available columns: {list(names)}")


def _empty_select(con: duckdb.DuckDBPyConnection, opts: Options, layout: Layout | None,
                  origin: Path) -> str:
    """Zero rows with the file's header (or ``columns``, or the ``_empty`` placeholder)."""
    types = declared_types(con, opts)
    if layout is not None:
        names = column_names(layout)
        _require_columns(opts.columns or (), names, "columns", origin)
        _require_columns(opts.date_columns, names, "parse_dates", origin)
        names = list(opts.columns or names)
    else:
        names = list(opts.columns or (EMPTY_FILE_COLUMN,))
    for col in opts.date_columns:
        types.setdefault(col, "TIMESTAMP")
    cols = ", ".join(f"CAST(NULL AS {types.get(n, 'VARCHAR')}) AS {quote_ident(n)}"
                     for n in names)
    return f"SELECT {cols} LIMIT 0"


class _Extraction:
    """One read of a file with data: type the columns, create the table, explain any failure.

    Types come from the first :data:`SAMPLE_ROWS` rows (cheap), and the one pass that creates the
    table checks every value against its column's type. A value that does not fit stops that
    pass with the types it does fit (:func:`types.typed <.types.typed>`); its column is widened to
    the next of those and the pass runs again (:meth:`_widen`), so the result is the one the whole
    file calls for, whatever the rows the sample saw. The usual late contradiction costs one
    extra pass; after :data:`WIDENINGS_BEFORE_WHOLE_FILE_TYPES` of them, the types of all rows
    are found in one pass (:meth:`_detect_whole_file`) before the last; measured in
    ``benchmarks/csv_types.py``.
    """

    def __init__(self, ctx: StepContext, opts: Options, source: Source, layout: Layout,
                 scratch: Scratch) -> None:
        self.ctx = ctx
        self.con = ctx.con
        self.opts = opts
        self.source = source
        self.layout = layout
        self.names = column_names(layout)
        _require_columns(opts.columns or (), self.names, "columns", source.origin)
        _require_columns(opts.date_columns, self.names, "parse_dates", source.origin)
        self.declared = declared_types(ctx.con, opts)
        self.scratch = scratch
        self.reader = self._reader()
        self.selected = list(opts.columns or self.names)
        self.fits: dict[str, tuple[str, ...] | None] | None = None  # see _detect
        self.widenings = 0  # over all reads, also those redone after a read error

    def _reader(self, rewrite: bool = False) -> Reader:
        """Point DuckDB at the data rows: its own ``skip`` when that lands exactly on them, else
        a scratch copy of the data part, rewritten where DuckDB's reading needs pandas' (blank
        lines, fields of spaces before the comment character, ...) or when ``rewrite`` says so
        (the read found a line of only spaces, or failed in a file mixing line ends)."""
        src, layout, scratch = self.source, self.layout, self.scratch
        path, skip, encoding, compression = src.path, layout.skipped, src.encoding, "none"
        offset: int | None = 0
        keep_blanks = not self.opts.skip_blank_lines
        if rewrite or ((keep_blanks or layout.width == 1) and
                           may_have_blank_lines(src, layout.data_offset)) or \
                may_have_spaced_comments(src, layout.data_offset, self.opts.delimiter,
                                         self.opts.comment) or \
                self._spaced_quotes_differ() or \
                (may_mix_line_ends(src, 0) if self.opts.comment is not None else  # header too
                 mixes_in_lone_crs(src, 0)):
            path, skip, offset = scratch.new_path(), 0, None
            rewrite_blank_lines(src, layout, self.opts.delimiter, self.opts.comment, path,
                                keep=keep_blanks, stop=lambda: stopped(self.ctx))
        elif layout.skipped and not layout.simple_skip:
            path, skip, offset = scratch.new_path(), 0, layout.data_offset
            copy_from_offset(src, layout.data_offset, path)
        elif src.gzip:
            compression = "gzip"
        return Reader(path=scratch.literal(path), encoding=encoding, compression=compression,
                      delimiter=self.opts.delimiter, comment=self.opts.comment, skip=skip,
                      names=tuple(self.names), null_values=self.opts.null_strings,
                      source_offset=offset)

    def _spaced_quotes_differ(self) -> bool:
        """Whether a space beside a quote makes DuckDB read the data unlike pandas (see
        :class:`~.data_part.SpacedQuotes`); the copy then reads as pandas does, or fails
        naming the line."""
        src, offset, delimiter = self.source, self.layout.data_offset, self.opts.delimiter
        found = spaced_quotes(src, offset, delimiter, self.opts.comment)
        return found.after_closing or (
            found.opening and
            spaced_opening_quote(src, offset, delimiter, self.opts.comment) is not False)

    def run(self) -> int:
        unknown = sorted(set(self.declared) - set(self.names))
        if unknown:  # pandas ignores dtype entries for absent columns; say so, do not fail
            self.ctx.log_event("csv_dtype_ignored", columns=unknown)
            self.declared = {k: v for k, v in self.declared.items() if k in self.names}
        while True:
            try:
                return self._create()
            except duckdb.InterruptException:
                raise  # told to stop: neither a bad file to explain nor one to read again
            except duckdb.Error as exc:
                self._recover_or_raise(exc)

    def _create(self) -> int:
        if self.fits is None:
            sample = self._rows(SAMPLE_ROWS)
            fits = self._detect(sample)
            for name in self.opts.date_columns:
                if fits.get(name) == ():
                    raise self._not_a_date_error(name, sample)
            self.fits = fits
        while True:
            try:
                return self.ctx.create_output(self._typed_select())
            except duckdb.Error as exc:
                if not self._widen(exc):
                    raise
            self.widenings += 1
            if self.widenings == WIDENINGS_BEFORE_WHOLE_FILE_TYPES:
                self._detect_whole_file()

    def _detect_whole_file(self) -> None:
        """The types of all rows at once, in one more pass: a pass stops at the first value
        that does not fit, so a file with late values in many columns would otherwise be read
        once per column (and per type a column passes through).

        A ``parse_dates`` column that no date type fits keeps its types here: the next read
        fails at its value or at an earlier error of the file, as without this pass."""
        assert self.fits is not None
        before = {name: self._type_of(name) for name in self.fits}
        # a column only loses types: it is checked for those it has left (none if text)
        with heartbeat(self.ctx):
            found = self._detect(self._rows(None), {
                name: self._candidates(name) if fits is None else fits
                for name, fits in self.fits.items() if fits != ()})
        self.fits = {**self.fits, **{name: fits for name, fits in found.items()
                                     if fits != () or name not in self.opts.date_columns}}
        for name, kind in before.items():
            if self._type_of(name) != kind:
                self.ctx.log_event("csv_type_widened", column=name, type=self._type_of(name))

    def _widen(self, exc: duckdb.Error) -> bool:
        """A value past the sample did not fit its column's type: drop the types that value
        does not fit (the column gets the next one that it does) and let the caller read again.

        Each call removes at least one type from one column, so this ends; and every type a
        column loses is refused by a value of the file, so the type it ends with is the first
        one the whole file fits: the result a whole-file type detection would give."""
        assert self.fits is not None
        found = ct.parse_mismatch(str(exc))
        if found is None:
            return False
        index, value_fits = found
        name = self.selected[index]
        if name in self.declared:  # a declared type is never widened: the value is an error
            raise self._dtype_error(name)
        left = self.fits[name]
        wider = left[1:] if left is not None else self._candidates(name)
        self.fits[name] = tuple(k for k in wider if k in value_fits)
        if not self.fits[name] and name in self.opts.date_columns:
            raise self._not_a_date_error(name, self._rows(None))
        self.ctx.log_event("csv_type_widened", column=name, type=self._type_of(name))
        return True

    # -- types
    @property
    def _auto(self) -> list[str]:
        return [n for n in self.selected if n not in self.declared]

    def _candidates(self, name: str) -> tuple[str, ...]:
        """The types a column may get, narrowest first, without the VARCHAR fallback."""
        if name in self.opts.date_columns:
            return ct.ONLY_DATES
        return (ct.WITH_DATES if self.opts.parse_dates is True else ct.NO_DATES)[:-1]

    def _rows(self, cap: int | None) -> str:
        """The data rows as the table will hold them (``limit`` applies), at most ``cap``."""
        limits = [n for n in (cap, self.opts.limit) if n]
        limit = f" LIMIT {min(limits)}" if limits else ""
        cols = ", ".join(quote_ident(n) for n in self.selected)
        rows = f"(SELECT {cols} FROM {self.reader.sql()}{self._space_line_guard()}{limit})"
        if not self.opts.empty_is_text and not self.opts.nulls_after_read:
            return rows
        return f"(SELECT {', '.join(self._value(n) for n in self.selected)} FROM {rows})"

    def _value(self, name: str) -> str:
        """SQL: column ``name`` as pandas reads it where DuckDB's reader cannot: with
        ``keep_default_na: false`` (when an empty field is text, :attr:`Options.empty_is_text`)
        DuckDB's NULL (an empty field, quoted or not, or one a short row lacks) is ``''`` (NULL
        where pandas reads it as missing, :attr:`Options.empty_is_null`); the
        :attr:`Options.nulls_after_read` are NULL."""
        col = quote_ident(name)
        when_empty = ""
        if self.opts.empty_is_text:
            empty = "NULL" if name in self.opts.empty_is_null else "''"
            when_empty = f" WHEN {col} IS NULL THEN {empty}"
        na = self.opts.nulls_after_read
        when_na = f" WHEN {col} IN ({', '.join(quote_literal(v) for v in na)}) THEN NULL" \
            if na else ""
        return f"CASE{when_empty}{when_na} ELSE {col} END AS {col}"

    def _space_line_guard(self) -> str:
        """SQL: a WHERE that stops the read at a row that may be a line of only spaces and tabs:
        its first field such text, the others NULL. pandas skips such a line (unless
        ``skip_blank_lines: false``), DuckDB makes it a row. The row may also be a real one (a
        quoted ``" "``, or `` ,,``): the file is then read from a copy without such lines, made
        by the record scanner that tells them apart (:meth:`_recover_or_raise`). Not on that
        copy, which has none left."""
        if not self.opts.skip_blank_lines or self.reader.source_offset is None:
            return ""
        first, *others = (quote_ident(n) for n in self.names)
        suspect = f"{first} IS NOT NULL AND trim({first}, ' \t') = ''"
        if any(v and not v.strip(" \t") for v in self.reader.null_values):  # ' ' read as NULL
            suspect = f"({first} IS NULL OR trim({first}, ' \t') = '')"
        if others:
            suspect = f"{' AND '.join(f'{c} IS NULL' for c in others)} AND {suspect}"
        return f" WHERE CASE WHEN {suspect} THEN error('{_SPACE_LINE}') ELSE true END"

    def _detect(self, rows: str, candidates: Mapping[str, tuple[str, ...]] | None = None
                ) -> dict[str, tuple[str, ...] | None]:
        """Per auto column (or per column of ``candidates``), the candidate types every value of
        ``rows`` fits, in candidate order; None for a column with no value.

        The rows are unpivoted to one (column, value) row per value that is not NULL, so each
        type's rule is one expression for all columns, grouped by column: DuckDB's planning no
        longer grows with the width (an expression per column and type took it over a second
        for 200 columns), and each candidate type is cast once per value, only where the value
        may fit it (:func:`types.gated_cast <.types.gated_cast>`)."""
        if candidates is None:
            candidates = {name: self._candidates(name) for name in self._auto}
        auto = list(candidates)
        if not auto:
            return {}
        kinds = [k for k in ct.WITH_DATES if any(k in candidates[n] for n in auto)]
        casts, checks = [], []
        for i, kind in enumerate(kinds):
            cast, gated = None, ct.gated_cast(kind, "v")
            if gated is not None:
                cast = f"c{i}"
                casts.append(f", {gated} AS {cast}")
            checks.append(f", bool_and({ct.faithful(kind, 'v', cast)})")
        columns = ", ".join(quote_ident(n) for n in auto)
        values = (f"UNPIVOT (SELECT {columns} FROM {rows}) ON COLUMNS(*) "
                  "INTO NAME name VALUE v")  # NULLs are left out
        found = {str(row[0]): dict(zip(kinds, row[1:], strict=True)) for row in self.con.execute(
            f"SELECT name{''.join(checks)} FROM (SELECT name, v{''.join(casts)} FROM ({values})) "
            "GROUP BY name").fetchall()}
        return {name: tuple(k for k in candidates[name] if found[name][k])
                if name in found else None for name in auto}

    def _type_of(self, name: str) -> str | None:
        """The first type the column's values fit; VARCHAR when none; None while no value was
        seen (all-NULL so far)."""
        assert self.fits is not None
        fits = self.fits[name]
        if fits is None:
            return None
        return fits[0] if fits else ct.VARCHAR

    def _typed_select(self) -> str:
        """Each auto column cast once in an inner query (``TRY_CAST`` under a name no column
        has) and checked against its text in the outer one."""
        assert self.fits is not None
        prefix = "__osiris_cast_"
        while any(n.lower().startswith(prefix) for n in self.selected):
            prefix = "_" + prefix
        inner = [quote_ident(n) for n in self.selected]
        exprs = []
        for i, name in enumerate(self.selected):
            col = quote_ident(name)
            kind = self.declared.get(name) or self._type_of(name)
            if kind == ct.VARCHAR:
                exprs.append(col)
                continue
            cast = None
            if kind is not None:
                cast = quote_ident(f"{prefix}{i}")
                inner.append(f"TRY_CAST({col} AS {kind}) AS {cast}")
            fits = () if name in self.declared else self.fits[name]
            wider = fits[1:] if fits is not None else self._candidates(name)
            empty = ct.TIMESTAMP if name in self.opts.date_columns else ct.VARCHAR
            typed = ct.typed(kind, col, i, wider, empty, cast, declared=name in self.declared)
            exprs.append(f"{typed} AS {col}")
        return (f"SELECT {', '.join(exprs)} FROM (SELECT {', '.join(inner)} "
                f"FROM {self._rows(None)})")

    def _not_a_date_error(self, name: str, rows: str) -> DriverError:
        """A ``parse_dates`` column no date type fits: name the first value that is not a date,
        or the first that breaks the column's choice of with/without UTC offset."""
        col = quote_ident(name)
        naive, aware = ct.faithful(ct.TIMESTAMP, col), ct.faithful(ct.TIMESTAMPTZ, col)
        bad = self.con.execute(f"SELECT {col} FROM {rows} WHERE {col} IS NOT NULL AND NOT "
                               f"({naive} OR {aware}) LIMIT 1").fetchone()
        if bad is not None:
            value = str(bad[0])
            return DriverError(
                f"{self.source.origin}: column {name!r}{self._value_line(name, value)}: "
                f"{value!r} is not a date: `parse_dates` reads ISO 8601 dates and timestamps "
                "(YYYY-MM-DD, optionally with [T]HH:MM[:SS[.ffffff]] and a UTC offset), never "
                "a day-month order it would have to guess (01/02/2024 is 2 January or 1 "
                "February). Remove the column from `parse_dates` to keep it as text, and "
                "convert it in a duckdb.processor step (strptime(col, '%m/%d/%Y')).")
        first_aware = self.con.execute(
            f"SELECT {aware} FROM {rows} WHERE {col} IS NOT NULL LIMIT 1").fetchone()[0]
        other = naive if first_aware else aware
        value = str(self.con.execute(
            f"SELECT {col} FROM {rows} WHERE {col} IS NOT NULL AND {other} LIMIT 1").fetchone()[0])
        line = self._value_line(name, value)
        has = "has a UTC offset and the values before it do not" if not first_aware else \
            "has no UTC offset and the values before it do"
        return DriverError(
            f"{self.source.origin}: column {name!r}{line}: {value!r} {has}; a `parse_dates` "
            "column needs every value with an offset or every value without one. Fix the "
            "values, or remove the column from `parse_dates` to keep it as text."
        )

    def _dtype_error(self, name: str) -> DriverError:
        """A ``dtype`` column with a value its declared type cannot hold exactly: name the first
        such value (streamed: the scan stops there)."""
        col, kind = quote_ident(name), self.declared[name]
        bad = self.con.execute(
            f"SELECT {col} FROM {self._rows(None)} WHERE {col} IS NOT NULL AND NOT "
            f"({ct.faithful(kind, col, declared=True)}) LIMIT 1").fetchone()
        value = str(bad[0]) if bad is not None else "?"
        spec = self.opts.dtype.get(name, kind)
        declared = f"{spec!r}" if spec == kind else f"{spec!r} ({kind})"
        return DriverError(
            f"{self.source.origin}: column {name!r}{self._value_line(name, value)}: cannot "
            f"convert {value!r} to `dtype` {declared} without changing it (it would be rounded, "
            "truncated or reinterpreted). Fix the value, or change `dtype` for that column to a "
            "type that holds it (`str` keeps every value as written)."
        )

    def _recover_or_raise(self, exc: duckdb.Error) -> None:
        """Retry what DuckDB can do differently; otherwise raise a DriverError with a line."""
        text = str(exc)
        if _SPACE_LINE in text and self.reader.source_offset is not None:
            self.reader = replace(self._reader(rewrite=True),
                                  max_line_size=self.reader.max_line_size)
            return
        if _PARALLEL_PADDING in text and self.reader.parallel:
            # quoted newlines + padding of short rows need the single-threaded reader
            self._refuse_unclosed_quote()
            self.reader = replace(self.reader, parallel=False)
            return
        if _LINE_SIZE in text and not self.reader.max_line_size:
            # pandas has no row-size limit; allow rows up to the scanner's limit
            self.reader = replace(self.reader, max_line_size=MAX_LINE_BYTES)
            return
        if self.reader.source_offset is not None and may_mix_line_ends(self.source, 0):
            # DuckDB takes the first line end for all: a bare LF in a CRLF file (in text, or
            # in a quoted value after a blank line) fails its state machine; pandas reads both
            # line ends. The copy's records all end alike: one more read, on failure only.
            self.reader = replace(self._reader(rewrite=True),
                                  max_line_size=self.reader.max_line_size)
            return
        raise self._explain(exc) from exc

    def _refuse_unclosed_quote(self) -> None:
        """Fail on a quote the file never closes, which the single-threaded reader would read as
        NULL without an error (see :mod:`unclosed_quote <.unclosed_quote>`). A rewritten copy
        needs no scan: the rewrite parsed the file and refuses such a quote itself."""
        if self.reader.source_offset is None:
            return
        position = find_unclosed_quote(self.source, self.layout.data_offset, self.opts.delimiter,
                                       self.opts.comment)
        if position is not None:
            raise unclosed_quote_error(self.source, position)

    # -- errors
    def _explain(self, exc: duckdb.Error) -> DriverError:
        """Turn a DuckDB failure into a message with the file, the line and what to do."""
        return FailedRead(self.con, self.source, self.layout, self.reader, self.opts.delimiter,
                          self.opts.comment).explain(exc)

    def _conversion_error(self, column: str, value: str, kind: str) -> DriverError:
        option = "parse_dates" if column in self.opts.date_columns else "dtype"
        return DriverError(
            f"{self.source.origin}: column {column!r}{self._value_line(column, value)}: cannot "
            f"convert {value!r} to {kind}. Fix the value, or change `{option}` for that column."
        )

    def _value_line(self, column: str, value: str) -> str:
        """`` at line N`` of the first record holding ``value`` in ``column`` (or nothing)."""
        index = self.names.index(column) if column in self.names else -1
        line = find_value_line(self.source, self.layout, self.opts.delimiter,
                               self.opts.comment, index, value) if index >= 0 else None
        return f" at line {line}" if line else ""


def _renamed_notice(renamed: Mapping[str, str]) -> str:
    """The notice for header names made unique ignoring case (DuckDB's names ignore case)."""
    pairs = ", ".join(f"{old!r} as {new!r}" for old, new in renamed.items())
    return (f"column names that differ only in case are kept apart (DuckDB's column names "
            f"ignore case): {pairs}")
