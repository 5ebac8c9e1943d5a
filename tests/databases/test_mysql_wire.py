"""mysql.extractor's own row-packet reader (drivers/mysql_wire.py) against the real server:
every length encoding, rows over 16 MB, errors in the middle of a result, stored procedures
(more results after the rows), and batches bounded by bytes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from osiris_dagster.drivers import mysql_wire
from osiris_dagster.errors import DriverError

from .conftest import Harness, MySQLTarget

LENGTHS = [0, 1, 12, 13, 250, 251, 252, 65535, 65536, 70000]


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


def test_batches_are_also_bounded_by_bytes(mysql: MySQLTarget, harness: Harness,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch ends at `batch_size` rows or at the byte bound (1 GB; lowered here), and every
    row arrives exactly once across many socket reads."""
    monkeypatch.setattr(mysql_wire, "_MAX_BATCH_BYTES", 4096)
    query = (f"SELECT n, CONCAT('value-', n) AS label, n * 1.5 AS half "
             f"FROM ({_numbers(50000)}) AS s")
    out = harness.extract("mysql.extractor", mysql.connection(), query=query, batch_size=5000)
    assert out.result.rows_read == 50000
    assert sorted(r[0] for r in out.rows) == list(range(1, 50001))
    assert all(label == f"value-{n}" and float(half) == n * 1.5
               for n, label, half in out.rows)


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
