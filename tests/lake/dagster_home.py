"""A Dagster instance in PostgreSQL for tests where several processes (Celery workers) share it.

One throw-away database per test on the machine's PostgreSQL (127.0.0.1:5432, user postgres,
trust auth), dropped afterwards. The scheme is `postgresql+psycopg2`: SQLAlchemy 2.1 picks
psycopg 3 for a bare `postgresql://` when it is installed (osiris-dagster depends on it), while
dagster-postgres is written for psycopg2 (it brings psycopg2-binary itself).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
ADMIN_DSN = f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=test"

DAGSTER_YAML = """\
telemetry:
  enabled: false
storage:
  postgres:
    postgres_db:
      username: {user}
      password: ""
      hostname: {host}
      port: {port}
      db_name: {db}
      scheme: postgresql+psycopg2
"""


@contextlib.contextmanager
def postgres_dagster_home(home: Path) -> Iterator[Path]:
    """DAGSTER_HOME at `home` whose run, event-log and schedule storage is a fresh PostgreSQL
    database; fails loudly when PostgreSQL is not there."""
    db = f"osiris_dagster_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5) as con:
        con.execute(f'CREATE DATABASE "{db}"')
    try:
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text(
            DAGSTER_YAML.format(user=PG_USER, host=PG_HOST, port=PG_PORT, db=db))
        _create_instance_tables(home)
        yield home
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _create_instance_tables(home: Path) -> None:
    """Open the fresh instance once, which creates its tables: Celery workers starting at the
    same moment would each create them, and one fails (`DuplicateObject: type
    "alembic_version" already exists`)."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)):
        pass
