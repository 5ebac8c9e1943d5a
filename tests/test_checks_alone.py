"""A step's asset checks run alone ("Execute checks" in the Dagster UI): on the asset's latest
table, without running the step; and a materialisation with only some of its checks selected."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import dagster as dg

from .helpers import defs_for, failure_description, materialisations, table_rows, write

CHECKED = """\
oml_version: "0.1.0"
name: alone
x-dagster:
  steps:
    gen:
      checks:
        not_null: [b]
        row_count: {{min: 1}}
        blocking: {blocking}
    down:
      checks:
        expression: "a > 0"
steps:
  - id: gen
    component: duckdb.processor
    mode: transform
    config:
      query: "SELECT * FROM (VALUES (1, 'x'), (2, {second})) t(a, b)"
  - id: down
    component: duckdb.processor
    mode: transform
    config: {{query: "SELECT a, b FROM input_df"}}
"""
GEN = dg.AssetKey(["alone", "gen"])
DOWN = dg.AssetKey(["alone", "down"])


def _pipeline(workdir: Path, blocking: bool = False, second: str = "NULL") -> Path:
    return write(workdir / "alone.yaml",
                 CHECKED.format(blocking=str(blocking).lower(), second=second))


def _checks_only(defs: dg.Definitions, instance: dg.DagsterInstance, *names: str,
                 key: dg.AssetKey = GEN, partition: str | None = None
                 ) -> dg.ExecuteInProcessResult:
    """What the UI's "Execute checks" launches: the job subset to these checks, no asset."""
    job = defs.resolve_job_def("alone").get_subset(
        asset_check_selection={dg.AssetCheckKey(key, n) for n in names})
    return job.execute_in_process(instance=instance, raise_on_error=False,
                                  partition_key=partition)


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_checks_alone_run_on_the_latest_table_without_the_step(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    p = _pipeline(workdir)
    sessions = tmp_path / "s"
    full = defs_for(p, sessions).resolve_job_def("alone").execute_in_process(instance=instance)
    assert full.success
    normal = _evaluations(full)
    made = _files(sessions)
    # the step would now make a table that passes: the checks alone still see the one it made
    defs = defs_for(_pipeline(workdir, second="'y'"), sessions)
    alone = _checks_only(defs, instance, "not_null", "row_count")
    assert alone.success, failure_description(alone)
    assert materialisations(alone) == {}
    evals = _evaluations(alone)
    assert set(evals) == {"not_null", "row_count"}
    assert not evals["not_null"].passed and evals["row_count"].passed
    for name in ("not_null", "row_count"):
        got, want = evals[name], normal[name]
        assert got.severity == want.severity == dg.AssetCheckSeverity.WARN
        assert got.description == want.description
        assert set(got.metadata) == set(want.metadata)
        assert got.metadata["failing_rows"] == want.metadata["failing_rows"]
        assert got.metadata["detail"] == want.metadata["detail"]
        assert got.target_materialization_data.run_id == full.run_id
    assert table_rows(evals["not_null"].metadata["sample"]) == [{"a": 2, "b": None}]
    assert evals["not_null"].metadata["sample"] == normal["not_null"].metadata["sample"]
    # nothing was written: no session for the checks' run, no event in the table's session
    assert _files(sessions) == made
    assert alone.run_id not in {d.name for d in sessions.iterdir()}


def test_a_check_alone_before_any_materialisation_says_to_materialise(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    defs = defs_for(_pipeline(workdir), tmp_path / "s")
    alone = _checks_only(defs, instance, "not_null")
    assert not alone.success
    message = failure_description(alone)
    assert "step 'gen'" in message and "has never been materialised" in message
    assert "materialise 'alone/gen' first" in message
    assert _evaluations(alone) == {}


def test_a_check_alone_after_its_session_was_deleted(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    sessions = tmp_path / "s"
    defs = defs_for(_pipeline(workdir), sessions)
    full = defs.resolve_job_def("alone").execute_in_process(instance=instance)
    shutil.rmtree(sessions / full.run_id)
    alone = _checks_only(defs, instance, "row_count")
    assert not alone.success
    message = failure_description(alone)
    assert f"was materialised in session {full.run_id}, whose directory" in message
    assert "gone" in message and "materialise 'alone/gen' again" in message


def _files(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def _events(sessions: Path, run_id: str) -> list[dict]:
    from .helpers import events

    return events(sessions / run_id)


def test_a_blocking_check_alone_fails_the_run_and_leaves_the_table_as_it_was(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    sessions = tmp_path / "s"
    defs = defs_for(_pipeline(workdir, blocking=True), sessions)
    full = defs.resolve_job_def("alone").execute_in_process(instance=instance,
                                                           raise_on_error=False)
    assert not full.success and set(materialisations(full)) == {"alone/gen"}
    before = _files(sessions)
    alone = _checks_only(defs, instance, "not_null", "row_count")
    assert not alone.success  # Dagster fails a step whose blocking check failed
    evals = _evaluations(alone)
    assert not evals["not_null"].passed and evals["row_count"].passed
    assert evals["not_null"].severity == dg.AssetCheckSeverity.ERROR
    assert _files(sessions) == before
    passing = _checks_only(defs, instance, "row_count")
    assert passing.success and _evaluations(passing)["row_count"].passed
    # a check run alone passes or fails nothing on: the refused table stays refused
    down = defs.resolve_job_def("alone").execute_in_process(
        instance=instance, asset_selection=[DOWN], raise_on_error=False)
    assert not down.success
    assert "blocking check(s) failed: not_null" in failure_description(down)


def test_materialised_with_some_checks_selected(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    sessions = tmp_path / "s"
    defs = defs_for(_pipeline(workdir), sessions)
    job = defs.resolve_job_def("alone").get_subset(
        asset_selection={GEN}, asset_check_selection={dg.AssetCheckKey(GEN, "row_count")})
    some = job.execute_in_process(instance=instance, raise_on_error=False)
    assert some.success, failure_description(some)
    assert set(materialisations(some)) == {"alone/gen"}
    assert set(_evaluations(some)) == {"row_count"}
    ran = [e["check"] for e in _events(sessions, some.run_id) if e.get("event") == "check"]
    assert ran == ["row_count"]  # a check not selected and not blocking does not run
    none = defs.resolve_job_def("alone").get_subset(
        asset_selection={GEN}, asset_check_selection=set()).execute_in_process(
        instance=instance, raise_on_error=False)
    assert none.success and _evaluations(none) == {}
    assert set(materialisations(none)) == {"alone/gen"}


def test_an_unselected_blocking_check_still_guards_the_table(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    sessions = tmp_path / "s"
    defs = defs_for(_pipeline(workdir, blocking=True), sessions)
    job = defs.resolve_job_def("alone").get_subset(
        asset_selection={GEN, DOWN}, asset_check_selection={dg.AssetCheckKey(GEN, "row_count")})
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    assert set(_evaluations(result)) == {"row_count"}
    assert set(materialisations(result)) == {"alone/gen"}  # the step after it did not run
    message = failure_description(result)
    assert "pipeline 'alone', step 'gen': blocking check(s) failed: not_null (not_null not " \
           "selected in this run: a blocking check runs whenever its step does" in message
    events = _events(sessions, result.run_id)
    (check,) = [e for e in events if e.get("event") == "check" and e["check"] == "not_null"]
    assert check["passed"] is False and check["blocking"] is True
    assert [e["status"] for e in events if e.get("event") == "run_end"] == ["failure"]


def test_an_asset_with_the_checks_of_another_alone(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    sessions = tmp_path / "s"
    defs = defs_for(_pipeline(workdir), sessions)
    assert defs.resolve_job_def("alone").execute_in_process(instance=instance).success
    job = defs.resolve_job_def("alone").get_subset(
        asset_selection={DOWN}, asset_check_selection={dg.AssetCheckKey(GEN, "not_null")})
    mixed = job.execute_in_process(instance=instance, raise_on_error=False)
    assert mixed.success, failure_description(mixed)
    assert set(materialisations(mixed)) == {"alone/down"}
    assert set(_evaluations(mixed)) == {"not_null"}
    # the run's session ends with the one step it ran (gen ran only its check, elsewhere)
    (end,) = [e for e in _events(sessions, mixed.run_id) if e.get("event") == "run_end"]
    assert end["status"] == "success" and end["steps_completed"] == 1


def test_the_checks_of_a_step_with_an_upstream_alone(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    sessions = tmp_path / "s"
    defs = defs_for(_pipeline(workdir), sessions)
    assert defs.resolve_job_def("alone").execute_in_process(instance=instance).success
    alone = _checks_only(defs, instance, "expression", key=DOWN)
    assert alone.success, failure_description(alone)
    assert _evaluations(alone)["expression"].passed


def test_the_checks_of_a_step_alone_need_no_upstream_table(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    sessions = tmp_path / "s"
    defs = defs_for(_pipeline(workdir), sessions)
    assert defs.resolve_job_def("alone").execute_in_process(instance=instance).success
    # its upstream's table refused since (a blocking check failed): the step's own table is
    # still the one checked
    blocking = defs_for(_pipeline(workdir, blocking=True), sessions)
    assert not blocking.resolve_job_def("alone").execute_in_process(
        instance=instance, asset_selection=[GEN], raise_on_error=False).success
    again = _checks_only(blocking, instance, "expression", key=DOWN)
    assert again.success, failure_description(again)


STATIC = """\
oml_version: "0.1.0"
name: alone
x-dagster:
  partitions: {static: [eu, us]}
  steps:
    gen:
      checks: {not_null: [b]}
steps:
  - id: gen
    component: duckdb.processor
    mode: transform
    config:
      query: "SELECT 1 AS a, CASE WHEN ${params.partition_key} = 'eu' THEN NULL ELSE 'x' END AS b"
"""


def test_checks_alone_of_a_partition_check_that_partition(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    defs = defs_for(write(workdir / "alone.yaml", STATIC), tmp_path / "s")
    job = defs.resolve_job_def("alone")
    for partition in ("eu", "us"):  # us last: the asset's latest materialisation
        assert job.execute_in_process(instance=instance, partition_key=partition).success
    eu = _checks_only(defs, instance, "not_null", partition="eu")
    assert eu.success, failure_description(eu)
    assert not _evaluations(eu)["not_null"].passed
    assert table_rows(_evaluations(eu)["not_null"].metadata["sample"]) == [{"a": 1, "b": None}]
    us = _checks_only(defs, instance, "not_null", partition="us")
    assert _evaluations(us)["not_null"].passed
    unnamed = _checks_only(defs, instance, "not_null")
    assert not unnamed.success and _evaluations(unnamed) == {}
    assert "static partitions, so a run is for one partition, and this run names none" in \
        failure_description(unnamed)


LAUNCH = """mutation($params: ExecutionParams!) { launchPipelineExecution(executionParams: $params)
  { __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
    ... on InvalidSubsetError { message } } }"""
CHECKS = """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
  assetChecksOrError { ... on AssetChecks { checks { name canExecuteIndividually jobNames } } }
} } }"""
LATEST = """query($key: AssetKeyInput!, $name: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $name, limit: 1) { runId
    evaluation { success targetMaterialization { runId } } } }"""


def test_execute_checks_from_a_running_dagster_dev(tmp_path: Path) -> None:
    """What the UI's "Execute checks" button sends (ExecuteChecksButton.tsx: the checks' job,
    an empty asset selection, the checks), run by the daemon in a process of its own."""
    from .e2e.conftest import DagsterDev, running_dagster_dev

    work = tmp_path / "work"
    write(work / "pipelines" / "alone.yaml", CHECKED.format(blocking="false", second="NULL"))
    write(work / "defs.py", "from osiris_dagster import build_definitions\n"
                            "defs = build_definitions()\n")
    env = {"OSIRIS_PIPELINES_DIR": str(work / "pipelines"),
           "OSIRIS_SESSIONS_DIR": str(work / "sessions")}
    key = {"path": GEN.path}

    def launch(dev: DagsterDev, job: str, assets: list[dict], checks: list[str]) -> dict:
        selector = {"repositoryLocationName": "defs.py", "repositoryName": "__repository__",
                    "jobName": job, "assetSelection": assets,
                    "assetCheckSelection": [{"assetKey": key, "name": n} for n in checks]}
        launched = dev.graphql(LAUNCH, {"params": {"selector": selector, "runConfigData": "{}",
                                                   "mode": "default"}})
        result = launched["launchPipelineExecution"]
        assert result["__typename"] == "LaunchRunSuccess", result
        run_id = result["run"]["runId"]
        return dev.wait_for(lambda: next(
            (r for r in dev.runs() if r["runId"] == run_id
             and r["status"] in ("SUCCESS", "FAILURE", "CANCELED")), None),
            180, f"run {run_id} to finish")

    with running_dagster_dev(tmp_path, work, "defs.py", env) as dev:
        node = dev.graphql(CHECKS, {"key": key})["assetNodeOrError"]
        checks = node["assetChecksOrError"]["checks"]
        assert {c["name"]: c["canExecuteIndividually"] for c in checks} == {
            "not_null": "CAN_EXECUTE", "row_count": "CAN_EXECUTE"}
        (job,) = {n for c in checks for n in c["jobNames"] if n == "alone"}
        assert launch(dev, job, [], ["not_null"])["status"] == "FAILURE"  # nothing to check
        made = launch(dev, job, [key], ["not_null", "row_count"])
        assert made["status"] == "SUCCESS"
        alone = launch(dev, job, [], ["not_null", "row_count"])
        assert alone["status"] == "SUCCESS"
        for name, passed in (("not_null", False), ("row_count", True)):
            (latest,) = dev.graphql(LATEST, {"key": key, "name": name})["assetCheckExecutions"]
            assert latest["runId"] == alone["runId"]
            assert latest["evaluation"]["success"] is passed
            assert latest["evaluation"]["targetMaterialization"]["runId"] == made["runId"]
        assert not (work / "sessions" / alone["runId"]).exists()
        _click_execute_all(dev, {made["runId"], alone["runId"]})


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _click_execute_all(dev: Any, known: set[str]) -> None:
    """The button itself, on the asset's Checks tab in headless Chromium."""
    import tempfile

    from playwright.sync_api import sync_playwright

    known |= {r["runId"] for r in dev.runs()}
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="chromium-"), executable_path=CHROMIUM, headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
            viewport={"width": 1400, "height": 900})
        try:
            page = ctx.new_page()
            page.goto(dev.url + "/assets/alone/gen?view=checks", wait_until="domcontentloaded")
            button = page.get_by_role("button", name="Execute all")
            button.wait_for(timeout=60_000)
            button.click()
            run = dev.wait_for(lambda: next(
                (r for r in dev.runs() if r["runId"] not in known
                 and r["status"] in ("SUCCESS", "FAILURE", "CANCELED")), None),
                120, "the run the button launched to finish")
        finally:
            ctx.close()
    assert run["status"] == "SUCCESS"
    (latest,) = dev.graphql(LATEST, {"key": {"path": GEN.path}, "name": "not_null"})[
        "assetCheckExecutions"]
    assert latest["runId"] == run["runId"] and latest["evaluation"]["success"] is False
