"""Step instances built ahead in a thread are still fresh, separate and configured as asked."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from osiris_dagster.runtime.memory_instances import new_memory_instance


def test_each_instance_is_new_and_configured(tmp_path: Path) -> None:
    config = {"memory_limit": "200MB", "temp_directory": str(tmp_path / "tmp")}
    first = new_memory_instance(config)
    first.execute("CREATE TABLE main.only_in_first AS SELECT 1 AS x")
    first.execute("SET enable_external_access = false")
    first.execute("SET lock_configuration = true")  # a sealed step: global to its instance
    second = new_memory_instance(config)  # the spare built while `first` was in use
    try:
        assert second.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = "
                              "'only_in_first'").fetchone() == (0,)
        second.execute("SET TimeZone = 'UTC'")  # not sealed: settings still change
        assert second.execute("SELECT current_setting('enable_external_access')"
                              ).fetchone() == (True,)
        assert second.execute("SELECT current_setting('temp_directory')").fetchone() == (
            str(tmp_path / "tmp"),)
        limit = second.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        assert limit.replace(" ", "").startswith(("190", "200")), limit  # MiB/MB rounding
    finally:
        first.close()
        second.close()


def test_another_configuration_gets_its_own_instance(tmp_path: Path) -> None:
    small = new_memory_instance({"memory_limit": "100MB"})
    big = new_memory_instance({"memory_limit": "300MB"})
    try:
        assert small.execute("SELECT current_setting('memory_limit')").fetchone() != \
            big.execute("SELECT current_setting('memory_limit')").fetchone()
    finally:
        small.close()
        big.close()


def test_a_configuration_duckdb_refuses_raises_in_the_caller() -> None:
    with pytest.raises(duckdb.Error):
        new_memory_instance({"memory_limit": "not a size"})
