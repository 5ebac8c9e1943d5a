"""`osiris-dagster run` on the DAGSTER_HOME of a running `dagster dev`: the CLI opens that home's
default SQLite files through its own storages (kept connections, files held open during the
run) while `dagster dev`'s daemon and a run launched as the UI launches it write the same files.
The same on a home whose dagster.yaml names those storages (`osiris-dagster init-home`, as the
README says), where `dagster dev` itself uses them: its sensor runs, and its run page shows a
run's events while the run is going."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
from websockets.sync.client import connect

from osiris_dagster.dagster_layer.sqlite_events import PooledSqliteEventLogStorage

from ..gate import Gate, gate_step
from ..helpers import init_home
from .conftest import DagsterDev, e2e_project, running_dagster_dev
from .test_mixed_project import LAUNCH

ASSET = ["e2e-lineage", "director-films"]
MATERIALISATIONS = """
query($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(limit: 20) { runId } }
  }
}"""
STEP_SUCCESSES = """
query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection {
  events { __typename ... on ExecutionStepSuccessEvent { stepKey } } } } }"""
LIVE_LOGS = """
subscription($runId: ID!) { pipelineRunLogs(runId: $runId) {
  __typename ... on PipelineRunLogsSubscriptionSuccess {
    messages { __typename ... on ExecutionStepSuccessEvent { stepKey } } } } }"""
LIVE = """\
oml_version: "0.1.0"
name: e2e-live
steps:
{first}  - id: middle
    component: duckdb.processor
    mode: transform
    needs: [first]
    config: {{query: "SELECT count(*) AS n FROM df_first"}}
{last}"""
HOMES = ["dagster_dev", "dagster_dev_on_readme_home"]


@pytest.fixture(scope="module")
def gates() -> Iterator[tuple[Gate, Gate]]:
    first, last = Gate(), Gate()
    try:
        yield first, last
    finally:
        first.close()
        last.close()


@pytest.fixture(scope="module")
def dagster_dev_on_readme_home(tmp_path_factory: pytest.TempPathFactory,
                               gates: tuple[Gate, Gate]) -> Iterator[DagsterDev]:
    """The e2e project under `dagster dev`, its home made by `osiris-dagster init-home`
    as the README says, plus `e2e-live`: a step between two gates."""
    root = tmp_path_factory.mktemp("e2e-readme-home")
    work, defs_file, env = e2e_project(root)
    (work / "pipelines" / "live.yaml").write_text(LIVE.format(
        first=gate_step("first", gates[0].url, []),
        last=gate_step("last", gates[1].url, ["middle"])), encoding="utf-8")
    with running_dagster_dev(root, work, defs_file, env, init_home) as dev:
        yield dev


def _launch(dev: DagsterDev, job: str) -> str:
    params = {"selector": {"repositoryLocationName": "defs.py",
                           "repositoryName": "__repository__", "pipelineName": job},
              "runConfigData": {}}
    launched = dev.graphql(LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return str(launched["run"]["runId"])


def _finished(dev: DagsterDev, run_id: str) -> dict[str, Any]:
    return dev.wait_for(
        lambda: next((r for r in dev.runs() if r["runId"] == run_id
                      and r["status"] in ("SUCCESS", "FAILURE", "CANCELED")), None),
        180, f"run {run_id} to finish")


def _steps_succeeded(dev: DagsterDev, run_id: str) -> int:
    events = dev.graphql(STEP_SUCCESSES, {"id": run_id})["logsForRun"]["events"]
    return sum(e["__typename"] == "ExecutionStepSuccessEvent" for e in events)


def _session_id(stdout: str) -> str:
    return next(line.split()[1] for line in stdout.splitlines() if line.startswith("session "))


@pytest.mark.parametrize("home", HOMES)
def test_cli_runs_share_the_home_of_a_running_dagster_dev(
        request: pytest.FixtureRequest, home: str) -> None:
    dagster_dev: DagsterDev = request.getfixturevalue(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_")}
    env.update(DAGSTER_HOME=str(dagster_dev.home),
               OSIRIS_SESSIONS_DIR=str(dagster_dev.workdir / "sessions"))
    ui_run = _launch(dagster_dev, "e2e_lineage")
    clis = [subprocess.Popen([sys.executable, "-m", "osiris_dagster.cli", "run",
                              "pipelines/lineage.yaml"], cwd=dagster_dev.workdir, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in clis]
    for proc, (out, err) in zip(clis, outputs, strict=True):
        assert proc.returncode == 0, out + err
    cli_runs = {_session_id(out) for out, _ in outputs}

    assert _finished(dagster_dev, ui_run)["status"] == "SUCCESS"
    statuses = {r["runId"]: r["status"] for r in dagster_dev.runs()}
    assert {statuses.get(run_id) for run_id in cli_runs} == {"SUCCESS"}, statuses
    asset = dagster_dev.graphql(MATERIALISATIONS, {"path": ASSET})["assetOrError"]
    assert cli_runs | {ui_run} <= {m["runId"] for m in asset["assetMaterializations"]}
    for run_id in cli_runs | {ui_run}:  # every step's events, whoever wrote them
        assert _steps_succeeded(dagster_dev, run_id) == 3, run_id


def test_the_readme_home_runs_dagster_devs_runs_through_osiris_storages(
        dagster_dev_on_readme_home: DagsterDev, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `dagster dev` opens on that home, and a run its sensor starts for a new file."""
    dev = dagster_dev_on_readme_home
    monkeypatch.setenv("DAGSTER_HOME", str(dev.home))  # the file names the home by it
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    dropped = dev.workdir / "incoming" / "new movies.csv"
    dropped.write_bytes((dev.workdir / "data" / "movies.csv").read_bytes())

    def sensor_run() -> dict[str, Any] | None:
        return next((r for r in dev.runs() if any(
            t["key"] == "osiris/file" and t["value"] == str(dropped) for t in r["tags"])), None)

    run = dev.wait_for(sensor_run, 180, "the sensor to start a run for the new file")
    assert _finished(dev, run["runId"])["status"] == "SUCCESS"
    assert (dev.workdir / "output" / "new movies.csv").read_text().startswith("genre,movies")
    assert _steps_succeeded(dev, run["runId"]) == 3


def test_the_run_page_shows_a_runs_events_while_it_is_going(
        dagster_dev_on_readme_home: DagsterDev, gates: tuple[Gate, Gate]) -> None:
    """The run page's live log (the `pipelineRunLogs` subscription the UI opens) gets the
    events the run worker writes while it still holds its connections: here `middle`'s
    success, written between the two gates, arrives while the run waits at the second."""
    dev = dagster_dev_on_readme_home
    first, last = gates
    run_id = _launch(dev, "e2e_live")
    assert first.hit.wait(180), "the run did not reach the first gate"
    live: list[str] = []
    with connect(dev.url.replace("http", "ws", 1) + "/graphql",
                 subprotocols=["graphql-ws"]) as ws:  # type: ignore[list-item]
        ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        ws.send(json.dumps({"id": "1", "type": "start", "payload": {
            "query": LIVE_LOGS, "variables": {"runId": run_id}}}))
        first.open()
        deadline = time.monotonic() + 180  # a failure bound only
        while not (last.hit.is_set() and any(k.endswith("middle") for k in live)):
            assert time.monotonic() < deadline, f"live log got only steps {live}"
            try:
                message = json.loads(ws.recv(timeout=1))
            except TimeoutError:
                continue
            if message.get("type") == "data":
                logs = message["payload"]["data"]["pipelineRunLogs"]
                live += [m["stepKey"] for m in logs.get("messages", [])
                         if m["__typename"] == "ExecutionStepSuccessEvent"]
        assert not last.opened.is_set()  # the run is still going, its connections open
    last.open()
    assert _finished(dev, run_id)["status"] == "SUCCESS"
