"""What mysql.writer sends for values and names that its plain path would change or choke on:
HUGEINT and UHUGEINT went through Arrow as a decimal128(38, 0), which wraps past 2^127 (2^128 - 1
stored as -1, exit 0); a % in a name broke pymysql's %-formatting."""

from __future__ import annotations

import pytest

from osiris_dagster.core.errors import DriverError

from .conftest import Harness, MySQLTarget

_VALUES = [
    ("UHUGEINT", "340282366920938463463374607431768211455"),
    ("UHUGEINT", "170141183460469231731687303715884105728"),
    ("HUGEINT", "-170141183460469231731687303715884105728"),
    ("HUGEINT", "99999999999999999999999999999999999999"),
]


@pytest.mark.parametrize(("duck", "value"), _VALUES)
def test_a_wide_integer_is_written_exactly(mysql: MySQLTarget, harness: Harness, duck: str,
                                           value: str) -> None:
    mysql.execute("DROP TABLE IF EXISTS tt_wide",
                  "CREATE TABLE tt_wide (id INT, v DECIMAL(65, 0))")
    harness.upstream(f"SELECT 1 AS id, '{value}'::{duck} AS v")
    harness.write("mysql.writer", mysql.connection(), table="tt_wide")
    assert mysql.query("SELECT CAST(v AS CHAR) FROM tt_wide") == [(value,)]


def test_a_wide_integer_a_column_cannot_hold_is_refused(mysql: MySQLTarget,
                                                        harness: Harness) -> None:
    mysql.execute("DROP TABLE IF EXISTS tt_wide", "CREATE TABLE tt_wide (id INT, v DOUBLE)")
    harness.upstream(f"SELECT 1 AS id, '{_VALUES[0][1]}'::UHUGEINT AS v")
    with pytest.raises(DriverError, match="as a DOUBLE, losing digits"):
        harness.write("mysql.writer", mysql.connection(), table="tt_wide")
    assert mysql.query("SELECT COUNT(*) FROM tt_wide") == [(0,)]


@pytest.mark.parametrize("staged", [False, True])
def test_a_percent_sign_in_a_name_is_written(mysql: MySQLTarget, harness: Harness,
                                             staged: bool) -> None:
    """pymysql %-formats a statement sent with values: `rate%` and `%s` as column names (or a
    table `tt_pct%`) failed with a raw TypeError: not enough arguments for format string."""
    engine = "MyISAM" if staged else "InnoDB"  # (MyISAM writes go through a staging table)
    mysql.execute("DROP TABLE IF EXISTS `tt_pct%`",
                  f"CREATE TABLE `tt_pct%` (id INT, `rate%` INT, `%s` TEXT) ENGINE={engine}")
    harness.upstream("SELECT 1 AS id, 5 AS \"rate%\", 'x' AS \"%s\"")
    harness.write("mysql.writer", mysql.connection(), table="tt_pct%")
    assert mysql.query("SELECT id, `rate%`, `%s` FROM `tt_pct%`") == [(1, 5, "x")]
