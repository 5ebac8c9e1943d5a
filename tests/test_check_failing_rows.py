"""A check's failing-row count is the number of the table's rows that fail it, and its sample
shows each failing row once, also when a row fails several of the check's parts (several
`unique` keys, several `not_null` columns, several `accepted_values` columns)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from osiris_dagster.runtime.checks import SAMPLE_ROWS, CheckOutcome, run_checks, specs_from_config

from .helpers import defs_for, failure_description, run_job, table_rows, write


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect(":memory:")
    try:
        yield c
    finally:
        c.close()


def _one(con: duckdb.DuckDBPyConnection, checks: dict) -> CheckOutcome:
    [outcome] = run_checks(con, "t", specs_from_config(checks))
    return outcome


def test_unique_over_overlapping_keys_counts_each_failing_row_once(workdir: Path, tmp_path: Path,
                                                                   instance: dg.DagsterInstance
                                                                   ) -> None:
    """The reviewer's case, through a pipeline: two identical rows fail both keys; they are two
    failing rows (not four), and the sample shows each once."""
    write(workdir / "data" / "dups.csv", "id,region\n1,a\n1,a\n2,b\n")
    p = write(workdir / "dups.yaml", """\
oml_version: "0.1.0"
name: dups
x-dagster:
  steps:
    rows:
      checks:
        unique: [id, [id, region]]
steps:
  - id: rows
    component: filesystem.csv_extractor
    mode: read
    config: {path: data/dups.csv}
""")
    result = run_job(defs_for(p, tmp_path / "s"), "dups", instance)
    assert result.success, failure_description(result)
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert check.metadata["failing_rows"].value == 2
    assert check.metadata["detail"].value == "2 failing row(s)"
    assert table_rows(check.metadata["sample"]) == [{"id": 1, "region": "a"}] * 2


def test_unique_counts_rows_failing_any_key(con: duckdb.DuckDBPyConnection) -> None:
    """Key `a` fails rows 1, 2, 6; key `b` fails rows 3, 4, 6: five rows fail, row 6 once."""
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES (1, 1, 'x'), (2, 1, 'y'), (3, 2, 'z'),"
                " (4, 3, 'z'), (5, 4, 'w'), (6, 1, 'z'), (7, 5, 'v')) v(rid, a, b)")
    outcome = _one(con, {"unique": ["a", "b", ["a", "b"]]})
    assert not outcome.passed
    assert outcome.failing_rows == 5
    assert outcome.detail == "5 failing row(s)"
    assert sorted(r["rid"] for r in outcome.sample) == [1, 2, 3, 4, 6]


def test_unique_duplicate_rows_are_distinct_rows(con: duckdb.DuckDBPyConnection) -> None:
    """Three identical rows under three keys that each see them as repeats: three rows fail."""
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES (1, 'a'), (1, 'a'), (1, 'a'), (2, 'b'))"
                " v(id, region)")
    outcome = _one(con, {"unique": ["id", "region", ["id", "region"]]})
    assert outcome.failing_rows == 3
    assert outcome.sample == [{"id": 1, "region": "a"}] * 3


def test_unique_sample_is_distinct_rows_when_more_fail_than_it_shows(
        con: duckdb.DuckDBPyConnection) -> None:
    """Every row fails both keys: the count is the table's rows, the sample five of them."""
    con.execute("CREATE TABLE t AS SELECT range AS rid, range % 3 AS a, range % 4 AS b "
                "FROM range(40)")
    outcome = _one(con, {"unique": ["a", "b"]})
    assert outcome.failing_rows == 40
    rids = [r["rid"] for r in outcome.sample]
    assert len(rids) == SAMPLE_ROWS and len(set(rids)) == SAMPLE_ROWS


def test_unique_single_key_and_passing_keys_unchanged(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES (1, 'a'), (2, 'a'), (3, 'b')) v(id, r)")
    assert _one(con, {"unique": ["id", ["id", "r"]]}).passed
    outcome = _one(con, {"unique": ["r"]})
    assert outcome.failing_rows == 2
    assert sorted(r["id"] for r in outcome.sample) == [1, 2]


def test_not_null_over_several_columns_counts_each_row_once(
        con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES (1, NULL, NULL), (2, NULL, 'x'),"
                " (3, 0, 'y')) v(rid, a, b)")
    outcome = _one(con, {"not_null": ["a", "b"]})
    assert outcome.failing_rows == 2
    assert sorted(r["rid"] for r in outcome.sample) == [1, 2]


def test_accepted_values_over_several_columns_counts_each_row_once(
        con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES (1, 'bad', 'bad'), (2, 'ok', 'bad'),"
                " (3, 'ok', 'ok'), (4, NULL, 'ok')) v(rid, a, b)")
    outcome = _one(con, {"accepted_values": {"a": ["ok"], "b": ["ok"]}})
    assert outcome.failing_rows == 2
    assert sorted(r["rid"] for r in outcome.sample) == [1, 2]
