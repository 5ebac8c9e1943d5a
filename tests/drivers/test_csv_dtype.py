"""``dtype`` columns hold each value exactly or the step fails naming file, line, column, value
and dtype: DuckDB's cast would round (``19.99`` -> int 20, ``1.239`` -> DECIMAL(10,2) 1.24) or
reinterpret (``0x1F`` -> 31, ``00501`` -> 501, ``yes`` -> true) silently; pandas refuses these.
The offending value sits late in a file larger than any sample, so every value is checked."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from osiris_dagster.core.errors import DriverError

from .conftest import ExtractFn

ROWS = 30_000
BAD_ROW = 27_777  # 1-based data row of the offending value (physical line BAD_ROW + 1)


def write_csv(path: Path, values: list[str]) -> Path:
    path.write_text("n,v\n" + "".join(f"{n},{v}\n" for n, v in enumerate(values, 1)),
                    encoding="utf-8")
    return path


# (dtype, a valid value every other row has, the value the dtype cannot hold exactly)
REFUSED = [
    ("int64", "7", "19.99"),
    ("int64", "7", "00501"),
    ("int64", "7", "0x1F"),
    ("int64", "7", "1_000"),
    ("int32", "7", "19.99"),
    ("int16", "7", "0x1F"),
    ("int8", "7", "2.5"),
    ("UTINYINT", "7", "007"),
    ("UBIGINT", "7", "19.5"),
    ("HUGEINT", "7", "0x1F"),
    ("DECIMAL(10,2)", "1.25", "1.239"),
    ("DECIMAL(10,2)", "1.25", "0.005"),
    ("DECIMAL(5,0)", "12", "12.5"),
    ("float64", "1.5", "9007199254740993"),
    ("float64", "1.5", "0.12345678901234567890"),
    ("float64", "1.5", "123456789.123456789"),
    ("float64", "1.5", "1e-400"),
    ("float32", "1.5", "16777217"),
    ("float32", "1.5", "0.123456789"),
    ("bool", "true", "yes"),
    ("bool", "true", "1"),
    ("DATE", "2024-03-05", "2024-03-05 17:45:00"),
    ("datetime64[ns]", "2024-03-05 10:00:00", "2024-03-05 17:45:00+02:00"),
    ("TIMESTAMPTZ", "2024-03-05 10:00:00+01:00", "2024-03-05 17:45:00"),
]


@pytest.mark.parametrize(("dtype", "good", "bad"), REFUSED,
                         ids=[f"{d}-{b}" for d, _, b in REFUSED])
def test_late_value_the_dtype_cannot_hold_fails_naming_where(
        extract: ExtractFn, data_dir: Path, dtype: str, good: str, bad: str) -> None:
    values = [good] * ROWS
    values[BAD_ROW - 1] = bad
    write_csv(data_dir / "late.csv", values)
    with pytest.raises(DriverError) as info:
        extract(path="late.csv", dtype={"v": dtype})
    message = str(info.value)
    assert "late.csv" in message and f"line {BAD_ROW + 1}" in message
    assert "column 'v'" in message and repr(bad) in message and repr(dtype) in message
    assert "`dtype`" in message


# dtype, texts, the values they load as (None: NULL), the column type
KEPT: list[tuple[str, list[str], list[Any], str]] = [
    ("int64", ["0", "-42", " 7 ", "9223372036854775807", ""],
     [0, -42, 7, 9223372036854775807, None], "BIGINT"),
    ("Int32", ["2147483647", "-2147483648", "NA"], [2147483647, -2147483648, None], "INTEGER"),
    ("int16", ["-32768", "5"], [-32768, 5], "SMALLINT"),
    ("int8", ["-128", "127"], [-128, 127], "TINYINT"),
    ("UTINYINT", ["0", "255"], [0, 255], "UTINYINT"),
    ("DECIMAL(10,2)", ["1.5", "1.50", "1.230", "-0.25", ".5", "12345678.99", "+3"],
     [Decimal("1.50"), Decimal("1.50"), Decimal("1.23"), Decimal("-0.25"), Decimal("0.50"),
      Decimal("12345678.99"), Decimal("3.00")], "DECIMAL(10,2)"),
    ("float64", ["19.99", "1e3", "+5", "-inf", " 0.5 ", "0.30000000000000004", "1e22",
                 "-1.7976931348623157e308", "0.1000000000000000000"],
     [19.99, 1000.0, 5.0, float("-inf"), 0.5, 0.30000000000000004, 1e22,
      -1.7976931348623157e308, 0.1], "DOUBLE"),
    ("float32", ["19.99", "0.5", "16777216"], [pytest.approx(19.99), 0.5, 16777216.0], "FLOAT"),
    ("bool", ["True", "false", "TRUE", ""], [True, False, True, None], "BOOLEAN"),
    ("DATE", ["2024-02-29", "1999-12-31"], [dt.date(2024, 2, 29), dt.date(1999, 12, 31)], "DATE"),
    ("datetime64[ns]", ["2024-03-05", "2024-03-05T17:45", "2024-03-05 17:45:01.250"],
     [dt.datetime(2024, 3, 5), dt.datetime(2024, 3, 5, 17, 45),
      dt.datetime(2024, 3, 5, 17, 45, 1, 250000)], "TIMESTAMP"),
    ("TIMESTAMPTZ", ["2024-03-05 17:45:00+02:00", "2024-03-05 10:00Z"],
     [dt.datetime(2024, 3, 5, 15, 45, tzinfo=dt.UTC), dt.datetime(2024, 3, 5, 10, tzinfo=dt.UTC)],
     "TIMESTAMP WITH TIME ZONE"),
    ("str", ["00501", "0x1F", "yes", "19.99"], ["00501", "0x1F", "yes", "19.99"], "VARCHAR"),
    ("category", ["00501", " 1.239 "], ["00501", " 1.239 "], "VARCHAR"),
]


@pytest.mark.parametrize(("dtype", "texts", "expected", "kind"), KEPT,
                         ids=[k[0] for k in KEPT])
def test_values_the_dtype_holds_load_as_before(extract: ExtractFn, data_dir: Path, dtype: str,
                                               texts: list[str], expected: list[Any],
                                               kind: str) -> None:
    write_csv(data_dir / "ok.csv", texts)
    table = extract(path="ok.csv", dtype={"v": dtype})
    assert table.types == {"n": "BIGINT", "v": kind}
    assert [row[1] for row in sorted(table.rows)] == expected


def test_large_file_of_valid_declared_values_loads_every_row(extract: ExtractFn,
                                                             data_dir: Path) -> None:
    write_csv(data_dir / "big.csv", [f"{n}.{n % 100:02d}" for n in range(ROWS)])
    table = extract(path="big.csv", dtype={"v": "DECIMAL(12,2)", "n": "int32"})
    assert table.types == {"n": "INTEGER", "v": "DECIMAL(12,2)"}
    assert len(table.rows) == ROWS
    assert sorted(table.rows)[-1] == (ROWS, Decimal(f"{ROWS - 1}.{(ROWS - 1) % 100:02d}"))


@pytest.mark.parametrize(("dtype", "bad"), [("int8", "128"), ("UTINYINT", "-1"),
                                            ("DECIMAL(4,2)", "100.5"), ("int64", "three")])
def test_value_out_of_range_or_not_a_number_fails_naming_where(
        extract: ExtractFn, data_dir: Path, dtype: str, bad: str) -> None:
    write_csv(data_dir / "r.csv", ["1", "2", bad])
    with pytest.raises(DriverError) as info:
        extract(path="r.csv", dtype={"v": dtype})
    message = str(info.value)
    assert "column 'v' at line 4" in message and repr(bad) in message and repr(dtype) in message
