"""mysql.extractor's two readers against the real server: connectorx (Arrow, drivers/mysql_arrow.py)
wherever it is exact, pymysql where it is not. Values of every length, rows over 16 MB, errors in
the middle of a result, stored procedures, login plugins, and every type connectorx would change
(each must come out exactly as the server holds it, or fail naming the column)."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc
import pytest

from osiris_dagster.core.errors import DriverError

from .conftest import Extracted, Harness, MySQLTarget

LENGTHS = [0, 1, 12, 13, 250, 251, 252, 65535, 65536, 70000]


def _path_event(out: Extracted) -> dict[str, Any]:
    (event,) = [e for e in out.events if e["event"] == "mysql_extract_path"]
    return event


def _path(out: Extracted) -> str:
    """Which reader built the table: "arrow" (connectorx) or "exact" (pymysql)."""
    return str(_path_event(out)["path"])


def _union(selects: list[str]) -> str:
    return " UNION ALL ".join(selects)


def _numbers(limit: int) -> str:
    """SELECT n FROM 1..limit (at most 100000), in plain SQL any MySQL/MariaDB runs."""
    digits = "(SELECT 0 AS d UNION ALL " + " UNION ALL ".join(
        f"SELECT {i}" for i in range(1, 10)) + ")"
    parts = " CROSS JOIN ".join(f"{digits} AS p{k}" for k in range(5))
    n = " + ".join(f"p{k}.d * {10 ** k}" for k in range(5))
    return f"SELECT {n} + 1 AS n FROM {parts} HAVING n <= {limit}"


def test_every_field_length_encoding_and_binary_values(mysql: MySQLTarget,
                                                       harness: Harness) -> None:
    query = _union([f"SELECT {i} AS n, REPEAT('a', {k}) AS s, "
                    f"IF({i} % 2, NULL, 'é😀') AS maybe, UNHEX('FBFEFF00') AS raw"
                    for i, k in enumerate(LENGTHS)])
    out = harness.extract("mysql.extractor", mysql.connection(), query=query, batch_size=3)
    assert out.types == {"n": "INTEGER", "s": "VARCHAR", "maybe": "VARCHAR", "raw": "BLOB"}
    rows = sorted(out.rows)
    assert [len(r[1]) for r in rows] == LENGTHS
    assert all(set(r[1]) <= {"a"} for r in rows)
    assert [r[2] for r in rows] == [None if i % 2 else "é😀" for i in range(len(LENGTHS))]
    assert {r[3] for r in rows} == {b"\xfb\xfe\xff\x00"}
    assert _path(out) == "arrow"


@pytest.fixture
def big_packets(mysql: MySQLTarget) -> Iterator[None]:
    """Let the server send values over 16 MB (new sessions only), restored afterwards."""
    admin = MySQLTarget(database=mysql.database, user="root", password="")
    before = admin.query("SELECT @@GLOBAL.max_allowed_packet")[0][0]
    admin.execute("SET GLOBAL max_allowed_packet = 67108864")
    try:
        yield
    finally:
        admin.execute(f"SET GLOBAL max_allowed_packet = {int(before)}")


def test_a_row_over_16_mb_is_joined_between_ordinary_rows(mysql: MySQLTarget, harness: Harness,
                                                          big_packets: None) -> None:
    big = 17_000_000  # > 0xFFFFFF: the server splits the row into two packets
    query = _union([f"SELECT {i} AS n, IF({i} = 3, REPEAT('x', {big}), CONCAT('r', {i})) AS s"
                    for i in range(1, 7)])
    out = harness.extract("mysql.extractor", mysql.connection(), query=query, batch_size=4)
    rows = sorted(out.rows)
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert len(rows[2][1]) == big and set(rows[2][1]) == {"x"}
    assert [r[1] for r in rows if r[0] != 3] == ["r1", "r2", "r4", "r5", "r6"]


def test_an_error_in_the_middle_of_the_rows_fails_the_step_cleanly(mysql: MySQLTarget,
                                                                   harness: Harness) -> None:
    """The server sends thousands of rows, then an error packet: the step fails with the
    server's message and leaves no table."""
    query = (f"SELECT n, IF(n < 20000, n, (SELECT 1 UNION SELECT 2)) AS x "
             f"FROM ({_numbers(30000)}) AS s")
    with pytest.raises(DriverError, match="Subquery returns more than 1 row") as info:
        harness.extract("mysql.extractor", mysql.connection(), query=query, batch_size=1000)
    assert "step 'x'" in str(info.value) and mysql.password not in str(info.value)
    con = duckdb.connect(str(harness.session.db_path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'x'"
                           ).fetchone() == (0,)
    finally:
        con.close()


def test_a_stored_procedure_result_and_what_follows_it(mysql: MySQLTarget,
                                                       harness: Harness) -> None:
    """CALL returns the rows and then a final OK packet: the connection reads on past the
    result (no 'packet sequence' error, the transaction commits)."""
    mysql.execute("DROP PROCEDURE IF EXISTS three_rows",
                  "CREATE PROCEDURE three_rows() "
                  "SELECT 1 AS n, 'one' AS word UNION ALL SELECT 2, 'two' UNION ALL SELECT 3, NULL")
    out = harness.extract("mysql.extractor", mysql.connection(), query="CALL three_rows()")
    assert sorted(out.rows) == [(1, "one"), (2, "two"), (3, None)]


@pytest.fixture
def plugin_user(mysql: MySQLTarget) -> Iterator[MySQLTarget]:
    """A user authenticated by the server's stronger plugin: ed25519 on MariaDB, MySQL 8's
    default caching_sha2_password elsewhere (pymysql needs PyNaCl / cryptography for them)."""
    admin = MySQLTarget(database=mysql.database, user="root", password="")
    version = admin.query("SELECT VERSION()")[0][0]
    user = MySQLTarget(database=mysql.database, user=f"{mysql.user}_p",
                       password="Plug-In-Pw-42")
    if "mariadb" in version.lower():
        if not admin.query("SELECT COUNT(*) FROM information_schema.PLUGINS "
                           "WHERE PLUGIN_NAME = 'ed25519' AND PLUGIN_STATUS = 'ACTIVE'")[0][0]:
            admin.execute("INSTALL SONAME 'auth_ed25519'")
        how = f"IDENTIFIED VIA ed25519 USING PASSWORD('{user.password}')"
    else:
        how = f"IDENTIFIED WITH caching_sha2_password BY '{user.password}'"
    admin.execute(f"CREATE USER '{user.user}'@'%' {how}",
                  f"GRANT SELECT ON `{mysql.database}`.* TO '{user.user}'@'%'")
    try:
        yield user
    finally:
        admin.execute(f"DROP USER IF EXISTS '{user.user}'@'%'")


def test_users_of_the_stronger_auth_plugins_can_extract(plugin_user: MySQLTarget,
                                                        harness: Harness) -> None:
    out = harness.extract("mysql.extractor", plugin_user.connection(),
                          query="SELECT 1 AS n, 'authenticated' AS word")
    assert out.rows == [(1, "authenticated")]
    if _path(out) == "exact":  # MariaDB's ed25519: connectorx cannot log in, pymysql can
        reason = _path_event(out)["reason"]
        assert "log in with ed25519" in reason and plugin_user.password not in reason


def test_a_wide_result_gets_a_memory_limit_sized_for_its_width(
        mysql: MySQLTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream cannot be read twice, so a wide result is not retried on running out of memory:
    its limit is raised up front (here from 32MB, which 400 columns x 3,000 rows exceed)."""
    monkeypatch.setenv("OSIRIS_DUCKDB_MEMORY_LIMIT", "32MB")
    harness = Harness(tmp_path)
    columns = ", ".join(f"n * {c} AS c{c}" if c % 2 else f"CONCAT('v', n % {c + 1}) AS c{c}"
                        for c in range(400))
    out = harness.extract("mysql.extractor", mysql.connection(),
                          query=f"SELECT {columns} FROM ({_numbers(3000)}) AS s")
    assert out.result.rows_read == 3000 and len(out.columns) == 400
    assert sorted(r[1] for r in out.rows) == list(range(1, 3001))
    raised = [e for e in out.events if e["event"] == "memory_limit_raised"]
    assert raised and raised[0]["from_limit"] == "32MB" and raised[0]["reason"] == "400 columns"


# -- types connectorx would change: exact through a cast, or read by pymysql ------------------

LOSSY_DDL = """
CREATE TABLE lossy (
  id INT PRIMARY KEY, d30_20 DECIMAL(30,20), d38 DECIMAL(38,0), d65 DECIMAL(65,30),
  d12_11 DECIMAL(12,11) UNSIGNED, big_u BIGINT UNSIGNED, bits BIT(64), t TIME(6), d DATE,
  dt DATETIME(6), yr YEAR, tags SET('x','y','z'), kind ENUM('a','b'),
  latin VARCHAR(20) CHARACTER SET latin1, cyr VARCHAR(20) CHARACTER SET cp1251,
  exact_case VARCHAR(20) COLLATE utf8mb4_bin, body LONGTEXT
) DEFAULT CHARSET=utf8mb4
"""
LOSSY_ROW = (
    "(1, 1234567890.12345678901234567890, 12345678901234567890123456789012345678, "
    "-2.5, 1.23456789012, "
    "18446744073709551615, b'1111111111111111111111111111111111111111111111111111111111111111', "
    "'23:59:59.999999', '1000-01-01', '9999-12-31 23:59:59.999999', 1901, 'x,z', 'b', "
    "'Grüße', 'Привет', 'ÄbC', 'line\\n\"two\" 🐎')")


@pytest.fixture
def lossy(mysql: MySQLTarget) -> str:
    mysql.execute("DROP TABLE IF EXISTS lossy", LOSSY_DDL, f"INSERT INTO lossy VALUES {LOSSY_ROW}",
                  "INSERT INTO lossy (id) VALUES (2)")
    return "lossy"


def _check_lossy_row(row: dict[str, Any]) -> None:
    assert row["d30_20"] == Decimal("1234567890.12345678901234567890")  # connectorx: scale 10
    assert row["d38"] == Decimal("12345678901234567890123456789012345678")  # > 28 digits
    assert row["d65"] == -2.5  # DOUBLE (p > 38), a value a double holds
    assert row["d12_11"] == Decimal("1.23456789012")
    assert row["big_u"] == 18446744073709551615
    assert row["bits"] == 2 ** 64 - 1
    assert row["t"] == dt.time(23, 59, 59, 999999)
    assert row["d"] == dt.date(1000, 1, 1)
    assert row["dt"] == dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
    assert row["yr"] == 1901 and row["tags"] == "x,z" and row["kind"] == "b"
    assert row["latin"] == "Grüße" and row["cyr"] == "Привет" and row["exact_case"] == "ÄbC"
    assert row["body"] == 'line\n"two" 🐎'


LOSSY_TYPES = {
    "id": "INTEGER", "d30_20": "DECIMAL(30,20)", "d38": "DECIMAL(38,0)", "d65": "DOUBLE",
    "d12_11": "DECIMAL(12,11)", "big_u": "UBIGINT", "bits": "UBIGINT", "t": "TIME", "d": "DATE",
    "dt": "TIMESTAMP", "yr": "SMALLINT", "tags": "VARCHAR", "kind": "VARCHAR",
    "latin": "VARCHAR", "cyr": "VARCHAR", "exact_case": "VARCHAR", "body": "VARCHAR",
}


def test_a_table_with_every_lossy_type_is_read_exactly_by_connectorx(
        mysql: MySQLTarget, harness: Harness, lossy: str) -> None:
    """connectorx cuts DECIMAL to scale 10, fails past 28 digits and gives BIT as bytes: for a
    `table` read osiris casts those columns in the SELECT it sends, so connectorx still reads."""
    out = harness.extract("mysql.extractor", mysql.connection(), table=lossy)
    assert _path(out) == "arrow"
    assert out.types == LOSSY_TYPES
    full, empty = sorted(out.rows, key=lambda r: r[0])
    _check_lossy_row(dict(zip(out.columns, full, strict=True)))
    assert empty[0] == 2 and set(empty[1:]) == {None}


def test_a_query_with_lossy_types_is_read_exactly_by_pymysql(
        mysql: MySQLTarget, harness: Harness, lossy: str) -> None:
    """A query is sent as written, so nothing can be cast: pymysql reads it, and says why."""
    out = harness.extract("mysql.extractor", mysql.connection(),
                          query="SELECT * FROM lossy ORDER BY id")
    assert _path(out) == "exact"
    reason = _path_event(out)["reason"]
    assert "'d30_20' (DECIMAL)" in reason and "'bits' (BIT)" in reason
    assert out.types == LOSSY_TYPES
    _check_lossy_row(dict(zip(out.columns, out.rows[0], strict=True)))
    assert out.rows[1][0] == 2 and set(out.rows[1][1:]) == {None}


def test_a_query_of_exact_types_stays_on_connectorx(mysql: MySQLTarget, harness: Harness,
                                                    lossy: str) -> None:
    out = harness.extract("mysql.extractor", mysql.connection(),
                          query="SELECT id, big_u, t, d, dt, latin, cyr, yr, body, "
                                "CAST(d12_11 AS DECIMAL(28,10)) AS d28 FROM lossy "
                                "ORDER BY id DESC")
    assert _path(out) == "arrow", _path_event(out)
    assert [r[0] for r in out.rows] == [2, 1]  # the query's ORDER BY is kept
    row = dict(zip(out.columns, out.rows[1], strict=True))
    assert row["big_u"] == 18446744073709551615 and row["d28"] == Decimal("1.2345678901")
    assert row["t"] == dt.time(23, 59, 59, 999999) and row["cyr"] == "Привет"


def test_values_connectorx_cannot_convert_are_read_again_by_pymysql(
        mysql: MySQLTarget, harness: Harness) -> None:
    """A zero date or a TIME past 24h makes connectorx fail in the middle of the rows: the
    result is read again with pymysql, which NULLs the zero dates on request or names the
    column and the value, never a silent change."""
    conn = mysql.connect()
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("DROP TABLE IF EXISTS late_zero")
        cur.execute("CREATE TABLE late_zero (id INT PRIMARY KEY, d DATETIME, t TIME)")
        cur.executemany("INSERT INTO late_zero VALUES (%s, %s, %s)",
                        [(i, "2024-01-01 00:00:00", "01:00:00") for i in range(1, 3001)])
        cur.execute("INSERT INTO late_zero VALUES (3001, '0000-00-00 00:00:00', '01:00:00'), "
                    "(3002, '2024-01-01', '-838:59:59')")
    conn.close()
    query = "SELECT id, d FROM late_zero ORDER BY id"
    out = harness.extract("mysql.extractor", mysql.connection(), query=query,
                          zero_dates="null", batch_size=500)
    assert _path(out) == "exact" and "connectorx" in _path_event(out)["reason"]
    assert len(out.rows) == 3002 and out.rows[3000] == (3001, None)
    with pytest.raises(DriverError, match=r"column 'd' holds '0000-00-00 00:00:00'.*zero_dates"):
        harness.extract("mysql.extractor", mysql.connection(), query=query, batch_size=500)
    with pytest.raises(DriverError, match=r"column 't' holds '-838:59:59'.*TIME_TO_SEC"):
        harness.extract("mysql.extractor", mysql.connection(), table="late_zero",
                        zero_dates="null")
    # a table read with zero_dates: null sends the dates as text: connectorx reads them
    out = harness.extract("mysql.extractor", mysql.connection(), table="late_zero",
                          columns=["id", "d"], zero_dates="null")
    assert _path(out) == "arrow"
    assert sorted(out.rows)[3000] == (3001, None) and out.types["d"] == "TIMESTAMP"


def test_types_connectorx_does_not_know_are_read_by_pymysql(mysql: MySQLTarget,
                                                            harness: Harness) -> None:
    mysql.execute("DROP TABLE IF EXISTS shapes",
                  "CREATE TABLE shapes (id INT PRIMARY KEY, g GEOMETRY)",
                  "INSERT INTO shapes VALUES (1, ST_GeomFromText('POINT(1 2)'))")
    expected = mysql.query("SELECT g FROM shapes")[0][0]
    out = harness.extract("mysql.extractor", mysql.connection(), table="shapes")
    assert _path(out) == "exact" and "'g' (GEOMETRY)" in _path_event(out)["reason"]
    assert out.rows == [(1, expected)]
    out = harness.extract("mysql.extractor", mysql.connection(),
                          query="SELECT 1 AS n, NULL AS nothing")
    assert _path(out) == "exact" and "'nothing' (NULL)" in _path_event(out)["reason"]
    assert out.rows == [(1, None)] and out.types["nothing"] == "VARCHAR"


@pytest.fixture
def odd_password_user(mysql: MySQLTarget) -> Iterator[MySQLTarget]:
    """An account whose password holds every character with a meaning in a URL."""
    admin = MySQLTarget(database=mysql.database, user="root", password="")
    user = MySQLTarget(database=mysql.database, user=f"{mysql.user}_o",
                       password="p@ss:w/rd%25?#&+ '\"\\;=[]")  # ASCII: pymysql sends latin-1
    conn = admin.connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE USER '{user.user}'@'%%' IDENTIFIED BY %s", (user.password,))
        cur.execute(f"GRANT SELECT ON `{mysql.database}`.* TO '{user.user}'@'%'")
    conn.close()
    try:
        yield user
    finally:
        admin.execute(f"DROP USER IF EXISTS '{user.user}'@'%'")


def test_any_character_in_a_password_reaches_connectorx_and_no_message(
        odd_password_user: MySQLTarget, harness: Harness, lossy: str) -> None:
    out = harness.extract("mysql.extractor", odd_password_user.connection(),
                          query="SELECT id FROM lossy ORDER BY id")
    assert _path(out) == "arrow" and out.rows == [(1,), (2,)]
    # a failure inside connectorx: its text is masked (password as given and URL-encoded)
    with pytest.raises(DriverError) as info:
        harness.extract("mysql.extractor", odd_password_user.connection(),
                        query="SELECT id, IF(id = 2, (SELECT 1 UNION SELECT 2), id) FROM lossy")
    msg = str(info.value)
    assert "1242" in msg and "Subquery returns more than 1 row" in msg
    assert odd_password_user.password not in msg and "p%40ss" not in msg


def test_connectorx_messages_are_masked() -> None:
    from osiris_dagster.core.masking import scrub
    from osiris_dagster.drivers.mysql import arrow as mx
    from osiris_dagster.drivers.mysql.connection import MySQLParams

    params = MySQLParams("db.example", 3306, "d", "u", password="s3:cr@t/%")
    url = mx.connection_url(params)
    assert url.startswith("mysql://u:s3%3Acr%40t%2F%25@db.example:3306/d?")
    text = scrub(f"could not open {url}: bad password s3:cr@t/% (s3%3Acr%40t%2F%25)",
                 mx.url_secrets(params))
    assert "s3:cr@t" not in text and "s3%3Acr%40t" not in text and "db.example" not in text


def test_a_stopped_step_ends_the_read_and_the_server_query(mysql: MySQLTarget,
                                                           harness: Harness) -> None:
    """Stopping the step (Dagster termination, time limit) while connectorx streams: the step
    ends, no table is left, and the query on the server goes away (its connection was closed,
    not drained)."""
    import threading

    from osiris_dagster.drivers import get_driver
    from osiris_dagster.oml.specs import get_spec
    from osiris_dagster.runtime.workspace import StepWorkspace

    marker = f"stop_marker_{mysql.user}"
    query = f"SELECT n AS {marker}, SLEEP(0.002) AS s FROM ({_numbers(100000)}) AS t"
    spec = get_spec("mysql.extractor")
    assert spec is not None
    config = {**spec.defaults(), "query": query, "batch_size": 50}
    driver = get_driver("mysql.extractor")
    assert driver is not None
    box: dict[str, BaseException] = {}
    with StepWorkspace(harness.session, pipeline_name="p", step_id="x", output_table="x",
                       connection=mysql.connection()) as ws:
        def work() -> None:
            try:
                driver(ws, config, [])
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                box["error"] = exc

        worker = threading.Thread(target=work)
        worker.start()
        while worker.is_alive() and not any(e["event"] == "progress" for e in harness.events()):
            worker.join(0.05)  # rows are arriving through connectorx
        assert worker.is_alive(), box
        ws.interrupt()
        worker.join()
    assert "error" in box  # the step did not finish its 100,000 rows
    events = harness.events()
    assert not any(e["event"] == "mysql_extract_path" for e in events)  # no re-read either
    running = f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%{marker}%'"
    admin = MySQLTarget(database=mysql.database, user="root", password="")
    while admin.query(running + " AND ID <> CONNECTION_ID()")[0][0]:
        worker.join(0.05)  # the server notices the closed connection at its next row
    con = duckdb.connect(str(harness.session.db_path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'x'"
                           ).fetchone() == (0,)
    finally:
        con.close()


def test_mysql_8_json_is_cast_in_a_table_read_and_read_by_pymysql_in_a_query() -> None:
    """MySQL 8 reports a real JSON type, which connectorx re-serialises (key order, large
    numbers). MariaDB (the test server) has no such type, so the plan is checked on the column
    definition MySQL 8 sends."""
    from types import SimpleNamespace

    from pymysql.constants import FIELD_TYPE

    from osiris_dagster.drivers.mysql.extractor import arrow_item

    doc = SimpleNamespace(name="doc", type_code=FIELD_TYPE.JSON, flags=0, charsetnr=63,
                          length=4294967295, scale=0)
    assert arrow_item(doc, table=True, zero_dates_null=False) == \
        "CAST(`doc` AS CHAR) AS `doc`"
    assert arrow_item(doc, table=False, zero_dates_null=False) is False


# -- FLOAT/DOUBLE on the text protocol, DECIMAL past connectorx's 96-bit mantissa -----------------


def _f32(value: float) -> float:
    """``value`` as the 4-byte FLOAT MySQL stores."""
    import struct

    return float(struct.unpack("<f", struct.pack("<f", value))[0])


# the stored FLOAT of 123456.7 is 123456.703125; MariaDB's text protocol prints 6 significant
# digits ('123457'); DOUBLE(12,4) stores -0.0001 as -9.999999999998899e-05 and prints '-0.0001'
R_FLOATS = [  # id, f (FLOAT), fu (FLOAT UNSIGNED), d (DOUBLE(12,4)), x (DOUBLE)
    (1, 16777216.0, 16777216.0, -9.999999999998899e-05, 0.1),
    (2, _f32(123456.7), _f32(0.1), 1234.5678, 5e-324),
    (3, _f32(3.4028234e38), _f32(1.17549435e-38), 0.3, 1.7976931348623157e308),
    (4, _f32(1.4e-45), _f32(12345.67), 99999999.9999, -2.2250738585072014e-308),
    (5, None, None, None, None),
]


@pytest.fixture
def r_float(mysql: MySQLTarget) -> str:
    mysql.execute(
        "DROP TABLE IF EXISTS r_float",
        "CREATE TABLE r_float (id INT PRIMARY KEY, f FLOAT, fu FLOAT UNSIGNED, d DOUBLE(12,4), "
        "x DOUBLE, g GEOMETRY, b BIT(1))",
        "INSERT INTO r_float VALUES "
        "(1, 16777216, 16777216, -0.0001, 0.1, POINT(1,2), 1), "
        "(2, 123456.7, 0.1, 1234.5678, 5e-324, POINT(1,2), 0), "
        "(3, 3.4028234e38, 1.17549435e-38, 0.3, 1.7976931348623157e308, NULL, NULL), "
        "(4, 1.4e-45, 12345.67, 99999999.9999, -2.2250738585072014e-308, NULL, NULL), "
        "(5, NULL, NULL, NULL, NULL, NULL, NULL)")
    return "r_float"


def test_float_and_double_are_read_as_stored_by_either_reader(
        mysql: MySQLTarget, harness: Harness, r_float: str) -> None:
    """MariaDB's text protocol prints FLOAT with 6 significant digits and DOUBLE(M,D) with D
    decimals: pymysql reads FLOAT and DOUBLE through CAST(... AS DOUBLE), which prints the
    stored value exactly, so both readers give the same values (before, 16777216 came back as
    16777200 and 123456.7's FLOAT as 123457, without an error)."""
    arrow = harness.extract("mysql.extractor", mysql.connection(), table=r_float,
                            columns=["id", "f", "fu", "d", "x"])
    assert _path(arrow) == "arrow"
    assert sorted(arrow.rows, key=lambda r: r[0]) == R_FLOATS

    table = harness.extract("mysql.extractor", mysql.connection(), table=r_float)
    assert _path(table) == "exact"  # the GEOMETRY column
    assert table.types["f"] == "FLOAT" and table.types["fu"] == "FLOAT"
    assert table.types["d"] == "DOUBLE" and table.types["x"] == "DOUBLE"
    assert [r[:5] for r in sorted(table.rows, key=lambda r: r[0])] == R_FLOATS

    # a query is wrapped (its ORDER BY kept); a DOUBLE computed with fixed decimals too
    query = harness.extract("mysql.extractor", mysql.connection(),
                            query="SELECT id, f, fu, d, x, b, d * 3 AS d3 FROM r_float "
                                  "ORDER BY id DESC")
    assert _path(query) == "exact" and "'b' (BIT)" in _path_event(query)["reason"]
    assert query.types["f"] == "FLOAT" and query.types["d3"] == "DOUBLE"
    assert [r[:5] for r in query.rows] == R_FLOATS[::-1]
    assert query.rows[-1][6] == -9.999999999998899e-05 * 3  # MariaDB prints '-0.0003'
    assert query.rows[-1][5] == 1

    # the forms a query is wrapped in: WITH queries (MariaDB refuses them in parentheses),
    # with and without their own LIMIT, a UNION, a trailing comment
    for sql in ["WITH r AS (SELECT id, f, b FROM r_float) SELECT * FROM r ORDER BY id DESC",
                "WITH r AS (SELECT id, f, b FROM r_float) SELECT * FROM r ORDER BY id DESC "
                "LIMIT 9 -- newest first",
                "SELECT id, f, b FROM r_float WHERE id > 3 UNION ALL "
                "SELECT id, f, b FROM r_float WHERE id <= 3 ORDER BY id DESC"]:
        out = harness.extract("mysql.extractor", mysql.connection(), query=sql)
        assert _path(out) == "exact"
        assert [r[:2] for r in out.rows] == [r[:2] for r in R_FLOATS[::-1]], sql

    # the brief's reproduction, and a query `limit`/`offset` on the wrapped query
    out = harness.extract("mysql.extractor", mysql.connection(),
                          query="SELECT id, f, b FROM r_float")
    assert _path(out) == "exact"
    assert sorted(out.rows, key=lambda r: r[0])[:3] == [
        (1, 16777216.0, 1), (2, 123456.703125, 0), (3, 3.4028234663852886e38, None)]
    out = harness.extract("mysql.extractor", mysql.connection(),
                          query="SELECT f, b, f AS f FROM r_float ORDER BY id DESC",
                          limit=2, offset=2)
    assert out.columns == ["f", "b", "f_1"]
    assert out.rows == [(R_FLOATS[2][1], None, R_FLOATS[2][1]),
                        (R_FLOATS[1][1], 0, R_FLOATS[1][1])]


def test_a_query_with_a_float_that_cannot_be_wrapped_fails_naming_the_column(
        mysql: MySQLTarget, harness: Harness, r_float: str) -> None:
    """A CALL cannot be put in a CTE: read with pymysql, its FLOAT would be cut to 6 digits,
    so the step fails naming the column and what to do instead."""
    mysql.execute("DROP PROCEDURE IF EXISTS floats_and_bits",
                  "CREATE PROCEDURE floats_and_bits() SELECT id, f, b FROM r_float")
    with pytest.raises(DriverError) as info:
        harness.extract("mysql.extractor", mysql.connection(), query="CALL floats_and_bits()")
    msg = str(info.value)
    assert "step 'x'" in msg and "column 'f' (FLOAT)" in msg
    assert "6 significant digits" in msg and "CAST(f AS DOUBLE)" in msg


DECIMALS_DDL = """
CREATE TABLE wide_decimals (
  id INT PRIMARY KEY, u20 DECIMAL(20,0) UNSIGNED, d28 DECIMAL(28,0), d28_10 DECIMAL(28,10),
  d19 DECIMAL(19,0), d21_2 DECIMAL(21,2)
)
"""
DECIMAL_ROWS = [
    (1, Decimal("99999999999999999999"), Decimal("9999999999999999999999999999"),
     Decimal("999999999999999999.9999999999"), Decimal("9999999999999999999"),
     Decimal("7922816251426433759.99")),
    (2, Decimal("10000000000000000000"), Decimal("-9999999999999999999999999999"),
     Decimal("-999999999999999999.9999999999"), Decimal("-7922816251426433760"),
     Decimal("-1000000000000000000.01")),
    (3, Decimal("0"), Decimal("1"), Decimal("0.0000000001"), Decimal("1"), Decimal("0.01")),
]


def test_decimals_with_more_than_18_integer_digits_are_read_exactly(
        mysql: MySQLTarget, harness: Harness) -> None:
    """connectorx rescales every DECIMAL to scale 10 in a 96-bit mantissa: a value past
    2^96 / 10^10 (about 7.92e18) in a column with over 18 integer digits failed the step
    ('decimal scale is not equal to expected scale', advice about the network) although
    DuckDB's DECIMAL holds it. Such columns are cast to text in a `table` read and make pymysql
    read a `query`; DECIMAL(28,10) (18 integer digits) stays on connectorx at its limits."""
    from osiris_dagster.drivers.mysql import arrow as mx

    assert mx.decimal_fits(28, 10) and mx.decimal_fits(18, 0) and mx.decimal_fits(10, 10)
    assert not mx.decimal_fits(19, 0) and not mx.decimal_fits(20, 1)
    assert not mx.decimal_fits(12, 11)
    mysql.execute("DROP TABLE IF EXISTS wide_decimals", DECIMALS_DDL,
                  "INSERT INTO wide_decimals VALUES " + ", ".join(
                      "(" + ", ".join(str(v) for v in row) + ")" for row in DECIMAL_ROWS))
    types = {"id": "INTEGER", "u20": "DECIMAL(20,0)", "d28": "DECIMAL(28,0)",
             "d28_10": "DECIMAL(28,10)", "d19": "DECIMAL(19,0)", "d21_2": "DECIMAL(21,2)"}
    table = harness.extract("mysql.extractor", mysql.connection(), table="wide_decimals")
    assert _path(table) == "arrow" and table.types == types
    assert sorted(table.rows) == DECIMAL_ROWS
    query = harness.extract("mysql.extractor", mysql.connection(),
                            query="SELECT * FROM wide_decimals ORDER BY id")
    assert _path(query) == "exact" and "'u20' (DECIMAL)" in _path_event(query)["reason"]
    assert "'d28_10'" not in _path_event(query)["reason"]  # 18 integer digits: connectorx's
    assert query.types == types and query.rows == DECIMAL_ROWS
    near = harness.extract("mysql.extractor", mysql.connection(),
                           query="SELECT id, d28_10 FROM wide_decimals ORDER BY id")
    assert _path(near) == "arrow" and near.rows == [(r[0], r[3]) for r in DECIMAL_ROWS]


def test_connectorx_decimal_overflow_is_a_value_it_cannot_convert() -> None:
    """Should connectorx still meet a decimal its mantissa cannot hold, pymysql reads the
    result again instead of the step failing with advice about the network."""
    from osiris_dagster.drivers.mysql import arrow as mx

    error = mx.classify("cx writer failed: Destination(Other(decimal scale is not equal to "
                        "expected scale, got: 9 expected: 10))")
    assert error.kind == "value"


def _peak_rss_mb(pid: int) -> int | None:
    """The process's peak resident memory so far (VmHWM), None once it has ended."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except FileNotFoundError:
        pass
    return None  # gone, or a zombie (no memory lines)


def test_rows_the_step_has_not_ingested_yet_wait_on_disk_not_in_memory(
        mysql: MySQLTarget, tmp_path: Path) -> None:
    """connectorx decodes into an unbounded queue whatever the reader does, so a step that
    ingests slower than MySQL sends (one core, a busy machine) used to pile the unread batches
    up in connectorx's process: ~600 MB for 10M narrow rows. Here the step reads nothing until
    MySQL has sent all 3M rows (~300 MB): the child's memory stays flat, the rows wait in spool
    segments, and all of them are then read in order, each segment deleted once read."""
    from osiris_dagster.drivers.mysql.arrow import ArrowRead
    from osiris_dagster.drivers.mysql.connection import MySQLParams

    digits = "(SELECT 0 AS d UNION ALL " + " UNION ALL ".join(
        f"SELECT {i}" for i in range(1, 10)) + ")"
    parts = " CROSS JOIN ".join(f"{digits} AS p{k}" for k in range(7))
    n = " + ".join(f"p{k}.d * {10 ** k}" for k in range(7))
    sql = (f"SELECT {n} AS n, REPEAT('x', 100) AS pad FROM {parts} "
           f"WHERE p6.d < 3")  # 3,000,000 rows
    params = MySQLParams(mysql.host, mysql.port, mysql.database, mysql.user, mysql.password)
    spool_parent = tmp_path / "tmp"
    limit_mb = 200  # the child idles at ~90 MB; the whole result is ~330 MB
    with ArrowRead(params, sql, 10000, spool_parent, segment_bytes=1 << 20) as read:
        pid = read._proc.pid  # type: ignore[union-attr]
        peak = 0
        while (rss := _peak_rss_mb(pid)) is not None and rss <= limit_mb:
            peak = rss
            with contextlib.suppress(subprocess.TimeoutExpired):
                read._proc.wait(0.05)  # type: ignore[union-attr]  # until MySQL sent it all
        assert rss is None, f"connectorx's process holds {rss} MB of unread rows"
        assert peak <= limit_mb
        (spool,) = spool_parent.iterdir()
        assert len(list(spool.iterdir())) > 100  # the rows are on disk
        total = count = 0
        left = []
        for batch in read.batches():
            count += batch.num_rows
            total += pc.sum(batch.column("n")).as_py() or 0
            left.append(len(list(spool.iterdir())))
        assert (count, total) == (3_000_000, sum(range(3_000_000)))
        assert left == sorted(left, reverse=True) and left[-1] == 1  # read ones are deleted
    assert list(spool_parent.iterdir()) == []


def test_a_spool_that_cannot_be_written_says_so(mysql: MySQLTarget, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk under the spool was reported as a connectorx failure with "check the
    server's log and the network"."""
    import tempfile

    from osiris_dagster.drivers.mysql import arrow
    from osiris_dagster.drivers.mysql.connection import MySQLParams

    made = tempfile.mkdtemp

    def spool_with_a_blocked_name(**kwargs: Any) -> str:
        spool = made(**kwargs)
        Path(spool, "part-000002").mkdir()  # the child cannot create its third segment
        return spool

    monkeypatch.setattr(arrow.tempfile, "mkdtemp", spool_with_a_blocked_name)
    params = MySQLParams(mysql.host, mysql.port, mysql.database, mysql.user, mysql.password)
    sql = f"SELECT n, REPEAT('x', 100) AS pad FROM ({_numbers(50000)}) AS t"
    with pytest.raises(arrow.ArrowReadError) as err, \
            arrow.ArrowRead(params, sql, 1000, tmp_path, segment_bytes=1 << 16) as read:
        for _ in read.batches():
            pass
    assert err.value.kind == "spool"
    assert "mysql-read-" in err.value.message and ": File exists" in err.value.message
