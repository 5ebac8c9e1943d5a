"""The multiprocess executor, if a user picks it, waits for the session database's lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb

from .helpers import write

BRANCHES = """\
oml_version: "0.1.0"
name: branches
steps:
  - id: left
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT count(*) AS n FROM range(300000000) t(x) WHERE x % 3 = 0"}
  - id: right
    component: duckdb.processor
    mode: transform
    needs: []
    config: {query: "SELECT count(*) AS n FROM range(300000000) t(x) WHERE x % 5 = 0"}
  - id: both
    component: duckdb.processor
    mode: transform
    needs: [left, right]
    config: {query: "SELECT l.n AS l, r.n AS r FROM df_left l, df_right r"}
"""

DEFS = """\
import dagster as dg
from osiris_dagster import build_definitions

defs = build_definitions(["pipe.yaml"], sessions_dir="sessions",
                         executor=dg.{executor})
"""


def _execute(tmp_path: Path, executor: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    wd = tmp_path / executor
    write(wd / "pipe.yaml", BRANCHES)
    write(wd / "defs.py", DEFS.format(executor=executor))
    home = wd / "home"
    write(home / "dagster.yaml", "telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_")}
    env.update({"DAGSTER_HOME": str(home), "OSIRIS_LOCK_TIMEOUT_SECONDS": "120"})
    out = subprocess.run([sys.executable, "-m", "dagster", "job", "execute", "-f", "defs.py",
                          "-j", "branches"], cwd=wd, env=env, capture_output=True, text=True,
                         timeout=600)
    return out, wd / "sessions"


def _check(out: subprocess.CompletedProcess[str], sessions: Path) -> None:
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (session,) = [p for p in sessions.iterdir() if p.is_dir() and not p.name.startswith(".")]
    with duckdb.connect(str(session / "pipeline_data.duckdb"), read_only=True) as con:
        assert con.execute("SELECT l, r FROM \"both\"").fetchone() == (100000000, 60000000)


def test_multiprocess_executor_serialises_on_the_session_lock(tmp_path: Path) -> None:
    out, sessions = _execute(tmp_path, "multiprocess_executor")
    assert "multiprocess executor" in out.stdout + out.stderr
    _check(out, sessions)


def test_in_process_executor(tmp_path: Path) -> None:
    out, sessions = _execute(tmp_path, "in_process_executor")
    _check(out, sessions)
