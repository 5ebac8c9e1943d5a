"""Incremental state with the ducklake store lives where every worker sees it: a second run on
another machine (another sessions directory, nothing shared but the lake) continues from the
first run's high-water mark, and no record in the lake holds the API key."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import psycopg
import pytest

from osiris_dagster import build_definitions
from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime.stores import store_for

from ..apis.conftest import FakePostHog, _api_http_server, api_server, posthog  # noqa: F401
from ..apis.test_posthog import PIPELINE, T0, event
from ..helpers import failure_description, materialisations, run_job, write

CATALOG = "postgres:dbname=test host=127.0.0.1 user=postgres"


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[dict[str, str]]:
    schema = f"lake_state_{uuid.uuid4().hex[:10]}"
    settings = {"session_store": "ducklake", "ducklake_catalog": CATALOG,
                "ducklake_data_path": str(tmp_path / "lake"),
                "ducklake_metadata_schema": schema}
    yield settings
    with psycopg.connect("dbname=test host=127.0.0.1 user=postgres", autocommit=True) as pg:
        pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _lake_text(lake: dict[str, str]) -> str:
    """Every record and state file of the lake, as one text (for leak scans)."""
    store = store_for(Settings.from_env("unused", **lake))
    con = duckdb.connect()
    store.attach_reader(con, "ducklake:x", "x")
    parts = []
    for schema, table in con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = "
            "'osiris_lake' AND (starts_with(table_name, '__osiris_') OR table_name = 'files')"
    ).fetchall():
        parts += [str(r) for r in con.execute(
            f'SELECT * FROM osiris_lake."{schema}"."{table}"').fetchall()]
    con.close()
    return "\n".join(parts)


def test_state_is_shared_by_workers_of_one_lake(posthog: FakePostHog,  # noqa: F811
                                                 tmp_path: Path, lake: dict[str, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTHOG_KEY", posthog.api_key)
    posthog.add_events(*[event(i, T0 + timedelta(seconds=i), name="click")
                         for i in range(30)])
    conns = write(tmp_path / "osiris_connections.yaml", f"""\
version: 1
connections:
  posthog:
    main:
      default: true
      api_key: ${{POSTHOG_KEY}}
      project_id: "4242"
      region: self_hosted
      custom_base_url: {posthog.base_url}
""")
    pipeline = write(tmp_path / "posthog.yaml", PIPELINE)

    def run_on(machine: str) -> dg.ExecuteInProcessResult:
        defs = build_definitions([pipeline], sessions_dir=str(tmp_path / machine),
                                 connections_file=str(conns), **lake)
        with dg.DagsterInstance.ephemeral() as instance:
            result = run_job(defs, "posthog_demo", instance)
        assert result.success, failure_description(result)
        return result

    first = run_on("machine-a")
    assert materialisations(first)["posthog-demo/events"]["dagster/row_count"].value == 30
    assert not (tmp_path / "machine-a" / ".state").exists()  # not on a worker's disk

    posthog.add_events(event(100, T0 + timedelta(hours=1), name="click"))
    second = run_on("machine-b")
    assert materialisations(second)["posthog-demo/events"]["dagster/row_count"].value == 1

    text = _lake_text(lake)
    assert "posthog_state.json" in text and "step_complete" in text
    assert posthog.api_key not in text
