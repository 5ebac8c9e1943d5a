"""End to end in a running `dagster dev`: the UI in headless Chromium, the CSV sensor, and the
schedule."""

from __future__ import annotations

import csv
import os
import re
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest

from .conftest import DagsterDev

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("OSIRIS_TEST_ARTIFACTS", tempfile.gettempdir()))


def _tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def _genres(path: Path) -> dict[str, int]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["genre"]: int(r["movies"]) for r in csv.DictReader(fh)}


def test_materialize_all_from_the_asset_graph(dagster_dev: DagsterDev) -> None:
    from playwright.sync_api import sync_playwright

    before = {r["runId"] for r in dagster_dev.runs()}
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="chromium-"), executable_path=CHROMIUM, headless=True,
            args=ARGS, viewport={"width": 1400, "height": 900})
        try:
            page = ctx.new_page()
            page.goto(dagster_dev.url + "/locations/defs.py/asset-groups/e2e_movies",
                      wait_until="domcontentloaded")
            page.get_by_text("by-genre", exact=True).first.wait_for(timeout=60_000)
            page.get_by_role("button", name=re.compile(r"Materialize all$")).click()

            def new_run() -> dict | None:
                runs = [r for r in dagster_dev.runs() if r["runId"] not in before]
                return runs[0] if runs else None

            run = dagster_dev.wait_for(new_run, 60, "the UI to launch a run")
            finished = dagster_dev.wait_for(
                lambda: next((r for r in dagster_dev.runs() if r["runId"] == run["runId"]
                              and r["status"] in ("SUCCESS", "FAILURE", "CANCELED")), None),
                120, "the materialisation to finish")
            assert finished["status"] == "SUCCESS"
            session_dir = _tag(finished, "osiris/session_dir")
            assert session_dir and Path(session_dir, "pipeline_data.duckdb").is_file()

            page.goto(dagster_dev.url + "/assets/e2e-movies/extract-file",
                      wait_until="domcontentloaded")
            page.get_by_text("Row count", exact=False).first.wait_for(timeout=60_000)
            page.get_by_text("60", exact=True).first.wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "osiris-asset-extract-file.png"),
                            full_page=True)
        finally:
            ctx.close()
    assert _genres(dagster_dev.workdir / "output" / "movies.csv")


def test_sensor_runs_once_per_new_or_changed_file(dagster_dev: DagsterDev) -> None:
    inbox = dagster_dev.workdir / "incoming"
    source = (dagster_dev.workdir / "data" / "movies.csv").read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    header, body = lines[0], lines[1:]

    def sensor_runs() -> list[dict]:
        return [r for r in dagster_dev.runs()
                if _tag(r, "dagster/sensor_name") == "e2e_movies_sensor"]

    assert sensor_runs() == []
    (inbox / "first.csv").write_text(header + "".join(body[:10]), encoding="utf-8")
    odd = inbox / "odd name 'ž' $x.csv"
    odd.write_text(header + "".join(body[:20]), encoding="utf-8")
    slow = inbox / "slow.csv"
    with open(slow, "w", encoding="utf-8") as fh:  # written in pieces, slower than the settle
        fh.write(header)
        for i in range(0, 30, 10):
            fh.write("".join(body[i:i + 10]))
            fh.flush()
            time.sleep(1.5)

    def three_done() -> list[dict] | None:
        runs = sensor_runs()
        done = [r for r in runs if r["status"] == "SUCCESS"]
        failed = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
        assert not failed, failed
        return done if len(done) >= 3 else None

    done = dagster_dev.wait_for(three_done, 180, "three successful sensor runs")
    assert len(done) == 3
    out = dagster_dev.workdir / "output"
    assert sum(_genres(out / "first.csv").values()) == 10
    assert sum(_genres(out / odd.name).values()) == 20
    assert sum(_genres(out / "slow.csv").values()) == 30  # not a half-written file

    time.sleep(12)  # two sensor intervals with nothing new: no runs
    assert len(sensor_runs()) == 3

    (inbox / "first.csv").write_text(header + "".join(body[:5]), encoding="utf-8")
    dagster_dev.wait_for(lambda: len([r for r in sensor_runs() if r["status"] == "SUCCESS"])
                         == 4 or None, 120, "a run for the rewritten file")
    time.sleep(8)
    assert len(sensor_runs()) == 4
    assert sum(_genres(out / "first.csv").values()) == 5


def test_schedule_exists_with_its_cron(dagster_dev: DagsterDev) -> None:
    data = dagster_dev.graphql("""{ schedulesOrError(repositorySelector: {
        repositoryLocationName: "defs.py", repositoryName: "__repository__"}) {
        __typename ... on Schedules { results { name cronSchedule executionTimezone } } } }""")
    result = data["schedulesOrError"]
    if result["__typename"] != "Schedules":
        pytest.fail(f"unexpected {result}")
    schedules = {s["name"]: s for s in result["results"]}
    assert schedules["e2e_movies_schedule"]["cronSchedule"] == "15 4 * * *"
    assert schedules["e2e_movies_schedule"]["executionTimezone"] == "Europe/Prague"

    import dagster as dg

    from osiris_dagster import build_definitions

    defs = build_definitions([dagster_dev.workdir / "pipelines" / "e2e.yaml"])
    sched = defs.get_schedule_def("e2e_movies_schedule")
    ctx = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 5, 1, 4, 15))
    assert len(sched.evaluate_tick(ctx).run_requests) == 1
