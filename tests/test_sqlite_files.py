"""The CLI holds the instance's SQLite files open during a run, so Dagster's per-event
connections do not checkpoint (and delete) the WAL on every close."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg

from osiris_dagster.dagster_layer.sqlite_files import sqlite_files_held_open


def _store_one_event(instance: dg.DagsterInstance, key: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))


def test_wal_survives_dagsters_connections_while_held(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.local_temp(tempdir=str(tmp_path))
    run_id = str(uuid.uuid4())
    _store_one_event(instance, "before")  # index.db exists, in WAL mode
    index = Path(instance.event_log_storage.path_for_shard("index"))
    wal = Path(f"{index}-wal")
    assert not wal.exists()  # Dagster's connection was the last one: checkpointed, deleted

    with sqlite_files_held_open(instance) as held:
        assert index in held
        # not the run's shard: `dagster dev` watches it for changes (test_sqlite_events)
        assert Path(instance.event_log_storage.path_for_shard(run_id)) not in held
        assert any(p.name == "runs.db" for p in held)
        _store_one_event(instance, "during")
        assert wal.exists()  # appended to the WAL, no checkpoint on Dagster's close
    assert not wal.exists()  # the holder's close checkpointed once

    fresh = dg.DagsterInstance.local_temp(tempdir=str(tmp_path))
    for key in ("before", "during"):
        assert fresh.get_latest_materialization_event(dg.AssetKey(key)) is not None


def test_instances_not_on_sqlite_files_are_left_alone() -> None:
    with dg.DagsterInstance.ephemeral() as instance, \
            sqlite_files_held_open(instance) as held:
        assert held == []
