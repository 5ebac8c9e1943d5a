"""``mysql.extractor``: a MySQL/MariaDB query or table -> the step's table, streamed.

Osiris ran ``pandas.read_sql_query`` on the whole result (everything in memory, types guessed by
pandas). Here:

* **Credentials** come from the resolved ``@mysql.<alias>`` connection (host default localhost,
  port 3306, user root, database required). A step-level ``host``/``port`` only fills in what
  the connection leaves out; spec defaults never override the connection.
* **What is read**: ``query`` (used verbatim), or ``table`` (+ ``schema`` = the database that
  holds it, ``columns``, ``limit``, ``offset``: all quoted identifiers / bound values, LIMIT and
  OFFSET run on the server). With ``query``, ``columns``/``limit``/``offset`` are applied while
  streaming (the query text is never rewritten; MariaDB would drop an ORDER BY inside a derived
  table); reading stops after ``limit`` rows and the connection is closed without draining.
* **Streaming**: pymysql's unbuffered ``SSCursor`` inside a ``START TRANSACTION READ ONLY``
  (one consistent snapshot, no writes); every value arrives as text, ``batch_size`` rows become
  one Arrow batch of the values' bytes, decoded without a Python call per value
  (:mod:`.mysql_wire`), and DuckDB casts the columns while it builds the table
  (:mod:`.sql_support`). Memory stays flat whatever the row count; progress is reported as
  batches arrive.
* **Types** come from the result metadata, so an empty result still has typed columns:

  ============================  =================================================
  MySQL                         DuckDB
  ============================  =================================================
  TINYINT/SMALLINT/MEDIUMINT/   TINYINT/SMALLINT/INTEGER/INTEGER/BIGINT, and the
  INT/BIGINT [UNSIGNED]         unsigned ones UTINYINT/USMALLINT/UINTEGER/UBIGINT
  TINYINT(1) / BOOL             TINYINT (kept an integer: MySQL stores 0..255 there)
  DECIMAL(p,s)                  DECIMAL(p,s); DOUBLE when p > 38
  FLOAT / DOUBLE                FLOAT / DOUBLE
  DATE                          DATE
  DATETIME / TIMESTAMP          TIMESTAMP (wall-clock value as the server returns it)
  TIME                          TIME (values outside 00:00-24:00 fail, naming them)
  YEAR                          SMALLINT
  BIT(n)                        UBIGINT
  JSON                          JSON (MariaDB: for ``table`` reads, detected from
                                the column's json_valid() check; VARCHAR for queries)
  CHAR/VARCHAR/TEXT/ENUM/SET    VARCHAR
  BINARY/VARBINARY/BLOB         BLOB
  GEOMETRY                      BLOB (MySQL's internal WKB with SRID prefix)
  NULL literal                  VARCHAR
  ============================  =================================================

* **Zero dates** (``0000-00-00``, or a zero month/day) have no DuckDB value. By default the step
  fails, naming the column and the value; ``zero_dates: null`` reads them as NULL instead.
* Duplicate result column names get ``_1``, ``_2`` suffixes (a DuckDB table cannot hold two).

Errors name host, port, database and user and say what to check; never the password.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ..errors import DriverError
from . import sql_support as sq
from .base import DriverResult, StepContext, UpstreamTable
from .mysql_wire import RowPacketReader

COMPONENT = "mysql.extractor"
_MAX_LIMIT = 18446744073709551615  # MySQL's "no limit" for LIMIT ... OFFSET
_JSON_CHECK = re.compile(r"^json_valid\(`((?:[^`]|``)+)`\)$", re.IGNORECASE)


@dataclass(frozen=True)
class Options:
    query: str | None
    table: str | None
    schema: str | None
    columns: list[str] | None
    limit: int | None
    offset: int
    batch_size: int
    zero_dates_null: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any],
                    connection: Mapping[str, Any] | None = None) -> Options:
        query = config.get("query")
        table = config.get("table")
        if query is not None and (not isinstance(query, str) or not query.strip()):
            raise DriverError(f"{COMPONENT}: `query` must be a non-empty SQL string")
        if query is None and (not isinstance(table, str) or not table):
            raise DriverError(f"{COMPONENT} needs `query` (a SELECT) or `table` (a table name)")
        zero = str(config.get("zero_dates", "error")).lower()
        if zero not in ("error", "null", "none"):
            raise DriverError(f"{COMPONENT}: `zero_dates` must be 'error' or 'null', got "
                              f"{config.get('zero_dates')!r}")
        schema = config.get("schema") or (connection or {}).get("schema")
        return cls(
            query=query.strip().rstrip(";").strip() if query else None,
            table=table if query is None else None,
            schema=str(schema) if schema else None,
            columns=sq.name_list(config.get("columns"), "columns"),
            limit=sq.positive_int(config, "limit", None),
            offset=sq.positive_int(config, "offset", 0, minimum=0) or 0,
            batch_size=sq.positive_int(config, "batch_size", 10000) or 10000,
            zero_dates_null=zero in ("null", "none"),
        )


def run(ctx: StepContext, config: Mapping[str, Any],
        inputs: Sequence[UpstreamTable]) -> DriverResult:
    opts = Options.from_config(config, ctx.connection)
    params = sq.mysql_params(COMPONENT, ctx.connection, config)
    source = _describe_source(opts, params)
    ctx.log_event("mysql_extract_start", host=params.host, port=params.port,
                  database=params.database, source=source, batch_size=opts.batch_size)
    conn = sq.mysql_connect(COMPONENT, ctx.step_id, params, streaming=True, raw_values=True)
    reader = _Reader(ctx, conn, opts, params, source)
    try:
        rows = reader.run()
        if reader.finished:  # else (a `limit` on a query) the rest is abandoned, not drained
            conn.commit()
    finally:
        reader.close()
    ctx.log_metric("rows_read", rows)
    return DriverResult(table=ctx.output_table, rows_read=rows, rows_written=rows,
                        extra_metadata={"source": source,
                                        "mysql": f"{params.host}:{params.port}/{params.database}"})


def _describe_source(opts: Options, params: sq.MySQLParams) -> str:
    if opts.table:
        return f"table {(opts.schema or params.database)}.{opts.table}"
    return "query"


class _Reader:
    def __init__(self, ctx: StepContext, conn: Any, opts: Options, params: sq.MySQLParams,
                 source: str) -> None:
        self.ctx = ctx
        self.conn = conn
        self.opts = opts
        self.params = params
        self.source = source
        self.cur: Any = None
        self.finished = False

    def _fail(self, action: str, exc: BaseException) -> DriverError:
        return sq.mysql_error(COMPONENT, self.ctx.step_id, self.params, action, exc)

    def run(self) -> int:
        import pymysql

        opts = self.opts
        cur = self.cur = self.conn.cursor()
        try:
            cur.execute("SET SESSION net_write_timeout = 600")
            cur.execute("START TRANSACTION READ ONLY")
            json_columns = self._json_columns(cur) if opts.table else set()
            sql, args = self._sql()
            cur.execute(sql, args)
        except pymysql.Error as exc:
            what = f"reading {self.source}" if opts.table else "running `query`"
            raise self._fail(what, exc) from None
        fields = list(cur._result.fields or [])
        if not fields:
            raise DriverError(f"{COMPONENT} step '{self.ctx.step_id}': the query returned no "
                              "result set (is it a SELECT?)")
        picks = self._projection([f.name for f in fields])
        names = sq.unique_names(fields[i].name for i in picks)
        columns = [sq.mysql_column(n, fields[i], json_columns) for n, i in zip(names, picks,
                                                                               strict=True)]
        progress = sq.Progress(self.ctx)
        stream = sq.BatchStream(columns, self._batches(cur, picks), progress, raw_bytes=True)
        describe = (f"{COMPONENT} step '{self.ctx.step_id}' ({self.source} on MySQL "
                    f"{self.params.where})")
        rows = sq.ingest(self.ctx, stream, describe=describe,
                         zero_dates_null=opts.zero_dates_null, hint=_hint,
                         translate=lambda e: self._fail(f"reading {self.source}", e)
                         if isinstance(e, pymysql.Error) else None)
        progress.done()
        return rows

    def _sql(self) -> tuple[str, tuple[Any, ...] | None]:
        opts = self.opts
        if opts.query is not None:
            return opts.query, None  # verbatim: no %-formatting of the user's SQL
        cols = ", ".join(sq.mysql_ident(c, "column") for c in opts.columns) \
            if opts.columns else "*"
        target = sq.mysql_ident(opts.table, "table")
        if opts.schema:
            target = f"{sq.mysql_ident(opts.schema, 'schema')}.{target}"
        sql = f"SELECT {cols} FROM {target}".replace("%", "%%")
        args: list[int] = []
        if opts.limit is not None or opts.offset:
            sql += " LIMIT %s"
            args.append(opts.limit if opts.limit is not None else _MAX_LIMIT)
            if opts.offset:
                sql += " OFFSET %s"
                args.append(opts.offset)
        return sql, tuple(args)

    def _json_columns(self, cur: Any) -> set[str]:
        """MariaDB's JSON is LONGTEXT with a json_valid() check: find those columns. (MySQL 8
        reports a real JSON type; servers without CHECK_CONSTRAINTS simply get VARCHAR.)"""
        import pymysql

        try:
            cur.execute(
                "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s",
                (self.opts.schema or self.params.database, self.opts.table))
            clauses = cur.fetchall()
        except pymysql.err.ProgrammingError:
            return set()
        out = set()
        for (clause,) in clauses:
            text = clause.decode() if isinstance(clause, bytes) else str(clause)
            m = _JSON_CHECK.match(text.strip())
            if m:
                out.add(m.group(1).replace("``", "`"))
        return out

    def _projection(self, names: list[str]) -> list[int]:
        """Which result columns to keep: all, or ``columns`` (with ``query``; by name)."""
        opts = self.opts
        if opts.query is None or not opts.columns:
            return list(range(len(names)))
        lower = [n.lower() for n in names]
        picks = []
        for c in opts.columns:
            if c.lower() not in lower:
                raise DriverError(f"{COMPONENT} step '{self.ctx.step_id}': `columns` names "
                                  f"'{c}', which the query does not return (it returns: "
                                  f"{', '.join(names)})")
            picks.append(lower.index(c.lower()))
        return picks

    def _batches(self, cur: Any, picks: list[int]) -> Iterator[pa.RecordBatch]:
        opts = self.opts
        skip = opts.offset if opts.query is not None else 0
        remaining = opts.limit if opts.query is not None else None
        reader = RowPacketReader(cur._result, len(cur._result.fields))
        names = [f"c{i}" for i in range(len(picks))]
        while remaining is None or remaining > 0:
            cols = reader.fetch(opts.batch_size)
            if cols is None:
                self.finished = True
                return
            batch = pa.record_batch([cols[i] for i in picks], names=names)
            if skip:
                dropped = min(skip, batch.num_rows)
                batch = batch.slice(dropped)
                skip -= dropped
            if remaining is not None:
                batch = batch.slice(0, remaining)
                remaining -= batch.num_rows
            if batch.num_rows:
                yield batch

    def close(self) -> None:
        """Close the connection; an unfinished result is abandoned, never drained."""
        result = getattr(self.cur, "_result", None)
        if result is not None and getattr(result, "unbuffered_active", False):
            result.unbuffered_active = False
            if self.cur is not None:
                self.cur.connection = None
            with contextlib.suppress(Exception):  # already failing or done
                self.conn._force_close()
            return
        sq.close_quietly(self.conn)


def _hint(problem: sq.ValueProblem) -> str:
    if sq.is_zero_date(problem.value):
        return ("MySQL zero dates have no DuckDB equivalent: set `zero_dates: null` to read "
                "them as NULL, or convert them in `query` (e.g. NULLIF(col, '0000-00-00')).")
    if re.fullmatch(r"-?\d+:\d\d:\d\d(\.\d+)?", problem.value):
        return ("DuckDB's TIME holds 00:00:00-23:59:59; this MySQL TIME is a duration: convert "
                "it in `query` (e.g. TIME_TO_SEC(col) or CAST(col AS CHAR)).")
    return "Convert the column in `query` (e.g. CAST(col AS CHAR))."
