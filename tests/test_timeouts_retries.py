"""x-dagster timeout_seconds and retry."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import dagster as dg

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
