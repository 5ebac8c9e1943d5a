"""The sensor-burst benchmark's scratch project and its `dagster dev` (start, wait, stop).

The project mirrors the repository root: `pipelines/` with a copy of the bundled
`incoming_movies.yaml` (its CSV sensor settings unchanged unless asked) plus copies of
`director_stats.yaml` under other names (a code location of N pipeline files), `pipelines/data/`,
`osiris_connections.yaml` and a `defs.py` calling `build_definitions()`. `dagster dev` runs in
its own process group on 127.0.0.1 and is stopped by group (SIGINT, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SENSOR_PIPELINE = "incoming_movies.yaml"
FILLER_PIPELINE = "director_stats.yaml"

# Run-queue and sensor settings of tests/e2e (see /work/shared/reference/e2e-notes.md):
# dequeue every second, threads for sensors; max_concurrent_runs is a parameter.
DAGSTER_YAML = """\
telemetry: {{enabled: false}}
run_queue: {{max_concurrent_runs: {max_runs}, dequeue_interval_seconds: 1, \
dequeue_use_threads: true}}
sensors: {{use_threads: true, num_workers: 2}}
"""


def make_project(root: Path, pipelines: int, settle: float | None, interval: int | None
                 ) -> Path:
    """root/work: the sensor pipeline plus (pipelines - 1) renamed copies of director_stats."""
    work = root / "work"
    shutil.copytree(REPO / "pipelines" / "data", work / "pipelines" / "data")
    shutil.copy2(REPO / "osiris_connections.yaml", work / "osiris_connections.yaml")
    (work / "incoming").mkdir()
    text = (REPO / "pipelines" / SENSOR_PIPELINE).read_text(encoding="utf-8")
    if settle is not None:
        text = re.sub(r"settle_seconds: [\d.]+", f"settle_seconds: {settle}", text)
    if interval is not None:
        text = re.sub(r"minimum_interval_seconds: \d+", f"minimum_interval_seconds: {interval}",
                      text)
    (work / "pipelines" / SENSOR_PIPELINE).write_text(text, encoding="utf-8")
    filler = (REPO / "pipelines" / FILLER_PIPELINE).read_text(encoding="utf-8")
    for i in range(1, pipelines):
        (work / "pipelines" / f"director_stats_{i:02d}.yaml").write_text(
            filler.replace("name: director-stats", f"name: director-stats-{i:02d}"),
            encoding="utf-8")
    (work / "defs.py").write_text("from osiris_dagster import build_definitions\n"
                                  "defs = build_definitions()\n", encoding="utf-8")
    return work


def make_home(root: Path, max_runs: int) -> Path:
    home = root / "home"
    (home / ".nux").mkdir(parents=True)
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    (home / "dagster.yaml").write_text(DAGSTER_YAML.format(max_runs=max_runs))
    return home


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DagsterDev:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(self.url + "/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            data = json.loads(resp.read())
        if data.get("errors"):
            raise RuntimeError(f"GraphQL error: {data['errors']}")
        return data["data"]

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"dagster dev exited; its log ({self.log}) ends:\n"
                               + self.log.read_text()[-3000:])

    def loaded(self) -> bool:
        self.alive()
        try:
            data = self.graphql("{ workspaceOrError { ... on Workspace { locationEntries "
                                "{ loadStatus } } } }")
        except OSError:
            return False
        entries = data["workspaceOrError"]["locationEntries"]
        return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)

    def runs(self) -> list[dict[str, Any]]:
        data = self.graphql("{ runsOrError { ... on Runs { results { runId status "
                            "tags { key value } } } } }")
        return data["runsOrError"]["results"]


def wait_for(predicate: Any, timeout: float, what: str, poll: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(poll)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}; last={last!r}")


def start(work: Path, home: Path, log: Path) -> DagsterDev:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_")}
    env.update({"DAGSTER_HOME": str(home), "OSIRIS_PIPELINES_DIR": str(work / "pipelines"),
                "OSIRIS_SESSIONS_DIR": str(work / "sessions")})
    port = free_port()
    out = open(log, "w")  # noqa: SIM115 - the child keeps the descriptor; closed by the OS
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-f", "defs.py", "-h", "127.0.0.1", "-p",
         str(port)], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True)
    out.close()
    return DagsterDev(proc, f"http://127.0.0.1:{port}", log)


def stop(dev: DagsterDev) -> None:
    """SIGINT the whole process group (webserver, daemon, code server, run workers)."""
    try:
        os.killpg(dev.proc.pid, signal.SIGINT)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        dev.proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(dev.proc.pid, signal.SIGKILL)
    dev.proc.wait(timeout=10)
