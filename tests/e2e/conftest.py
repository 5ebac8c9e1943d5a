"""A real `dagster dev` (webserver + daemon) for end-to-end tests, always stopped afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

PIPELINE = """\
oml_version: "0.1.0"
name: e2e-movies
params:
  input_path: {default: data/movies.csv}
  input_name: {default: movies.csv}
x-dagster:
  sensor:
    watch: "incoming/*.csv"
    param: input_path
    name_param: input_name
    settle_seconds: 2
    minimum_interval_seconds: 5
    default_status: running
  schedule: {cron: "15 4 * * *", timezone: Europe/Prague}
steps:
  - id: extract-file
    component: filesystem.csv_extractor
    mode: read
    config: {path: "${params.input_path}"}
  - id: by-genre
    component: duckdb.processor
    mode: transform
    config:
      query: "SELECT genre, count(*) AS movies FROM input_df GROUP BY genre ORDER BY genre"
  - id: write
    component: filesystem.csv_writer
    mode: write
    config: {path: "output/${params.input_name}"}
"""

SLOW = """\
oml_version: "0.1.0"
name: e2e-slow
params:
  n: {default: 10, description: rows to crunch}
steps:
  - id: crunch
    component: duckdb.processor
    mode: transform
    config:
      query: "SELECT count(*) AS c FROM range(${params.n}) t(x) WHERE x % 7 = 3"
"""

LINEAGE = """\
oml_version: "0.1.0"
name: e2e-lineage
x-dagster:
  steps:
    director-films:
      columns: {director: Name of the director}
steps:
  - id: movies
    component: filesystem.csv_extractor
    mode: read
    config: {path: data/movies.csv}
  - id: directors
    component: filesystem.csv_extractor
    mode: read
    needs: []
    config: {path: data/directors.csv}
  - id: director-films
    component: duckdb.processor
    mode: transform
    needs: [movies, directors]
    config:
      query: >
        SELECT d.name AS director, d.nationality, count(*) AS films,
               sum(m.box_office_usd) AS box_office
        FROM df_movies m JOIN df_directors d ON m.director_id = d.director_id
        GROUP BY d.name, d.nationality
"""

DAGSTER_YAML = """\
telemetry: {enabled: false}
run_queue: {max_concurrent_runs: 1, dequeue_interval_seconds: 1, dequeue_use_threads: true}
sensors: {use_threads: true, num_workers: 2}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DagsterDev:
    url: str
    workdir: Path
    home: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(self.url + "/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            data = json.loads(resp.read())
        if data.get("errors"):
            raise AssertionError(data["errors"])
        return data["data"]

    def runs(self) -> list[dict[str, Any]]:
        data = self.graphql("{ runsOrError { ... on Runs { results { runId status "
                            "tags { key value } } } } }")
        return data["runsOrError"]["results"]

    def wait_for(self, predicate: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")


@pytest.fixture(scope="session")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterDev]:
    root = tmp_path_factory.mktemp("e2e")
    with running_dagster_dev(root, *e2e_project(root)) as dev:
        yield dev


def e2e_project(root: Path) -> tuple[Path, str, dict[str, str]]:
    """root/work with the e2e pipelines, data and defs.py: the working directory, definitions
    file and environment for :func:`running_dagster_dev`."""
    work = root / "work"
    (work / "pipelines").mkdir(parents=True)
    (work / "data").mkdir()
    (work / "incoming").mkdir()
    for data in ("movies.csv", "directors.csv"):
        shutil.copy(REPO / "pipelines" / "data" / data, work / "data" / data)
    (work / "pipelines" / "e2e.yaml").write_text(PIPELINE, encoding="utf-8")
    (work / "pipelines" / "slow.yaml").write_text(SLOW, encoding="utf-8")
    (work / "pipelines" / "lineage.yaml").write_text(LINEAGE, encoding="utf-8")
    (work / "defs.py").write_text("from osiris_dagster import build_definitions\n"
                                  "defs = build_definitions()\n", encoding="utf-8")
    return work, "defs.py", {"OSIRIS_PIPELINES_DIR": str(work / "pipelines"),
                             "OSIRIS_SESSIONS_DIR": str(work / "sessions")}


@contextlib.contextmanager
def running_dagster_dev(root: Path, work: Path, defs_file: str, env_extra: dict[str, str],
                        set_up_home: Callable[[Path], None] | None = None
                        ) -> Iterator[DagsterDev]:
    """`dagster dev -f <defs_file>` in ``work`` with a fresh DAGSTER_HOME under ``root`` (welcome
    dialog seen, the test queue settings, then ``set_up_home(home)``), in its own process group
    on 127.0.0.1; yields once the code location is loaded, and stops the whole group
    afterwards."""
    home = root / "home"
    (home / ".nux").mkdir(parents=True)
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    if set_up_home is not None:
        set_up_home(home)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_")}
    env.update({"DAGSTER_HOME": str(home), **env_extra})
    log = open(root / "dagster_dev.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-f", defs_file, "-h", "127.0.0.1", "-p",
         str(port)], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
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


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT the whole process group (webserver, daemon, code servers), then SIGKILL."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
