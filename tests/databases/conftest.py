"""Fixtures for the database driver tests: real MariaDB/MySQL and PostgreSQL on loopback.

The servers must be running (DEVELOPERS.md); a missing server FAILS these tests with a message
saying how to start it, it never skips them. Every test run works in its own uniquely named
MySQL database (plus a MySQL user with a password, so ``${ENV}`` references are exercised) and
PostgreSQL schema, dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from osiris_dagster.core.settings import Settings
from osiris_dagster.drivers.base import DriverResult, UpstreamTable
from osiris_dagster.oml.specs import get_spec
from osiris_dagster.runtime.session import Session
from osiris_dagster.runtime.workspace import StepWorkspace

from ..helpers import defs_for, write
from .postgrest_fake import PostgrestFake

MYSQL_HOST = os.environ.get("OSIRIS_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("OSIRIS_TEST_MYSQL_PORT", "3306"))
PG_HOST = os.environ.get("OSIRIS_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("OSIRIS_TEST_PG_PORT", "5432"))
PG_DATABASE = os.environ.get("OSIRIS_TEST_PG_DATABASE", "test")
PG_USER = os.environ.get("OSIRIS_TEST_PG_USER", "postgres")
PG_DSN = f"host={PG_HOST} port={PG_PORT} dbname={PG_DATABASE} user={PG_USER}"
REST_KEY = "test-service-role-key-0123456789abcdef"

DRIVERS = {
    "mysql.extractor": "osiris_dagster.drivers.mysql.extractor",
    "mysql.writer": "osiris_dagster.drivers.mysql.writer",
    "supabase.extractor": "osiris_dagster.drivers.postgres.extractor",
    "supabase.writer": "osiris_dagster.drivers.postgres.writer",
}

RUN_ID = uuid.uuid4().hex[:8]


# -- servers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MySQLTarget:
    database: str
    user: str
    password: str
    host: str = MYSQL_HOST
    port: int = MYSQL_PORT

    def connection(self, **extra: Any) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "database": self.database,
                "user": self.user, "password": self.password, **extra}

    def connect(self) -> Any:
        import pymysql

        return pymysql.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, database=self.database,
                               charset="utf8mb4", autocommit=True)

    def query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def execute(self, *statements: str) -> None:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                for s in statements:
                    cur.execute(s)
        finally:
            conn.close()


@pytest.fixture(scope="session")
def mysql() -> Iterator[MySQLTarget]:
    """A fresh database and a user with a password, both dropped after the run."""
    import pymysql

    try:
        admin = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root", password="",
                                autocommit=True, connect_timeout=5)
    except pymysql.Error as exc:
        pytest.fail(f"MariaDB/MySQL is not reachable at {MYSQL_HOST}:{MYSQL_PORT} as root ({exc}). "
                    "Start it: start-stop-daemon --start --oknodo --background --exec "
                    "/usr/sbin/mariadbd", pytrace=False)
    target = MySQLTarget(database=f"osiris_t_{RUN_ID}", user=f"osiris_u_{RUN_ID}",
                         password=f"Pw-{RUN_ID}-s3cr3t!")
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{target.database}` CHARACTER SET utf8mb4")
            cur.execute(f"CREATE USER '{target.user}'@'%%' IDENTIFIED BY %s", (target.password,))
            cur.execute(f"GRANT ALL ON `{target.database}`.* TO '{target.user}'@'%'")
        yield target
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{target.database}`")
            cur.execute(f"DROP USER IF EXISTS '{target.user}'@'%'")
        admin.close()


@dataclass(frozen=True)
class PgTarget:
    schema: str
    dsn: str = PG_DSN

    def connection(self, **extra: Any) -> dict[str, Any]:
        return {"host": PG_HOST, "port": PG_PORT, "database": PG_DATABASE, "user": PG_USER,
                "password": "unused-with-trust-auth", **extra}

    def query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SET TimeZone = 'UTC'")
            return list(conn.execute(sql, args).fetchall())

    def execute(self, *statements: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for s in statements:
                conn.execute(s)

    def table(self, name: str) -> str:
        return f'"{self.schema}"."{name}"'


@pytest.fixture(scope="session")
def pg() -> Iterator[PgTarget]:
    """A fresh PostgreSQL schema, dropped (CASCADE) after the run."""
    import psycopg

    try:
        admin = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL is not reachable ({PG_DSN}): {exc}. Start it: "
                    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
                    pytrace=False)
    target = PgTarget(schema=f"osiris_t_{RUN_ID}")
    try:
        admin.execute(f'CREATE SCHEMA "{target.schema}"')
        yield target
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{target.schema}" CASCADE')
        admin.close()


@pytest.fixture
def rest(pg: PgTarget) -> Iterator[PostgrestFake]:
    with PostgrestFake(PG_DSN, REST_KEY) as fake:
        yield fake


# -- running drivers directly ---------------------------------------------------------------------


@dataclass
class Extracted:
    result: DriverResult
    types: dict[str, str]
    rows: list[tuple[Any, ...]]
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return list(self.types)


class Harness:
    """Runs a driver the way the runner does (spec defaults applied), against a real session."""

    def __init__(self, root: Path) -> None:
        self.session = Session(Settings.from_env(root / "sessions"), "s1").ensure()

    def upstream(self, select_sql: str, params: Sequence[Any] | None = None) -> None:
        with StepWorkspace(self.session, pipeline_name="p", step_id="up",
                           output_table="up") as ws:
            ws.create_output(select_sql, params)

    def _config(self, component: str, config: Mapping[str, Any]) -> dict[str, Any]:
        spec = get_spec(component)
        assert spec is not None
        return {**spec.defaults(), **config}

    def extract(self, component: str, connection: Mapping[str, Any], **config: Any) -> Extracted:
        from osiris_dagster.drivers import get_driver

        driver = get_driver(component)
        assert driver is not None
        before = len(self.session.read_events())
        with StepWorkspace(self.session, pipeline_name="p", step_id="x", output_table="x",
                           connection=connection) as ws:
            result = driver(ws, self._config(component, config), [])
            types = dict(ws.output_columns())
            rows = ws.con.execute(f"SELECT * FROM {ws.output_relation}").fetchall()
        return Extracted(result, types, rows, self.session.read_events()[before:])

    def write(self, component: str, connection: Mapping[str, Any], **config: Any
              ) -> DriverResult:
        from osiris_dagster.drivers import get_driver

        driver = get_driver(component)
        assert driver is not None
        with StepWorkspace(self.session, pipeline_name="p", step_id="w", output_table="w",
                           connection=connection) as ws:
            up: UpstreamTable = ws.add_upstream("up", "df_up", self.session.db_path, "up",
                                                ["input_df"])
            return driver(ws, self._config(component, config), [up])

    def artifacts(self, step_id: str = "w") -> Path:
        return self.session.artifacts_dir(step_id)

    def events(self) -> list[dict[str, Any]]:
        return self.session.read_events()

    def metrics(self) -> list[dict[str, Any]]:
        import json

        path = self.session.metrics_path
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


# -- running pipelines through Dagster ------------------------------------------------------------

PipelineRun = Callable[..., tuple[dg.ExecuteInProcessResult, Path]]


@pytest.fixture
def run_pipeline(tmp_path: Path, instance: dg.DagsterInstance) -> PipelineRun:
    """Write a pipeline and an osiris_connections.yaml, run every asset in one Dagster run;
    returns the result and the session directory."""
    from osiris_dagster.core.naming import dagster_name

    def run(pipeline_yaml: str, connections_yaml: str, name: str,
            file_name: str = "pipeline.yaml") -> tuple[dg.ExecuteInProcessResult, Path]:
        pipeline = write(tmp_path / "pipelines" / file_name, pipeline_yaml)
        connections = write(tmp_path / "osiris_connections.yaml", connections_yaml)
        sessions = tmp_path / "sessions"
        defs = defs_for(pipeline, sessions, connections)
        result = defs.resolve_job_def(dagster_name(name)).execute_in_process(
            instance=instance, raise_on_error=False)
        return result, sessions / result.run_id

    return run
