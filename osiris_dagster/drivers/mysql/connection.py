"""Connecting to MySQL/MariaDB: the settings of an ``@mysql`` connection (:class:`MySQLParams`),
the pymysql connection, and its failures as step errors that say what to check.

**Secrets.** Every message built here goes through :func:`~osiris_dagster.core.masking.scrub`
(the one :class:`~osiris_dagster.core.masking.Masker`), which masks the values of the connection's
secret-named fields (:data:`~osiris_dagster.core.masking.SECRET_NAMES`), so an exception text
never contains them.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from osiris_dagster.core.errors import DriverError
from osiris_dagster.core.masking import scrub  # the one Masker, for drivers' messages
from osiris_dagster.drivers.error_text import first_line
from osiris_dagster.drivers.options import connection_setting


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
    database = connection_setting(conn, config, "database", "db")
    if not database:
        raise DriverError(f"{component}: the MySQL connection has no `database`; add it to the "
                          "@mysql connection in osiris_connections.yaml")
    port = connection_setting(conn, config, "port") or 3306
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise DriverError(f"{component}: MySQL port must be a number, got {port!r}") from None
    timeout = connection_setting(conn, config, "connect_timeout", "timeout") or 10
    return MySQLParams(
        host=str(connection_setting(conn, config, "host") or "localhost"),
        port=port,
        database=str(database),
        user=str(connection_setting(conn, config, "user", "username") or "root"),
        password=str(connection_setting(conn, config, "password") or ""),
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
    1452: "a foreign key does not match a row of the referenced table (in a replace of a "
          "table that references itself, a row may point only at rows that are there before "
          "it: rows that stay, or new rows listed before it)",
    1364: "a NOT NULL column without a default gets no value: add it to the input, or give "
          "the column a default",
    1451: "rows reference a row this write deletes or changes (a foreign key ON DELETE/UPDATE "
          "RESTRICT or NO ACTION, or a key the table's own rows point at, which MySQL does "
          "not let one statement change): keep the referenced keys in the input as they are, "
          "or change or delete the referencing rows first",
    3819: "a value breaks a CHECK constraint of the table",
    4025: "a value breaks a CHECK constraint of the table",
}


def mysql_error_code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def mysql_error(component: str, step_id: str, params: MySQLParams, action: str,
                exc: BaseException, note: str = "", hint: str | None = None) -> DriverError:
    code = mysql_error_code(exc)
    detail = first_line(exc)
    if code is not None and len(exc.args) > 1:
        detail = f"({code}) {exc.args[1]}"
    hint = hint or MYSQL_HINTS.get(code or -1, "check the connection settings and the SQL")
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


def query_killer(params: MySQLParams, conn: Any) -> Callable[[], None]:
    """A stop for a query pymysql waits on (DuckDB's interrupt cannot reach it): the server ends
    the connection and its query (``KILL``, sent from a second connection as the same user, which
    needs no privilege); then the socket is shut down, so the reading thread returns at once
    also where the second connection could not be made. For a read only: what a write had sent
    may still commit."""
    thread_id = conn.thread_id()

    def stop() -> None:
        import pymysql

        with contextlib.suppress(Exception):  # best effort: the socket below still ends the read
            killer = pymysql.connect(host=params.host, port=params.port, user=params.user,
                                     password=params.password, charset="utf8mb4",
                                     connect_timeout=min(params.connect_timeout, 10))
            try:
                with killer.cursor() as cur:
                    cur.execute("KILL %s", (int(thread_id),))
            finally:
                killer.close()
        sock = getattr(conn, "_sock", None)  # pymysql's socket: no public way to end a read
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    return stop
