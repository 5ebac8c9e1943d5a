"""The record of writes that may have landed although their step failed (local store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from osiris_dagster.cli import main
from osiris_dagster.runtime.unsettled_writes import UnsettledWrites, new_record, write_key

INPUTS = [("load", "s1", "load")]


def test_a_record_is_found_by_its_key_listed_and_settled(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    writes = UnsettledWrites(tmp_path, None)
    key = write_key("mysql.writer", {"table": "t", "mode": "append"}, INPUTS)
    assert writes.find("p/1", "w", key) is None
    writes.record(new_record("p/1", "w", key, "s1", INPUTS, "lost during COMMIT"))
    writes.record(new_record("p/1", "w", key, "s1", INPUTS, "again"))  # one per key
    found = writes.find("p/1", "w", key)
    assert found is not None and found.error == "again" and found.inputs == ("load = s1/load",)
    assert writes.find("p/1", "other", key) is None
    assert [w.step_id for w in writes.all()] == ["w"]

    assert main(["unsettled", "--sessions-dir", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert "pipeline 'p/1', step 'w': failed in session s1" in out and "input load = s1/load" \
        in out and "error: again" in out
    assert main(["unsettled", "--sessions-dir", str(tmp_path), "settle", "p/1", "w"]) == 0
    assert writes.find("p/1", "w", key) is None and writes.all() == []
    assert not list(tmp_path.glob(".state/*/*/unsettled_writes.json"))
    assert main(["unsettled", "--sessions-dir", str(tmp_path), "settle", "p/1", "w"]) == 2
    assert "no unsettled write of pipeline 'p/1', step 'w'" in capsys.readouterr().err


def test_the_key_changes_with_the_input_and_the_config() -> None:
    base = write_key("mysql.writer", {"mode": "append"}, INPUTS)
    assert base == write_key("mysql.writer", {"mode": "append"}, list(reversed(INPUTS)))
    assert base != write_key("mysql.writer", {"mode": "append"}, [("load", "s2", "load")])
    assert base != write_key("mysql.writer", {"mode": "upsert"}, INPUTS)
    assert base != write_key("supabase.writer", {"mode": "append"}, INPUTS)
