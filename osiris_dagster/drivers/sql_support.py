"""Shared by the MySQL and Supabase (PostgreSQL) drivers: connection settings, identifier quoting,
type mapping between DuckDB and MySQL/PostgreSQL, and the streaming path into DuckDB.

**Ingest path (extractors).** Values leave the database as Arrow record batches of about
``batch_size`` rows: MySQL results typed by connectorx (:mod:`osiris_dagster.drivers.mysql.arrow`),
or as text where that would not be exact (pymysql's unbuffered cursor); PostgreSQL columns rendered
as text by the server (``COPY ... TO STDOUT`` parsed by Arrow's CSV reader, or a server-side cursor
when filter values must be bound). A ``pyarrow.RecordBatchReader`` over those batches is registered
in the step's DuckDB connection. ``ctx.create_output`` then runs one ``SELECT`` that casts each
column to its DuckDB type (vectorised, in C++) while DuckDB pulls the batches: rows are never held
all at once, there is no DataFrame, and the step's table appears atomically (or not at all). A value
DuckDB cannot represent (a MySQL zero date, a TIME past 24h) raises a :class:`DriverError` naming
the column and the value.

**Egress path (writers).** Rows leave DuckDB as Arrow batches read on a cursor of the step's
connection (:func:`arrow_batches`), never the whole table at once.

**Secrets.** Every message built here goes through :func:`scrub` (the one
:class:`~osiris_dagster.core.masking.Masker`), which masks the values of the connection's
secret-named fields (:data:`~osiris_dagster.core.masking.SECRET_NAMES`), so an exception text
never contains them.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa
from pymysql.charset import charset_by_name
from pymysql.constants import FIELD_TYPE, FLAG

from osiris_dagster.core.errors import DriverError
from osiris_dagster.core.masking import (  # scrub: the one Masker, for drivers' messages
    scrub,
    secret_values,
)
from osiris_dagster.core.naming import quote_ident, quote_literal
from osiris_dagster.drivers.base import StepContext

# -- quoting --------------------------------------------------------------------------------------


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or "\x00" in name:
        raise DriverError(f"invalid {what} name {name!r}: it must be a non-empty string")
    return name


def mysql_ident(name: str, what: str = "identifier") -> str:
    """A MySQL identifier in backticks (embedded backticks doubled)."""
    return "`" + _check_name(name, what).replace("`", "``") + "`"


def pg_ident(name: str, what: str = "identifier") -> str:
    """A PostgreSQL identifier in double quotes (embedded quotes doubled)."""
    return '"' + _check_name(name, what).replace('"', '""') + '"'


def duck_ident(name: str) -> str:
    return quote_ident(name)


def unique_names(names: Iterable[str]) -> list[str]:
    """Column names made unique case-insensitively (DuckDB's rule): ``id, id`` -> ``id, id_1``."""
    seen: set[str] = set()
    out: list[str] = []
    for raw in names:
        name = raw or "column"
        candidate, n = name, 0
        while candidate.lower() in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate.lower())
        out.append(candidate)
    return out


def name_list(value: Any, option: str) -> list[str] | None:
    """A list of column names from config (a YAML list, or a comma-separated string)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) and v for v in value):
        raise DriverError(f"`{option}` must be a list of column names, got {value!r}")
    if len({v.lower() for v in value}) != len(value):
        raise DriverError(f"`{option}` names a column twice: {list(value)}")
    return list(value)


def positive_int(config: Mapping[str, Any], key: str, default: int | None,
                 minimum: int = 1) -> int | None:
    value = config.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DriverError(f"`{key}` must be an integer >= {minimum}, got {value!r}")
    return value


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[0] if len(lines) == 1 else " ".join(ln.strip() for ln in lines[:3])


def _pick(connection: Mapping[str, Any], config: Mapping[str, Any], *keys: str) -> Any:
    """The connection's value wins; the step config only fills in what the connection lacks."""
    for source in (connection, config):
        for key in keys:
            value = source.get(key)
            if value not in (None, ""):
                return value
    return None


# -- MySQL connection settings --------------------------------------------------------------------


@dataclass(frozen=True)
class MySQLParams:
    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)
    connect_timeout: int = 10

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}/{self.database}"

    def target(self, table: str, schema: str | None = None) -> str:
        return f"mysql://{self.host}:{self.port}/{schema or self.database}.{table}"

    @property
    def secrets(self) -> list[str]:
        return [self.password] if self.password else []


def mysql_params(component: str, connection: Mapping[str, Any] | None,
                 config: Mapping[str, Any]) -> MySQLParams:
    """Credentials from the resolved ``@mysql.<alias>`` (host localhost, port 3306, user root
    by default); step config fills only fields the connection does not set."""
    conn = connection or {}
    database = _pick(conn, config, "database", "db")
    if not database:
        raise DriverError(f"{component}: the MySQL connection has no `database`; add it to the "
                          "@mysql connection in osiris_connections.yaml")
    port = _pick(conn, config, "port") or 3306
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise DriverError(f"{component}: MySQL port must be a number, got {port!r}") from None
    timeout = _pick(conn, config, "connect_timeout", "timeout") or 10
    return MySQLParams(
        host=str(_pick(conn, config, "host") or "localhost"),
        port=port,
        database=str(database),
        user=str(_pick(conn, config, "user", "username") or "root"),
        password=str(_pick(conn, config, "password") or ""),
        connect_timeout=int(timeout) if str(timeout).isdigit() else 10,
    )


MYSQL_HINTS = {
    1044: "check that the user may use this database",
    1045: "check the user and password of the @mysql connection",
    1049: "check the `database` of the @mysql connection",
    1142: "check the user's privileges on the table",
    1146: "check `table`/`schema` (or the query's table names)",
    1054: "check the column names in `columns`, `upsert_keys` or the query",
    1064: "check the SQL syntax of `query`",
    2003: "check host and port, and that the MySQL server is running and reachable",
    2005: "check the host name of the @mysql connection",
    2006: "the server closed the connection; check its logs and timeouts",
    2013: "the connection was lost during the query; check the server and network timeouts",
    1048: "a NOT NULL column received NULL",
    1062: "a PRIMARY KEY / UNIQUE value already exists (use mode: upsert or replace, or fix the "
          "data)",
    1264: "a value is out of range for the target column",
    1292: "a date/time value is invalid for the target column",
    1366: "a value has the wrong type for the target column",
    1406: "a value is longer than the target column allows",
    1452: "a foreign key does not match a row of the referenced table",
}


def mysql_error_code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def mysql_error(component: str, step_id: str, params: MySQLParams, action: str,
                exc: BaseException, note: str = "") -> DriverError:
    code = mysql_error_code(exc)
    detail = first_line(exc)
    if code is not None and len(exc.args) > 1:
        detail = f"({code}) {exc.args[1]}"
    hint = MYSQL_HINTS.get(code or -1, "check the connection settings and the SQL")
    msg = (f"{component} step '{step_id}': {action} on MySQL {params.where} (user "
           f"'{params.user}') failed: {detail}. {hint[0].upper() + hint[1:]}.")
    if note:
        msg += f" {note}"
    return DriverError(scrub(msg, params.secrets))


def mysql_connect(component: str, step_id: str, params: MySQLParams, *,
                  streaming: bool, raw_values: bool) -> Any:
    """A pymysql connection (autocommit off). ``raw_values``: no decoders, every value as text
    (binary columns as bytes), so conversion happens vectorised in DuckDB instead of in Python."""
    import pymysql
    import pymysql.converters
    import pymysql.cursors

    kwargs: dict[str, Any] = {}
    if raw_values:
        kwargs["conv"] = {k: v for k, v in pymysql.converters.conversions.items()
                          if not isinstance(k, int)}
    if streaming:
        kwargs["cursorclass"] = pymysql.cursors.SSCursor
    try:
        return pymysql.connect(host=params.host, port=params.port, user=params.user,
                               password=params.password, database=params.database,
                               charset="utf8mb4", autocommit=False,
                               connect_timeout=params.connect_timeout, read_timeout=None,
                               **kwargs)
    except pymysql.Error as exc:
        raise mysql_error(component, step_id, params, "connecting", exc) from None
    except (OSError, RuntimeError) as exc:
        raise mysql_error(component, step_id, params, "connecting", exc) from None


def close_quietly(conn: Any) -> None:
    """Close a DB-API connection without draining an unfinished result (no exception)."""
    if conn is None:
        return
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing after a failure must not hide the failure
        force = getattr(conn, "_force_close", None)
        if force is not None:
            with contextlib.suppress(Exception):
                force()


# -- Supabase / PostgreSQL connection settings ----------------------------------------------------


@dataclass(frozen=True)
class PgParams:
    conninfo: str = field(repr=False)
    host: str
    port: int
    database: str
    user: str
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}/{self.database}"

    def target(self, schema: str, table: str) -> str:
        return f"postgresql://{self.host}:{self.port}/{self.database}/{schema}.{table}"


@dataclass(frozen=True)
class RestParams:
    url: str  # base URL, no trailing slash (https://<id>.supabase.co)
    key: str = field(repr=False)

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc or self.url

    def table_url(self, table: str) -> str:
        from urllib.parse import quote

        return f"{self.url}/rest/v1/{quote(table, safe='')}"

    @property
    def secrets(self) -> list[str]:
        return [self.key]


@dataclass(frozen=True)
class SupabaseChannels:
    sql: PgParams | None
    rest: RestParams | None
    secrets: tuple[str, ...] = field(default=(), repr=False)


def supabase_channels(component: str, connection: Mapping[str, Any] | None,
                      config: Mapping[str, Any]) -> SupabaseChannels:
    """The SQL channel (DSN, ``pg_*`` fields or ``host/database/user/password``) and the REST
    channel (``url`` or ``project_id`` + ``service_role_key`` > ``anon_key`` > ``key``)."""
    from psycopg import ProgrammingError
    from psycopg import conninfo as ci

    conn = dict(connection or {})
    secrets = secret_values(conn)  # every secret-named field (masking.SECRET_NAMES)
    if config.get("key"):
        secrets.append(str(config["key"]))

    sql: PgParams | None = None
    dsn = next((conn[k] for k in ("pg_dsn", "dsn", "sql_dsn") if conn.get(k)), None)
    extra = {k: str(conn[k]) for k in ("sslmode", "sslrootcert") if conn.get(k)}
    try:
        if dsn:
            parts = ci.conninfo_to_dict(str(dsn))
            parts.update(extra)
            parts.setdefault("connect_timeout", "10")
            pw = parts.get("password")
            if pw:
                secrets.append(str(pw))
            sql = _pg_params(ci.make_conninfo(**parts), parts, secrets)
        else:
            prefix = "pg_" if conn.get("pg_host") else ""
            if conn.get(f"{prefix}host") and (prefix or conn.get("database")):
                parts = {
                    "host": str(conn[f"{prefix}host"]),
                    "port": str(conn.get(f"{prefix}port") or 5432),
                    "dbname": str(conn.get(f"{prefix}database") or "postgres"),
                    "user": str(conn.get(f"{prefix}user") or "postgres"),
                    "connect_timeout": "10",
                    **extra,
                }
                if conn.get(f"{prefix}password") not in (None, ""):
                    parts["password"] = str(conn[f"{prefix}password"])
                sql = _pg_params(ci.make_conninfo(**parts), parts, secrets)
    except ProgrammingError:  # malformed DSN: psycopg quotes pieces of it (the password too)
        raise DriverError(f"{component}: the Supabase connection's DSN cannot be parsed; check "
                          "pg_dsn/dsn/sql_dsn (a 'postgresql://user:password@host:5432/db' URL "
                          "or 'host=... dbname=... user=... password=...' pairs)") from None

    rest: RestParams | None = None
    url = _pick(conn, config, "url")
    if not url and _pick(conn, config, "project_id"):
        url = f"https://{_pick(conn, config, 'project_id')}.supabase.co"
    key = next((conn[k] for k in ("service_role_key", "anon_key", "key") if conn.get(k)), None)
    key = key or config.get("key")
    if url and key:
        rest = RestParams(str(url).rstrip("/"), str(key))
    if sql is None and rest is None:
        missing = "a key (service_role_key, anon_key or key)" if url else \
            "`url` or `project_id` and a key"
        raise DriverError(
            f"{component}: the Supabase connection gives neither a SQL channel (pg_dsn, or "
            f"pg_host/pg_database/pg_user/pg_password) nor a REST channel ({missing} is "
            "missing); check the @supabase connection in osiris_connections.yaml")
    return SupabaseChannels(sql, rest, tuple(secrets))


def _pg_params(conninfo: str, parts: Mapping[str, str], secrets: Sequence[str]) -> PgParams:
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    try:
        port = int(str(parts.get("port") or 5432).split(",")[0])
    except ValueError:
        port = 5432
    return PgParams(conninfo=conninfo, host=str(host), port=port,
                    database=str(parts.get("dbname") or parts.get("user") or "postgres"),
                    user=str(parts.get("user") or "postgres"), secrets=tuple(secrets))


PG_HINTS = {
    "28P01": "check the user and password of the @supabase connection",
    "28000": "check the user and the server's pg_hba.conf rules",
    "3D000": "check the database name of the @supabase connection",
    "3F000": "check `schema`",
    "42P01": "check `table` and `schema`",
    "42703": "check the column names (`select`, `filter`, `order`, `primary_key`)",
    "42501": "check the user's privileges on the schema and table",
    "22001": "a value is longer than the target column allows",
    "23505": "a primary key / unique value is duplicated",
    "23502": "a NOT NULL column received NULL",
    "42P10": "`primary_key` must match a primary key or unique constraint of the table",
    "21000": "the input has duplicate primary key values",
}


def pg_error(component: str, step_id: str, params: PgParams, action: str,
             exc: BaseException, secrets: Iterable[str] = (), note: str = "") -> DriverError:
    state = getattr(exc, "sqlstate", None)
    detail = first_line(exc)
    diag = getattr(exc, "diag", None)
    if diag is not None and getattr(diag, "message_primary", None):
        detail = diag.message_primary
        if getattr(diag, "message_detail", None):
            detail += f" ({diag.message_detail})"
    if state is None:
        low = detail.lower()
        if "password" in low or "authentication" in low or (
                "role" in low and "does not exist" in low):
            hint = PG_HINTS["28P01"]
        elif "does not exist" in low and "database" in low:
            hint = PG_HINTS["3D000"]
        elif type(exc).__name__ == "OperationalError":
            hint = "check host and port, and that the PostgreSQL server is running and reachable"
        else:
            hint = "check the table, the columns and the values"
    else:
        hint = PG_HINTS.get(state, "check the connection settings and the table")
    msg = (f"{component} step '{step_id}': {action} on PostgreSQL {params.where} (user "
           f"'{params.user}') failed: {detail}. {hint[0].upper() + hint[1:]}.")
    if note:
        msg += f" {note}"
    return DriverError(scrub(msg, [*params.secrets, *secrets]))


def pg_connect(component: str, step_id: str, params: PgParams, *, read_only: bool = False) -> Any:
    import psycopg

    try:
        conn = psycopg.connect(params.conninfo, autocommit=False)
    except psycopg.Error as exc:
        raise pg_error(component, step_id, params, "connecting", exc) from None
    try:
        conn.read_only = read_only
        with conn.cursor() as cur:  # outside the data transaction; settings for this session
            cur.execute("SET TimeZone = 'UTC'")
            cur.execute("SET bytea_output = 'hex'")
            cur.execute("SET IntervalStyle = 'postgres'")
            cur.execute("SET DateStyle = 'ISO, YMD'")
            cur.execute("SET extra_float_digits = 3")
        conn.commit()
    except psycopg.Error as exc:
        close_quietly(conn)
        raise pg_error(component, step_id, params, "preparing the session", exc) from None
    return conn


# -- columns read from a database -----------------------------------------------------------------


@dataclass(frozen=True)
class SourceColumn:
    """One column of a database result: how its text becomes a DuckDB value.

    ``kind``: ``text`` (VARCHAR as is), ``binary`` (bytes -> BLOB as is), ``cast`` (text cast to
    ``duck_type``), ``json_cast`` (JSON text cast to a LIST type), ``hex`` (PostgreSQL bytea
    text ``\\x..`` -> BLOB), ``date`` (a cast that may meet MySQL zero dates).
    """

    name: str
    duck_type: str
    source_type: str
    kind: str = "cast"
    convert: Callable[[Any], Any] | None = None  # Python-side fix-up before Arrow (rare types)

    @property
    def arrow_type(self) -> pa.DataType:
        return pa.binary() if self.kind == "binary" else pa.string()


_VALUE_ERROR = "osiris-value-error"
_SEP = "\x1f"
_ZERO_DATE = r"^(0000-00-00|[0-9]{4}-00-|[0-9]{4}-[0-9]{2}-00)"


def select_expression(col: SourceColumn, src: str, zero_dates_null: bool = False,
                      arrow_type: pa.DataType | None = None) -> str:
    """The DuckDB expression that turns source column ``src`` into the output value. ``src``
    holds text by default; with ``arrow_type`` it may also hold UTF-8 bytes (decoded) or typed
    values (cast; a value the cast cannot take fails naming the column, as text does)."""
    ref = duck_ident(src)
    out = duck_ident(col.name)
    typed = arrow_type is not None and not _is_text(arrow_type) and not _is_bytes(arrow_type)
    if col.kind == "binary":
        text = arrow_type is not None and _is_text(arrow_type)
        return f"encode({ref}) AS {out}" if text else f"{ref} AS {out}"
    if arrow_type is not None and _is_bytes(arrow_type):
        ref = f"decode({ref})"
    if col.kind == "text" or col.duck_type == "VARCHAR":
        return f"{ref}::VARCHAR AS {out}" if typed else f"{ref} AS {out}"
    if typed:
        marker = quote_literal(_VALUE_ERROR + _SEP + col.name + _SEP)
        fail = f"error({marker} || left({ref}::VARCHAR, 200))"
        return (f"CASE WHEN {ref} IS NULL THEN NULL ELSE coalesce(TRY_CAST({ref} AS "
                f"{col.duck_type}), {fail}) END AS {out}")
    if col.kind == "hex":
        value = f"from_hex(substr({ref}, 3))"
    elif col.kind == "json_cast":
        value = f"TRY_CAST(TRY_CAST({ref} AS JSON) AS {col.duck_type})"
    else:
        value = f"TRY_CAST({ref} AS {col.duck_type})"
    marker = quote_literal(_VALUE_ERROR + _SEP + col.name + _SEP)
    fail = f"error({marker} || left({ref}, 200))"
    null_if = f"{ref} IS NULL"
    if col.kind == "date" and zero_dates_null:
        null_if += f" OR regexp_matches({ref}, {quote_literal(_ZERO_DATE)})"
    return f"CASE WHEN {null_if} THEN NULL ELSE coalesce({value}, {fail}) END AS {out}"


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_bytes(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)


class ValueProblem(Exception):
    def __init__(self, column: str, value: str) -> None:
        super().__init__(column, value)
        self.column = column
        self.value = value


def value_problem(exc: BaseException) -> ValueProblem | None:
    """The column/value of a failed cast raised by :func:`select_expression`, if that was it."""
    text = str(exc)
    i = text.find(_VALUE_ERROR + _SEP)
    if i < 0:
        return None
    rest = text[i + len(_VALUE_ERROR) + 1:]
    column, _, value = rest.partition(_SEP)
    return ValueProblem(column, value.splitlines()[0] if value else value)


def is_zero_date(value: str) -> bool:
    return bool(re.match(_ZERO_DATE, value))


# -- streaming text rows into the step's table ----------------------------------------------------


class Progress:
    """``ctx.progress`` at most every ``every`` seconds (always for the first batch)."""

    def __init__(self, ctx: StepContext, every: float = 1.0) -> None:
        self._ctx = ctx
        self._every = every
        self._last = 0.0
        self.rows = 0

    def add(self, n: int) -> None:
        self.rows += n
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._ctx.progress(rows=self.rows)

    def done(self) -> None:
        self._ctx.progress(rows=self.rows, message="all rows read")


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
        converters = [(i, c.convert) for i, c in enumerate(self.columns) if c.convert]
        width = len(self.columns)
        try:
            for cols in self._batches:
                n = len(cols[0]) if cols else 0
                if not n:
                    continue
                for i, fn in converters:
                    cols[i] = _converted(fn, cols[i])
                arrays = [pa.array(cols[i], type=self.schema.field(i).type)
                          for i in range(width)]
                with self._lock:
                    self.rows += n
                if self._progress is not None:
                    self._progress.add(n)
                yield pa.record_batch(arrays, schema=self.schema)
        except BaseException as exc:
            self.error = exc
            raise


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

    def _generate(self) -> Iterator[pa.RecordBatch]:
        converters = [(i, c.convert) for i, c in enumerate(self.columns) if c.convert]
        try:
            for batch in self._arrow_batches:
                n = batch.num_rows
                if not n:
                    continue
                if converters:  # rare types fixed up in Python (e.g. MySQL BIT)
                    arrays = list(batch.columns)
                    for i, fn in converters:
                        arrays[i] = pa.array(_converted(fn, arrays[i].to_pylist()),
                                             type=self.schema.field(i).type)
                    batch = pa.record_batch(arrays, schema=self.schema)
                with self._lock:
                    self.rows += n
                if self._progress is not None:
                    self._progress.add(n)
                yield pa.record_batch(batch.columns, schema=self.schema)
        except BaseException as exc:
            self.error = exc
            raise


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
           translate: Callable[[BaseException], BaseException | None] | None = None) -> int:
    """Build the step's table from ``stream`` in one ``create_output`` (atomic, streaming)."""
    view = f"__osiris_stream_{ctx.output_table}"
    ctx.con.register(view, stream.reader())
    exprs = [select_expression(c, f"c{i}", zero_dates_null,
                               stream.schema.field(i).type if stream.typed else None)
             for i, c in enumerate(stream.columns)]
    if not exprs:
        raise DriverError(f"{describe}: the result has no columns")
    sql = f"SELECT {', '.join(exprs)} FROM {duck_ident(view)}"
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
            raise DriverError(
                f"{describe}: column '{problem.column}' holds {problem.value!r}, which cannot be "
                f"converted ({kind}).{(' ' + extra) if extra else ''}") from None
        raise
    finally:
        with contextlib.suppress(duckdb.Error):
            ctx.con.unregister(view)


# -- MySQL result types -> DuckDB -----------------------------------------------------------------

_BINARY_CHARSET = charset_by_name("binary").id  # charsetnr of binary strings and BLOBs

_MY_INTS = {  # type code -> (signed, unsigned)
    FIELD_TYPE.TINY: ("TINYINT", "UTINYINT"),
    FIELD_TYPE.SHORT: ("SMALLINT", "USMALLINT"),
    FIELD_TYPE.INT24: ("INTEGER", "UINTEGER"),
    FIELD_TYPE.LONG: ("INTEGER", "UINTEGER"),
    FIELD_TYPE.LONGLONG: ("BIGINT", "UBIGINT"),
}
_MY_TEXT_BLOBS = {FIELD_TYPE.TINY_BLOB: "TINYTEXT", FIELD_TYPE.MEDIUM_BLOB: "MEDIUMTEXT",
                  FIELD_TYPE.LONG_BLOB: "LONGTEXT", FIELD_TYPE.BLOB: "TEXT"}
_MY_STRINGS = {FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING, FIELD_TYPE.STRING, FIELD_TYPE.ENUM,
               FIELD_TYPE.SET, *_MY_TEXT_BLOBS}
_MY_NAMES = {  # the SQL names used in messages (FIELD_TYPE's own names, where they differ)
    FIELD_TYPE.NEWDECIMAL: "DECIMAL", FIELD_TYPE.SHORT: "SMALLINT", FIELD_TYPE.LONG: "INT",
    FIELD_TYPE.LONGLONG: "BIGINT", FIELD_TYPE.INT24: "MEDIUMINT", FIELD_TYPE.TINY: "TINYINT",
    FIELD_TYPE.NEWDATE: "DATE", FIELD_TYPE.VAR_STRING: "VARCHAR", FIELD_TYPE.STRING: "CHAR",
    FIELD_TYPE.TINY_BLOB: "TINYBLOB", FIELD_TYPE.MEDIUM_BLOB: "MEDIUMBLOB",
    FIELD_TYPE.LONG_BLOB: "LONGBLOB",
}
_FIELD_TYPE_NAMES = {v: k for k, v in vars(FIELD_TYPE).items()
                     if k.isupper() and isinstance(v, int) and k not in ("CHAR", "INTERVAL")}


def mysql_type_name(code: int) -> str:
    """A result type code as SQL names it (``FIELD_TYPE.LONG`` -> ``INT``)."""
    return _MY_NAMES.get(code) or _FIELD_TYPE_NAMES.get(code, f"type {code}")


def abandon_result(cursor: Any, conn: Any) -> None:
    """Close ``conn`` without reading the rest of the cursor's unbuffered result (a `limit`
    reached, a step stopped, a probe done): pymysql would otherwise try to drain it when the
    result is garbage-collected, from a socket already closed. Marks pymysql's result object
    finished (the only other read of it besides :func:`result_fields`)."""
    result = getattr(cursor, "_result", None)
    if result is not None and getattr(result, "unbuffered_active", False):
        result.unbuffered_active = False
    close_quietly(conn)


def result_fields(cursor: Any) -> list[Any]:
    """The column definitions of a pymysql cursor's current result (name, type_code, flags,
    charsetnr, length, scale). ``cursor.description`` is built from them but drops the flags
    and the charset, which tell INT from INT UNSIGNED and BLOB from TEXT, so they are read
    from the result object pymysql keeps for the cursor: a read-only use, in this one place."""
    result = getattr(cursor, "_result", None)
    fields = getattr(result, "fields", None)
    if fields is None and cursor.description is not None:
        raise DriverError("this pymysql version keeps no result column definitions where "
                          "osiris-dagster reads them; install a pymysql 1.x release")
    return list(fields or [])


MAX_DUCK_DECIMAL = 38


def _bit_to_int(value: Any) -> bytes:
    return str(int.from_bytes(value, "big")).encode() if isinstance(value, bytes | bytearray) \
        else str(value).encode()


def mysql_column(name: str, field_: Any, json_columns: Iterable[str] = ()) -> SourceColumn:
    """Map one pymysql result field (type code, flags, charset, length, scale) to DuckDB."""
    code = field_.type_code
    unsigned = bool(field_.flags & FLAG.UNSIGNED)
    binary = getattr(field_, "charsetnr", 0) == _BINARY_CHARSET
    label = mysql_type_name(code) + (" UNSIGNED" if unsigned and code in _MY_INTS else "")
    src = f"MySQL {label}"
    if code in _MY_INTS:
        signed, uns = _MY_INTS[code]
        return SourceColumn(name, uns if unsigned else signed, src)
    if code in (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL):
        precision, scale = mysql_decimal(field_)
        src = f"MySQL DECIMAL({precision},{scale})"
        if precision > MAX_DUCK_DECIMAL:
            return SourceColumn(name, "DOUBLE", src)
        return SourceColumn(name, f"DECIMAL({precision},{scale})", src)
    if code == FIELD_TYPE.FLOAT:
        return SourceColumn(name, "FLOAT", src)
    if code == FIELD_TYPE.DOUBLE:
        return SourceColumn(name, "DOUBLE", src)
    if code in (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE):
        return SourceColumn(name, "DATE", src, kind="date")
    if code in (FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP):
        return SourceColumn(name, "TIMESTAMP", src, kind="date")
    if code == FIELD_TYPE.TIME:
        return SourceColumn(name, "TIME", src)
    if code == FIELD_TYPE.YEAR:
        return SourceColumn(name, "SMALLINT", src)
    if code == FIELD_TYPE.BIT:
        return SourceColumn(name, "UBIGINT", src, convert=_bit_to_int)
    if code == FIELD_TYPE.JSON or name in set(json_columns):
        return SourceColumn(name, "JSON", "MySQL JSON")
    if code == FIELD_TYPE.GEOMETRY:
        return SourceColumn(name, "BLOB", src, kind="binary")
    if code in _MY_STRINGS:
        if binary:
            blob = {FIELD_TYPE.VARCHAR: "VARBINARY", FIELD_TYPE.VAR_STRING: "VARBINARY",
                    FIELD_TYPE.STRING: "BINARY"}
            return SourceColumn(name, "BLOB", f"MySQL {blob.get(code, mysql_type_name(code))}",
                                kind="binary")
        return SourceColumn(name, "VARCHAR",
                            f"MySQL {_MY_TEXT_BLOBS.get(code, mysql_type_name(code))}",
                            kind="text")
    if code == FIELD_TYPE.NULL:
        return SourceColumn(name, "VARCHAR", src, kind="text")
    # anything else arrives as text (or bytes): keep it verbatim
    return SourceColumn(name, "BLOB" if binary else "VARCHAR", src,
                        kind="binary" if binary else "text")


def mysql_decimal(field_: Any) -> tuple[int, int]:
    """(precision, scale) of a DECIMAL result field (its length counts the sign and point)."""
    scale = int(field_.scale or 0)
    unsigned = bool(field_.flags & FLAG.UNSIGNED)
    precision = int(field_.length or 0) - (1 if scale > 0 else 0) - (0 if unsigned else 1)
    return max(precision, scale, 1), scale


# -- PostgreSQL result types -> DuckDB ------------------------------------------------------------

_PG_SCALARS = {
    "bool": "BOOLEAN", "int2": "SMALLINT", "int4": "INTEGER", "int8": "BIGINT",
    "float4": "FLOAT", "float8": "DOUBLE", "oid": "UINTEGER", "date": "DATE",
    "timestamp": "TIMESTAMP", "timestamptz": "TIMESTAMPTZ", "time": "TIME",
    "timetz": "TIMETZ", "interval": "INTERVAL", "uuid": "UUID", "json": "JSON",
    "jsonb": "JSON", "text": "VARCHAR", "varchar": "VARCHAR", "bpchar": "VARCHAR",
    "name": "VARCHAR", "citext": "VARCHAR", "char": "VARCHAR", "xml": "VARCHAR",
}


@dataclass(frozen=True)
class PgType:
    """What pg_type says about a column's type (domains resolved to their base type)."""

    name: str  # typname of the (base) type
    category: str  # typcategory: A array, E enum, N numeric, ...
    element: str | None = None  # arrays: element typname
    dims: int = 1
    precision: int | None = None  # numeric(p,s)
    scale: int | None = None
    display: str = ""  # format_type() text for messages


def pg_duck_type(t: PgType) -> tuple[str, str]:
    """(DuckDB type, kind) for a PostgreSQL type; kind as in :class:`SourceColumn`."""
    if t.category == "A" and t.element:
        inner = _pg_scalar_duck(t.element, None, None)
        if inner is None or inner in ("JSON", "BLOB") or t.dims != 1:
            return "JSON", "cast"
        return f"{inner}[]", "json_cast"
    if t.name == "bytea":
        return "BLOB", "hex"
    if t.category == "E":
        return "VARCHAR", "text"
    scalar = _pg_scalar_duck(t.name, t.precision, t.scale)
    if scalar is None:
        return "VARCHAR", "text"
    return scalar, ("text" if scalar == "VARCHAR" else "cast")


def _pg_scalar_duck(name: str, precision: int | None, scale: int | None) -> str | None:
    if name == "numeric":
        if precision is None or precision > MAX_DUCK_DECIMAL:
            return "DOUBLE"
        return f"DECIMAL({precision},{scale or 0})"
    if name == "money":
        return "DECIMAL(18,2)"
    return _PG_SCALARS.get(name)


def pg_select_expression(column_sql: str, t: PgType) -> str:
    """Server-side text rendering of a column (arrays as JSON so they parse into DuckDB lists)."""
    if t.category == "A":
        return f"array_to_json({column_sql})::text"
    if t.name == "money":
        return f"{column_sql}::numeric::text"
    if t.category != "E" and _pg_scalar_duck(t.name, None, None) is None and t.name != "bytea":
        # types we keep as text (inet, ranges, geometry, ...): their output function's form
        # (an explicit ::text cast may differ, e.g. inet::text adds the netmask)
        return f"CASE WHEN {column_sql} IS NULL THEN NULL ELSE concat({column_sql}) END"
    return f"{column_sql}::text"


PG_TYPES_SQL = """
SELECT t.oid, coalesce(b.typname, t.typname), coalesce(b.typcategory, t.typcategory),
       e.typname, format_type(t.oid, NULL)
FROM pg_type t
LEFT JOIN pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype
LEFT JOIN pg_type e ON e.oid = coalesce(b.typelem, t.typelem) AND
     coalesce(b.typcategory, t.typcategory) = 'A'
WHERE t.oid = ANY(%s)
"""


# -- DuckDB types -> target DDL -------------------------------------------------------------------

_DUCK_TO_MYSQL = {
    "BOOLEAN": "TINYINT(1)", "TINYINT": "TINYINT", "SMALLINT": "SMALLINT", "INTEGER": "INT",
    "BIGINT": "BIGINT", "UTINYINT": "TINYINT UNSIGNED", "USMALLINT": "SMALLINT UNSIGNED",
    "UINTEGER": "INT UNSIGNED", "UBIGINT": "BIGINT UNSIGNED", "HUGEINT": "DECIMAL(39,0)",
    "UHUGEINT": "DECIMAL(39,0) UNSIGNED", "FLOAT": "FLOAT", "DOUBLE": "DOUBLE", "DATE": "DATE",
    "TIME": "TIME(6)", "TIMESTAMP": "DATETIME(6)", "TIMESTAMP_S": "DATETIME",
    "TIMESTAMP_MS": "DATETIME(3)", "TIMESTAMP_NS": "DATETIME(6)",
    "TIMESTAMP WITH TIME ZONE": "DATETIME(6)", "TIME WITH TIME ZONE": "VARCHAR(32)",
    "VARCHAR": "LONGTEXT", "BLOB": "LONGBLOB", "UUID": "CHAR(36)", "JSON": "JSON",
    "INTERVAL": "VARCHAR(64)", "BIT": "VARCHAR(255)",
}

_DUCK_TO_PG = {
    "BOOLEAN": "boolean", "TINYINT": "smallint", "SMALLINT": "smallint", "INTEGER": "integer",
    "BIGINT": "bigint", "UTINYINT": "smallint", "USMALLINT": "integer", "UINTEGER": "bigint",
    "UBIGINT": "numeric(20,0)", "HUGEINT": "numeric(39,0)", "UHUGEINT": "numeric(39,0)",
    "FLOAT": "real", "DOUBLE": "double precision", "DATE": "date", "TIME": "time",
    "TIMESTAMP": "timestamp", "TIMESTAMP_S": "timestamp(0)", "TIMESTAMP_MS": "timestamp(3)",
    "TIMESTAMP_NS": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "TIME WITH TIME ZONE": "timetz", "VARCHAR": "text", "BLOB": "bytea", "UUID": "uuid",
    "JSON": "jsonb", "INTERVAL": "interval", "BIT": "varbit",
}

_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")


def is_nested(duck_type: str) -> bool:
    t = duck_type.upper()
    return t.endswith("]") or t.startswith(("STRUCT", "MAP", "UNION"))


def list_element(duck_type: str) -> str | None:
    """``INTEGER[]`` -> ``INTEGER`` (one level; ``None`` for anything else)."""
    m = re.fullmatch(r"(.+)\[\d*\]", duck_type.strip())
    return m.group(1) if m else None


def mysql_ddl_type(duck_type: str) -> str:
    t = duck_type.upper().strip()
    if m := _DECIMAL.fullmatch(t):
        return f"DECIMAL({m.group(1)},{m.group(2)})"
    if t.startswith("ENUM"):
        return "LONGTEXT"
    if is_nested(t):
        return "JSON"
    return _DUCK_TO_MYSQL.get(t, "LONGTEXT")


def pg_ddl_type(duck_type: str) -> str:
    t = duck_type.strip()
    up = t.upper()
    if m := _DECIMAL.fullmatch(up):
        return f"numeric({m.group(1)},{m.group(2)})"
    if up.startswith("ENUM"):
        return "text"
    element = list_element(t)
    if element is not None and not is_nested(element):
        inner = pg_ddl_type(element)
        if inner not in ("jsonb", "bytea"):
            return f"{inner}[]"
    if is_nested(up):
        return "jsonb"
    return _DUCK_TO_PG.get(up, "text")


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


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None) -> Any:
    """The first value of a query (the result is read to its end, leaving nothing pending)."""
    rows = con.execute(sql, params).fetchall()
    return rows[0][0] if rows else None


def duck_columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]
