"""A sealed SQL step on the lake: it reads its upstream tables (DuckLake's data files of its
own and its upstream sessions), and nothing else on disk: not a system file, not the data
files of another session in the same lake.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from osiris_dagster.runtime.session import Session
from osiris_dagster.runtime.workspace import StepWorkspace

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

    # a query calling a file reader is refused before anything runs (the parse check)
    query = (f"SELECT * FROM df_src WHERE (SELECT count(*) FROM read_parquet('{secret_file}'))"
             " > 0")
    (work / "refused.yaml").write_text(SEALED % json.dumps(query), encoding="utf-8")
    refused = spawn(osiris_run("refused.yaml"), work, lake.env, name="refused")
    assert refused.wait() == 2, refused.describe()
    assert_no_traceback(refused)
    assert "step 'passwd': refused: table function read_csv()" in refused.stderr
    assert "step 'neighbour': refused: table function read_parquet()" in refused.stderr

    # past the parse check, the step's sealed connection itself reaches no other file
    session = Session(lake.settings(), "sealed-ws").ensure()
    with StepWorkspace(session, pipeline_name="p", step_id="src", output_table="src") as ws:
        ws.create_output("SELECT 1 AS a UNION ALL SELECT 2")
    with StepWorkspace(session, pipeline_name="p", step_id="reads", output_table="reads") as ws:
        ws.add_upstream("src", "df_src", session.location, "src", ["input_df"])
        ws.seal_sql_access()
        for sql in (f"SELECT count(*) FROM read_parquet('{secret_file}')",
                    "SELECT * FROM read_csv('/etc/passwd')"):
            with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
                ws.con.execute(sql)
        ws.create_output("SELECT sum(a) AS s, count(*) AS n FROM df_src")
    lake.assert_tables("sealed-ws", ["reads", "src"])
    assert lake.rows("sealed-ws", "reads") == [(3, 2)]
    assert lake.rows(other_session, "secret") == [("s3cr3t",)] * SECRET_ROWS
