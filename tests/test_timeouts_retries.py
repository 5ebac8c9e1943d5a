"""x-dagster timeout_seconds and retry."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from osiris_dagster import build_osiris_assets

from .helpers import defs_for, events, failure_description, run_job, write

SLOW = """\
oml_version: "0.1.0"
name: slow
x-dagster:
  steps:
    crunch: {timeout_seconds: 1}
steps:
  - id: crunch
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT count(*) AS c FROM range(400000000000) t(x) WHERE x % 7 = 3"}
"""


def test_step_timeout_stops_the_query(workdir: Path, tmp_path: Path,
                                      instance: dg.DagsterInstance) -> None:
    sessions = tmp_path / "s"
    started = time.monotonic()
    result = run_job(defs_for(write(workdir / "slow.yaml", SLOW), sessions), "slow", instance)
    assert time.monotonic() - started < 15
    assert not result.success
    assert "longer than its timeout of 1s" in failure_description(result)
    (error,) = [e for e in events(sessions / result.run_id) if e["event"] == "step_error"]
    assert error["timed_out"] is True


RETRY = """\
oml_version: "0.1.0"
name: retrying
x-dagster:
  retry: {max_retries: 3, delay_seconds: 1}
steps:
  - id: load
    component: filesystem.csv_extractor
    mode: read
    config: {path: late.csv}
  - id: to-mysql
    component: mysql.writer
    mode: write
    config: {connection: "@mysql.main", table: t}
  - id: to-mysql-retried
    component: mysql.writer
    mode: write
    needs: [load]
    config: {connection: "@mysql.main", table: t, mode: replace}
"""


def test_retry_policies_skip_append_writers(workdir: Path) -> None:
    p = write(workdir / "retry.yaml", RETRY)
    policies = {a.key.path[-1]: a.op.retry_policy for a in build_osiris_assets(p).assets}
    assert policies["load"].max_retries == 3 and policies["load"].delay == 1
    assert policies["to-mysql"] is None  # append: a retry would duplicate rows
    assert policies["to-mysql-retried"].max_retries == 3


def test_a_failed_step_is_retried_and_succeeds(workdir: Path, tmp_path: Path,
                                               instance: dg.DagsterInstance) -> None:
    text = RETRY.split("  - id: to-mysql\n")[0]
    p = write(workdir / "retry.yaml", text)
    stop = threading.Event()

    def create_after_first_failure() -> None:  # the file appears only after attempt 1 failed
        while not stop.wait(0.05):
            if any('"step_error"' in f.read_text() for f in
                   (tmp_path / "s").glob("*/logs/events.jsonl")):
                (workdir / "late.csv").write_text("a\n1\n2\n")
                return

    helper = threading.Thread(target=create_after_first_failure, daemon=True)
    helper.start()
    try:
        result = run_job(defs_for(p, tmp_path / "s"), "retrying", instance)
    finally:
        stop.set()
        helper.join()
    assert result.success, failure_description(result)
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retried
    # the session ends once, as the run did (before: failure, logged after the first attempt)
    (session,) = [d for d in (tmp_path / "s").iterdir() if d.is_dir() and d.name[0] != "."]
    evs = events(session)
    assert [e.get("will_retry") for e in evs if e["event"] == "step_error"] == [True]
    assert [e["status"] for e in evs if e["event"] == "run_end"] == ["success"]


def test_a_step_failing_every_attempt_ends_the_session_once_failed(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    text = RETRY.split("  - id: to-mysql\n")[0].replace("max_retries: 3, delay_seconds: 1",
                                                         "max_retries: 1")
    result = run_job(defs_for(write(workdir / "retry.yaml", text), tmp_path / "s"), "retrying",
                     instance)
    assert not result.success
    (session,) = [d for d in (tmp_path / "s").iterdir() if d.is_dir() and d.name[0] != "."]
    evs = events(session)
    assert [e.get("will_retry") for e in evs if e["event"] == "step_error"] == [True, None]
    assert [e["status"] for e in evs if e["event"] == "run_end"] == ["failure"]


INTERRUPTED = """\
import json, os, signal, sys, threading
from pathlib import Path

import dagster as dg
import pytest
from osiris_dagster import build_definitions

sessions = Path(sys.argv[2])
defs = build_definitions([sys.argv[1]], sessions_dir=str(sessions))


def interrupt_once_b_runs() -> None:  # Ctrl-C while step b's query runs
    while not any('"step_start"' in line and '"b"' in line
                  for log in sessions.glob("*/logs/events.jsonl")
                  for line in log.read_text().splitlines()):
        threading.Event().wait(0.05)
    threading.Event().wait(0.5)
    os.kill(os.getpid(), signal.SIGINT)


threading.Thread(target=interrupt_once_b_runs, daemon=True).start()
result = defs.resolve_job_def("interrupted").execute_in_process(
    instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def step_threads() -> list[str]:  # enumerate(): is_alive() may lie after an interrupted join
    return [t.name for t in threading.enumerate() if t.name.startswith("osiris-step-")]


for _ in range(100):  # a thread that is merely ending; the query alone runs for minutes
    if not step_threads():
        break
    threading.Event().wait(0.05)
print(json.dumps({"success": result.success, "running": step_threads()}))
"""

CROSS = """\
oml_version: "0.1.0"
name: interrupted
steps:
  - id: a
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT x FROM range(150000) t(x)"}
  - id: b
    component: duckdb.processor
    mode: transform
    needs: [a]
    config: {query: "SELECT sum(p.x * q.x) AS s FROM df_a p, df_a q"}
"""


def test_an_interrupted_step_has_stopped_when_the_run_returns(tmp_path: Path) -> None:
    """Ctrl-C during a step's query: when the run returns, the query has stopped and the
    session file is free, so the step cancelled can never commit its table later. (On
    Python 3.11, a Ctrl-C that lands in Thread.join makes is_alive() False while the thread
    still runs: the query went on, and its table appeared after the run had failed.)"""
    import json
    import subprocess
    import sys

    import duckdb

    pipeline = write(tmp_path / "interrupted.yaml", CROSS)
    script = write(tmp_path / "run.py", INTERRUPTED)
    sessions = tmp_path / "sessions"
    out = subprocess.run([sys.executable, str(script), str(pipeline), str(sessions)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["success"] is False
    assert report["running"] == []
    (session,) = [p for p in sessions.iterdir() if p.is_dir() and not p.name.startswith(".")]
    errors = [e for e in events(session) if e["event"] == "step_error"]
    assert [(e["step_id"], e["cancelled"]) for e in errors] == [("b", True)]
    with duckdb.connect(str(session / "pipeline_data.duckdb"), read_only=True) as con:
        assert con.execute("SELECT table_name FROM duckdb_tables()").fetchall() == [("a",)]


def test_a_step_that_does_not_stop_at_its_timeout_is_waited_for_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The timeout's StepTimeout was raised inside the block that stops the worker on any
    exception, so a step that did not stop was waited for twice (60 s instead of 30)."""
    from types import SimpleNamespace

    from osiris_dagster.core.errors import StepTimeout
    from osiris_dagster.runtime import runner

    monkeypatch.setattr(runner, "STOP_GRACE_SECONDS", 0.2)
    stops: list[float] = []
    stop_worker = runner._stop_worker
    monkeypatch.setattr(runner, "_stop_worker",
                        lambda ws, done: stops.append(time.monotonic()) or stop_worker(ws, done))
    release = threading.Event()
    ws = SimpleNamespace(step_id="slow", commit_started=False, interrupt=lambda: None,
                         session=SimpleNamespace(log_event=lambda *a, **k: None))
    try:
        with pytest.raises(StepTimeout, match="told to stop, it had not ended"):
            runner._interruptible(ws, lambda: release.wait(), 0.1)  # type: ignore[arg-type]
    finally:
        release.set()
    assert len(stops) == 1


CANCELLED = """\
oml_version: "0.1.0"
name: cancelled
x-dagster:
  steps:
    crunch: {timeout_seconds: 120}
steps:
  - id: crunch
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT count(*) AS c FROM range(400000000000) t(x) WHERE x % 7 = 3"}
  - id: save
    component: filesystem.csv_writer
    mode: write
    inputs: {df: crunch}
    config: {path: out.csv}
"""


def _cancel_once_started(instance: dg.DagsterInstance, sessions: Path, run_id: str
                         ) -> threading.Thread:
    """A thread that marks the run CANCELING (as Dagster's terminate does first) once its
    step has started (its session logged it)."""
    def cancel() -> None:
        while True:
            log = sessions / run_id / "logs" / "events.jsonl"
            if log.exists() and '"step_start"' in log.read_text(encoding="utf-8"):
                break
            time.sleep(0.05)
        instance.report_run_canceling(instance.get_run_by_id(run_id))

    canceller = threading.Thread(target=cancel, daemon=True)
    canceller.start()
    return canceller


def test_a_run_being_cancelled_stops_its_step_without_the_signal(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """Dagster's terminate marks the run CANCELING and interrupts the run's process; about
    one interrupt in ten landed in a garbage-collector callback, which discards it, and the
    run went on to write. The step now also watches the run's status."""
    sessions = tmp_path / "s"
    defs = defs_for(write(workdir / "cancelled.yaml", CANCELLED), sessions)
    run_id = "0b7c1f0e-5a3e-4c53-9a43-3f6c1d6b2b11"

    canceller = _cancel_once_started(instance, sessions, run_id)
    result = defs.resolve_job_def("cancelled").execute_in_process(
        instance=instance, run_id=run_id, raise_on_error=False)
    canceller.join()
    assert not result.success
    assert not (workdir / "out.csv").exists()
    assert not [e for e in events(sessions / run_id) if e["event"] == "step_error"
                and e.get("timed_out")]


def test_a_terminated_run_is_not_retried_by_its_retry_policy(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """Dagster runs a step its retry policy covers again after an interrupt too: a terminate
    took max_retries x delay (45 s in a review, minutes with a backoff), ending in "Exceeded
    max_retries"."""
    sessions = tmp_path / "s"
    text = CANCELLED.replace("x-dagster:\n", "x-dagster:\n  retry: {max_retries: 2, "
                                             "delay_seconds: 1}\n", 1)
    assert "retry:" in text
    defs = defs_for(write(workdir / "cancelled.yaml", text), sessions)
    run_id = "7d1c2b3a-5a3e-4c53-9a43-3f6c1d6b2b12"

    canceller = _cancel_once_started(instance, sessions, run_id)
    result = defs.resolve_job_def("cancelled").execute_in_process(
        instance=instance, run_id=run_id, raise_on_error=False)
    canceller.join()
    assert not result.success
    types = [e.event_type_value for e in result.all_events]
    assert "STEP_UP_FOR_RETRY" not in types and "STEP_RESTARTED" not in types
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"
                  and e.step_key == "cancelled__crunch"]
    assert "cancelled: the run was terminated" in str(failure.event_specific_data.error)
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED
    assert not (workdir / "out.csv").exists()
