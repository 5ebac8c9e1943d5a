"""Terminating a run from Dagster interrupts a long DuckDB query and leaves no partial output."""

from __future__ import annotations

import json
import time
from pathlib import Path

import duckdb

from .conftest import DagsterDev

LAUNCH = """mutation($params: ExecutionParams!) { launchPipelineExecution(executionParams: $params)
  { __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } } } }"""
TERMINATE = """mutation($runId: String!) { terminateRun(runId: $runId)
  { __typename ... on PythonError { message } } }"""


def _events(dev: DagsterDev, run_id: str) -> list[dict]:
    path = dev.workdir / "sessions" / run_id / "logs" / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_terminate_interrupts_a_long_query(dagster_dev: DagsterDev) -> None:
    params = {
        "selector": {"repositoryLocationName": "defs.py", "repositoryName": "__repository__",
                     "pipelineName": "e2e_slow"},
        "runConfigData": {"resources": {"osiris_params__e2e_slow": {
            "config": {"params": {"n": 400_000_000_000}}}}},
    }
    launched = dagster_dev.graphql(LAUNCH, {"params": params})["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    dagster_dev.wait_for(lambda: any(e["event"] == "step_start"
                                     for e in _events(dagster_dev, run_id)),
                         120, "the long step to start")
    time.sleep(2)
    started = time.monotonic()
    result = dagster_dev.graphql(TERMINATE, {"runId": run_id})["terminateRun"]
    assert result["__typename"] == "TerminateRunSuccess", result

    def status() -> str | None:
        run = next((r for r in dagster_dev.runs() if r["runId"] == run_id), None)
        return run["status"] if run and run["status"] in ("CANCELED", "FAILURE",
                                                          "SUCCESS") else None

    # the query alone would run for hours: stopping within the wait proves it was interrupted
    final = dagster_dev.wait_for(status, 60, "the run to stop")
    assert final == "CANCELED", f"run ended {final} {time.monotonic() - started:.1f}s after"
    errors = [e for e in _events(dagster_dev, run_id) if e["event"] == "step_error"]
    assert errors and errors[0]["step_id"] == "crunch" and errors[0]["cancelled"] is True
    db = Path(dagster_dev.workdir / "sessions" / run_id / "pipeline_data.duckdb")

    def tables_once_released() -> tuple[int] | None:
        # the run is CANCELED before its worker process has exited and released the file lock
        try:
            with duckdb.connect(str(db), read_only=True) as con:
                return con.execute("SELECT count(*) FROM duckdb_tables()").fetchone()
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                return None
            raise

    assert dagster_dev.wait_for(tables_once_released, 60, "the run worker to release the "
                                "session database") == (0,)
