"""The README's mixed project under a real `dagster dev`: runs launched as the UI launches them
(GraphQL launchRun, queued, dequeued by the daemon, executed in their own process), in one run
and across runs, each side reading the other's earlier materialisation."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from .conftest import DAGSTER_YAML, REPO, DagsterDev, _stop, free_port

LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""


@pytest.fixture(scope="module")
def mixed_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterDev]:
    root = tmp_path_factory.mktemp("mixed")
    work = root / "mixed_project"
    shutil.copytree(REPO / "examples" / "mixed_project", work)
    home = root / "home"
    (home / ".nux").mkdir(parents=True)
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_")}
    env.update({"DAGSTER_HOME": str(home), "OSIRIS_SESSIONS_DIR": str(root / "sessions")})
    port = free_port()
    log = open(root / "dagster_dev.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-f", "definitions.py", "-h", "127.0.0.1",
         "-p", str(port)], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    dev = DagsterDev(f"http://127.0.0.1:{port}", work, home)
    try:
        def loaded() -> bool:
            if proc.poll() is not None:
                raise AssertionError("dagster dev exited:\n" +
                                     (root / "dagster_dev.log").read_text()[-3000:])
            try:
                data = dev.graphql("{ workspaceOrError { ... on Workspace { locationEntries "
                                   "{ loadStatus } } } }")
            except OSError:
                return False
            entries = data["workspaceOrError"]["locationEntries"]
            return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)

        dev.wait_for(loaded, 120, "dagster dev to load the code location")
        yield dev
    finally:
        _stop(proc)
        log.close()


def materialise(dev: DagsterDev, *keys: str) -> dict[str, Any]:
    """What the UI's Materialize button sends, then wait for the run's end."""
    params = {"selector": {"repositoryLocationName": "definitions.py",
                           "repositoryName": "__repository__", "pipelineName": "__ASSET_JOB",
                           "assetSelection": [{"path": k.split("/")} for k in keys]},
              "runConfigData": {}}
    result = dev.graphql(LAUNCH, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    run_id = result["run"]["runId"]
    return dev.wait_for(
        lambda: next((r for r in dev.runs() if r["runId"] == run_id
                      and r["status"] in ("SUCCESS", "FAILURE", "CANCELED")), None),
        180, f"run {run_id} of {keys} to finish")


def top_customers(dev: DagsterDev) -> list[tuple[Any, ...]]:
    frame = pickle.loads((dev.home / "storage" / "top_customers").read_bytes())
    return list(frame.itertuples(index=False, name=None))


def test_mixed_project_from_the_ui_in_one_run_and_across_runs(mixed_dev: DagsterDev) -> None:
    everything = ("raw/orders", "shop/customers", "shop/enrich", "top_customers")
    assert materialise(mixed_dev, *everything)["status"] == "SUCCESS"
    assert top_customers(mixed_dev) == [("Ada", 10.75), ("Cy", 7.0), ("Bob", 3.0)]
    (mixed_dev.home / "storage" / "top_customers").unlink()
    # the Python asset alone: the step's table from the first run's session
    assert materialise(mixed_dev, "top_customers")["status"] == "SUCCESS"
    assert top_customers(mixed_dev) == [("Ada", 10.75), ("Cy", 7.0), ("Bob", 3.0)]
    # the step alone: the Python asset's latest value, stored in this run's session
    enrich = materialise(mixed_dev, "shop/enrich")
    assert enrich["status"] == "SUCCESS"
    session = next(t["value"] for t in enrich["tags"] if t["key"] == "osiris/session_dir")
    with duckdb.connect(str(Path(session) / "pipeline_data.duckdb"), read_only=True) as con:
        assert sorted(r[0] for r in con.execute("SHOW TABLES").fetchall()) == [
            "enrich", "enrich<-raw/orders"]
        assert con.execute('SELECT sum(amount) FROM "enrich"').fetchone()[0] == 20.75
