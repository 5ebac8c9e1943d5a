"""`osiris-dagster run` on the DAGSTER_HOME of a running `dagster dev`: the CLI opens that home's
default SQLite files through its own storages (kept connections, files held open during the
run) while `dagster dev`'s daemon and a run launched as the UI launches it write the same files."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import DagsterDev
from .test_mixed_project import LAUNCH

ASSET = ["e2e-lineage", "director-films"]
MATERIALISATIONS = """
query($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(limit: 20) { runId } }
  }
}"""


def _session_id(stdout: str) -> str:
    return next(line.split()[1] for line in stdout.splitlines() if line.startswith("session "))


def test_cli_runs_share_the_home_of_a_running_dagster_dev(dagster_dev: DagsterDev) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_")}
    env.update(DAGSTER_HOME=str(dagster_dev.home),
               OSIRIS_SESSIONS_DIR=str(dagster_dev.workdir / "sessions"))
    params = {"selector": {"repositoryLocationName": "defs.py",
                           "repositoryName": "__repository__", "pipelineName": "e2e_lineage"},
              "runConfigData": {}}
    launched = dagster_dev.graphql(LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    ui_run = launched["run"]["runId"]
    clis = [subprocess.Popen([sys.executable, "-m", "osiris_dagster.cli", "run",
                              "pipelines/lineage.yaml"], cwd=dagster_dev.workdir, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in clis]
    for proc, (out, err) in zip(clis, outputs, strict=True):
        assert proc.returncode == 0, out + err
    cli_runs = {_session_id(out) for out, _ in outputs}

    finished = dagster_dev.wait_for(
        lambda: next((r for r in dagster_dev.runs() if r["runId"] == ui_run
                      and r["status"] in ("SUCCESS", "FAILURE", "CANCELED")), None),
        180, "the run launched as the UI does to finish")
    assert finished["status"] == "SUCCESS"
    statuses = {r["runId"]: r["status"] for r in dagster_dev.runs()}
    assert {statuses.get(run_id) for run_id in cli_runs} == {"SUCCESS"}, statuses
    asset = dagster_dev.graphql(MATERIALISATIONS, {"path": ASSET})["assetOrError"]
    assert cli_runs | {ui_run} <= {m["runId"] for m in asset["assetMaterializations"]}
