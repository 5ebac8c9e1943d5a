"""A pipeline on the ducklake store with its data on S3 (a real SeaweedFS checking signatures),
as a user runs it: `osiris-dagster run` with the standard AWS variables. Every step's table lands
in the session schema with its files in the bucket, the sealed SQL step writes there, and
`sessions show` on another "machine" (another sessions directory) reads the whole session."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import psycopg
import pytest

from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime.stores import store_for

from ..helpers import write
from .s3_server import S3Server, s3_server  # noqa: F401 - the fixture

PG_DSN = "dbname=test host=127.0.0.1 user=postgres"
PIPELINE = """\
oml_version: "0.1.0"
name: s3-numbers
steps:
  - id: numbers
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT range AS n, 'n' || range AS label FROM range(200000)"}
  - id: evens
    component: duckdb.processor
    mode: transform
    needs: [numbers]
    config: {query: "SELECT count(*) AS c, sum(n) AS s FROM input_df WHERE n % 2 = 0"}
"""


@pytest.fixture
def lake_env(s3_server: S3Server, tmp_path: Path) -> Iterator[dict[str, str]]:  # noqa: F811
    schema = f"s3p_{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OSIRIS_", "AWS_")) and k != "DAGSTER_HOME"}
    env.update(s3_server.env)
    env.update({"OSIRIS_SESSION_STORE": "ducklake",
                "OSIRIS_DUCKLAKE_CATALOG": f"postgres:{PG_DSN}",
                "OSIRIS_DUCKLAKE_DATA_PATH": f"s3://{s3_server.bucket}/{schema}/",
                "OSIRIS_DUCKLAKE_METADATA_SCHEMA": schema,
                "OSIRIS_SESSIONS_DIR": str(tmp_path / "machine-a")})
    yield env
    with psycopg.connect(PG_DSN, autocommit=True) as pg:
        pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _cli(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "osiris_dagster.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_pipeline_on_s3(lake_env: dict[str, str], s3_server: S3Server,  # noqa: F811
                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = write(tmp_path / "numbers.yaml", PIPELINE)
    out = _cli(lake_env, "run", str(pipeline), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    session_id = next(line.split()[1] for line in out.stdout.splitlines()
                      if line.startswith("session "))

    for key, value in lake_env.items():
        monkeypatch.setenv(key, value)
    store = store_for(Settings.from_env())
    con = duckdb.connect()
    prefix = store.attach_reader(con, f"ducklake:{session_id}", "x")
    assert con.execute(f"SELECT c, s FROM {prefix}.evens").fetchone() == \
        (100000, sum(range(0, 200000, 2)))
    tables = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = ? AND NOT "
        "starts_with(table_name, '__osiris_')", [session_id]).fetchall()}
    con.close()
    assert tables == {"numbers", "evens"}

    schema = lake_env["OSIRIS_DUCKLAKE_METADATA_SCHEMA"]
    keys = s3_server.client().list_keys(s3_server.bucket, f"{schema}/{session_id}/numbers/")
    assert keys and all(k.endswith(".parquet") for k in keys)

    elsewhere = {**lake_env, "OSIRIS_SESSIONS_DIR": str(tmp_path / "machine-b")}
    shown = _cli(elsewhere, "sessions", "show", session_id, cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "run_end" in shown.stdout and "step_complete" in shown.stdout
