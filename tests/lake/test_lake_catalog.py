"""Workers opening the lake at the same moment: the parallel first steps of a run (or the first
steps of runs started together) each attach the catalog and create their session's schema.

Each worker is a separate Python process that gets everything ready (settings, DuckDB, the
extensions loaded) and then waits for a file the test creates, so the workers' ATTACH and
CREATE SCHEMA start together: as close to the same moment as the OS allows, which is what the
multiprocess executor does to a run's first steps.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .conftest import Lake, Proc, Spawn, wait_for

WORKERS = 4

WORKER = """\
import os, sys, time
import duckdb
from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime.stores import store_for
from osiris_dagster.runtime.stores.extensions import load_extension

session_id, ready, go = sys.argv[1:4]
store = store_for(Settings.from_env())
con = duckdb.connect(":memory:")
load_extension(con, "ducklake", "test")
load_extension(con, "postgres_scanner", "test")
open(ready, "w").close()
deadline = time.monotonic() + 120
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.001)
store.attach_session(con, session_id)
con.execute(f'CREATE TABLE osiris_lake."{session_id}"."t_{os.getpid()}" AS SELECT 1 AS one')
print("attached", flush=True)
"""


def _attach_together(lake: Lake, spawn: Spawn, tmp_path: Path,
                     session_ids: list[str]) -> list[Proc]:
    sync = tmp_path / "sync"
    sync.mkdir()
    workers = [spawn([sys.executable, "-c", WORKER, sid, str(sync / f"ready{i}"),
                      str(sync / "go")], tmp_path, lake.env, name=f"worker-{i}")
               for i, sid in enumerate(session_ids)]
    wait_for(lambda: all((sync / f"ready{i}").exists() for i in range(len(workers))),
             "every worker to be ready", workers)
    (sync / "go").touch()
    for worker in workers:
        worker.wait(timeout=120)
    return workers


def _assert_all_attached(workers: list[Proc]) -> None:
    failed = [w for w in workers if w.popen.returncode != 0]
    assert not failed, (f"{len(failed)} of {len(workers)} workers could not open the lake:\n"
                        + "\n".join(w.describe() for w in failed))


def test_workers_opening_a_brand_new_catalog_at_once_all_succeed(
        fresh_lake: Lake, spawn: Spawn, tmp_path: Path) -> None:
    """A deployment's first run: its first steps find no DuckLake tables in PostgreSQL yet,
    and every one of them must still get the lake (not only the one that created them)."""
    workers = _attach_together(fresh_lake, spawn, tmp_path,
                               [f"run-{i}" for i in range(WORKERS)])
    _assert_all_attached(workers)
    assert fresh_lake.schemas() == sorted(f"run-{i}" for i in range(WORKERS))


def test_workers_creating_one_session_at_once_all_succeed(lake: Lake, spawn: Spawn,
                                                          tmp_path: Path) -> None:
    """The first steps of one run create its session schema together: one creates it, the
    others find it; each step's table lands in it."""
    workers = _attach_together(lake, spawn, tmp_path, ["one-run"] * WORKERS)
    _assert_all_attached(workers)
    assert lake.schemas() == ["one-run"]
    tables = lake.tables("one-run")
    assert tables == sorted(f"t_{w.popen.pid}" for w in workers), tables
