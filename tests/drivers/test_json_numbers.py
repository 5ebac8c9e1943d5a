"""JSON numbers DuckDB's JSON reader would change, checked against DuckDB itself."""

from __future__ import annotations

import json
from decimal import Decimal

import duckdb
import pytest

from osiris_dagster.drivers.json_numbers import first_changed_number

KEPT = ["0", "-0.0", "0.1", "1.10", "0.30000000000000004", "1e20", "1E5", "5e-324",
        "9007199254740993", "18446744073709551615", "-9223372036854775808",
        "100000000000000000000", "-1.7976931348623157e308"]
CHANGED = {"0.12345678901234567890": "0.12345678901234568", "1e-400": "0.0",
           "1e400": "infinity", "-0": "0", "18446744073709551617": "1.8446744073709552e+19",
           "-9223372036854775809": "-9.223372036854776e+18",
           "100000000000000000001": "1e+20"}


def _duckdb_reads(number: str) -> str:
    """The number as DuckDB reads it from a page and casts it, as the REST channel does."""
    con = duckdb.connect()
    kind = con.execute("SELECT json_type(?::JSON)", [number]).fetchone()[0]
    target = "DOUBLE" if kind in ("DOUBLE", "VARCHAR") else kind
    return con.execute(f"SELECT CAST(TRY_CAST(json_extract_string(?::JSON, '$') AS {target}) "
                       "AS VARCHAR)", [number]).fetchone()[0]


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
    assert _duckdb_reads(number) == read_as.replace("infinity", "inf")  # what DuckDB makes


def test_the_first_changed_number_in_document_order_is_named() -> None:
    found = first_changed_number('[{"a": 0.12345678901234567890, "b": -0}, {"a": 1e400}]')
    assert found is not None and (found.text, found.path) == ("0.12345678901234567890", (0, "a"))
