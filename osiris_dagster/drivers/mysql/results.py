"""The result object pymysql keeps for a cursor: the only place the drivers read it, for the
column definitions ``cursor.description`` drops (:func:`result_fields`), and to close a
connection without draining an unfinished result (:func:`abandon_result`)."""

from __future__ import annotations

from typing import Any

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.dbapi import close_quietly


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
