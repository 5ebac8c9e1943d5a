"""What the MySQL and Supabase drivers share since sql_support was split: the option checks
(:mod:`osiris_dagster.drivers.options`), a writer's input and its rows in fixed-size lists
(:mod:`osiris_dagster.drivers.session_reads`). Each driver keeps its own message. No server is
needed: every case fails (or is read) before a connection is made."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers import get_driver
from osiris_dagster.drivers.session_reads import row_lists
from osiris_dagster.runtime.workspace import StepWorkspace

from .conftest import Harness


@pytest.mark.parametrize(("component", "config", "message"), [
    ("mysql.writer", {}, "mysql.writer needs `table`: the MySQL table to write"),
    ("supabase.writer", {}, "supabase.writer needs `table`: the Supabase table to write"),
    ("supabase.extractor", {}, "supabase.extractor needs `table`: the table to read"),
    ("supabase.writer", {"table": "t", "timeout": 0},
     "supabase.writer: `timeout` must be a positive number of seconds"),
    ("supabase.extractor", {"table": "t", "timeout": True},
     "supabase.extractor: `timeout` must be a positive number of seconds"),
])
def test_option_errors_keep_each_drivers_message(harness: Harness, component: str,
                                                 config: dict[str, Any], message: str) -> None:
    harness.upstream("SELECT 1 AS id")
    run = harness.write if component.endswith("writer") else harness.extract
    with pytest.raises(DriverError) as info:
        run(component, {}, **config)
    assert str(info.value) == message


@pytest.mark.parametrize("component", ["mysql.writer", "supabase.writer"])
def test_a_writer_without_upstream_says_what_to_add(harness: Harness, component: str) -> None:
    driver = get_driver(component)
    assert driver is not None
    with StepWorkspace(harness.session, pipeline_name="p", step_id="w", output_table="w") as ws, \
            pytest.raises(DriverError) as info:
        driver(ws, {"table": "t"}, [])
    assert str(info.value) == (f"{component} needs an upstream step with data: add the step "
                               "that produces the rows to this step's `needs`")


def test_row_lists_regroups_arrow_batches_into_lists_of_the_batch_size() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT range AS i FROM range(7)")

    def ids(batch: Any) -> list[int]:
        return batch.column(0).to_pylist()

    lists = list(row_lists(con, "SELECT i FROM t ORDER BY i", 3, ids))
    assert lists == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(row_lists(con, "SELECT i FROM t WHERE i < 0", 3, ids)) == []
    assert list(row_lists(con, "SELECT i FROM t ORDER BY i", 10, ids)) == [list(range(7))]
