"""The database's own verdict on texts written to its date, time, timestamp and interval columns.

DuckDB judges a text's ISO forms (:func:`osiris_dagster.drivers.target_fit.server_check`); any
other text (``12/31/2024 23:59:59.9``, ``Jan 8 04:05:06.7 2024``, ``epoch``, ``20240101103000.5``,
an interval) is read as the database reads it: the writer hands the distinct ones to these
functions, in its session (its DateStyle, time zone and sql_mode) and before it writes anything.

* PostgreSQL: each text is read once at full precision (``timestamp``, ``time``,
  ``interval``; for a date column ``timestamp``) and cast to the column's type, which rounds
  or cuts it as reading it with the column's modifier does (``timestamp(0)``, ``interval
  day``); the two are compared (intervals by their printed fields), in one query under a
  savepoint. When PostgreSQL refuses a text there, and always for a time column, a temporary
  PL/pgSQL function does it text by text: a text PostgreSQL refuses is passed over (the write
  fails on it, naming its column), and a text for a time column that PostgreSQL also reads as a
  timestamp with that time of day loses its date.
* MySQL/MariaDB: the texts go into a temporary table with a column like the target's (DATETIME,
  DATE or TIME with the target's digits), one with 6 digits and a DATETIME(6) one, by an
  ``INSERT IGNORE`` (what strict mode refuses becomes a zero value in both and passes: the write
  fails on it), and the columns are compared.

(A text with more than 6 fractional-second digits is refused in DuckDB already.)
"""

from __future__ import annotations

import json
from typing import Any

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.target_fit import TargetColumn, text_change

_PG_FUNCTION = "pg_temp.osiris_text_change"
_MYSQL_TABLE = "`_osiris_text_check`"


def _pg_wide(t: TargetColumn) -> str:
    zone = "with time zone" if "with time zone" in t.column_type else "without time zone"
    return {"datetime": f"timestamp {zone}", "time": f"time {zone}",
            "interval": "interval"}[t.kind]


def pg_changed_text(cur: Any, target: TargetColumn, texts: list[str]) -> tuple[str, str] | None:
    """The first of ``texts`` PostgreSQL would store changed in ``target``, and how; None when
    it keeps every one (or refuses it). Texts PostgreSQL reads are compared in one query; when
    one is refused (or the column is a time column), a PL/pgSQL function passes over what is
    refused, text by text."""
    import psycopg

    # parsed once, at full precision; the cast to the column's type then rounds or cuts it as
    # parsing with the type's modifier does (AdjustTimestampForTypmod and its siblings)
    full = "CAST(v AS timestamp)" if target.kind == "date" else f"CAST(v AS {_pg_wide(target)})"
    kept = "CAST(CAST(v AS date) AS timestamp)" if target.kind == "date" else \
        f"CAST(x AS {target.column_type})"
    if target.kind == "interval":  # '1 day -24:00:00' equals '00:00:00': compare the fields
        kept, x = f"CAST({kept} AS text)", "CAST(x AS text)"
    else:
        x = "x"
    changed = f"{kept} IS DISTINCT FROM {x}"
    # a column without time zone ignores a zone or offset in the text: another instant
    zoned = None
    if "with time zone" not in target.column_type and target.kind in ("datetime", "date"):
        zoned = "CAST(v AS timestamptz) IS DISTINCT FROM CAST(CAST(v AS timestamp) AS timestamptz)"
    elif "with time zone" not in target.column_type and target.kind == "time":
        zoned = "CAST(v AS timetz) IS DISTINCT FROM CAST(CAST(v AS time) AS timetz)"
    texts = [v for v in texts if "\x00" not in v]  # PostgreSQL has no NUL in a text
    sent = json.dumps(texts)  # one JSON text: much faster to send than a text[] parameter
    if target.kind != "time":
        cur.execute("SAVEPOINT osiris_text_check")
        try:
            how = f"CASE WHEN {zoned} THEN 'zone' ELSE 'digits' END" if zoned else "'digits'"
            either = f"({changed}) OR ({zoned})" if zoned else changed
            cur.execute(f"SELECT v, {how} FROM (SELECT v, i, {full} AS x FROM "
                        "json_array_elements_text(%s::json) WITH ORDINALITY AS u(v, i)) AS s "
                        f"WHERE {either} ORDER BY i LIMIT 1", (sent,))
            row = cur.fetchone()
        except psycopg.DataError:  # a text PostgreSQL refuses: judged one by one below
            cur.execute("ROLLBACK TO SAVEPOINT osiris_text_check")
        else:
            cur.execute("RELEASE SAVEPOINT osiris_text_check")
            return None if row is None else (str(row[0]), text_change(target, str(row[1])))
    dated = ""
    if target.kind == "time":  # '2024-01-01 10:00:00' into a time column is 10:00:00
        dated = ("BEGIN IF CAST(CAST(v AS timestamp) AS time) = CAST(v AS time) THEN "
                 "RETURN 'date'; END IF; EXCEPTION WHEN others THEN NULL; END;")
    cur.execute("SAVEPOINT osiris_text_function")
    try:
        _create_pg_function(cur, target, full, changed, zoned, dated)
    except psycopg.errors.InsufficientPrivilege:
        cur.execute("ROLLBACK TO SAVEPOINT osiris_text_function")
        raise DriverError(
            f"cannot check the texts written to column {target.name!r} "
            f"({target.column_type}): PostgreSQL judges a text that is not in ISO form "
            "(YYYY-MM-DD HH:MM:SS) with a temporary function, and this user may not create "
            "temporary objects. GRANT TEMPORARY ON DATABASE <database> TO <user>, or give the "
            "values in ISO form (e.g. strftime in a SQL step)") from None
    cur.execute("RELEASE SAVEPOINT osiris_text_function")
    try:
        cur.execute(f"SELECT v, c FROM (SELECT v, i, {_PG_FUNCTION}(v) AS c FROM "
                    "json_array_elements_text(%s::json) WITH ORDINALITY AS u(v, i)) AS s "
                    "WHERE c IS NOT NULL ORDER BY i LIMIT 1", (sent,))
        row = cur.fetchone()
    finally:
        cur.execute(f"DROP FUNCTION IF EXISTS {_PG_FUNCTION}(text)")
    return None if row is None else (str(row[0]), text_change(target, str(row[1])))


def _create_pg_function(cur: Any, target: TargetColumn, full: str, changed: str,
                        zoned: str | None, dated: str) -> None:
    cur.execute(
        f"CREATE OR REPLACE FUNCTION {_PG_FUNCTION}(v text) RETURNS text LANGUAGE plpgsql AS "
        f"$osiris$ DECLARE x {'timestamp' if target.kind == 'date' else _pg_wide(target)}; "
        f"BEGIN BEGIN x := {full}; IF {changed} THEN RETURN 'digits'; END IF; "
        f"{f'IF {zoned} THEN RETURN {chr(39)}zone{chr(39)}; END IF; ' if zoned else ''}"
        f"EXCEPTION WHEN others THEN RETURN NULL; END; {dated} RETURN NULL; END $osiris$")


def mysql_changed_text(cur: Any, target: TargetColumn, texts: list[str]
                       ) -> tuple[str, str] | None:
    """The first of ``texts`` MySQL would store changed in ``target``, and how; None when it
    keeps every one (or strict mode refuses it)."""
    fsp = target.fsp or 0
    narrow = {"datetime": f"DATETIME({fsp})", "date": "DATE", "time": f"TIME({fsp})"}[target.kind]
    wide = "TIME(6)" if target.kind == "time" else "DATETIME(6)"
    import pymysql

    try:
        cur.execute(f"CREATE TEMPORARY TABLE {_MYSQL_TABLE} (i INT, v LONGTEXT CHARACTER SET "
                    f"utf8mb4, t {narrow} NULL, w {wide} NULL, d DATETIME(6) NULL)")
    except pymysql.err.OperationalError as exc:
        if exc.args and exc.args[0] in (1044, 1142):  # access denied
            raise DriverError(
                f"cannot check the texts written to column {target.name!r} "
                f"({target.column_type}): MySQL judges a text that is not in ISO form "
                "(YYYY-MM-DD HH:MM:SS) in a temporary table, and this user may not create one. "
                "GRANT CREATE TEMPORARY TABLES ON <database>.* TO <user>, or give the values in "
                "ISO form (e.g. strftime in a SQL step)") from None
        raise
    try:
        cur.executemany(f"INSERT IGNORE INTO {_MYSQL_TABLE} VALUES (%s, %s, %s, %s, %s)",
                        [(i, v, v, v, v) for i, v in enumerate(texts)])
        changed = "NOT (t <=> w)"
        # MySQL reads some texts as a date with month or day 0 ('10:00:00' as 2010-00-00)
        # (only a text that writes no date: '2024-00-00' is a zero month MySQL keeps as is)
        zero = ("(YEAR(w) > 0 AND (MONTH(w) = 0 OR DAYOFMONTH(w) = 0) AND LOCATE('-', v) = 0 "
                "AND LOCATE('/', v) = 0)") \
            if target.kind in ("datetime", "date") else "false"
        # a time column keeps the time of a date and time: 10:00:00 of '2024-01-01 10:00:00'
        # (a time alone reads as a zero date: '10:00:00' is 2010-00-00)
        dated = "(MONTH(d) > 0 AND DAYOFMONTH(d) > 0 AND TIME(d) = w)" \
            if target.kind == "time" else "false"
        cur.execute(f"SELECT v, CASE WHEN {zero} THEN 'zero' WHEN {changed} THEN 'digits' "
                    f"ELSE 'date' END FROM {_MYSQL_TABLE} WHERE {changed} OR {dated} OR {zero} "
                    "ORDER BY i LIMIT 1")
        row = cur.fetchone()
    finally:
        cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {_MYSQL_TABLE}")
    return None if row is None else (str(row[0]), text_change(target, str(row[1])))
