"""A sealed SQL step on the lake: it reads its upstream tables (DuckLake's data files of its
own and its upstream sessions), and nothing else on disk: not a system file, not the data
files of another session in the same lake.
"""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import Lake, Spawn, assert_no_traceback, osiris_run

SECRET_ROWS = 1000
OTHER = """\
oml_version: "0.1.0"
name: other
steps:
  - id: secret
    component: filesystem.csv_extractor
    mode: read
    config: {path: secret.csv}
"""

SEALED = """\
oml_version: "0.1.0"
name: sealed
steps:
  - id: src
    component: filesystem.csv_extractor
    mode: read
    config: {path: src.csv}
  - id: reads
    component: duckdb.processor
    mode: transform
    needs: [src]
    config: {query: "SELECT sum(a) AS s, count(*) AS n FROM df_src"}
  - id: passwd
    component: duckdb.processor
    mode: transform
    needs: [src]
    config: {query: "SELECT * FROM read_csv('/etc/passwd')"}
  - id: neighbour
    component: duckdb.processor
    mode: transform
    needs: [src]
    config: {query: %s}
"""


def test_sealed_sql_step_reads_its_upstreams_and_no_other_file(lake: Lake, spawn: Spawn,
                                                                tmp_path: Path) -> None:
    work = tmp_path / "seal"
    work.mkdir()
    # enough rows to be written as a Parquet file (DuckLake keeps a few rows in the catalog)
    (work / "secret.csv").write_text("token\n" + "s3cr3t\n" * SECRET_ROWS, encoding="utf-8")
    (work / "src.csv").write_text("a\n1\n2\n", encoding="utf-8")
    (work / "other.yaml").write_text(OTHER, encoding="utf-8")
    other = spawn(osiris_run("other.yaml"), work, lake.env, name="other")
    assert other.wait() == 0, other.describe()
    other_session = other.session_id()
    (secret_file,) = (lake.data_path / other_session / "secret").glob("*.parquet")

    query = (f"SELECT * FROM df_src WHERE (SELECT count(*) FROM read_parquet('{secret_file}'))"
             " > 0")
    (work / "sealed.yaml").write_text(SEALED % json.dumps(query), encoding="utf-8")
    run = spawn(osiris_run("sealed.yaml"), work, lake.env, name="sealed")
    assert run.wait() == 1, run.describe()
    assert_no_traceback(run)
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    by_step = {step: next((e for e in errors if f"step '{step}' failed" in e), "")
               for step in ("passwd", "neighbour")}
    assert "/etc/passwd" in by_step["passwd"], run.describe()
    assert "file system operations are disabled" in by_step["passwd"], run.describe()
    assert "refused by DuckDB" in by_step["neighbour"], run.describe()
    assert str(secret_file) in by_step["neighbour"], run.describe()
    assert len(errors) == 2, run.describe()

    session = run.session_id()
    lake.assert_tables(session, ["reads", "src"])
    assert lake.rows(session, "reads") == [(3, 2)]
    assert lake.rows(other_session, "secret") == [("s3cr3t",)] * SECRET_ROWS
