"""A BIT value (DuckDB's string of bits) written to an existing numeric or bit column: the
writers send its digits as text, which the database reads as a decimal number ('0101' as 101,
not 5) or, into a MySQL BIT column, as the bytes of the characters. Refused, naming the column
and the casts that say which is meant; into a text column the digits are kept."""

from __future__ import annotations

import pytest

from osiris_dagster.core.errors import DriverError

from .conftest import Harness, MySQLTarget, PgTarget

_UPSTREAM = "SELECT 1 AS id, '0101'::BIT AS v"


@pytest.mark.parametrize("target", ["INT", "BIGINT UNSIGNED", "DECIMAL(10,0)", "DOUBLE",
                                    "BIT(32)"])
def test_mysql_refuses_bits_into_a_number_or_bit_column(mysql: MySQLTarget, harness: Harness,
                                                         target: str) -> None:
    mysql.execute("DROP TABLE IF EXISTS tt_bits",
                  f"CREATE TABLE tt_bits (id INT, v {target} NULL)")
    harness.upstream(_UPSTREAM)
    with pytest.raises(DriverError) as info:
        harness.write("mysql.writer", mysql.connection(), table="tt_bits")
    msg = str(info.value)
    assert "column 'v' holds '0101'" in msg and 'CAST("v" AS INTEGER)' in msg, msg
    assert "Nothing was written" in msg
    assert mysql.query("SELECT COUNT(*) FROM tt_bits") == [(0,)]


def test_mysql_keeps_the_digits_of_bits_in_a_text_column(mysql: MySQLTarget,
                                                        harness: Harness) -> None:
    mysql.execute("DROP TABLE IF EXISTS tt_bits", "CREATE TABLE tt_bits (id INT, v VARCHAR(8))")
    harness.upstream(_UPSTREAM)
    harness.write("mysql.writer", mysql.connection(), table="tt_bits")
    assert mysql.query("SELECT v FROM tt_bits") == [("0101",)]


@pytest.mark.parametrize("target", ["integer", "bigint", "numeric(10,0)", "double precision"])
def test_pg_refuses_bits_into_a_number_column(pg: PgTarget, harness: Harness,
                                              target: str) -> None:
    t = pg.table("tt_bits")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int, v {target})")
    harness.upstream(_UPSTREAM)
    with pytest.raises(DriverError) as info:
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="tt_bits")
    msg = str(info.value)
    assert "column 'v' holds '0101'" in msg and 'CAST("v" AS INTEGER)' in msg, msg
    assert pg.query(f"SELECT COUNT(*) FROM {t}") == [(0,)]


@pytest.mark.parametrize(("target", "stored"), [("bit(4)", "0101"), ("varbit", "0101"),
                                                ("text", "0101")])
def test_pg_keeps_bits_in_a_bit_or_text_column(pg: PgTarget, harness: Harness, target: str,
                                               stored: str) -> None:
    t = pg.table("tt_bits")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int, v {target})")
    harness.upstream(_UPSTREAM)
    harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="tt_bits")
    assert pg.query(f"SELECT v::text FROM {t}") == [(stored,)]


def test_mysql_refuses_a_text_into_a_bit_column(mysql: MySQLTarget, harness: Harness) -> None:
    """A PostgreSQL bit(n) arrives as its digits (text): '00000101' into BIT(64) was stored as
    the bytes of those characters (3472328296227745841)."""
    mysql.execute("DROP TABLE IF EXISTS tt_bits",
                  "CREATE TABLE tt_bits (id INT, v BIT(64) NULL)")
    harness.upstream("SELECT 1 AS id, '00000101' AS v")
    with pytest.raises(DriverError, match="as the bytes of its characters"):
        harness.write("mysql.writer", mysql.connection(), table="tt_bits")
    assert mysql.query("SELECT COUNT(*) FROM tt_bits") == [(0,)]


def test_mysql_takes_the_bits_number_into_a_bit_column(mysql: MySQLTarget,
                                                       harness: Harness) -> None:
    """What the refusal advises writes the bits."""
    mysql.execute("DROP TABLE IF EXISTS tt_bits",
                  "CREATE TABLE tt_bits (id INT, v BIT(64) NULL)")
    harness.upstream("SELECT 1 AS id, CAST(CAST('00000101' AS BIT) AS UBIGINT) AS v")
    harness.write("mysql.writer", mysql.connection(), table="tt_bits")
    assert mysql.query("SELECT CAST(v AS UNSIGNED) FROM tt_bits") == [(5,)]
