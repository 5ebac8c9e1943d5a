"""Steps of one run in several processes on the lake: branches overlap in time, and a step's
process killed mid-query leaves no table behind.

Both use the shipped definitions under `dagster job execute`, which pick Dagster's multiprocess
executor for the ducklake store. What happens when is decided by conditions (a gate the test
opens, events in the session's log, Dagster's STEP_START events and their pids), not by sleeps.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from ..gate import Gate, gate_step
from ..test_executors_env import assert_preload_is_fork_safe
from .conftest import (
    Lake,
    Spawn,
    dagster_job,
    dagster_materialize,
    dagster_project,
    only_new_session,
    wait_for,
)

OVERLAP_HEAD = 'oml_version: "0.1.0"\nname: overlap\nsteps:\n'
OVERLAP_TAIL = """\
  - id: b
    component: filesystem.csv_extractor
    mode: read
    needs: []
    config: {path: b.csv}
  - id: both
    component: duckdb.processor
    mode: transform
    needs: [a, b]
    config: {query: "SELECT (SELECT sum(ok) FROM df_a) AS a, (SELECT sum(x) FROM df_b) AS b"}
"""


@pytest.mark.parametrize("start_method", ["default", "spawn"])
def test_two_branches_run_in_different_processes_at_the_same_time(
        lake: Lake, spawn: Spawn, tmp_path: Path, start_method: str) -> None:
    gate = Gate()
    try:
        project = dagster_project(tmp_path / "overlap", lake,
                                  OVERLAP_HEAD + gate_step("a", gate.url, []) + OVERLAP_TAIL,
                                  {"b.csv": "x\n1\n2\n3\n"})
        env = dict(project.env)
        if start_method != "default":
            env["OSIRIS_MULTIPROCESS_START_METHOD"] = start_method
        run = spawn(dagster_job("overlap"), project.dir, env)
        with lake.reader() as reader:
            session = wait_for(lambda: next(iter(reader.schemas()), None), "the run's session",
                               [run])
            # Branch a is in its step, blocked at the gate, while branch b's step completes: the
            # two steps overlap in time.
            wait_for(lambda: gate.hit.is_set() and reader.has_event(session, "step_complete",
                                                                    "b"),
                     "step b to complete while step a waits at the gate", [run])
            assert not reader.has_event(session, "step_complete", "a")
        assert gate.calls == 1 and not gate.opened.is_set()
        # step a's process is alive at the gate: who started it. By default a fork server the
        # run's process started (Dagster and our modules imported once per run); with spawn,
        # the run's process itself.
        parent = _parent_pid(project.step_starts(session)["overlap__a"])
        if start_method == "default":
            assert parent != run.popen.pid
            assert _parent_pid(parent) == run.popen.pid
            assert "multiprocessing.forkserver" in _command_line(parent)
        else:
            assert parent == run.popen.pid
        gate.open()
        assert run.wait() == 0, run.describe()
    finally:
        gate.close()
    pids = project.step_starts(session)
    assert pids["overlap__a"] != pids["overlap__b"], pids
    assert run.popen.pid not in (pids["overlap__a"], pids["overlap__b"]), pids
    lake.assert_tables(session, ["a", "b", "both"])
    assert lake.rows(session, "both") == [(1, 6)]


def test_the_fork_servers_preload_is_fork_safe_with_the_lake_extras() -> None:
    # this virtualenv's DuckDB (the [lake] extra's) starts a thread when imported
    assert_preload_is_fork_safe()


def test_a_step_dies_with_its_fork_server(lake: Lake, spawn: Spawn, tmp_path: Path) -> None:
    """Dagster fails a step whose fork server died (it follows the step through the server);
    the step's own process must not go on and write after its run failed."""
    gate = Gate()
    try:
        project = dagster_project(tmp_path / "server", lake,
                                  OVERLAP_HEAD + gate_step("a", gate.url, []) + OVERLAP_TAIL,
                                  {"b.csv": "x\n1\n2\n3\n"})
        run = spawn(dagster_job("overlap"), project.dir, project.env)
        with lake.reader() as reader:
            session = wait_for(lambda: next(iter(reader.schemas()), None), "the run's session",
                               [run])
        wait_for(gate.hit.is_set, "step a at the gate", [run])
        step = project.step_starts(session)["overlap__a"]
        server = _parent_pid(step)
        assert "multiprocessing.forkserver" in _command_line(server)
        os.kill(server, signal.SIGKILL)
        wait_for(lambda: not _running(step), "step a's process to end with its fork server",
                 timeout=60)
        assert run.wait() != 0, run.describe()
        gate.open()  # too late for step a: nothing is left to go through it
    finally:
        gate.close()
    assert gate.calls == 1
    assert not [e for e in lake.events(session)
                if e.get("step_id") == "a" and e.get("event") == "step_complete"]
    assert "a" not in lake.tables(session)


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (one that ended but was not waited for yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _parent_pid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("PPid:")))


def _command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


KILL = """\
oml_version: "0.1.0"
name: killme
params:
  n: {default: 10000000000}
steps:
  - id: src
    component: filesystem.csv_extractor
    mode: read
    config: {path: src.csv}
  - id: slow
    component: duckdb.processor
    mode: transform
    needs: [src]
    config:
      query: >-
        SELECT count(*) + (SELECT count(*) FROM df_src) AS n
        FROM range(${params.n}) t(x) WHERE x % 7 <> 3
"""


def test_a_step_killed_mid_query_leaves_no_table_and_can_be_run_again(
        lake: Lake, spawn: Spawn, tmp_path: Path) -> None:
    project = dagster_project(tmp_path / "kill", lake, KILL, {"src.csv": "x\n1\n2\n3\n"})
    env = {**project.env, "OSIRIS_HEARTBEAT_SECONDS": "0.5"}
    run = spawn(dagster_job("killme"), project.dir, env)
    with lake.reader() as reader:
        session = wait_for(lambda: next(iter(reader.schemas()), None), "the run's session",
                           [run])
        # the step's query is running: its heartbeat reported progress
        wait_for(lambda: reader.has_event(session, "progress", "slow"),
                 "a progress event of step slow", [run])
    pid = project.step_starts(session)["killme__slow"]
    assert pid != run.popen.pid
    assert os.getpgid(pid) == run.popen.pid, "the step's process is not one the test started"
    os.kill(pid, signal.SIGKILL)
    assert run.wait() != 0, run.describe()
    events = lake.events(session)
    assert not [e for e in events if e.get("step_id") == "slow"
                and e.get("event") in ("step_complete", "step_error")], events
    lake.assert_tables(session, ["src"])

    # Materialise the killed step again, with a quick query: it reads `src` from the killed
    # run's session and writes its table in a session of its own.
    config = project.run_config("quick.yaml", "killme", {"n": 700})
    again = spawn(dagster_materialize("killme/slow", config), project.dir, project.env)
    assert again.wait() == 0, again.describe()
    later = only_new_session(lake, [session])
    lake.assert_tables(later, ["slow"])
    assert lake.rows(later, "slow") == [(603,)]  # 600 of 0..699 with x % 7 <> 3, plus 3
    lake.assert_tables(session, ["src"])
