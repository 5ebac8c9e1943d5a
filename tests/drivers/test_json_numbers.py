"""JSON numbers DuckDB's JSON reader would change, checked against DuckDB itself."""

from __future__ import annotations

import json
from decimal import Decimal

import duckdb
import pytest

from osiris_dagster.drivers.json_numbers import first_changed_number

KEPT = ["0", "-0.0", "0.1", "1.10", "0.30000000000000004", "1e20", "1E5", "5e-324",
        "9007199254740993", "18446744073709551615", "-9223372036854775808",
        "100000000000000000000", "-1.7976931348623157e308",
        # past 64 bits or a double's range: DuckDB keeps the text
        "18446744073709551617", "-9223372036854775809", "100000000000000000001", "1e400",
        "-1e320", "9" * 5000]
CHANGED = {"0.12345678901234567890": "0.12345678901234568", "1e-400": "0.0", "-0": "0",
           "1.0000000000000000001e300": "1e+300"}


def _duckdb_reads(number: str) -> str:
    """The number as DuckDB's JSON reader keeps it in a document (as a page's rows are)."""
    con = duckdb.connect()
    return con.execute("SELECT json_extract(?::JSON, '$.a')::VARCHAR",
                       [f'{{"a": {number}}}']).fetchone()[0]


@pytest.mark.parametrize("number", KEPT)
def test_a_number_duckdb_keeps_passes(number: str) -> None:
    assert first_changed_number(f'[{{"a": {number}}}]') is None
    duck = _duckdb_reads(number)
    assert Decimal(duck) == Decimal(number) and duck.startswith("-") == number.startswith("-")


@pytest.mark.parametrize(("number", "read_as"), CHANGED.items())
def test_a_number_duckdb_would_change_is_named_with_its_place(number: str,
                                                              read_as: str) -> None:
    document = json.dumps([{"a": 1, "b": [0.5, {"c": "x"}]}, {"a": 2, "b": [1.5, {"c": "y"}]}])
    document = document.replace('"y"', number)
    found = first_changed_number(document)
    assert found is not None
    assert (found.text, found.read_as, found.path) == (number, read_as, (1, "b", 1, "c"))
    duck = _duckdb_reads(number)  # what DuckDB makes of it (its own digits)
    assert Decimal(duck) == Decimal(read_as) != Decimal(number) or number == "-0" == "-" + duck


def test_the_first_changed_number_in_document_order_is_named() -> None:
    found = first_changed_number('[{"a": 0.12345678901234567890, "b": -0}, {"a": 1e400}]')
    assert found is not None and (found.text, found.path) == ("0.12345678901234567890", (0, "a"))
