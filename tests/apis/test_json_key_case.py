"""Keys that differ only in case become columns by the keys alone, never by the order an answer
gives them in: JSON's key order means nothing, and a review saw `SELECT name` return the values
of `Name` or of `name` depending on which one the server sent first."""

from __future__ import annotations

from pathlib import Path

import duckdb

from osiris_dagster.drivers.graphql import extractor as gq
from osiris_dagster.drivers.staging.json_records import JsonStager

from .conftest import FakeGraphQL, RunDriver, canned
from .test_graphql import config


def _table(tmp_path: Path, records: list[dict], declared: tuple[str, ...] = ()
           ) -> tuple[dict[str, str], list[tuple], dict[str, str]]:
    with JsonStager(tmp_path, "t") as st:
        for key in declared:
            st.declare(key)
        st.add_many(records)
        return st.column_types(), duckdb.sql(st.select_sql()).fetchall(), st.renamed


def test_the_lowercase_key_keeps_its_name_whichever_comes_first(tmp_path: Path) -> None:
    upper_first = _table(tmp_path, [{"Name": "UPPER", "name": "lower"}])
    lower_first = _table(tmp_path, [{"name": "lower", "Name": "UPPER"}])
    for types, rows, renamed in (upper_first, lower_first):
        values = dict(zip(types, rows[0], strict=True))
        assert values["name"] == "lower" and values["Name.1"] == "UPPER"
        assert renamed == {"Name": "Name.1"}


def test_across_pages_and_without_a_lowercase_key_the_sorted_order_decides(
        tmp_path: Path) -> None:
    a = _table(tmp_path, [{"NAME": 1}, {"Name": 2}])
    b = _table(tmp_path, [{"Name": 2}, {"NAME": 1}])
    for types, rows, renamed in (a, b):
        by_name = {n: [r[i] for r in rows if r[i] is not None]
                   for i, n in enumerate(types)}
        assert by_name == {"NAME": [1], "Name.1": [2]}
        assert renamed == {"Name": "Name.1"}


def test_a_declared_key_keeps_its_name_and_a_real_suffixed_key_is_not_taken(
        tmp_path: Path) -> None:
    types, rows, renamed = _table(
        tmp_path, [{"Uuid": "x", "name.1": "real", "Name": "U", "name": "l"}], ("uuid",))
    values = dict(zip(types, rows[0], strict=True))
    assert values == {"uuid": None, "Uuid.1": "x", "name.1": "real", "Name.2": "U", "name": "l"}
    assert renamed == {"Uuid": "Uuid.1", "Name": "Name.2"}


def test_a_real_key_keeps_its_name_against_a_generated_one(tmp_path: Path) -> None:
    """`Name.1` (a real key, or what flattening makes of {"Name": {"1": ..}}) lost its name to
    the `.1` made for `Name`, so a step reading "Name.1" got the values of `Name`."""
    types, rows, renamed = _table(tmp_path, [{"Name": 1, "name": 2, "Name.1": 3}])
    assert dict(zip(types, rows[0], strict=True)) == {"Name.2": 1, "name": 2, "Name.1": 3}
    assert renamed == {"Name": "Name.2"}
    types, rows, renamed = _table(tmp_path, [{"": 1, "unnamed": 2}])
    assert dict(zip(types, rows[0], strict=True)) == {"unnamed.1": 1, "unnamed": 2}


def test_the_renaming_is_a_notice(graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    graphql.script.append(canned(200, {"data": {"items": [{"name": "lower", "Name": "UPPER"}]}}))
    ran = run_driver(gq, config(graphql.endpoint, data_path="data.items",
                                query="{ items { name Name } }"))
    assert [e["message"] for e in ran.events if e["event"] == "notice"] == [
        "keys that differ only in case are kept apart (DuckDB's column names ignore case): "
        "'Name' as 'Name.1'"]
