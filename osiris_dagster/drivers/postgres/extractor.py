"""``supabase.extractor``: a Supabase (PostgreSQL) table -> the step's table, streamed.

Osiris ships a spec but no driver for this component. The connection decides the channel, as
for ``supabase.writer`` (:func:`.connection.supabase_channels`); a SQL channel wins.

Config: ``table`` (+ ``schema``, default public), ``select`` (``*`` or a comma-separated column
list), ``filter`` (``{column: value}``: equality; ``null`` means IS NULL, a list means IN),
``order`` (``col``, ``col.desc``, ``col desc``, comma-separated; ``.nullsfirst``/``.nullslast``),
``offset`` (rows to skip). ``limit`` is the **page size** of the REST channel (spec default and
maximum 1000, Supabase's default max-rows): the spec applies its default to every step, so
treating it as a row cap would silently cut every extract at 1000 rows. The SQL channel reads
everything after ``offset`` in batches of 10,000 rows.

**SQL channel.** Column names and types come from the catalog (``pg_attribute``/``pg_type``,
domains resolved to their base type), so an empty result keeps its columns. One query with
quoted identifiers and bound filter values (each cast to the column's type without its
modifier, so ``numeric(10,2)`` does not round 1.005 into a match), run in a
read-only transaction through a server-side (named) cursor; every column is rendered as text by
the server (arrays as JSON) and cast by DuckDB while it builds the table from Arrow batches
(:mod:`osiris_dagster.drivers.staging.rows`): flat memory, no Python object per value.

  ================================  ==========================================
  PostgreSQL                        DuckDB
  ================================  ==========================================
  boolean                           BOOLEAN
  smallint / integer / bigint       SMALLINT / INTEGER / BIGINT
  real / double precision           FLOAT / DOUBLE
  numeric(p,s)                      DECIMAL(p,s); DOUBLE if p > 38 or unconstrained
                                    (SUM(), AVG()), a value a double would round fails
  money                             DECIMAL(19,2)
  date / time / timetz              DATE / TIME / TIMETZ
  timestamp / timestamptz           TIMESTAMP / TIMESTAMPTZ
  interval / uuid                   INTERVAL / UUID
  json / jsonb                      JSON
  bytea                             BLOB
  text, varchar, char, name, enum   VARCHAR
  T[] (one dimension, T above)      T[] (a DuckDB LIST); other arrays -> JSON
  anything else (inet, ranges, ..)  VARCHAR (PostgreSQL's text form)
  ================================  ==========================================

**REST channel.** ``GET /rest/v1/<table>?select=...&<col>=eq.<v>&order=...&limit=&offset=``
(``Accept-Profile`` for a non-public schema), page after page until a page is empty (a short
page may be PostgREST's ``db-max-rows`` cutting it below ``limit``, so it is not the end);
the same client as the writer (:mod:`osiris_dagster.drivers.postgres.postgrest`), so the same
retries (reads are
idempotent: 429, 5xx, timeouts and connection failures are retried). Pages are collected as JSON
rows in the step's DuckDB (in-memory, spills to disk) and the table is built from them in one
``create_output``. Types come from the API's OpenAPI description (numeric, float, their
arrays, and json/jsonb columns are requested as ``::text`` so no digit is lost; the description
gives ``numeric`` without precision and scale, so a numeric column gets DECIMAL(38, s) with
the scale its values show, or DOUBLE past 38 digits or with NaN: :meth:`_RestRead._sized`); if
it is not
available, from the JSON values themselves (integers -> BIGINT, or DECIMAL(20,0) past it;
other numbers -> DOUBLE where a double holds each value; strings -> VARCHAR; objects/arrays ->
JSON). DuckDB's JSON reader keeps
a number within a double's range as a 64-bit integer or a double (one past both as its text);
a JSON number it would change (more digits than a double holds, inside a document, a jsonb[]
array or a composite value, or in a column without the API description; a float ``-0``) fails
the step naming the column, row and value; pages whose columns can hold no such number (strings,
integers, booleans, values asked for as text) are not checked
(:mod:`json_numbers <osiris_dagster.drivers.json_numbers>`). Without an ``order`` the pages are
ordered by the primary key the API description marks (``<pk/>``); without either, a read of more
than one page fails (PostgreSQL may return the rows of an unordered query in another order for
each page: rows were lost and others read twice). Pages ordered by a one-column primary key start
after the last key read (``<key>=gt.<value>``), so a table written meanwhile neither repeats nor
skips a row; by ``order`` or a composite key they go by offset, and may.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from osiris_dagster.core.errors import DriverError
from osiris_dagster.core.naming import quote_ident, quote_literal
from osiris_dagster.drivers.base import DriverResult, StepContext, UpstreamTable
from osiris_dagster.drivers.dbapi import close_quietly, rollback_quietly
from osiris_dagster.drivers.duck_types import MAX_DUCK_DECIMAL
from osiris_dagster.drivers.identifiers import pg_ident, unique_names
from osiris_dagster.drivers.json_numbers import ChangedNumber, first_changed_number
from osiris_dagster.drivers.options import name_list, positive_int, positive_seconds, required_text
from osiris_dagster.drivers.postgres.catalog import PG_TYPES_SQL, table_columns_sql
from osiris_dagster.drivers.postgres.connection import (
    PgParams,
    RestParams,
    pg_connect,
    pg_error,
    supabase_channels,
)
from osiris_dagster.drivers.postgres.postgrest import (
    PostgrestClient,
    profile_headers,
    quote_in_value,
)
from osiris_dagster.drivers.postgres.types import (
    PgType,
    numeric_typmod,
    pg_duck_type,
    pg_element_kind,
    pg_select_expression,
)
from osiris_dagster.drivers.progress import Progress
from osiris_dagster.drivers.session_reads import scalar
from osiris_dagster.drivers.staging.columns import (
    SourceColumn,
    ValueProblem,
    select_expression,
    value_problem,
)
from osiris_dagster.drivers.staging.rows import BatchStream, RowStream, columns_of, ingest

COMPONENT = "supabase.extractor"
# supabase.extractor has no `query`: a column is cast in a view, which `table` can name
_CAST_WHERE = "in a view of the table, which `table` can name"
_SQL_BATCH = 10_000
_ORDER_ITEM = re.compile(
    r"^\s*(?P<col>.+?)(?:\.(?P<dir>asc|desc))?(?:\.(?P<nulls>nullsfirst|nullslast))?\s*$",
    re.IGNORECASE)


@dataclass(frozen=True)
class Order:
    column: str
    descending: bool = False
    nulls: str | None = None  # "first" | "last"


@dataclass(frozen=True)
class Options:
    table: str
    schema: str
    select: list[str] | None  # None = every column
    filters: dict[str, Any]
    order: list[Order]
    page_size: int
    offset: int
    timeout: float
    retries: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Options:
        table = required_text(config, "table", COMPONENT, "the table to read")
        if config.get("tables"):
            raise DriverError(f"{COMPONENT}: `tables` (several tables in one step) is not "
                              "supported; use one step per table")
        select = config.get("select", "*")
        if isinstance(select, list):
            select = ",".join(str(s) for s in select)
        if not isinstance(select, str) or not select.strip():
            raise DriverError(f"{COMPONENT}: `select` must be '*' or a comma-separated list of "
                              "columns")
        columns = None if select.strip() == "*" else name_list(select, "select")
        filters = config.get("filter") or {}
        if not isinstance(filters, Mapping):
            raise DriverError(f"{COMPONENT}: `filter` must map column names to values, e.g. "
                              "{status: active}")
        for name, value in filters.items():
            if isinstance(value, list | tuple) and any(v is None for v in value):
                raise DriverError(
                    f"{COMPONENT}: `filter` {name}: a list of values cannot hold null (a list "
                    "keeps the rows whose value is one of them, and null is no value: no row "
                    f"would match it). Read the null rows with `{name}: null` in a step of "
                    "their own, or list only values.")
        timeout = positive_seconds(config, "timeout", 30, COMPONENT)
        return cls(table=table, schema=str(config.get("schema") or "public"), select=columns,
                   filters={str(k): v for k, v in filters.items()},
                   order=_parse_order(config.get("order")),
                   page_size=positive_int(config, "limit", 1000) or 1000,
                   offset=positive_int(config, "offset", 0, minimum=0) or 0,
                   timeout=timeout,
                   retries=positive_int(config, "retries", 3, minimum=0) or 0)


def _parse_order(value: Any) -> list[Order]:
    if value in (None, ""):
        return []
    if not isinstance(value, str):
        raise DriverError(f"{COMPONENT}: `order` must be a string like 'created_at.desc,id'")
    out = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        words = item.split()
        if len(words) >= 2 and words[1].lower() in ("asc", "desc"):  # SQL style: "col desc"
            nulls = None
            if len(words) == 4 and words[2].lower() == "nulls":
                nulls = words[3].lower()
            out.append(Order(words[0], words[1].lower() == "desc", nulls))
            continue
        m = _ORDER_ITEM.match(item)
        assert m is not None
        nulls = m.group("nulls")
        out.append(Order(m.group("col"), (m.group("dir") or "").lower() == "desc",
                         nulls.lower()[5:] if nulls else None))
    return out


def run(ctx: StepContext, config: Mapping[str, Any],
        inputs: Sequence[UpstreamTable]) -> DriverResult:
    opts = Options.from_config(config)
    channels = supabase_channels(COMPONENT, ctx.connection, config)
    if channels.sql is not None:
        source = channels.sql.target(opts.schema, opts.table)
        rows = _SqlRead(ctx, opts, channels.sql).run()
        channel = "sql"
    else:
        assert channels.rest is not None
        source = channels.rest.table_url(opts.table)
        rows = _RestRead(ctx, opts, channels.rest).run()
        channel = "rest"
    ctx.log_metric("rows_read", rows)
    return DriverResult(table=ctx.output_table, rows_read=rows, rows_written=rows,
                        extra_metadata={"source": source, "channel": channel})


# == SQL channel ==================================================================================

# the last column: the type a filter value is cast to, by its catalog name (pg_catalog.bpchar,
# pg_catalog.int4[]), so without a type modifier or a domain. A cast to numeric(10,2),
# varchar(3) or timestamp(0) rounds or cuts the value, and the filter matched rows it does not
# equal; format_type() without a modifier names bpchar 'character', which is char(1).
_COLUMNS_SQL = table_columns_sql("""a.attname, format_type(a.atttypid, a.atttypmod),
       coalesce(db.base, a.atttypid),
       CASE WHEN a.atttypmod >= 0 THEN a.atttypmod ELSE coalesce(db.mod, a.atttypmod) END,
       a.attndims,
       (SELECT CASE WHEN e.oid IS NULL THEN format('%%I.%%I', bn.nspname, b.typname)
                    ELSE format('%%I.%%I[]', en.nspname, e.typname) END
        FROM pg_type b JOIN pg_namespace bn ON bn.oid = b.typnamespace
        LEFT JOIN pg_type e ON e.oid = b.typelem AND b.typcategory = 'A'
        LEFT JOIN pg_namespace en ON en.oid = e.typnamespace
        WHERE b.oid = coalesce(db.base, a.atttypid))""")


class _SqlRead:
    def __init__(self, ctx: StepContext, opts: Options, params: PgParams) -> None:
        self.ctx = ctx
        self.opts = opts
        self.params = params
        self.label = f"{opts.schema}.{opts.table}"
        self.filter_types: dict[str, str] = {}  # column -> the type a filter value is cast to

    def _fail(self, action: str, exc: BaseException) -> DriverError:
        state = str(getattr(exc, "sqlstate", None) or "")
        note = ""
        if state.startswith("22") and self.opts.filters:  # a data exception: a bad value
            note = ("A `filter` value may not be a valid value of its column's type ("
                    + ", ".join(f"{k}: {self.filter_types.get(k, '?')}"
                                for k in self.opts.filters) + "): check `filter`.")
        return pg_error(COMPONENT, self.ctx.step_id, self.params, action, exc, note=note)

    def run(self) -> int:
        import psycopg

        conn = pg_connect(COMPONENT, self.ctx.step_id, self.params, read_only=True)
        try:
            try:
                with conn.cursor() as cur:
                    catalog = self._catalog(cur)
                sql, args, columns = self._query(catalog)
            except psycopg.Error as exc:
                raise self._fail(f"reading {self.label}", exc) from None
            progress = Progress(self.ctx)
            describe = (f"{COMPONENT} step '{self.ctx.step_id}' (table {self.label} on "
                        f"PostgreSQL {self.params.where})")

            def translate(exc: BaseException) -> BaseException | None:
                if isinstance(exc, psycopg.Error):
                    return self._fail(f"reading {self.label}", exc)
                return None

            if args:  # filter values: a server-side cursor, so they stay bound parameters
                rows = self._via_cursor(conn, sql, args, columns, progress, describe,
                                        translate)
            else:  # no values to bind: COPY, parsed by Arrow's CSV reader (no Python per row)
                rows = self._via_copy(conn, sql, columns, progress, describe, translate)
            progress.done()
            rollback_quietly(conn)  # the read-only transaction
            return rows
        finally:
            close_quietly(conn)

    def _via_cursor(self, conn: Any, sql: str, args: list[Any],
                    columns: list[SourceColumn], progress: Progress, describe: str,
                    translate: Any) -> int:
        import psycopg

        cur = conn.cursor(name="osiris_extract")
        cur.itersize = _SQL_BATCH
        try:
            cur.execute(sql, args)
        except psycopg.Error as exc:
            raise self._fail(f"reading {self.label}", exc) from None
        stream = RowStream(columns, self._batches(cur), progress)
        rows = ingest(self.ctx, stream, describe=describe, translate=translate,
                      hint=_array_bounds_hint,
                      cast_where=_CAST_WHERE)
        with contextlib.suppress(psycopg.Error):
            cur.close()
        return rows

    def _via_copy(self, conn: Any, sql: str, columns: list[SourceColumn],
                  progress: Progress, describe: str, translate: Any) -> int:
        import psycopg

        with conn.cursor() as cur:
            try:
                with cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as copy:
                    source = _CopySource(copy)
                    stream = BatchStream(columns, _csv_batches(source, len(columns)),
                                         progress)
                    try:
                        return ingest(self.ctx, stream, describe=describe,
                                      translate=translate, hint=_array_bounds_hint,
                                      cast_where=_CAST_WHERE)
                    except DriverError:
                        if source.error is not None and translate(source.error) is not None:
                            raise translate(source.error) from None
                        raise
            except psycopg.Error as exc:
                raise self._fail(f"reading {self.label}", exc) from None

    def _catalog(self, cur: Any) -> list[tuple[str, str, PgType]]:
        cur.execute(_COLUMNS_SQL, (self.opts.schema, self.opts.table))
        rows = cur.fetchall()
        if not rows:
            cur.execute("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = %s AND c.relname = %s",
                        (self.opts.schema, self.opts.table))
            if cur.fetchone() is not None:
                raise DriverError(
                    f"{COMPONENT} step '{self.ctx.step_id}': table {self.label} on PostgreSQL "
                    f"{self.params.where} has no columns, so there is nothing to extract (a "
                    "DuckDB table needs a column). Add a column, or read another table.")
            raise DriverError(
                f"{COMPONENT} step '{self.ctx.step_id}': table {self.label} does not exist on "
                f"PostgreSQL {self.params.where} (or the user cannot see it). Check `table` and "
                "`schema`.")
        cur.execute(PG_TYPES_SQL, ([int(r[2]) for r in rows],))
        types = {int(oid): (name, cat, elem) for oid, name, cat, elem, _ in cur.fetchall()}
        out = []
        self.filter_types = {str(r[0]): str(r[5]) for r in rows}
        for name, display, oid, typmod, dims, _ in rows:
            base, cat, elem = types.get(int(oid), ("text", "S", None))
            precision = scale = None
            if "numeric" in (base, elem) and typmod is not None and int(typmod) >= 4:
                # numeric(p,s), or numeric(p,s)[]: an array's typmod is its elements'
                precision, scale = numeric_typmod(int(typmod))
            out.append((str(name), str(display), PgType(
                str(base), str(cat), str(elem) if elem else None, max(int(dims or 1), 1),
                precision, scale, str(display))))
        return out

    def _query(self, catalog: list[tuple[str, str, PgType]]
               ) -> tuple[str, list[Any], list[SourceColumn]]:
        opts = self.opts
        by_name = {name: (display, t) for name, display, t in catalog}
        wanted = opts.select or [name for name, _, _ in catalog]
        self._require(wanted, by_name, "select")
        self._require(list(opts.filters), by_name, "filter")
        self._require([o.column for o in opts.order], by_name, "order")
        exprs, columns = [], []
        for out_name, name in zip(unique_names(wanted), wanted, strict=True):
            display, t = by_name[name]
            duck, kind = pg_duck_type(t)
            exprs.append(pg_select_expression(pg_ident(name), t))
            columns.append(SourceColumn(out_name, duck, f"PostgreSQL {display}", kind=kind,
                                        element=pg_element_kind(t)))
        sql = (f"SELECT {', '.join(exprs)} FROM {pg_ident(opts.schema, 'schema')}."
               f"{pg_ident(opts.table, 'table')}")
        where, args = [], []
        for name, value in opts.filters.items():
            col = pg_ident(name)
            cast = self.filter_types[name]
            if value is None:
                where.append(f"{col} IS NULL")
            elif isinstance(value, list | tuple):
                where.append(f"{col} = ANY(%s::{cast}[])")
                args.append([_param(v) for v in value])
            else:
                where.append(f"{col} = %s::{cast}")
                args.append(_param(value))
        if where:
            sql += " WHERE " + " AND ".join(where)
        if opts.order:
            sql += " ORDER BY " + ", ".join(
                pg_ident(o.column) + (" DESC" if o.descending else " ASC") +
                (f" NULLS {o.nulls.upper()}" if o.nulls else "") for o in opts.order)
        if opts.offset and not opts.order:  # which rows it skips would be arbitrary
            raise DriverError(
                f"{COMPONENT} step '{self.ctx.step_id}': {opts.schema}.{opts.table} is read "
                f"from `offset` {opts.offset} without `order`: PostgreSQL returns the rows in "
                "no set order (a row updated since moves), so which rows are skipped would be "
                "arbitrary and rows would be lost. Set `order` to a column (or columns) unique "
                "per row, e.g. `order: id`")
        if opts.offset:
            sql += " OFFSET %s"
            args.append(opts.offset)
        return sql, args, columns

    def _require(self, names: list[str], by_name: Mapping[str, Any], option: str) -> None:
        missing = [n for n in names if n not in by_name]
        if missing:
            raise DriverError(
                f"{COMPONENT} step '{self.ctx.step_id}': `{option}` names column(s) "
                f"{', '.join(repr(m) for m in missing)}, which {self.label} does not have "
                f"(columns: {', '.join(by_name)})")

    def _batches(self, cur: Any) -> Iterator[list[list[Any]]]:
        width = len(cur.description or [])
        while True:
            rows = cur.fetchmany(_SQL_BATCH)
            if not rows:
                return
            yield columns_of(rows, width)


class _CopySource(io.RawIOBase):
    """The bytes of a ``COPY ... TO STDOUT``, as a file Arrow's CSV reader can read."""

    def __init__(self, copy: Any) -> None:
        super().__init__()
        self._copy = copy
        self._buf = memoryview(b"")
        self.error: BaseException | None = None
        self.done = False

    def readable(self) -> bool:
        return True

    def fill(self) -> bool:
        """Have data buffered; False once the COPY is complete."""
        try:
            while not self._buf and not self.done:
                data = self._copy.read()
                if not data:
                    self.done = True
                else:
                    self._buf = memoryview(bytes(data))
        except BaseException as exc:
            self.error = exc
            raise
        return bool(self._buf)

    def readinto(self, b: Any) -> int:
        if not self.fill():
            return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _csv_batches(source: _CopySource, width: int) -> Iterator[Any]:
    """Arrow batches of text columns ``c0..cN`` from PostgreSQL's CSV (NULL = unquoted empty
    field, "" = empty string)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if not source.fill():  # an empty result: Arrow's reader refuses an empty file
        return
    names = [f"c{i}" for i in range(width)]
    reader = pacsv.open_csv(
        io.BufferedReader(source, 1 << 20),
        read_options=pacsv.ReadOptions(column_names=names, block_size=4 << 20,
                                       use_threads=False),
        parse_options=pacsv.ParseOptions(quote_char='"', double_quote=True, escape_char=False,
                                         newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                             null_values=[""], strings_can_be_null=True,
                                             quoted_strings_can_be_null=False))
    yield from reader


def _param(value: Any) -> Any:
    """Filter values are sent as text and cast by the server to the column's type."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list):
        import json

        return json.dumps(value)
    return str(value)


# == REST channel =================================================================================

_FORMAT_PARAMS = re.compile(r"^(?P<base>[a-z ]+?)\s*(\((?P<p>\d+)(,\s*(?P<s>-?\d+))?\))?$")
_FORMAT_NAMES = {
    "integer": "int4", "bigint": "int8", "smallint": "int2", "boolean": "bool",
    "real": "float4", "double precision": "float8", "numeric": "numeric", "decimal": "numeric",
    "text": "text", "character varying": "varchar", "character": "bpchar", "varchar": "varchar",
    "date": "date", "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz", "time without time zone": "time",
    "time with time zone": "timetz", "interval": "interval", "uuid": "uuid", "json": "json",
    "jsonb": "jsonb", "bytea": "bytea", "money": "money",
}


def rest_type(fmt: str) -> PgType:
    """A PostgreSQL type from an OpenAPI ``format`` (``integer``, ``numeric(10,2)``, ``text[]``)."""
    fmt = fmt.strip().lower()
    if fmt.endswith("[]"):
        inner = rest_type(fmt[:-2])
        return PgType("_" + inner.name, "A", inner.name, precision=inner.precision,
                      scale=inner.scale, display=fmt)
    m = _FORMAT_PARAMS.match(fmt)
    base = m.group("base").strip() if m else fmt
    name = _FORMAT_NAMES.get(base, _FORMAT_NAMES.get(fmt, base))
    precision = int(m.group("p")) if m and m.group("p") and name == "numeric" else None
    scale = int(m.group("s") or 0) if precision is not None and m else None
    return PgType(name, "N" if name == "numeric" else "", None, 1, precision, scale, fmt)


def _pg_numeric_array_json(text: str) -> str:
    """SQL: PostgreSQL's text of a one-dimensional numeric or float array ('{1.10,NULL}',
    '{-0,NaN}': elements never quoted) as a JSON array of the elements' texts
    (["1.10",null]); any other text is passed on, and fails as an array (a nested one, say)."""
    elements = f"string_split(substr({text}, 2, length({text}) - 2), ',')"
    return (f"CASE WHEN {text} = '{{}}' THEN '[]' WHEN regexp_full_match({text}, "
            f"'\\{{[^{{}}\"]*\\}}') THEN CAST(to_json(list_transform({elements}, "
            f"lambda e: nullif(e, 'NULL'))) AS VARCHAR) ELSE {text} END")


# Types asked of PostgREST as their text (arrays of _REST_ARRAYS_AS_TEXT too, see
# _pg_numeric_array_json): DuckDB's JSON functions re-print a number as a double
# (0.12345678901234567890 -> 0.12345678901234568), in a numeric column and inside a json/jsonb
# document alike, and read the JSON number -0 as the integer 0 (a float's sign lost); a JSON
# string keeps every character.
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a name PostgREST's `order` takes bare
_REST_AS_TEXT = ("numeric", "money", "json", "jsonb", "float4", "float8")
_REST_ARRAYS_AS_TEXT = ("numeric", "float4", "float8")  # elements never quoted in the text
# Types PostgREST sends as JSON strings, booleans or integers (which DuckDB's JSON reader keeps)
_JSON_KEPT = frozenset({
    "bool", "int2", "int4", "int8", "oid", "text", "varchar", "bpchar", "name", "citext",
    "char", "xml", "uuid", "date", "time", "timetz", "timestamp", "timestamptz", "interval",
    "bytea"})


class _RestRead:
    def __init__(self, ctx: StepContext, opts: Options, rest: RestParams) -> None:
        self.ctx = ctx
        self.opts = opts
        self.rest = rest
        self.url = rest.table_url(opts.table)
        self.label = f"{opts.schema}.{opts.table}"
        self.staging = f"__osiris_rest_rows_{ctx.output_table}"
        self.as_text: set[str] = set()  # columns asked for as their text (_REST_AS_TEXT)
        self.described = True  # the types come from the API description, not from values
        self.primary_key: list[str] = []  # as the API description marks it (<pk/>)
        self.keyset: str | None = None  # a one-column primary key pages follow (_params)

    def run(self) -> int:
        http = PostgrestClient(self.ctx, self.rest, component=COMPONENT,
                               timeout=self.opts.timeout, retries=self.opts.retries)
        con = self.ctx.con
        staging = quote_ident(self.staging)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {staging} (r JSON)")
        try:
            types = self._openapi_types(http)
            self.described = types is not None
            fetched = self._fetch_pages(http, types, staging)
            columns = self._columns(types, staging)
            if not columns:
                names = self.opts.select or ["_empty"]
                columns = [(n, PgType("text", "S")) for n in names]
            rows = self._build(columns, staging)
            if rows != fetched:  # pragma: no cover - defensive
                raise DriverError(f"{COMPONENT}: read {fetched} rows but built {rows}")
            return rows
        finally:
            http.close()
            with contextlib.suppress(Exception):
                con.execute(f"DROP TABLE IF EXISTS {staging}")

    def _openapi_types(self, http: PostgrestClient) -> dict[str, PgType] | None:
        """Column types from PostgREST's OpenAPI description (None if unavailable: an error
        status or an unexpected body; a host that cannot be reached fails here as the first
        page would)."""
        resp = http.request("GET", f"{self.rest.url}/rest/v1/",
                            what="reading the API description",
                            headers=profile_headers(self.opts.schema, False),
                            allow_statuses=range(400, 600))
        if resp.status_code != 200:
            return None
        try:
            definitions = resp.json().get("definitions") or {}
        except (ValueError, AttributeError):
            return None
        table = definitions.get(self.opts.table)
        if not isinstance(table, Mapping) or not isinstance(table.get("properties"), Mapping):
            return None
        out = {}
        for name, prop in table["properties"].items():
            fmt = prop.get("format") if isinstance(prop, Mapping) else None
            out[str(name)] = rest_type(str(fmt or "text"))
            if isinstance(prop, Mapping) and "<pk/>" in str(prop.get("description") or ""):
                self.primary_key.append(str(name))
        return out

    def _params(self, types: Mapping[str, PgType] | None) -> dict[str, str]:
        opts = self.opts
        names = opts.select or (list(types) if types else None)
        if names is None:
            select = "*"
        else:
            parts = []
            for n in names:
                t = types.get(n) if types else None
                as_text = t is not None and (t.name in _REST_AS_TEXT or t.category == "A"
                                             and t.element in _REST_ARRAYS_AS_TEXT)
                if as_text:
                    self.as_text.add(n)
                parts.append(f"{n}::text" if as_text else n)
            select = ",".join(parts)
        params: dict[str, str] = {"select": select}
        for name, value in opts.filters.items():
            params[name] = _rest_filter(value)
        if opts.order:
            params["order"] = ",".join(
                o.column + (".desc" if o.descending else ".asc") +
                (f".nulls{o.nulls}" if o.nulls else "") for o in opts.order)
        elif self.primary_key and all(_PLAIN_NAME.fullmatch(c) for c in self.primary_key):
            # pages of an unordered query may come in another order each: rows would be
            # lost and read twice (PostgreSQL's synchronized scans, a table being updated)
            params["order"] = ",".join(f"{c}.asc" for c in self.primary_key)
            key = self.primary_key[0]
            if len(self.primary_key) == 1 and key not in params and key not in _REST_RESERVED \
                    and (names is None or key in names) and key not in self.as_text \
                    and types is not None and key in types and _keyset_type(types[key]):
                self.keyset = key
        return params

    def _after(self, text: str, n: int) -> str | None:
        """The key of a page's last row, as its text (a number past 2^53 exactly), for the next
        page's ``<key>=gt.<value>``; None when the page has no such value."""
        assert self.keyset is not None
        return scalar(self.ctx.con, "SELECT json_extract_string(?::JSON, ?)",
                      [text, f"$[{n - 1}]{_json_key(self.keyset)[1:]}"])

    def _unordered_error(self, rows: int | None) -> DriverError:
        """Reading more than one page, or from an ``offset``, needs an order (``rows``: the
        rows read before the second page; None: the offset)."""
        if rows is None:
            what = f"is read from `offset` {self.opts.offset}"
        elif rows < self.opts.page_size:  # the server cut the page: db-max-rows
            what = (f"takes more than one page (the server returns at most {rows} rows a page, "
                    "its db-max-rows or Supabase's \"Max rows\", below `limit`)")
        else:
            what = (f"takes more than one page (more than {rows} rows at `limit` "
                    f"{self.opts.page_size})")
        key = (f" names the primary key ({', '.join(self.primary_key)}) with characters "
               "`order` cannot take bare" if self.primary_key else " names no primary key")
        return DriverError(
            f"{COMPONENT} step '{self.ctx.step_id}': {self.label} {what}, `order` is not set "
            f"and the API description{key}: without an order PostgreSQL may return the rows in "
            "another order for each request, so rows would be lost and others read twice. Set "
            "`order` to a column (or columns) unique per row, e.g. `order: id`")

    def _fetch_pages(self, http: PostgrestClient, types: Mapping[str, PgType] | None,
                     staging: str) -> int:
        opts = self.opts
        params = self._params(types)
        headers = profile_headers(opts.schema, False)
        offset, total = opts.offset, 0
        if offset and "order" not in params:  # which rows it skips would be arbitrary
            raise self._unordered_error(None)
        progress = Progress(self.ctx)
        names = opts.select or list(types or {})
        check_numbers = types is None or not all(  # a name the description lacks: unknown
            n in types and self._numbers_kept(n, types[n]) for n in names)
        after: str | None = None  # keyset paging: the last key read (see below)
        while True:
            page_params = {**params, "limit": str(opts.page_size), "offset": str(offset)}
            if after is not None:
                page_params[self.keyset or ""] = f"gt.{after}"
                page_params["offset"] = "0"
            resp = http.request("GET", self.url, params=page_params, headers=headers,
                                what=f"reading {self.label} (rows {total + opts.offset + 1}-"
                                     f"{total + opts.offset + opts.page_size})")
            text = resp.text
            n = int(scalar(self.ctx.con, "SELECT json_array_length(?::JSON)", [text]) or 0)
            if n and total and "order" not in params:
                raise self._unordered_error(total)
            changed = first_changed_number(text) if n and check_numbers else None
            if changed is not None:
                raise self._changed_number_error(changed, offset, types)
            if n:
                self.ctx.con.execute(
                    f"INSERT INTO {staging} SELECT unnest(json_extract(?::JSON, '$[*]'))",
                    [text])
                total += n
                progress.add(n)
            if n == 0:  # a short page is not the end: PostgREST's db-max-rows caps each page
                break  # below `limit` without a word (Supabase's "Max rows", 1000 by default)
            offset += n
            if self.keyset is not None:  # the next page starts after this one's last key, not
                after = self._after(text, n)  # at a count of rows: rows inserted or deleted
                if after is None:  # before it meanwhile do not shift it (rows read twice, or
                    raise DriverError(  # lost)
                        f"{COMPONENT} step '{self.ctx.step_id}': {self.label}: the last row of "
                        f"a page has no primary key value ({self.keyset}); set `order`")
        progress.done()
        return total

    def _all_bigint(self, name: str, staging: str) -> bool:
        """Whether every integer of the column fits a BIGINT (else 20 digits hold them)."""
        text = f"json_extract_string(r, {quote_literal(_json_key(name))})"
        return bool(scalar(self.ctx.con, f"SELECT coalesce(bool_and(TRY_CAST({text} AS BIGINT) "
                                         f"IS NOT NULL), true) FROM {staging} "
                                         f"WHERE {text} IS NOT NULL"))

    def _numbers_kept(self, name: str, t: PgType) -> bool:
        """Whether the column's JSON values hold no number DuckDB's JSON reader could change:
        they are strings (asked for as text, or dates, uuids, ...), booleans or integers, also
        as array elements. Not so for JSON documents in an array, composite types and types
        this module does not know (:func:`first_changed_number` checks those pages)."""
        if name in self.as_text:
            return True
        base = t.element if t.category == "A" else t.name
        return base in _JSON_KEPT or (t.category == "E" and t.element is None)

    def _sized(self, name: str, t: PgType, staging: str) -> PgType:
        """A ``numeric`` column (or ``numeric[]``) without precision and scale, the form
        PostgREST's API description gives every numeric column (``numeric`` for
        ``numeric(10,2)`` too), as DECIMAL(38, s): s the most digits after the point a value
        has (PostgreSQL prints every value of a numeric(p,s) column with s of them, so s is the
        column's own scale and the type stays the same from run to run), when every value
        fits (``0.5`` has no digit before the point). Else (more than 38 digits, ``NaN``,
        ``Infinity``) it stays DOUBLE, which refuses a value a double rounds. The values are
        the text PostgreSQL prints (asked for ``::text``)."""
        array = t.category == "A" and t.element == "numeric"
        if name not in self.as_text or t.precision is not None or \
                not (t.name == "numeric" or array):
            return t
        text = f"json_extract_string(r, {quote_literal(_json_key(name))})"
        values = (f"unnest(json_extract_string(TRY_CAST({_pg_numeric_array_json(text)} AS JSON), "
                  "'$[*]'))" if array else text)
        row = self.ctx.con.execute(
            f"SELECT max(length(ltrim(split_part(ltrim(v, '-'), '.', 1), '0'))), "
            f"max(length(split_part(v, '.', 2))), "
            f"bool_and(regexp_full_match(v, '-?[0-9]+(\\.[0-9]+)?')) "
            f"FROM (SELECT {values} AS v FROM {quote_ident(self.staging)}) WHERE v IS NOT NULL"
        ).fetchone()
        whole, places, plain = row if row else (None, None, None)
        if not plain or whole is None or whole + places > MAX_DUCK_DECIMAL:
            return t
        return replace(t, precision=MAX_DUCK_DECIMAL, scale=places)

    def _changed_number_error(self, changed: ChangedNumber, offset: int,
                              types: Mapping[str, PgType] | None) -> DriverError:
        """A JSON number of a page that DuckDB's JSON reader would change (see
        :mod:`osiris_dagster.drivers.json_numbers`): fail naming it, its column and row."""
        row, column = (changed.path + (None, None))[:2]
        where = f"column '{column}'" if isinstance(column, str) else "a value"
        if isinstance(row, int):
            where += f" (row {offset + row + 1})"
        t = types.get(column) if types and isinstance(column, str) else None
        if types is None:
            why = ("The API description (GET /rest/v1/) was not available, so numeric and "
                   "float columns could not be asked for as text: make it available to this "
                   "key, or read the column from a view that casts it to text.")
        else:
            why = (f"Its type ({t.display or t.name if t else 'unknown'}) comes as JSON, "
                   "numbers included: read it from a view that casts it to text.")
        return DriverError(
            f"{COMPONENT} step '{self.ctx.step_id}' ({self.label} at {self.rest.host}): "
            f"{where} holds the JSON number {changed.text}, which DuckDB's JSON reader would "
            f"make {changed.read_as} (it keeps a number as a 64-bit integer or a double). "
            f"Nothing was kept. {why}")

    def _columns(self, types: Mapping[str, PgType] | None,
                 staging: str) -> list[tuple[str, PgType]]:
        names = self.opts.select or (list(types) if types else None)
        if types is not None and names is not None:
            return [(n, self._sized(n, types.get(n, PgType("text", "S")), staging))
                    for n in names]
        structure = scalar(self.ctx.con, f"SELECT json_group_structure(r) FROM {staging}")
        if not structure:
            return [(n, PgType("text", "S")) for n in (names or [])]
        import json

        shape = json.loads(structure)
        if not isinstance(shape, dict):
            return []
        inferred = {"BIGINT": "int8", "BOOLEAN": "bool", "VARCHAR": "text", "NULL": "text"}
        out = []
        for name in names or list(shape):
            kind = shape.get(name)
            if kind in ("UBIGINT", "HUGEINT"):  # DuckDB's guess for integers >= 0, or mixed
                t = PgType("int8", "") if self._all_bigint(name, staging) else PgType(
                    "numeric", "N", precision=20, scale=0, display="integer (no API description)")
            elif kind == "DOUBLE":  # numbers, some not integers: an integer a double would
                # round (9007199254740993 beside 1.5) fails, as an unconstrained numeric does
                t = PgType("numeric", "N", display="number (no API description)")
            elif isinstance(kind, str) and kind in inferred:
                t = PgType(inferred[kind], "")
            else:
                t = PgType("jsonb", "U")
            out.append((name, t))
        return out

    def _build(self, columns: list[tuple[str, PgType]], staging: str) -> int:
        inner, outer = [], []
        out_names = unique_names(n for n, _ in columns)
        for i, ((name, t), out_name) in enumerate(zip(columns, out_names, strict=True)):
            duck, kind = pg_duck_type(t)
            key_sql = quote_literal(_json_key(name))
            if (duck == "JSON" or kind == "json_cast") and name not in self.as_text:
                src = f"nullif(CAST(json_extract(r, {key_sql}) AS VARCHAR), 'null')"
            elif kind == "json_cast":  # numeric[], float8[] as PostgreSQL's text: '{1.10,NULL}'
                src = _pg_numeric_array_json(f"json_extract_string(r, {key_sql})")
            elif t.name == "money" and name in self.as_text:  # '-$1,234.50' (lc_monetary C)
                src = f"regexp_replace(json_extract_string(r, {key_sql}), '[$,]', '', 'g')"
            else:
                src = f"json_extract_string(r, {key_sql})"
            inner.append(f"{src} AS c{i}")
            col = SourceColumn(out_name, duck, f"PostgreSQL {t.display or t.name}", kind=kind,
                               element=pg_element_kind(t))
            outer.append(select_expression(col, f"c{i}"))
        sql = (f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} FROM "
               f"{quote_ident(self.staging)})")
        try:
            return self.ctx.create_output(sql)
        except Exception as exc:
            problem = value_problem(exc)
            if problem is None:
                raise
            duck = dict(zip(out_names, (pg_duck_type(t)[0] for _, t in columns),
                            strict=True)).get(problem.column, "?")
            if self.described:
                why = (f"which its column ({duck}, from the API description) cannot hold "
                       "exactly; read the column from a view that casts it to text.")
            else:
                why = ("which the type its JSON values give it cannot hold exactly (without "
                       "the API description; read the column from a view that casts it to "
                       "text).")
            raise DriverError(
                f"{COMPONENT} step '{self.ctx.step_id}' ({self.label} at {self.rest.host}): "
                f"column '{problem.column}' holds {problem.value!r}, {why}") from None


# PostgREST's own query parameters: a column of one of these names cannot be filtered by name
_REST_RESERVED = frozenset({"select", "order", "limit", "offset", "on_conflict", "columns",
                            "or", "and", "not"})


def _keyset_type(t: PgType) -> bool:
    """Whether pages may follow a key of this type by ``gt.<its JSON value>``: the JSON value
    must be exact and a literal PostgreSQL reads back (integers, text, dates and times, uuid),
    not an array, a document or a decimal (JSON holds it as a double)."""
    return t.category != "A" and t.name in _KEYSET_TYPES


_KEYSET_TYPES = frozenset({"int2", "int4", "int8", "text", "varchar", "bpchar", "citext",
                           "uuid", "date", "timestamp", "timestamptz"})


def _json_key(name: str) -> str:
    """The JSON path of a row's ``name`` member (quoted: any character may be in a name)."""
    return "$." + '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _array_bounds_hint(problem: ValueProblem) -> str:
    """What to do about an array whose index does not start at 1 (see pg_select_expression)."""
    if not re.match(r"(\[-?\d+:-?\d+\])+=", problem.value):
        return ""
    return ("Its index does not start at 1 (PostgreSQL's [lower:upper]= form): a DuckDB LIST "
            "has no bounds, so its elements would move to other positions. Read the column "
            "from a view that starts its index at 1 (a slice does: col[:] AS col) or gives "
            "it as text.")


def _rest_filter(value: Any) -> str:
    if value is None:
        return "is.null"
    if isinstance(value, bool):
        return "is.true" if value else "is.false"
    if isinstance(value, list | tuple):
        return f"in.({','.join(quote_in_value(_param(v)) for v in value)})"
    return f"eq.{_param(value)}"
