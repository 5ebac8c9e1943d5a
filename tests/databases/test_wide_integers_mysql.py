"""HUGEINT and UHUGEINT values written by mysql.writer: they went through Arrow as a
decimal128(38, 0), which wraps past 2^127 (2^128 - 1 stored as -1, exit 0). Sent as their
text, a column that holds them keeps them exactly; one that cannot is refused."""

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
