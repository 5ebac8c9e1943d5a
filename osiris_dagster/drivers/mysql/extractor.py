"""``mysql.extractor``: a MySQL/MariaDB query or table -> the step's table, streamed.

Osiris ran ``pandas.read_sql_query`` on the whole result (everything in memory, types guessed by
pandas). Here:

* **Credentials** come from the resolved ``@mysql.<alias>`` connection (host default localhost,
  port 3306, user root, database required). A step-level ``host``/``port`` only fills in what
  the connection leaves out; spec defaults never override the connection.
* **What is read**: ``query`` (sent as written; pymysql may put it in a CTE, see below), or
  ``table`` (+ ``schema`` = the database that holds it, ``columns``, ``limit``, ``offset``: all
  quoted identifiers / bound values, LIMIT and OFFSET run on the server). With ``query``,
  ``columns``/``limit``/``offset`` are applied while streaming (the query text is not rewritten
  for them; MariaDB would drop an ORDER BY inside a derived table); reading stops after
  ``limit`` rows and the connection is closed without draining.
* **Reading**: the column types come first, from pymysql with ``sql_select_limit = 0`` (the server
  describes the result without running the query, unless the query has its own LIMIT). Then, where
  connectorx reads every column exactly (:mod:`osiris_dagster.drivers.mysql.arrow`: integers of any
  sign, FLOAT/DOUBLE, DECIMAL with scale <= 10 and at most 18 digits before the point, dates and
  times, strings, BLOBs), it streams the result as Arrow record batches of ``batch_size`` rows from
  a child process; with ``table``, the columns it would change are cast in the SELECT it sends (a
  wider DECIMAL and MySQL 8's JSON as text, BIT as an unsigned integer, dates as text with
  ``zero_dates: null``). Otherwise, and when connectorx meets a value it cannot convert (a zero
  date, a TIME past 24h), cannot log in (MariaDB's ed25519 and other plugins it lacks) or does not
  know a type (GEOMETRY, a NULL literal), the result is read with pymysql's unbuffered cursor as
  text inside ``START TRANSACTION READ ONLY`` (event ``mysql_extract_path`` says which and why).
  That text rounds FLOAT (6 significant digits) and DOUBLE with fixed decimals (DOUBLE(M,D)), so
  pymysql reads those as ``CAST(col AS DOUBLE)``, whose text is exact: in the SELECT of a
  ``table`` read, and for a ``query`` by putting it verbatim in a CTE
  (:func:`wrapped_queries`; with an ORDER BY the server builds the result before sending it); a
  query that fits in none (a CALL) fails naming the columns. DuckDB casts the columns while it
  builds the table (:mod:`osiris_dagster.drivers.staging.rows`). Memory stays flat whatever the
  row count; progress is reported as batches arrive; a stopped step ends the read at once.
* **Types** come from the result metadata, so an empty result still has typed columns:

  ============================  =================================================
  MySQL                         DuckDB
  ============================  =================================================
  TINYINT/SMALLINT/MEDIUMINT/   TINYINT/SMALLINT/INTEGER/INTEGER/BIGINT, and the
  INT/BIGINT [UNSIGNED]         unsigned ones UTINYINT/USMALLINT/UINTEGER/UBIGINT
  TINYINT(1) / BOOL             TINYINT (kept an integer: MySQL stores 0..255 there)
  DECIMAL(p,s)                  DECIMAL(p,s); DOUBLE when p > 38 (e.g. SUM() of a
                                BIGINT), a value a double would round fails
  FLOAT / DOUBLE [(M,D)]        FLOAT / DOUBLE: the value stored, not the text
                                MySQL prints (a FLOAT's 6 digits, D decimals)
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

import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
from pymysql.constants import FIELD_TYPE

from osiris_dagster.core.errors import DriverError, StepCancelled
from osiris_dagster.drivers.base import (
    DriverResult,
    StepContext,
    UpstreamTable,
    on_interrupt,
    stopped,
)
from osiris_dagster.drivers.identifiers import mysql_ident, unique_names
from osiris_dagster.drivers.mysql import arrow as mx
from osiris_dagster.drivers.mysql.connection import (
    MySQLParams,
    mysql_connect,
    mysql_error,
    mysql_error_code,
    mysql_params,
    query_killer,
)
from osiris_dagster.drivers.mysql.results import abandon_result, result_fields
from osiris_dagster.drivers.mysql.types import (
    mysql_column,
    mysql_decimal,
    mysql_type_name,
    text_rounds,
)
from osiris_dagster.drivers.options import name_list, positive_int
from osiris_dagster.drivers.progress import Progress
from osiris_dagster.drivers.staging.columns import SourceColumn, ValueProblem, is_zero_date
from osiris_dagster.drivers.staging.rows import BatchStream, RowStream, columns_of, ingest

COMPONENT = "mysql.extractor"
_MAX_LIMIT = 18446744073709551615  # MySQL's "no limit" for LIMIT ... OFFSET
_JSON_CHECK = re.compile(r"^json_valid\(`((?:[^`]|``)+)`\)$", re.IGNORECASE)
_LOGIN_PLUGIN = re.compile(r"IDENTIFIED VIA (\w+)", re.IGNORECASE)
_ARROW_LOGINS = {"mysql_native_password", "caching_sha2_password"}  # what connectorx speaks
_DECIMALS = (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL)
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)
_LIMIT = re.compile(r"\blimit\b", re.IGNORECASE)


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
        offset = positive_int(config, "offset", 0, minimum=0) or 0
        if offset and query is None:  # which rows it skips would be arbitrary
            raise DriverError(
                f"{COMPONENT}: `offset` {offset} on `table` {table}: a table is read in no set "
                "order (an index, a row updated since), so which rows are skipped would be "
                "arbitrary and rows would be lost. Write a `query` with ORDER BY a column "
                "unique per row and give it the `offset`")
        return cls(
            query=query.strip().rstrip(";").strip() if query else None,
            table=table if query is None else None,
            schema=str(schema) if schema else None,
            columns=name_list(config.get("columns"), "columns"),
            limit=positive_int(config, "limit", None),
            offset=offset,
            batch_size=positive_int(config, "batch_size", 10000) or 10000,
            zero_dates_null=zero in ("null", "none"),
        )


def run(ctx: StepContext, config: Mapping[str, Any],
        inputs: Sequence[UpstreamTable]) -> DriverResult:
    opts = Options.from_config(config, ctx.connection)
    params = mysql_params(COMPONENT, ctx.connection, config)
    source = _describe_source(opts, params)
    ctx.log_event("mysql_extract_start", host=params.host, port=params.port,
                  database=params.database, source=source, batch_size=opts.batch_size)
    plan = _Probe(ctx, opts, params, source).plan()
    reader = _Reader(ctx, opts, params, source, plan)
    rows = reader.run()
    ctx.log_metric("rows_read", rows)
    return DriverResult(table=ctx.output_table, rows_read=rows, rows_written=rows,
                        extra_metadata={"source": source,
                                        "mysql": f"{params.host}:{params.port}/{params.database}"})


def _describe_source(opts: Options, params: MySQLParams) -> str:
    if opts.table:
        return f"table {(opts.schema or params.database)}.{opts.table}"
    return "query"


def _fail(ctx: StepContext, params: MySQLParams, action: str,
          exc: BaseException) -> DriverError:
    return mysql_error(COMPONENT, ctx.step_id, params, action, exc)


# -- what to read, and how ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """How the result is read. ``exact_sql`` runs on pymysql (every value as text, the way that
    always works); ``arrow_sql`` on connectorx, or None when it would not be exact (``why``).
    ``text_casts``: the columns of a query whose text pymysql would round (FLOAT, DOUBLE(M,D)):
    the query is then wrapped to read them as ``CAST(... AS DOUBLE)`` (:func:`wrapped_queries`;
    a table read casts them in ``exact_sql``)."""

    exact_sql: str
    arrow_sql: str | None
    why: str
    columns: list[SourceColumn]  # the output columns (after `columns` on a query)
    arrow_columns: list[SourceColumn]  # the same, as connectorx delivers them
    picks: list[int]  # result column of each output column
    width: int  # columns in the result
    text_casts: tuple[int, ...] = ()  # result columns (query) pymysql reads through a cast
    cast_types: tuple[str, ...] = ()  # their types, for messages
    names: tuple[str, ...] = ()  # the result's column names


class _Probe:
    """Asks the server for the result's column types without reading it (pymysql)."""

    def __init__(self, ctx: StepContext, opts: Options, params: MySQLParams,
                 source: str) -> None:
        self.ctx, self.opts, self.params, self.source = ctx, opts, params, source

    def plan(self) -> _Plan:
        import pymysql

        opts = self.opts
        sql = opts.query if opts.query is not None else self._table_sql("*")
        conn = mysql_connect(COMPONENT, self.ctx.step_id, self.params, streaming=True,
                             raw_values=True)
        cur = conn.cursor()
        try:
            json_columns = self._json_columns(cur) if opts.table else set()
            login = self._arrow_login(cur)
            cur.execute("SET SESSION sql_select_limit = 0")  # describe, do not run
            cur.execute(sql)
            fields = result_fields(cur)
        except pymysql.Error as exc:
            what = f"reading {self.source}" if opts.table else "running `query`"
            raise _fail(self.ctx, self.params, what, exc) from None
        finally:
            abandon_result(cur, conn)  # a query with its own LIMIT ran: not drained
        if not fields:
            raise DriverError(f"{COMPONENT} step '{self.ctx.step_id}': the query returned no "
                              "result set (is it a SELECT?)")
        return self._plan(fields, json_columns, login)

    def _plan(self, fields: list[Any], json_columns: set[str], login: str | None) -> _Plan:
        opts = self.opts
        names = [f.name for f in fields]
        picks = self._projection(names)
        out_names = unique_names(names[i] for i in picks)
        columns = [mysql_column(n, fields[i], json_columns)
                   for n, i in zip(out_names, picks, strict=True)]
        items = [arrow_item(f, table=opts.table is not None,
                            zero_dates_null=opts.zero_dates_null) for f in fields]
        rounded = tuple(i for i, f in enumerate(fields) if text_rounds(f))
        text_casts: tuple[int, ...] = ()
        if opts.query is not None:
            exact_sql = opts.query
            text_casts = rounded
        elif opts.columns or rounded:
            exact_sql = self._table_sql(", ".join(
                exact_double(mysql_ident(n, "column")) if i in rounded else
                mysql_ident(n, "column")
                for i, n in enumerate(names)))
        else:
            exact_sql = self._table_sql("*")
        arrow_sql: str | None = None
        why = ""
        unreadable = [f.name for f, item in zip(fields, items, strict=True) if item is False]
        if login:
            why = f"connectorx cannot log in with {login}"
        elif unreadable:
            why = ("connectorx would not read column(s) " + ", ".join(
                f"'{n}' ({mysql_type_name(f.type_code)})" for n, f in
                zip(names, fields, strict=True) if n in unreadable) + " exactly")
        elif opts.query is not None:
            arrow_sql = opts.query
        else:
            arrow_sql = self._table_sql(", ".join(
                item if isinstance(item, str) else mysql_ident(f.name, "column")
                for f, item in zip(fields, items, strict=True)))
        arrow_columns = [arrow_column(c, items[i])
                         for c, i in zip(columns, picks, strict=True)]
        return _Plan(exact_sql, arrow_sql, why, columns, arrow_columns, picks, len(fields),
                     text_casts, tuple(_float_label(fields[i]) for i in text_casts),
                     tuple(names))

    def _table_sql(self, select_list: str) -> str:
        """``SELECT ... FROM table`` with LIMIT/OFFSET (validated integers, written inline so
        that both readers run the same text)."""
        opts = self.opts
        if select_list == "*" and opts.columns:
            select_list = ", ".join(mysql_ident(c, "column") for c in opts.columns)
        assert opts.table is not None
        target = mysql_ident(opts.table, "table")
        if opts.schema:
            target = f"{mysql_ident(opts.schema, 'schema')}.{target}"
        sql = f"SELECT {select_list} FROM {target}"
        if opts.limit is not None or opts.offset:
            sql += f" LIMIT {int(opts.limit if opts.limit is not None else _MAX_LIMIT)}"
            if opts.offset:
                sql += f" OFFSET {int(opts.offset)}"
        return sql

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

    def _arrow_login(self, cur: Any) -> str | None:
        """The login plugin of this account if connectorx cannot use it (None when it can or
        nobody says). MariaDB names it in SHOW GRANTS; MySQL does not, and its accounts use
        plugins connectorx speaks (a failed login there is retried with pymysql)."""
        import pymysql

        try:
            cur.execute("SHOW GRANTS FOR CURRENT_USER()")
            grants = [str(r[0].decode() if isinstance(r[0], bytes) else r[0])
                      for r in cur.fetchall()]
        except pymysql.Error:
            return None
        for grant in grants:
            for plugin in _LOGIN_PLUGIN.findall(grant):
                if plugin.lower() not in _ARROW_LOGINS:
                    return plugin  # the plugin's name only: the rest holds a password hash
        return None

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


def arrow_item(field_: Any, *, table: bool, zero_dates_null: bool) -> str | bool:
    """How connectorx gets this result column exactly: ``True`` as it is, a SELECT-list item
    that casts it (only for ``table`` reads, where osiris writes the SELECT), or ``False``: it
    cannot (the result is then read with pymysql)."""
    code = field_.type_code
    ident = mysql_ident(field_.name, "column")
    as_text = f"CAST({ident} AS CHAR) AS {ident}" if table else False
    if code in _DECIMALS:
        return True if mx.decimal_fits(*mysql_decimal(field_)) else as_text
    if code in mx.DATES and zero_dates_null:
        # zero dates have no Arrow value: as text they become NULL; a query's dates are read
        # as they are, and a zero date makes connectorx fail, so pymysql reads the result
        return as_text if table else True
    if code == FIELD_TYPE.JSON:  # connectorx re-serialises JSON (key order, large numbers)
        return as_text
    if code == FIELD_TYPE.BIT:  # bytes: as an unsigned integer it is exact and typed
        return f"CAST({ident} AS UNSIGNED) AS {ident}" if table else False
    return mx.native_ok(code)


def _float_label(field_: Any) -> str:
    if field_.type_code == FIELD_TYPE.FLOAT:
        return "FLOAT"
    return f"DOUBLE with {int(field_.scale or 0)} fixed decimals"


def exact_double(ref: str) -> str:
    """A SELECT-list item that makes the text protocol print the FLOAT/DOUBLE column ``ref``
    (quoted) exactly (:func:`osiris_dagster.drivers.mysql.types.text_rounds`); DuckDB casts
    the text back to the column's FLOAT or DOUBLE."""
    return f"CAST({ref} AS DOUBLE) AS {ref}"


def wrapped_queries(query: str, names: Sequence[str], casts: Collection[int],
                    rows: int | None = None) -> list[str]:
    """``query`` with its result columns ``casts`` read as ``CAST(... AS DOUBLE)``, in the forms
    to try in order (the server refuses those it cannot prepare; a CALL or SHOW fits none).

    The query goes verbatim into a CTE, whose columns are selected by the result's ``names``
    or, where those do not name them (duplicates, or the server's ``Name_exp_1`` for a long
    expression), by a column list (``osiris_c0`` ...; MariaDB 10.11 then no longer resolves a
    UNION's ORDER BY by name: that is why it comes second). MariaDB drops the ORDER BY of a
    derived table unless it has a LIMIT, so a query whose text orders gets one (``rows``: the
    rows a `limit` reads, by default MySQL's no-limit), and the server builds the result before
    it sends the first row; without ORDER BY the CTE is merged into the SELECT and streams.
    MariaDB 10.11 refuses a WITH query in parentheses: it gets the LIMIT without them, or none
    when it has its own (whose ORDER BY that keeps)."""
    body = f"\n{query}\n"  # on lines of their own: a trailing -- comment ends at its line
    ordered = _ORDER_BY.search(query) is not None
    limit = f"LIMIT {int(rows if rows is not None else _MAX_LIMIT)}"
    heads: list[tuple[str, list[str]]] = []
    if all(n and "\x00" not in n for n in names) and \
            len({n.casefold() for n in names}) == len(names):
        heads.append(("WITH osiris_q AS (", [mysql_ident(n, "column") for n in names]))
    listed = [f"osiris_c{i}" for i in range(len(names))]
    heads.append((f"WITH osiris_q ({', '.join(listed)}) AS (", listed))
    forms = []
    for head, refs in heads:
        tail = ") SELECT " + ", ".join(
            exact_double(r) if i in casts else r
            for i, r in enumerate(refs)) + " FROM osiris_q"
        if not ordered:
            forms.append(head + body + tail)
            continue
        forms += [f"{head}({body}) {limit}{tail}", f"{head}{body}{limit}{tail}"]
        if _LIMIT.search(query):
            forms.append(head + body + tail)
    return forms


def arrow_column(col: SourceColumn, item: str | bool) -> SourceColumn:
    """``col`` as connectorx delivers it: typed values need no Python fix-up (BIT arrives as an
    integer when cast, not as bytes)."""
    if isinstance(item, str) or col.convert is not None:
        return replace(col, convert=None)
    return col


# -- reading --------------------------------------------------------------------------------------


class _UseExact(Exception):
    """connectorx cannot read this result exactly after all: read it with pymysql."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Reader:
    def __init__(self, ctx: StepContext, opts: Options, params: MySQLParams, source: str,
                 plan: _Plan) -> None:
        self.ctx, self.opts, self.params, self.source, self.plan = ctx, opts, params, source, plan
        self.describe = (f"{COMPONENT} step '{ctx.step_id}' ({source} on MySQL "
                         f"{params.where})")

    def run(self) -> int:
        plan = self.plan
        why = plan.why
        if plan.arrow_sql is not None:
            try:
                rows = self._read_arrow(plan.arrow_sql)
                self.ctx.log_event("mysql_extract_path", path="arrow", reader="connectorx")
                return rows
            except _UseExact as exc:
                why = exc.reason
        self.ctx.log_event("mysql_extract_path", path="exact", reader="pymysql", reason=why)
        return self._read_exact(why)

    def _ingest(self, stream: RowStream, progress: Progress,
                translate: Callable[[BaseException], Any]) -> int:
        rows = ingest(self.ctx, stream, describe=self.describe,
                      zero_dates_null=self.opts.zero_dates_null, hint=_hint,
                      translate=translate)
        progress.done()
        return rows

    # -- connectorx

    def _read_arrow(self, sql: str) -> int:
        plan = self.plan
        try:
            read = mx.ArrowRead(self.params, sql, self.opts.batch_size, self.ctx.tmp_dir)
            # a stop ends the child (DuckDB's interrupt cannot reach it), also while the child
            # has not answered yet (a slow query)
            with on_interrupt(self.ctx, read.stop), read:
                if len(read.schema) != plan.width:
                    raise _UseExact(f"connectorx returned {len(read.schema)} columns where "
                                    f"the server described {plan.width}")
                schema = pa.schema([read.schema.field(i) for i in plan.picks])
                batches = self._window(self._project(read.batches()))
                progress = Progress(self.ctx)
                stream = BatchStream(plan.arrow_columns, batches, progress, schema=schema)
                return self._ingest(stream, progress, self._arrow_error)
        except mx.ArrowReadError as exc:  # before the first batch
            mapped = self._arrow_error(exc)
            raise mapped from None

    def _arrow_error(self, exc: BaseException) -> BaseException | None:
        if isinstance(exc, StepCancelled):
            return exc
        if stopped(self.ctx):  # the child was ended by a stop: never read again with pymysql
            return StepCancelled("the step was interrupted")
        if not isinstance(exc, mx.ArrowReadError):
            return None
        if exc.kind in ("value", "type", "connect"):
            return _UseExact(f"connectorx: {exc.message}")
        if exc.kind == "spool":
            return DriverError(f"{self.describe}: the rows read but not ingested yet could not "
                               f"wait on disk ({exc.message}). Free space in the session's "
                               "tmp/ directory, or give the sessions directory a larger disk, "
                               "and run again.")
        if exc.kind == "server":
            return _fail(self.ctx, self.params, f"reading {self.source}",
                         _ServerError(exc.code, exc.message))
        return DriverError(f"{self.describe}: reading rows with connectorx failed: "
                           f"{exc.message}. Check the server's log and the network; "
                           "report it if it persists.")

    # -- pymysql

    def _read_exact(self, why: str) -> int:
        import pymysql

        conn = mysql_connect(COMPONENT, self.ctx.step_id, self.params, streaming=True,
                             raw_values=True)
        cur = conn.cursor()

        def translate(exc: BaseException) -> BaseException | None:
            if stopped(self.ctx):  # the stop ended the connection under the read
                return StepCancelled("the step was interrupted")
            return _fail(self.ctx, self.params, f"reading {self.source}", exc) \
                if isinstance(exc, pymysql.Error) else None

        try:
            # a stop ends the query on the server: pymysql waits for it where DuckDB's
            # interrupt cannot reach (a slow query, a read between two batches)
            with on_interrupt(self.ctx, query_killer(self.params, conn)):
                try:
                    cur.execute("SET SESSION net_write_timeout = 600")
                    sql = self._wrapped(cur, why) if self.plan.text_casts else \
                        self.plan.exact_sql
                    cur.execute("START TRANSACTION READ ONLY")
                    cur.execute(sql)
                except pymysql.Error as exc:
                    if stopped(self.ctx):
                        raise StepCancelled("the step was interrupted") from None
                    what = f"reading {self.source}" if self.opts.table else "running `query`"
                    raise _fail(self.ctx, self.params, what, exc) from None
                fields = result_fields(cur)
                if len(fields) != self.plan.width:
                    raise DriverError(f"{self.describe}: the result changed while it was read "
                                      f"({len(fields)} columns, described with "
                                      f"{self.plan.width})")
                state = {"finished": False}
                progress = Progress(self.ctx)
                stream = BatchStream(self.plan.columns, self._window(
                    self._exact_batches(cur, state)), progress)
                rows = self._ingest(stream, progress, translate)
                if state["finished"]:  # else (a `limit` on a query) the rest is not drained
                    conn.commit()
                return rows
        finally:
            abandon_result(cur, conn)  # an unfinished result is not drained

    def _wrapped(self, cur: Any, why: str) -> str:
        """The query in the first form of :func:`wrapped_queries` the server accepts, each
        checked by PREPARE (which resolves every name and runs nothing); when it accepts none
        (a CALL), the step fails naming the columns pymysql would round."""
        import pymysql

        plan, opts = self.plan, self.opts
        assert opts.query is not None
        rows = None if opts.limit is None else min(opts.offset + opts.limit, _MAX_LIMIT)
        refused = ""
        for sql in wrapped_queries(opts.query, plan.names, plan.text_casts, rows):
            try:
                cur.execute("PREPARE osiris_wrapped FROM %s", (sql,))
            except pymysql.Error as exc:
                code = mysql_error_code(exc)
                if code is None or 2000 <= code < 3000:  # the connection, not the SQL
                    raise
                text = " ".join(str(exc.args[1] if len(exc.args) > 1 else exc).split())
                # not cut short: the step's error is masked before it is capped, and a cut
                # here would show the start of a secret the query holds (a sensitive param)
                refused = refused or f"({code}) {text}"
                continue
            cur.execute("DEALLOCATE PREPARE osiris_wrapped")
            return sql
        names = [plan.names[i] for i in plan.text_casts]
        columns = ", ".join(f"'{n}' ({t})" for n, t in zip(names, plan.cast_types, strict=True))
        casts = ", ".join(f"CAST({n} AS DOUBLE)" for n in names)
        many = len(names) > 1
        raise DriverError(
            f"{self.describe}: column{'s' if many else ''} {columns} cannot be read exactly. "
            f"The result is read with pymysql ({why}), whose text protocol prints a FLOAT with "
            "6 significant digits and a DOUBLE with fixed decimals rounded to them, and the "
            f"query cannot be put in a WITH that casts {'them' if many else 'it'} (the server "
            f"refused it: {refused}). Return {'them' if many else 'it'} from `query` as "
            f"{casts} (a DOUBLE holds every FLOAT exactly), or read the table with `table`.")

    def _exact_batches(self, cur: Any, state: dict[str, bool]) -> Iterator[pa.RecordBatch]:
        """pymysql's rows as Arrow batches of the output columns: text, binary columns as
        bytes, BIT converted in Python (the one type pymysql gives as raw bits)."""
        plan = self.plan
        names = [f"c{i}" for i in range(len(plan.picks))]
        while True:
            rows = cur.fetchmany(self.opts.batch_size)
            if not rows:
                state["finished"] = True
                return
            cols = columns_of(rows, plan.width)
            arrays = []
            for col, i in zip(plan.columns, plan.picks, strict=True):
                values = cols[i]
                if col.convert is not None:
                    values = [None if v is None else col.convert(v) for v in values]
                arrays.append(pa.array(values, type=col.arrow_type))
            yield pa.record_batch(arrays, names=names)

    # -- both

    def _project(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """The output columns (``columns`` of a query) of whole-result batches."""
        picks = self.plan.picks
        names = [f"c{i}" for i in range(len(picks))]
        for batch in batches:
            yield pa.record_batch([batch.column(i) for i in picks], names=names)

    def _window(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """``offset`` and ``limit`` of a query, applied while streaming; stops reading once
        ``limit`` rows are through."""
        opts = self.opts
        skip = opts.offset if opts.query is not None else 0
        remaining = opts.limit if opts.query is not None else None
        for batch in batches:
            if remaining is not None and remaining <= 0:
                return
            if skip:
                dropped = min(skip, batch.num_rows)
                batch = batch.slice(dropped)
                skip -= dropped
            if remaining is not None:
                batch = batch.slice(0, remaining)
                remaining -= batch.num_rows
            if batch.num_rows:
                yield batch
            if remaining is not None and remaining <= 0:
                return


class _ServerError(Exception):
    """A MySQL error reported by connectorx, shaped like pymysql's (code, message)."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(code, message)


def _hint(problem: ValueProblem) -> str:
    if is_zero_date(problem.value):
        return ("MySQL zero dates have no DuckDB equivalent: set `zero_dates: null` to read "
                "them as NULL, or convert them in `query` (e.g. NULLIF(col, '0000-00-00')).")
    if re.fullmatch(r"-?\d+:\d\d:\d\d(\.\d+)?", problem.value):
        return ("DuckDB's TIME holds 00:00:00-23:59:59; this MySQL TIME is a duration: convert "
                "it in `query` (e.g. TIME_TO_SEC(col) or CAST(col AS CHAR)).")
    return "Convert the column in `query` (e.g. CAST(col AS CHAR))."
