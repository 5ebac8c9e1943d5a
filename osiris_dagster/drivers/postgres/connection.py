"""Connecting to Supabase: the two channels an ``@supabase`` connection may give
(:func:`supabase_channels`): SQL (PostgreSQL, :class:`PgParams`) and REST (PostgREST,
:class:`RestParams`); the psycopg connection, and its failures as step errors that say what to
check.

**Secrets.** Every message built here goes through :func:`~osiris_dagster.core.masking.scrub`
(the one :class:`~osiris_dagster.core.masking.Masker`), which masks the values of the connection's
secret-named fields (:data:`~osiris_dagster.core.masking.SECRET_NAMES`), so an exception text
never contains them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from osiris_dagster.core.errors import DriverError
from osiris_dagster.core.masking import (  # scrub: the one Masker, for drivers' messages
    scrub,
    secret_values,
)
from osiris_dagster.drivers.dbapi import close_quietly
from osiris_dagster.drivers.error_text import first_line
from osiris_dagster.drivers.options import connection_setting


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
    conn = dict(connection or {})
    secrets = secret_values(conn)  # every secret-named field (masking.SECRET_NAMES)
    if config.get("key"):
        secrets.append(str(config["key"]))
    sql = _sql_channel(component, conn, secrets)

    rest: RestParams | None = None
    url = _rest_url(conn, config)
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


def _sql_channel(component: str, conn: Mapping[str, Any], secrets: list[str]) -> PgParams | None:
    """The SQL channel, if the connection gives one; a DSN's password joins ``secrets``."""
    from psycopg import ProgrammingError
    from psycopg import conninfo as ci

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
            return _pg_params(ci.make_conninfo(**parts), parts, secrets)
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
            return _pg_params(ci.make_conninfo(**parts), parts, secrets)
    except ProgrammingError:  # malformed DSN: psycopg quotes pieces of it (the password too)
        raise DriverError(f"{component}: the Supabase connection's DSN cannot be parsed; check "
                          "pg_dsn/dsn/sql_dsn (a 'postgresql://user:password@host:5432/db' URL "
                          "or 'host=... dbname=... user=... password=...' pairs)") from None
    return None


def _rest_url(conn: Mapping[str, Any], config: Mapping[str, Any]) -> Any:
    """The PostgREST base URL: ``url``, or the one of ``project_id`` on supabase.co."""
    url = connection_setting(conn, config, "url")
    if not url and connection_setting(conn, config, "project_id"):
        url = f"https://{connection_setting(conn, config, 'project_id')}.supabase.co"
    return url


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
        context = (getattr(diag, "context", None) or "").strip().splitlines()
        if context and context[0].startswith("COPY "):  # 'COPY t, line 3, column id: "1.5"'
            detail += f" (in {context[0]}: line N is the Nth row written)"
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
            cur.execute("SET DateStyle = 'ISO'")  # output ISO; input order the server's
            cur.execute("SET extra_float_digits = 3")
            cur.execute("SET lc_monetary = 'C'")  # money: 2 decimals, '$' (any locale's)
        conn.commit()
    except psycopg.Error as exc:
        close_quietly(conn)
        raise pg_error(component, step_id, params, "preparing the session", exc) from None
    return conn
