"""The ducklake store with a catalog that is a DuckDB file (``OSIRIS_DUCKLAKE_CATALOG=
/path/cat.duckdb``): one machine, one process at a time.

DuckDB lets one of a process's DuckDB instances attach a database file for writing at a time, and
one process at a time (a file lock); a run's process has several instances that need the lake (the
store's records, each step's instance, readers). These tests run real pipelines on such a
catalog under tmp_path: the in-process executor through the CLI and through
``build_definitions(...).execute_in_process`` in this very process, and check the step tables'
values and the session's records. A run while another process holds the file, and a step of
Dagster's multiprocess executor that meets another step's process holding it, fail saying to
use a ``postgres:`` catalog. A ``sqlite:`` catalog without DuckDB's ``sqlite_scanner`` wheel says
which wheel it needs.

Run in the lake virtualenv (DuckDB's ducklake extension wheel); no PostgreSQL needed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from osiris_dagster import build_definitions
from osiris_dagster.core.errors import SessionStoreError
from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime.stores import store_for
from osiris_dagster.runtime.stores.ducklake import LAKE_ALIAS
from osiris_dagster.runtime.stores.ducklake_records import META_TABLE_PREFIX
from osiris_dagster.runtime.stores.extensions import WHEEL_PACKAGES

from .conftest import Proc, Spawn, assert_no_traceback, dagster_job, osiris_run

PIPELINE = """\
oml_version: "0.1.0"
name: filecat
steps:
  - id: src
    component: filesystem.csv_extractor
    mode: read
    config: {path: src.csv}
  - id: plus
    component: duckdb.processor
    mode: transform
    needs: [src]
    config: {query: "SELECT n + 1 AS m FROM input_df"}
  - id: total
    component: duckdb.processor
    mode: transform
    needs: [plus]
    # long enough for a few heartbeats (records written while the step holds the lake)
    config:
      query: >-
        SELECT sum(m) AS s,
        (SELECT count(*) FROM range(300000000) WHERE hash(range) % 2 < 2) AS c FROM input_df
"""
PARALLEL = """\
oml_version: "0.1.0"
name: parallel
steps:
  - id: src
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT 1 AS n"}
  - id: x
    component: duckdb.processor
    mode: transform
    needs: [src]
    config: {query: "SELECT n + 1 AS n FROM input_df"}
  - id: y
    component: duckdb.processor
    mode: transform
    needs: [src]
    config: {query: "SELECT n + 2 AS n FROM input_df"}
"""
SRC_CSV = "n\n1\n2\n3\n"
EXPECTED = {"src": [(1,), (2,), (3,)], "plus": [(2,), (3,), (4,)], "total": [(9, 300000000)]}


@pytest.fixture(scope="module")
def ducklake_wheel() -> None:
    """The ducklake extension wheel is there, or the tests fail saying so (never skip)."""
    if importlib.util.find_spec(WHEEL_PACKAGES["ducklake"]) is None:
        pytest.fail("these tests need DuckDB's ducklake extension wheel: run them in the lake "
                    "virtualenv (pip install 'osiris-dagster[lake]')", pytrace=False)


class FileLake:
    """A lake whose catalog is ``catalog`` (a DuckDB file by default) under ``root``."""

    def __init__(self, root: Path, catalog: str | None = None) -> None:
        self.root = root
        self.catalog = catalog or str(root / "catalog.duckdb")
        self.data_path = root / "lake"
        self.sessions = root / "sessions"
        root.mkdir(parents=True, exist_ok=True)
        (root / "pipe.yaml").write_text(PIPELINE, encoding="utf-8")
        (root / "src.csv").write_text(SRC_CSV, encoding="utf-8")

    def env(self, executor: str) -> dict[str, str]:
        return {"OSIRIS_SESSION_STORE": "ducklake", "OSIRIS_DUCKLAKE_CATALOG": self.catalog,
                "OSIRIS_DUCKLAKE_DATA_PATH": str(self.data_path),
                "OSIRIS_SESSIONS_DIR": str(self.sessions), "OSIRIS_EXECUTOR": executor,
                "OSIRIS_HEARTBEAT_SECONDS": "0.05"}

    def settings(self) -> Settings:
        return Settings.from_env(self.sessions, session_store="ducklake",
                                 ducklake_catalog=self.catalog,
                                 ducklake_data_path=str(self.data_path))

    @contextlib.contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A fresh in-memory DuckDB with the lake attached as the product attaches it."""
        con = duckdb.connect(":memory:")
        try:
            store_for(self.settings()).attach_reader(con, "ducklake:any", "x")
            yield con
        finally:
            con.close()

    def step_tables(self, con: duckdb.DuckDBPyConnection, session_id: str
                    ) -> dict[str, list[tuple[Any, ...]]]:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? "
            "AND schema_name = ? ORDER BY table_name", [LAKE_ALIAS, session_id]).fetchall()]
        return {name: sorted(con.execute(
                    f'SELECT * FROM {LAKE_ALIAS}."{session_id}"."{name}"').fetchall())
                for name in names if not name.startswith(META_TABLE_PREFIX)}

    def events(self, session_id: str) -> list[dict[str, Any]]:
        records = store_for(self.settings()).records
        assert records is not None
        return [json.loads(line) for line in records.read(session_id, "event")]


def assert_complete_run(lake: FileLake, session_id: str, heartbeats: bool = True) -> None:
    with lake.reader() as con:
        assert lake.step_tables(con, session_id) == EXPECTED
    events = lake.events(session_id)
    names = [e["event"] for e in events]
    assert names[0] == "run_start" and names[-1] == "run_end", names
    done = {e["step_id"] for e in events if e["event"] == "step_complete"}
    assert done == set(EXPECTED), names
    if heartbeats:  # written while the step's instance held the lake
        assert any(e["event"] == "progress" and e.get("step_id") == "total"
                   for e in events), names


def test_cli_run_in_process(tmp_path: Path, spawn: Spawn, ducklake_wheel: None) -> None:
    """Two runs one after the other (the second opens the catalog the first created)."""
    lake = FileLake(tmp_path / "cli")
    sessions = []
    for n in range(2):
        proc = spawn(osiris_run("pipe.yaml"), lake.root, lake.env("in_process"), name=f"run{n}")
        assert proc.wait() == 0, proc.describe()
        assert_no_traceback(proc)
        sessions.append(proc.session_id())
    for session_id in sessions:
        assert_complete_run(lake, session_id)


def test_execute_in_process_in_this_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            ducklake_wheel: None) -> None:
    """build_definitions + execute_in_process in the test's own process: the store's records,
    each step's instance and the test's readers all open the one catalog file in turn."""
    monkeypatch.setenv("OSIRIS_HEARTBEAT_SECONDS", "0.05")
    lake = FileLake(tmp_path / "inproc")
    defs = build_definitions([lake.root / "pipe.yaml"], sessions_dir=str(lake.sessions),
                             session_store="ducklake", ducklake_catalog=lake.catalog,
                             ducklake_data_path=str(lake.data_path),
                             executor=dg.in_process_executor)
    with contextlib.chdir(lake.root), dg.instance_for_test() as instance:
        result = defs.resolve_job_def("filecat").execute_in_process(instance=instance,
                                                                    raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert_complete_run(lake, result.run_id)


def test_records_while_a_reader_holds_the_catalog(tmp_path: Path, ducklake_wheel: None) -> None:
    """Records written and read (also from another thread) while a reader's instance has the
    lake attached, and after it is closed; a second instance attaching it at the same time is
    refused with a message that says why."""
    lake = FileLake(tmp_path / "records")
    store = store_for(lake.settings())
    records = store.records
    assert records is not None
    records.append("s1", "event", '{"event": "a"}')
    with lake.reader() as con:
        records.append("s1", "event", '{"event": "b"}')
        other = threading.Thread(target=records.append, args=("s1", "event", '{"event": "c"}'))
        other.start()
        other.join()
        assert records.read("s1", "event") == ['{"event": "a"}', '{"event": "b"}',
                                               '{"event": "c"}']
        assert con.execute(f'SELECT count(*) FROM {LAKE_ALIAS}."s1"."__osiris_records"'
                           ).fetchone() == (3,)
        second = duckdb.connect(":memory:")
        try:
            with pytest.raises(SessionStoreError, match="postgres:"):
                store.attach_reader(second, "ducklake:s1", "y")
        finally:
            second.close()
    records.append("s1", "event", '{"event": "d"}')
    assert len(records.read("s1", "event")) == 4


def assert_says_one_process(proc: Proc) -> None:
    assert "is a DuckDB file, which one process at a time can open" in proc.output, \
        proc.describe()
    assert "OSIRIS_EXECUTOR=in_process" in proc.output, proc.describe()
    assert "OSIRIS_DUCKLAKE_CATALOG='postgres:" in proc.output, proc.describe()
    assert "Unique file handle conflict" not in proc.output, proc.describe()


def test_another_process_holding_the_catalog(tmp_path: Path, spawn: Spawn,
                                             ducklake_wheel: None) -> None:
    """A run while another process (this test's reader) has the catalog open fails at once,
    saying why and what to use instead."""
    lake = FileLake(tmp_path / "held")
    with lake.reader():
        proc = spawn(osiris_run("pipe.yaml"), lake.root, lake.env("in_process"), name="held")
        assert proc.wait() != 0, proc.describe()
    assert_says_one_process(proc)
    with lake.reader() as con:  # no step got to write
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ?",
                           [LAKE_ALIAS]).fetchone() == (0,)


def test_parallel_steps_in_processes_say_to_use_postgres(tmp_path: Path, spawn: Spawn,
                                                         ducklake_wheel: None) -> None:
    """Two steps of Dagster's multiprocess executor, each in a process of its own at the same
    time: the one that does not get the catalog file fails, saying to use a postgres: catalog.
    (`osiris-dagster run` runs all steps in the run's process, whatever OSIRIS_EXECUTOR says.)"""
    lake = FileLake(tmp_path / "mp")
    (lake.root / "parallel.yaml").write_text(PARALLEL, encoding="utf-8")
    (lake.root / "defs.py").write_text(
        'from osiris_dagster import build_definitions\n\n'
        'defs = build_definitions(["parallel.yaml"])\n', encoding="utf-8")
    home = lake.root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    env = {**lake.env("multiprocess"), "DAGSTER_HOME": str(home)}
    proc = spawn(dagster_job("parallel"), lake.root, env, name="mp")
    assert proc.wait() != 0, proc.describe()
    assert_says_one_process(proc)


def test_sqlite_catalog(tmp_path: Path, spawn: Spawn, ducklake_wheel: None) -> None:
    """Without DuckDB's sqlite_scanner wheel (the lake extra does not bring it) a sqlite:
    catalog fails naming the wheel, not with a failed download. With it, a run whose steps
    nothing else writes the catalog during works (no heartbeats: SQLite refuses a step's
    commit when another transaction committed meanwhile, "database is locked")."""
    lake = FileLake(tmp_path / "sqlite", catalog=f"sqlite:{tmp_path / 'catalog.sqlite'}")
    env = {**lake.env("in_process"), "OSIRIS_HEARTBEAT_SECONDS": "0"}
    proc = spawn(osiris_run("pipe.yaml"), lake.root, env, name="sqlite")
    rc = proc.wait()
    if importlib.util.find_spec(WHEEL_PACKAGES["sqlite_scanner"]) is not None:
        assert rc == 0, proc.describe()
        assert_complete_run(lake, proc.session_id(), heartbeats=False)
        return
    assert rc != 0, proc.describe()
    wheel = f"pip install duckdb-extension-sqlite-scanner=={duckdb.__version__}"
    assert wheel in proc.output, proc.describe()
    assert "Failed to download" not in proc.output, proc.describe()
