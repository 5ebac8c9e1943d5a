"""Texts (what the CSV extractor gives for dates and times by default) written to existing date,
time, timestamp and interval columns: a text the database would store changed (fractional
seconds rounded or cut, a time of day or a date dropped, interval fields dropped) fails the write
naming the column, the value and the column's type, before anything is written; a text the
database keeps exactly is written as before. Before, all these were written changed with exit 0.
"""

from __future__ import annotations

import pytest

from osiris_dagster.core.errors import DriverError

from .conftest import Harness, MySQLTarget, PgTarget

_DIGITS_0 = "with 0 fractional-second digits"


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _upstream(harness: Harness, *values: str | None) -> None:
    rows = [f"SELECT {i} AS id, CAST({'NULL' if v is None else _sql_text(v)} AS VARCHAR) AS v"
            for i, v in enumerate(values, start=1)]
    harness.upstream(" UNION ALL ".join(rows))


# -- PostgreSQL ------------------------------------------------------------------------------------

_ZONE = "without its time zone or UTC offset, so as another instant"
_MONTH_0 = "as a date with month or day 0 (how it reads the text)"
_PG_CHANGED = [
    # ISO forms, judged in DuckDB
    ("timestamp(0)", "2024-12-31 23:59:59.9", "2024-12-31 23:59:59", _DIGITS_0),
    ("timestamp(3)", "2024-01-01T10:00:00.1234", "2024-01-01T10:00:00.123",
     "with 3 fractional-second digits"),
    ("timestamp", "2024-01-01 10:00:00.1234567", "2024-01-01 10:00:00.123456",
     "with 6 fractional-second digits"),
    ("date", "2024-01-01 23:30:00", "2024-01-01 00:00:00", "without its time of day"),
    ("time(0)", "10:00:00.5", "10:00:00", _DIGITS_0),
    ("time(0)", "2024-01-01 10:00:00", "10:00:00", "without its date"),
    ("time(1)", "10:00:00.25", "10:00:00.2", "with 1 fractional-second digits"),
    ("timestamptz(0)", "2024-01-01 10:00:00.5+02", "2024-01-01 10:00:00+02", _DIGITS_0),
    ("timetz(0)", "10:00:00.5+02", "10:00:00+02", _DIGITS_0),
    ("interval", "00:00:01.1234567", "00:00:01.123456", "with 6 fractional-second digits"),
    # other forms, judged by PostgreSQL (DateStyle MDY: 12/31/2024)
    ("timestamp(0)", "12/31/2024 23:59:59.9", "12/31/2024 23:59:59", _DIGITS_0),
    ("timestamp(0)", "Jan 8 04:05:06.7 2024", "Jan 8 04:05:06 2024", _DIGITS_0),
    ("timestamptz(0)", "2024-01-01 10:00:00.5 Europe/Berlin", "2024-01-01 10:00:00 CET",
     _DIGITS_0),
    ("date", "12/31/2024 10:00", "12/31/2024", "without its time of day"),
    ("time(0)", "10:00:00.5 AM", "10:00:00 AM", _DIGITS_0),
    ("time", "12/31/2024 10:00:00", "10:00:00", "without its date"),
    ("interval day", "1 day 02:00:00", "1 day", "without what is below its days"),
    ("interval(0)", "00:00:01.5", "00:00:01", _DIGITS_0),
    ("interval hour to minute", "P1DT2H3M4S", "P1DT2H3M", "without what is below its minutes"),
    # a zone or offset a column without time zone ignores: another instant (a review found
    # these stored as 10:00 local); a date text PostgreSQL reads without its 24:00
    ("timestamp(0)", "2024-01-01T10:00:00+02:00", "2024-01-01T08:00:00", _ZONE),
    ("timestamp", "2024-01-01 10:00:00 Europe/Prague", "2024-01-01 09:00:00", _ZONE),
    ("time(0)", "10:00:00+02", "08:00:00", _ZONE),
    ("date", "2024-01-01 24:00:00", "2024-01-02", "without its time of day"),
]


@pytest.mark.parametrize(("target", "bad", "good", "change"), _PG_CHANGED)
def test_pg_refuses_a_text_the_column_would_change(pg: PgTarget, harness: Harness, target: str,
                                                   bad: str, good: str, change: str) -> None:
    t = pg.table("tt_fit")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int, v {target})",
               f"INSERT INTO {t} VALUES (0, NULL)")
    _upstream(harness, good, None, bad)
    with pytest.raises(DriverError) as info:
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="tt_fit")
    msg = str(info.value)
    assert f"column 'v' holds {bad!r}, which column 'v' (" in msg, msg
    assert f"of {pg.schema}.tt_fit cannot hold exactly" in msg and change in msg, msg
    assert f"would store it {change}, without an error" in msg, msg  # that reason alone
    assert "Nothing was written" in msg
    assert pg.query(f"SELECT count(*) FROM {t}") == [(1,)]  # the table is as it was
    _upstream(harness, good, None)  # the value that fits is written
    harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="tt_fit")
    assert pg.query(f"SELECT count(*) FROM {t}") == [(3,)]


_PG_KEPT = [
    ("timestamp(0)", "2024-01-01 10:00:00", "2024-01-01 10:00:00"),
    ("timestamp(0)", "2024-01-01T10:00", "2024-01-01 10:00:00"),
    ("timestamp(2)", "2024-01-01 10:00:00.120", "2024-01-01 10:00:00.12"),
    ("timestamp(0)", "2024-01-01", "2024-01-01 00:00:00"),
    ("timestamp(0)", "infinity", "infinity"),
    ("timestamp(0)", "-infinity", "-infinity"),
    ("timestamp(0)", "epoch", "1970-01-01 00:00:00"),
    ("timestamp(0)", "12/31/2024 23:59:59", "2024-12-31 23:59:59"),
    ("timestamp(0)", " 2024-01-01 10:00:00 ", "2024-01-01 10:00:00"),
    ("date", "2024-01-01", "2024-01-01"),
    ("date", "2024-01-01 00:00:00", "2024-01-01"),
    ("date", "12/31/2024", "2024-12-31"),
    ("date", "infinity", "infinity"),
    ("date", "10000-01-01", "10000-01-01"),
    ("time(0)", "10:00:00", "10:00:00"),
    ("time(0)", "10:00", "10:00:00"),
    ("time(0)", "24:00:00", "24:00:00"),
    ("time(0)", "allballs", "00:00:00"),
    ("time(0)", "040506", "04:05:06"),  # PostgreSQL reads it as a time here, not a date
    ("time(0)", "10:00:00 PM", "22:00:00"),
    ("timestamptz(0)", "2024-01-01 10:00:00+02", "2024-01-01 08:00:00+00"),
    ("timestamptz(0)", "2024-01-01T10:00:00Z", "2024-01-01 10:00:00+00"),
    ("timestamptz(0)", "2024-01-01 10:00:00 Europe/Berlin", "2024-01-01 09:00:00+00"),
    ("timetz(0)", "10:00:00+02", "10:00:00+02"),
    ("interval", "1 day 02:00:00.5", "1 day 02:00:00.5"),
    ("interval day", "3 days", "3 days"),
    ("interval(0)", "1 mon 2 days 03:04:05", "1 mon 2 days 03:04:05"),
]


@pytest.mark.parametrize(("target", "text", "stored"), _PG_KEPT)
def test_pg_writes_a_text_the_column_keeps(pg: PgTarget, harness: Harness, target: str,
                                           text: str, stored: str) -> None:
    t = pg.table("tt_kept")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int, v {target})")
    _upstream(harness, text, None)
    harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="tt_kept")
    assert pg.query(f"SELECT v::text FROM {t} ORDER BY id") == [(stored,), (None,)]


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_pg_a_text_the_server_refuses_still_fails_naming_its_column(
        pg: PgTarget, harness: Harness, mode: str) -> None:
    """A text PostgreSQL cannot read is passed over by the check: the write fails on it as
    before, saying which column."""
    t = pg.table("tt_bad")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int PRIMARY KEY, "
                                            "v timestamp(0))")
    _upstream(harness, "12/31/2024 23:59:59", "not a time")
    with pytest.raises(DriverError, match=r'invalid input syntax for type timestamp: "not a '
                                          r'time".*column v'):
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="tt_bad",
                      write_mode=mode, primary_key=["id"])
    assert pg.query(f"SELECT count(*) FROM {t}") == [(0,)]


def test_pg_a_refused_text_does_not_hide_a_changed_one(pg: PgTarget, harness: Harness) -> None:
    """PostgreSQL refuses 'not a time' in the one query that compares the texts; they are then
    judged one by one, and the one it would round is still found."""
    t = pg.table("tt_mixed")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int, v timestamp(0))")
    _upstream(harness, "not a time", "12/31/2024 23:59:59.9")
    with pytest.raises(DriverError, match=r"holds '12/31/2024 23:59:59\.9', which column 'v' "
                                          r"\(timestamp\(0\) without time zone\).*with 0 "
                                          r"fractional-second digits"):
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="tt_mixed")


# -- MySQL / MariaDB -------------------------------------------------------------------------------

_MYSQL_CHANGED = [
    # ISO forms, judged in DuckDB
    ("DATETIME", "2024-12-31 23:59:59.9", "2024-12-31 23:59:59", _DIGITS_0),
    ("DATETIME(3)", "2024-01-01T10:00:00.1234", "2024-01-01T10:00:00.123",
     "with 3 fractional-second digits"),
    ("DATETIME(6)", "2024-01-01 10:00:00.1234567", "2024-01-01 10:00:00.123456",
     "with 6 fractional-second digits"),
    ("TIMESTAMP(0)", "2024-01-01 10:00:00.5", "2024-01-01 10:00:00", _DIGITS_0),
    ("DATE", "2024-01-01 23:30:00", "2024-01-01 00:00:00", "without its time of day"),
    ("TIME", "10:00:00.5", "10:00:00", _DIGITS_0),
    ("TIME", "2024-01-01 10:00:00", "10:00:00", "without its date"),
    # other forms, judged by MySQL
    ("DATETIME", "2024/12/31 23:59:59.9", "2024/12/31 23:59:59", _DIGITS_0),
    ("DATETIME", "20241231235959.9", "20241231235959", _DIGITS_0),
    ("DATE", "20240101103000", "20240101", "without its time of day"),
    ("DATE", "2024/1/1 10.30", "2024/1/1", "without its time of day"),
    ("TIME", "1 10:00:00.5", "1 10:00:00", _DIGITS_0),
    ("TIME", "2024/01/01 10:00:00", "10:00:00", "without its date"),
    # MariaDB reads a time alone as a date with month 0 (2010-00-00), and drops an offset
    ("DATETIME", "10:00:00", "2024-01-01 10:00:00", _MONTH_0),
    ("DATE", "10:00:00", "2024-01-01", _MONTH_0),
    ("DATETIME", "2024-01-01T10:00:00+02:00", "2024-01-01 08:00:00", _ZONE),
]


@pytest.mark.parametrize(("target", "bad", "good", "change"), _MYSQL_CHANGED)
def test_mysql_refuses_a_text_the_column_would_change(mysql: MySQLTarget, harness: Harness,
                                                      target: str, bad: str, good: str,
                                                      change: str) -> None:
    mysql.execute("DROP TABLE IF EXISTS tt_fit", f"CREATE TABLE tt_fit (id INT, v {target} NULL)",
                  "INSERT INTO tt_fit VALUES (0, NULL)")
    _upstream(harness, good, None, bad)
    with pytest.raises(DriverError) as info:
        harness.write("mysql.writer", mysql.connection(), table="tt_fit")
    msg = str(info.value)
    assert f"column 'v' holds {bad!r}, which column 'v' (" in msg, msg
    assert f"of {mysql.database}.tt_fit cannot hold exactly" in msg and change in msg, msg
    assert f"would store it {change}, without an error" in msg, msg  # that reason alone
    assert "Nothing was written" in msg
    assert mysql.query("SELECT COUNT(*) FROM tt_fit") == [(1,)]
    _upstream(harness, good, None)
    harness.write("mysql.writer", mysql.connection(), table="tt_fit")
    assert mysql.query("SELECT COUNT(*) FROM tt_fit") == [(3,)]


_MYSQL_KEPT = [
    ("DATETIME", "2024-01-01 10:00:00", "2024-01-01 10:00:00"),
    ("DATETIME", "2024-01-01T10:00", "2024-01-01 10:00:00"),
    ("DATETIME(2)", "2024-01-01 10:00:00.120", "2024-01-01 10:00:00.12"),
    ("DATETIME", "2024-01-01", "2024-01-01 00:00:00"),
    ("DATETIME", "2024/12/31 23:59:59", "2024-12-31 23:59:59"),
    ("DATETIME", "20241231235959", "2024-12-31 23:59:59"),
    ("DATE", "2024-01-01", "2024-01-01"),
    ("DATE", "2024-01-01 00:00:00", "2024-01-01"),
    ("DATE", "20240101", "2024-01-01"),
    ("TIME", "10:00:00", "10:00:00"),
    ("TIME", "10:00", "10:00:00"),
    ("TIME", "240101", "24:01:01"),  # MySQL reads it as a time here, not a date
    ("TIME", "1 10:00:00", "34:00:00"),
    ("TIME(3)", "10:00:00.5", "10:00:00.500"),
    ("DATE", "2024-00-00", "2024-00-00"),  # a zero month written so is kept so
    ("DATETIME", "2024-01-00 00:00:00", "2024-01-00 00:00:00"),
]


@pytest.mark.parametrize(("target", "text", "stored"), _MYSQL_KEPT)
def test_mysql_writes_a_text_the_column_keeps(mysql: MySQLTarget, harness: Harness,
                                              target: str, text: str, stored: str) -> None:
    mysql.execute("DROP TABLE IF EXISTS tt_kept",
                  f"CREATE TABLE tt_kept (id INT, v {target} NULL)")
    _upstream(harness, text, None)
    harness.write("mysql.writer", mysql.connection(), table="tt_kept")
    assert mysql.query("SELECT CAST(v AS CHAR) FROM tt_kept ORDER BY id") == [(stored,), (None,)]


# An INTERVAL or TIME WITH TIME ZONE goes to MySQL as its text and is judged as one: before,
# the check applied a time column's rules to that text and failed with DuckDB's own "No function
# matches ... datepart(STRING_LITERAL, VARCHAR)".
_MYSQL_TYPED = [
    ("TIME(0)", "INTERVAL '00:00:01.5'", "refused", _DIGITS_0),
    ("TIME", "'10:00:00+02'::TIMETZ", "refused", _ZONE),
    ("DATETIME", "'23:00:00-05'::TIMETZ", "refused", _ZONE),
    ("TIME", "INTERVAL '25:00:00'", "25:00:00", None),
    ("TIME(6)", "INTERVAL '10:00:00.123'", "10:00:00.123000", None),
    ("VARCHAR(64)", "'23:00:00-05'::TIMETZ", "23:00:00-05", None),
]


@pytest.mark.parametrize(("target", "value", "stored", "change"), _MYSQL_TYPED)
def test_mysql_judges_intervals_and_times_with_zone_as_the_text_it_sends(
        mysql: MySQLTarget, harness: Harness, target: str, value: str, stored: str,
        change: str | None) -> None:
    mysql.execute("DROP TABLE IF EXISTS tt_typed",
                  f"CREATE TABLE tt_typed (id INT, v {target} NULL)")
    harness.upstream(f"SELECT 1 AS id, {value} AS v")
    if change is None:
        harness.write("mysql.writer", mysql.connection(), table="tt_typed")
        assert mysql.query("SELECT CAST(v AS CHAR) FROM tt_typed") == [(stored,)]
        return
    with pytest.raises(DriverError) as info:
        harness.write("mysql.writer", mysql.connection(), table="tt_typed")
    assert change in str(info.value) and "Nothing was written" in str(info.value), info.value
    assert mysql.query("SELECT COUNT(*) FROM tt_typed") == [(0,)]
