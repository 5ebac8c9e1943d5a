"""The CSV sensor in a running `dagster dev` (daemon included) with files that change under it:
a file still being written while its run reads it, and a file moved back from the archive."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..gate import Gate, gate_step
from .conftest import DagsterDev

SENSOR = "e2e_bursts_sensor"
PIPELINE = """\
oml_version: "0.1.0"
name: e2e-bursts
params:
  input_path: {{default: none.csv}}
  input_name: {{default: none.csv}}
x-dagster:
  sensor:
    watch: "bursts/*.csv"
    param: input_path
    name_param: input_name
    settle_seconds: 1
    minimum_interval_seconds: 5
    archive_to: bursts-done/
    default_status: running
steps:
  - id: extract
    component: filesystem.csv_extractor
    mode: read
    config: {{path: "${{params.input_path}}"}}
{gate}  - id: rows
    component: duckdb.processor
    mode: transform
    needs: [extract, gate]
    config: {{query: "SELECT count(*) AS n FROM df_extract"}}
  - id: write
    component: filesystem.csv_writer
    mode: write
    needs: [rows]
    config: {{path: "output/bursts/${{params.input_name}}"}}
"""
RELOAD = """mutation { reloadRepositoryLocation(repositoryLocationName: "defs.py")
  { __typename } }"""
SENSORS = """{ sensorsOrError(repositorySelector: {repositoryLocationName: "defs.py",
  repositoryName: "__repository__"}) { ... on Sensors { results { name
  sensorState { status } } } } }"""
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


@pytest.fixture(scope="module")
def bursts(dagster_dev: DagsterDev) -> Iterator[Gate]:
    """Add the pipeline to the running code location; its runs wait at the gate."""
    gate = Gate()
    try:
        path = dagster_dev.workdir / "pipelines" / "bursts.yaml"
        path.write_text(PIPELINE.format(gate=gate_step("gate", gate.url, ["extract"])),
                        encoding="utf-8")
        (dagster_dev.workdir / "bursts").mkdir()
        dagster_dev.graphql(RELOAD)

        def running() -> bool:
            try:
                results = dagster_dev.graphql(SENSORS)["sensorsOrError"].get("results") or []
            except OSError:
                return False
            return any(s["name"] == SENSOR and s["sensorState"]["status"] == "RUNNING"
                       for s in results)

        dagster_dev.wait_for(running, 120, f"{SENSOR} to be loaded and running")
        yield gate
    finally:
        gate.close()


def _tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def _runs_for(dev: DagsterDev, path: Path) -> list[dict]:
    """Sensor runs for this file, oldest first."""
    runs = [r for r in dev.runs() if _tag(r, "dagster/sensor_name") == SENSOR
            and _tag(r, "osiris/file") == str(path)]
    failed = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
    assert not failed, failed
    return runs[::-1]


def _events(dev: DagsterDev, run_id: str) -> list[dict]:
    path = dev.workdir / "sessions" / run_id / "logs" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _rows_written(dev: DagsterDev, name: str) -> int:
    lines = (dev.workdir / "output" / "bursts" / name).read_text().splitlines()
    assert lines[0] == "n"
    return int(lines[1])


def test_a_file_still_being_written_is_not_archived_half_read(dagster_dev: DagsterDev,
                                                               bursts: Gate) -> None:
    bursts.opened.clear()
    bursts.hit.clear()
    live = dagster_dev.workdir / "bursts" / "live feed.csv"
    done = dagster_dev.workdir / "bursts-done" / live.name
    with open(live, "w", encoding="utf-8") as writer:
        writer.write("v\n1\n2\n3\n")  # the first burst
        writer.flush()
        assert bursts.hit.wait(180), "no run reached the gate for the first burst"
        (first,) = _runs_for(dagster_dev, live)  # it has read the file and waits at the gate
        writer.write("4\n5\n6\n")  # the writer's next burst, while the run is going
    assert live.exists() and not done.exists()
    bursts.open()

    first = dagster_dev.wait_for(
        lambda: next((r for r in _runs_for(dagster_dev, live)
                      if r["runId"] == first["runId"] and r["status"] in FINISHED), None),
        180, "the first run to finish")
    assert first["status"] == "SUCCESS"
    changed = [e for e in _events(dagster_dev, first["runId"])
               if e["event"] == "file_changed_during_run"]
    assert changed and changed[0]["path"] == str(live), _events(dagster_dev, first["runId"])
    assert not any(e["event"] == "file_archived" for e in _events(dagster_dev,
                                                                   first["runId"]))

    def complete_run_archived() -> list[dict] | None:
        runs = _runs_for(dagster_dev, live)
        ok = [r for r in runs if r["status"] == "SUCCESS"]
        return runs if len(ok) >= 2 and done.exists() and not live.exists() else None

    runs = dagster_dev.wait_for(complete_run_archived, 180,
                                "a run of the complete file that archives it")
    assert runs[0]["runId"] == first["runId"]
    assert done.read_text() == "v\n1\n2\n3\n4\n5\n6\n"
    assert _rows_written(dagster_dev, live.name) == 6
    last = runs[-1]["runId"]
    assert any(e["event"] == "file_archived" for e in _events(dagster_dev, last))


def test_a_file_moved_back_from_the_archive_runs_again(dagster_dev: DagsterDev,
                                                       bursts: Gate) -> None:
    bursts.open()
    src = dagster_dev.workdir / "bursts" / "again.csv"
    done = dagster_dev.workdir / "bursts-done" / src.name
    src.write_text("v\n10\n20\n", encoding="utf-8")

    def archived(count: int) -> list[dict] | None:
        runs = _runs_for(dagster_dev, src)
        ok = [r for r in runs if r["status"] == "SUCCESS"]
        return runs if len(ok) >= count and done.exists() and not src.exists() else None

    first = dagster_dev.wait_for(lambda: archived(1), 180, "the first run and its archive")
    stat = done.stat()
    os.rename(done, src)  # back in, same path, size, mtime and content
    assert (src.stat().st_size, src.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    runs = dagster_dev.wait_for(lambda: archived(2), 180, "a second run of the moved-back file")
    assert len(runs) == 2 and runs[0]["runId"] == first[0]["runId"]
    assert _tag(runs[0], "dagster/run_key") != _tag(runs[1], "dagster/run_key")
    assert _rows_written(dagster_dev, src.name) == 2
