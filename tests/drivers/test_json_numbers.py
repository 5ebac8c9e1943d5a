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


# -- read by Python's json (the HTTP API extractors) ----------------------------------------------
PYTHON_CHANGED = {**CHANGED, "1e400": "inf", "-1e320": "-inf", "NaN": "nan",
                  "Infinity": "inf", "-Infinity": "-inf"}


@pytest.mark.parametrize(("number", "read_as"), PYTHON_CHANGED.items())
def test_a_number_python_json_would_change_is_named(number: str, read_as: str) -> None:
    """Past a double's range Python makes a float infinite (DuckDB keeps the text), and it
    takes NaN and Infinity, which are not JSON."""
    document = f'{{"page": [{{"v": 1}}, {{"v": [0.5, {number}]}}]}}'
    found = first_changed_number(document, python_json=True)
    assert found is not None
    assert (found.text, found.read_as, found.path) == (number, read_as, ("page", 1, "v", 1))
    parsed = json.loads(document)["page"][1]["v"][1]
    assert repr(float(parsed)) == read_as or number == "-0"
    if number in ("NaN", "Infinity", "-Infinity"):
        assert first_changed_number(document) is None  # DuckDB reads them as doubles


@pytest.mark.parametrize("number", [n for n in KEPT if n not in ("1e400", "-1e320", "9" * 5000)])
def test_a_number_python_json_keeps_passes(number: str) -> None:
    assert first_changed_number(f'[{{"a": {number}}}]'.encode(), python_json=True) is None
    written = json.dumps(json.loads(number))  # as the stager writes it for DuckDB
    assert Decimal(written) == Decimal(number) and written.startswith("-") == \
        number.startswith("-")


def test_describe_names_the_place_as_a_path() -> None:
    found = first_changed_number('{"data": {"a.b": [1e400]}}', python_json=True)
    assert found is not None
    assert found.describe() == "the number 1e400 at `data['a.b'][0]`, which would be read as inf"
    nan = first_changed_number("[NaN]", python_json=True)
    assert nan is not None
    assert nan.describe() == ("NaN at `[0]`, which is not a JSON number (JSON has no NaN or "
                              "Infinity)")
