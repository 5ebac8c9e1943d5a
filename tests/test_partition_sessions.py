"""Partitions and what is kept per partition: `sessions clean` keeps the session of every
partition's latest materialisation, and `schema: strict` compares a partition with its own
previous materialisation."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from osiris_dagster.cli import main

from .helpers import defs_for, failure_description, write

DAILY = """\
oml_version: "0.1.0"
name: pdaily
x-dagster:
  partitions: {daily: {start: "2026-03-27", end: "2026-04-03"}}
steps:
  - id: day
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT '${params.partition_key}' AS k"}
  - id: copy
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT * FROM input_df"}
"""


def _clean(sessions: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["sessions", "--sessions-dir", str(sessions), "clean", *args]) == 0
    return capsys.readouterr().out


def test_clean_keeps_the_latest_session_of_every_partition(
        workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Before, only the asset's latest materialisation (of any partition) counted: 2026-03-29's
    session was deleted, and a later downstream-only run of that partition failed."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the instance `sessions clean` reads
    sessions = tmp_path / "s"
    job = defs_for(write(workdir / "pdaily.yaml", DAILY), sessions).resolve_job_def("pdaily")
    with dg.DagsterInstance.get() as instance:
        runs = {}
        for key in ("2026-03-29", "2026-03-30", "2026-03-29", "2026-03-31"):
            result = job.execute_in_process(instance=instance, partition_key=key)
            assert result.success, failure_description(result)
            runs.setdefault(key, []).append(result.run_id)
    superseded, latest_29 = runs["2026-03-29"]
    out = _clean(sessions, capsys, "--keep", "0")
    assert f"deleted {superseded}" in out
    for kept in (latest_29, runs["2026-03-30"][0], runs["2026-03-31"][0]):
        assert f"kept    {kept} (latest materialisation" in out
        assert (sessions / kept).is_dir()
    assert "1 session(s)" in out

    with dg.DagsterInstance.get() as instance:  # the downstream alone reads 03-29's session
        again = job.execute_in_process(instance=instance, partition_key="2026-03-29",
                                       asset_selection=[dg.AssetKey(["pdaily", "copy"])],
                                       raise_on_error=False)
    assert again.success, failure_description(again)


PDRIFT = """\
oml_version: "0.1.0"
name: pdrift
x-dagster:
  partitions: {static: [eu, us]}
  steps:
    extract: {schema: strict}
steps:
  - id: extract
    component: filesystem.csv_extractor
    mode: read
    config: {path: "data/${params.partition_key}.csv"}
"""


def _run(job: dg.JobDefinition, instance: dg.DagsterInstance, key: str
         ) -> dg.ExecuteInProcessResult:
    return job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False)


def test_strict_schema_compares_a_partition_with_its_own_previous_materialisation(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    write(workdir / "data" / "eu.csv", "id,amount\n1,10\n2,20\n")
    write(workdir / "data" / "us.csv", "id,amount\n1,10.5\n2,20.25\n")
    job = defs_for(write(workdir / "pdrift.yaml", PDRIFT), tmp_path / "s").resolve_job_def(
        "pdrift")
    for key in ("eu", "us", "eu", "us"):  # neither partition's columns change
        result = _run(job, instance, key)
        assert result.success, (key, failure_description(result))

    # eu now has us's columns: a change of eu, though the asset's latest (us) looks the same
    write(workdir / "data" / "eu.csv", "id,amount\n1,10.5\n")
    changed = _run(job, instance, "eu")
    assert not changed.success
    message = failure_description(changed)
    assert "retyped amount: BIGINT -> DOUBLE" in message, message
    assert "of partition 'eu' (schema" in message and "schema set to `warn`" in message, message
    assert _run(job, instance, "us").success  # us unchanged, still fine

    # the way the message gives to accept it: once with `warn`, then strict again
    warn = defs_for(write(workdir / "pdrift.yaml", PDRIFT.replace("strict", "warn")),
                    tmp_path / "s").resolve_job_def("pdrift")
    assert _run(warn, instance, "eu").success
    job = defs_for(write(workdir / "pdrift.yaml", PDRIFT), tmp_path / "s").resolve_job_def(
        "pdrift")
    assert _run(job, instance, "eu").success


def test_strict_schema_sees_a_partitions_change_that_matches_another_partition(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """Before, eu's change went unnoticed: the asset's latest materialisation (us) already had
    eu's new columns."""
    write(workdir / "data" / "eu.csv", "id,amount\n1,10\n")
    write(workdir / "data" / "us.csv", "id,amount\n1,10.5\n")
    warn = defs_for(write(workdir / "pdrift.yaml", PDRIFT.replace("strict", "warn")),
                    tmp_path / "s").resolve_job_def("pdrift")
    assert _run(warn, instance, "eu").success and _run(warn, instance, "us").success
    write(workdir / "data" / "eu.csv", "id,amount\n1,10.5\n")
    job = defs_for(write(workdir / "pdrift.yaml", PDRIFT), tmp_path / "s").resolve_job_def(
        "pdrift")
    changed = _run(job, instance, "eu")
    assert not changed.success, "eu's change went unnoticed"
    assert "retyped amount: BIGINT -> DOUBLE" in failure_description(changed)


DDRIFT = """\
oml_version: "0.1.0"
name: ddrift
x-dagster:
  partitions: {daily: {start: "2026-03-27", end: "2026-04-03"}}
  steps:
    day: {schema: strict}
steps:
  - id: day
    component: filesystem.csv_extractor
    mode: read
    config: {path: data.csv}
"""


def test_strict_schema_compares_a_new_day_with_the_day_before(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """A self-review found strict silent for time partitions: a day is usually materialised
    once, so comparing with the same day's previous materialisation compared with nothing."""
    job = defs_for(write(workdir / "ddrift.yaml", DDRIFT), tmp_path / "s").resolve_job_def(
        "ddrift")
    write(workdir / "data.csv", "id,amount\n1,10\n")
    assert _run(job, instance, "2026-03-29").success
    write(workdir / "data.csv", "id,amount\n1,abc\n")
    changed = _run(job, instance, "2026-03-30")  # first materialisation of this day
    assert not changed.success
    assert "retyped amount: BIGINT -> VARCHAR" in failure_description(changed)
    assert "since the last materialisation of partition '2026-03-29' (partition '2026-03-30' " \
           "runs for the first time)" in failure_description(changed)
    write(workdir / "data.csv", "id,amount\n1,10\n")
    assert _run(job, instance, "2026-03-31").success  # as the latest (03-29) was
