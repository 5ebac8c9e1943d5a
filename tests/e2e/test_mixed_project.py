"""The README's mixed project under a real `dagster dev`: runs launched as the UI launches them
(GraphQL launchRun, queued, dequeued by the daemon, executed in their own process), in one run
and across runs, each side reading the other's earlier materialisation."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from .conftest import REPO, DagsterDev, running_dagster_dev

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
    with running_dagster_dev(root, work, "definitions.py",
                             {"OSIRIS_SESSIONS_DIR": str(root / "sessions")}) as dev:
        yield dev


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
