"""A file name that a sensor passes into params is data: dropped into a watched folder, a name
written like SQL reaches the processor's query as one string value and runs nothing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg

from osiris_dagster import build_definitions

from .helpers import failure_description, write

PIPELINE = """\
oml_version: "0.1.0"
name: named-drops
params:
  input_path: {default: none.csv}
  input_name: {default: none.csv}
x-dagster:
  sensor: {watch: "incoming/*.csv", param: input_path, name_param: input_name}
steps:
  - id: load
    component: filesystem.csv_extractor
    mode: read
    config: {path: "${params.input_path}"}
  - id: label
    component: duckdb.processor
    mode: transform
    config:
      query: "SELECT ${params.input_name} AS source, '${params.input_name}' AS quoted, count(*) AS n FROM input_df"
  - id: save
    component: filesystem.csv_writer
    mode: write
    config: {path: out/result.csv}
"""  # noqa: E501

NAMES = [
    "x' AS source, 1 AS n; COPY (SELECT 1) TO 'pwned.csv'; SELECT '1.csv",
    "O'Brien's \"list\" -- 2026.csv",
]


def test_sql_looking_file_names_are_values(workdir: Path, tmp_path: Path,
                                           instance: dg.DagsterInstance) -> None:
    import csv

    defs = build_definitions([write(workdir / "named.yaml", PIPELINE)],
                             sessions_dir=str(tmp_path / "s"))
    sensor = defs.get_sensor_def("named_drops_sensor")
    for name in NAMES:
        src = workdir / "incoming" / name
        src.parent.mkdir(exist_ok=True)
        src.write_text("v\n1\n2\n", encoding="utf-8")
        os.utime(src, (time.time() - 60, time.time() - 60))
        requests = sensor.evaluate_tick(dg.build_sensor_context(
            instance=instance, definitions=defs)).run_requests
        (request,) = requests or []  # the previous file is gone: only this one
        result = defs.resolve_job_def("named_drops").execute_in_process(
            instance=instance, run_config=request.run_config, tags=request.tags,
            raise_on_error=False)
        assert result.success, failure_description(result)
        with open(workdir / "out" / "result.csv", newline="", encoding="utf-8") as fh:
            assert list(csv.DictReader(fh)) == [{"source": name, "quoted": name, "n": "2"}]
        assert not list(workdir.rglob("pwned.csv"))
        src.unlink()


def test_a_name_that_is_not_utf8_is_skipped_and_named(workdir: Path, tmp_path: Path,
                                                      instance: dg.DagsterInstance) -> None:
    """Such a name cannot be a parameter, a tag or a run key: it is named in the skip reason,
    and the other files run."""
    defs = build_definitions([write(workdir / "named.yaml", PIPELINE)],
                             sessions_dir=str(tmp_path / "s"))
    sensor = defs.get_sensor_def("named_drops_sensor")
    inbox = workdir / "incoming"
    inbox.mkdir()
    with open(os.path.join(os.fsencode(inbox), b"lat\xe9.csv"), "wb") as fh:
        fh.write(b"v\n1\n")
    (inbox / "plain.csv").write_text("v\n1\n2\n", encoding="utf-8")
    for name in os.listdir(os.fsencode(inbox)):
        os.utime(os.path.join(os.fsencode(inbox), name), (time.time() - 60, time.time() - 60))
    first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert [r.tags["osiris/file"] for r in first.run_requests or []] == \
        [str(inbox / "plain.csv")]
    later = sensor.evaluate_tick(dg.build_sensor_context(
        instance=instance, cursor=first.cursor, definitions=defs))
    assert not later.run_requests
    assert "b'lat\\xe9.csv' (its name is not valid UTF-8)" in (later.skip_message or "")
