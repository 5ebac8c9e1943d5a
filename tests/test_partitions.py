"""x-dagster.partitions: daily, static and dynamic (files) partitions."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest

from osiris_dagster.oml import validate_pipeline

from .helpers import defs_for, failure_description, materialisations, table_rows, write

DAILY = """\
oml_version: "0.1.0"
name: daily
x-dagster:
  partitions: {daily: {start: "2026-01-01"}}
  schedule: {cron: "0 3 * * *"}
steps:
  - id: day
    component: duckdb.processor
    mode: transform
    config:
      query: >
        SELECT '${params.partition_key}' AS k, DATE '${params.partition_start}' AS s,
               DATE '${params.partition_end}' AS e
  - id: copy
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT * FROM input_df"}
"""


def _preview(result: dg.ExecuteInProcessResult, key: str) -> list[dict[str, object]]:
    return table_rows(materialisations(result)[key]["preview"])


def test_daily_partitions_fill_params_and_load_per_partition(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    defs = defs_for(write(workdir / "daily.yaml", DAILY), tmp_path / "s")
    job = defs.resolve_job_def("daily")
    first = job.execute_in_process(instance=instance, partition_key="2026-01-03")
    assert first.success, failure_description(first)
    assert _preview(first, "daily/copy") == [{"k": "2026-01-03", "s": "2026-01-03",
                                               "e": "2026-01-04"}]
    job.execute_in_process(instance=instance, partition_key="2026-01-05")
    # only the downstream asset, for one partition: its upstream comes from that partition's run
    again = job.execute_in_process(instance=instance, partition_key="2026-01-03",
                                   asset_selection=[dg.AssetKey(["daily", "copy"])])
    assert again.success, failure_description(again)
    assert _preview(again, "daily/copy")[0]["k"] == "2026-01-03"
    missing = job.execute_in_process(instance=instance, partition_key="2026-01-09",
                                     asset_selection=[dg.AssetKey(["daily", "copy"])],
                                     raise_on_error=False)
    assert not missing.success
    assert "partition '2026-01-09'" in failure_description(missing)
    assert first.run_id != again.run_id  # one session per partition run

    sched = defs.get_schedule_def("daily_schedule")
    ctx = dg.build_schedule_context(instance=instance,
                                    scheduled_execution_time=datetime(2026, 2, 10, 3, 0),
                                    repository_def=defs.get_repository_def())
    (request,) = sched.evaluate_tick(ctx).run_requests
    assert request.partition_key == "2026-02-09"


def test_static_partitions(workdir: Path, tmp_path: Path,
                           instance: dg.DagsterInstance) -> None:
    text = DAILY.replace('{daily: {start: "2026-01-01"}}', "{static: [eu, us]}") \
        .replace('  schedule: {cron: "0 3 * * *"}\n', "") \
        .replace(", DATE '${params.partition_start}' AS s,\n               "
                 "DATE '${params.partition_end}' AS e", "")
    defs = defs_for(write(workdir / "static.yaml", text), tmp_path / "s")
    spec = next(iter(defs.resolve_all_asset_specs()))
    assert spec.partitions_def.get_partition_keys() == ["eu", "us"]
    result = defs.resolve_job_def("daily").execute_in_process(instance=instance,
                                                             partition_key="us")
    assert result.success and _preview(result, "daily/day") == [{"k": "us"}]


def test_partition_equal_to_the_param_default_beats_env(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The partition's key is given, even when it equals the OML default of `partition_key`
    (before, such a value counted as not given, and OSIRIS_PARAM_PARTITION_KEY ran instead)."""
    text = DAILY.replace('{daily: {start: "2026-01-01"}}', "{static: [eu, us]}") \
        .replace('  schedule: {cron: "0 3 * * *"}\n', "") \
        .replace(", DATE '${params.partition_start}' AS s,\n               "
                 "DATE '${params.partition_end}' AS e", "") \
        .replace("steps:\n", "params: {partition_key: {default: eu}}\nsteps:\n", 1)
    monkeypatch.setenv("OSIRIS_PARAM_PARTITION_KEY", "us")
    defs = defs_for(write(workdir / "static.yaml", text), tmp_path / "s")
    result = defs.resolve_job_def("daily").execute_in_process(instance=instance,
                                                             partition_key="eu")
    assert result.success, failure_description(result)
    assert _preview(result, "daily/day") == [{"k": "eu"}]


def test_dynamic_file_partitions_fed_by_the_sensor(workdir: Path, tmp_path: Path,
                                                   instance: dg.DagsterInstance) -> None:
    text = """\
oml_version: "0.1.0"
name: files
params: {input_path: {default: none.csv}}
x-dagster:
  partitions: {dynamic: files}
  sensor: {watch: "inbox/*.csv", param: input_path, settle_seconds: 0}
steps:
  - id: load
    component: filesystem.csv_extractor
    mode: read
    config: {path: "${params.partition_key}"}
"""
    defs = defs_for(write(workdir / "files.yaml", text), tmp_path / "s")
    inbox = workdir / "inbox"
    inbox.mkdir()
    for name, rows in (("a.csv", 2), ("b c.csv", 3)):
        (inbox / name).write_text("x\n" + "1\n" * rows)
        os.utime(inbox / name, (time.time() - 60, time.time() - 60))
    sensor = defs.get_sensor_def("files_sensor")
    result = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
    assert [r.partition_key for r in result.run_requests] == [str(inbox / "a.csv"),
                                                             str(inbox / "b c.csv")]
    (add,) = result.dynamic_partitions_requests
    instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
    job = defs.resolve_job_def("files")
    for request in result.run_requests:
        run = job.execute_in_process(instance=instance, partition_key=request.partition_key,
                                     run_config=request.run_config, tags=request.tags)
        assert run.success, failure_description(run)
    rows = sorted(ev.event_specific_data.materialization.metadata["dagster/row_count"].value
                  for ev in instance.fetch_materializations(
                      dg.AssetKey(["files", "load"]), limit=10).records
                  for ev in [ev.event_log_entry.dagster_event])
    assert rows == [2, 3]


@pytest.mark.parametrize("block, message", [
    ("partitions: {daily: {start: soon}}", "must be a date"),
    ("partitions: {static: []}", "non-empty list"),
    ("partitions: {yearly: {start: '2026-01-01'}}", "must be one of"),
    ("partitions: {static: [a]}\n  schedule: {cron: '0 1 * * *'}", "needs time partitions"),
])
def test_invalid_partitions(tmp_path: Path, block: str, message: str) -> None:
    text = ("oml_version: \"0.1.0\"\nname: x\nx-dagster:\n  " + block + "\nsteps:\n  - {id: a, "
            "component: duckdb.processor, mode: transform, config: {query: 'SELECT 1'}}\n")
    result = validate_pipeline(write(tmp_path / "x.yaml", text))
    assert result.errors and message in str(result.errors[0]), [str(d) for d in result.errors]


# -- hourly partitions: the start forms the README gives load as validated ----------------------
HOURLY = """\
oml_version: "0.1.0"
name: hr
x-dagster:
  partitions: {{hourly: {{start: {start}}}}}
steps:
  - id: q
    component: duckdb.processor
    mode: transform
    config:
      query: >
        SELECT '${{params.partition_key}}' AS k, '${{params.partition_start}}' AS s,
               '${{params.partition_end}}' AS e
"""


@pytest.mark.parametrize("start", ['"2026-10-24"', '"2026-10-24-00:00"', '"2026-10-24 00:00"',
                                   '"2026-10-24T00:00:00"', "2026-10-24", "2026-10-24 00:00:00"])
def test_hourly_partitions_load_from_a_date_or_an_hour(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance, start: str) -> None:
    pipeline = write(workdir / "hr.yaml", HOURLY.format(start=start))
    assert not validate_pipeline(pipeline).errors
    defs = defs_for(pipeline, tmp_path / "s")
    (spec,) = defs.resolve_all_asset_specs()
    assert spec.key.path[0] == "hr", spec.description  # not osiris_invalid
    assert spec.partitions_def.get_first_partition_key() == "2026-10-24-00:00"
    result = defs.resolve_job_def("hr").execute_in_process(instance=instance,
                                                          partition_key="2026-10-24-05:00")
    assert result.success, failure_description(result)
    assert _preview(result, "hr/q") == [{"k": "2026-10-24-05:00", "s": "2026-10-24T05:00:00",
                                         "e": "2026-10-24T06:00:00"}]


@pytest.mark.parametrize("block, message", [
    ("partitions: {hourly: {start: '2026-10-24 00:30'}}", "must be a date YYYY-MM-DD or an hour"),
    ("partitions: {hourly: {start: '2026-10-24 24:00'}}", "must be a date YYYY-MM-DD or an hour"),
    ("partitions: {daily: {start: '2026-10-24 05:00'}}", "must be a date YYYY-MM-DD"),
    ("partitions: {daily: {start: '2026-10-24xyz'}}", "must be a date YYYY-MM-DD"),
    ("partitions: {weekly: {start: '2026-10-24', end: '2026-13-01'}}", "end must be a date"),
    ("partitions: {daily: {start: '2026-01-01'}}\n  sensor: {watch: 'in/*.csv', param: p}",
     "x-dagster.sensor needs partitions {dynamic: <name>}"),
    ("partitions: {hourly: {start: '2026-01-01'}}\n  sensor: {watch: 'in/*.csv', param: p}",
     "these partitions are hourly"),
    ("partitions: {static: [eu, us]}\n  sensor: {watch: 'in/*.csv', param: p}",
     "these partitions are static"),
    ("partitions: {dynamic: files}\n  sensor: [{watch: 'a/*.csv', param: p}, "
     "{watch: 'b/*.csv', param: q}]", "must set the same `param`"),
])
def test_partitions_validate_refuses_what_would_not_load_or_run(
        tmp_path: Path, block: str, message: str) -> None:
    text = ("oml_version: \"0.1.0\"\nname: x\nparams: {p: a.csv, q: b.csv}\nx-dagster:\n  "
            + block + "\nsteps:\n  - {id: a, component: duckdb.processor, mode: transform, "
            "config: {query: 'SELECT 1'}}\n")
    result = validate_pipeline(write(tmp_path / "x.yaml", text))
    assert [str(d) for d in result.errors] and message in str(result.errors[0]), \
        [str(d) for d in result.errors]


def test_a_daily_start_at_midnight_still_validates(tmp_path: Path) -> None:
    text = ("oml_version: \"0.1.0\"\nname: x\nx-dagster:\n  partitions: {daily: {start: "
            "'2026-01-01T00:00:00', end: 2026-02-01}}\nsteps:\n  - {id: a, component: "
            "duckdb.processor, mode: transform, config: {query: 'SELECT 1'}}\n")
    result = validate_pipeline(write(tmp_path / "x.yaml", text))
    assert not result.errors, [str(d) for d in result.errors]
    assert result.pipeline is not None
    assert (result.pipeline.dagster.partitions.start, result.pipeline.dagster.partitions.end) \
        == ("2026-01-01", "2026-02-01")


# -- a dynamic (per-file) partition's own run reads that file ------------------------------------
PER_FILE = """\
oml_version: "0.1.0"
name: files
params:
  input_path: {default: data/movies.csv}
  input_name: {default: movies.csv}
x-dagster:
  partitions: {dynamic: files}
  sensor: {watch: "incoming/*.csv", param: input_path, name_param: input_name,
           settle_seconds: 0}
steps:
  - id: extract
    component: filesystem.csv_extractor
    mode: read
    config: {path: "${params.input_path}"}
  - id: summary
    component: duckdb.processor
    mode: transform
    config:
      query: SELECT ${params.input_name} AS name, count(*) AS n FROM input_df
"""


def test_backfilling_a_file_partition_reads_that_file_not_the_default(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    defs = defs_for(write(workdir / "files.yaml", PER_FILE), tmp_path / "s")
    (workdir / "incoming").mkdir()
    small = workdir / "incoming" / "small.csv"
    small.write_text("movie_id,title\n1,a\n2,b\n3,c\n")
    os.utime(small, (time.time() - 60, time.time() - 60))
    sensor = defs.get_sensor_def("files_sensor")
    (request,) = sensor(dg.build_sensor_context(instance=instance, definitions=defs)).run_requests
    instance.add_dynamic_partitions("files", [request.partition_key])
    job = defs.resolve_job_def("files")
    first = job.execute_in_process(instance=instance, partition_key=request.partition_key,
                                   run_config=request.run_config, tags=request.tags)
    assert first.success, failure_description(first)
    # a backfill / re-materialisation from the UI: the partition key only, no run config
    again = job.execute_in_process(instance=instance, partition_key=request.partition_key)
    assert again.success, failure_description(again)
    for result in (first, again):
        assert _preview(result, "files/summary") == [{"name": "small.csv", "n": 3}]
        assert materialisations(result)["files/extract"]["dagster/row_count"].value == 3


def test_a_run_without_a_partition_is_refused_before_any_step_runs(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """`dagster job execute` (or the launchpad with no partition picked) ran the first step,
    recording an unpartitioned materialisation of a partitioned asset, and the next step failed
    inside Dagster ("Cannot access partition_key for a non-partitioned run")."""
    defs = defs_for(write(workdir / "daily.yaml", DAILY), tmp_path / "s")
    result = defs.resolve_job_def("daily").execute_in_process(instance=instance,
                                                              raise_on_error=False)
    assert not result.success
    assert materialisations(result) == {}
    message = failure_description(result)
    assert "has daily partitions, so a run is for one partition" in message, message
    assert "dagster/partition=<key>" in message
    assert "Cannot access partition_key" not in message
