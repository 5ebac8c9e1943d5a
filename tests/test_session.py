"""Session store: layout, lock backoff, atomic table swap, clear errors for bad databases."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from osiris_dagster.errors import OsirisError, SessionLockedError
from osiris_dagster.session import Session
from osiris_dagster.settings import Settings
from osiris_dagster.workspace import StepWorkspace


def _hold_lock(db: Path, seconds: float) -> subprocess.Popen[str]:
    code = textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(db)!r})
        con.execute("CREATE TABLE IF NOT EXISTS held AS SELECT 1 AS x")
        print("locked", flush=True)
        time.sleep({seconds})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_held_by_another_process_is_waited_for(tmp_path: Path) -> None:
    session = Session(Settings(sessions_dir=tmp_path, lock_timeout_seconds=30), "s1").ensure()
    holder = _hold_lock(session.db_path, 1.5)
    started = time.monotonic()
    with StepWorkspace(session, pipeline_name="p", step_id="a", output_table="a") as ws:
        assert ws.create_output("SELECT 42 AS answer") == 1
    assert time.monotonic() - started >= 1.0
    holder.wait(timeout=30)


def test_lock_timeout_names_the_executor_setting(tmp_path: Path) -> None:
    session = Session(Settings(sessions_dir=tmp_path, lock_timeout_seconds=0.5), "s1").ensure()
    holder = _hold_lock(session.db_path, 5)
    try:
        with pytest.raises(SessionLockedError) as err, \
                StepWorkspace(session, pipeline_name="p", step_id="a", output_table="a"):
            pass
        assert "in_process" in str(err.value) and str(session.db_path) in str(err.value)
    finally:
        holder.kill()
        holder.wait()


def test_corrupt_session_database_gives_a_clear_error(tmp_path: Path) -> None:
    session = Session(Settings(sessions_dir=tmp_path), "s1").ensure()
    session.db_path.write_bytes(b"this is not a duckdb file" * 200)
    with pytest.raises(OsirisError) as err, \
            StepWorkspace(session, pipeline_name="p", step_id="a", output_table="a"):
        pass
    assert str(session.db_path) in str(err.value)
    assert "delete that session directory" in str(err.value)


def test_failed_output_keeps_the_previous_table(tmp_path: Path) -> None:
    session = Session(Settings(sessions_dir=tmp_path), "s1").ensure()
    with StepWorkspace(session, pipeline_name="p", step_id="a", output_table="a") as ws:
        ws.create_output("SELECT range AS x FROM range(3)")
    with pytest.raises(duckdb.Error), \
            StepWorkspace(session, pipeline_name="p", step_id="a", output_table="a") as ws:
        ws.create_output("SELECT CAST('x' || range AS INTEGER) AS x FROM range(5)")
    with duckdb.connect(str(session.db_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM a").fetchone() == (3,)
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    assert tables == {"a"}  # no temporary table left behind after the next open


def test_processor_sees_only_its_upstreams(tmp_path: Path) -> None:
    session = Session(Settings(sessions_dir=tmp_path), "s1").ensure()
    with StepWorkspace(session, pipeline_name="p", step_id="a", output_table="a") as ws:
        ws.create_output("SELECT 1 AS x")
    with StepWorkspace(session, pipeline_name="p", step_id="b", output_table="b") as ws:
        ws.create_output("SELECT 2 AS y")
    with StepWorkspace(session, pipeline_name="p", step_id="c", output_table="c") as ws:
        ws.add_upstream("a", "df_a", session.db_path, "a", ["input_df"])
        assert ws.create_output("SELECT x + 1 AS z FROM input_df") == 1
        with pytest.raises(duckdb.CatalogException):
            ws.create_output("SELECT * FROM b")
