"""With the ducklake store, unsettled writes live in the lake's records, where every machine's
run looks before writing again."""

from __future__ import annotations

from pathlib import Path

import pytest

from osiris_dagster.cli import main
from osiris_dagster.runtime.stores import store_for
from osiris_dagster.runtime.unsettled_writes import UnsettledWrites, new_record, write_key

from .conftest import Lake


def test_unsettled_writes_are_kept_in_the_lake_records(
        lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    records = store_for(lake.settings()).records
    assert records is not None
    inputs = [("load", "s1", "load")]
    key = write_key("supabase.writer", inputs)
    UnsettledWrites(lake.sessions, records).record(
        new_record("p", "w", key, "s1", inputs, "batch may have landed"))
    # another machine: an empty sessions directory, the same lake
    elsewhere = UnsettledWrites(tmp_path / "other", store_for(lake.settings()).records)
    found = elsewhere.find("p", "w", key)
    assert found is not None and found.error == "batch may have landed"
    assert not list(lake.sessions.glob(".state/*/*/unsettled_writes.json"))

    for name, value in lake.env.items():
        monkeypatch.setenv(name, value)
    assert main(["unsettled", "list"]) == 0
    assert "pipeline 'p', step 'w': failed in session s1" in capsys.readouterr().out
    assert main(["unsettled", "settle", "p", "w"]) == 0
    assert elsewhere.find("p", "w", key) is None and elsewhere.all() == []
