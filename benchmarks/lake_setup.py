"""What ``python -m benchmarks.lake`` runs: its pipelines, its configurations and their services.

Pipelines (OML, written into a scratch project with a one-line ``defs.py``):

* ``lake_bench_<size>``: ``source`` (generated rows, no input file: ``range(n)`` with hashed
  customers, categories, amounts, dates), two independent branches that both read it,
  ``revenue`` (GROUP BY customer with a ``count(DISTINCT)``) and ``jumps`` (a window ``lag``
  per customer ordered by date, then ``median`` per customer), and ``report`` joining the two.
  The branches take about as long as each other, so an executor that runs them at once could
  overlap them fully.
* ``lake_chain``: 4 tiny steps one after the other (100 rows): the fixed cost of a step.

Configurations: the default (duckdb file store, in-process executor) and the ducklake store
with its catalog in PostgreSQL and data on a local directory (in-process, multiprocess, the
same with Dagster's `spawn` start method instead of the product's fork server, Celery with 2
workers on RabbitMQ) or on S3 (SeaweedFS, multiprocess). Each has its own DAGSTER_HOME
(SQLite for in-process, as a single user has it; PostgreSQL where several processes write the
instance) and its own DuckLake metadata schema, dropped at the end. The services are the test
kits' (``tests/lake``), imported, so the benchmark starts them exactly as the tests do.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from benchmarks.run import child_env, human

PG_DSN = "dbname=test host=127.0.0.1 user=postgres"
BROKER = "amqp://guest:guest@127.0.0.1:5672//"
CELERY_WORKERS = 2
CHAIN_STEPS = 4
CHAIN_JOB = "lake_chain"
DEFAULT = "duckdb_inproc"
SQLITE_DAGSTER_YAML = "telemetry:\n  enabled: false\n"
CATEGORIES = ("books", "toys", "garden", "music", "food", "tools", "sport", "games", "baby",
              "home", "auto", "office")


@dataclass(frozen=True)
class Config:
    name: str
    store: str  # duckdb | ducklake
    executor: str  # in_process | multiprocess | celery
    data: str | None  # where the lake's files go: local | s3 (None: the duckdb store)
    start_method: str | None = None  # OSIRIS_MULTIPROCESS_START_METHOD (None: the product's)

    @property
    def label(self) -> str:
        where = {None: "duckdb file", "local": "ducklake, local dir", "s3": "ducklake, S3"}
        how = f" ({self.start_method})" if self.start_method else ""
        return f"{where[self.data]} + {self.executor}{how}"

    @property
    def instance(self) -> str:
        """The Dagster instance's storage: SQLite for one process, PostgreSQL for several."""
        return "sqlite" if self.executor == "in_process" else "postgres"


CONFIGS = (
    Config(DEFAULT, "duckdb", "in_process", None),
    Config("lake_inproc", "ducklake", "in_process", "local"),
    Config("lake_multiprocess", "ducklake", "multiprocess", "local"),
    # the same with Dagster's own start method: every step's process imports everything anew
    Config("lake_multiprocess_spawn", "ducklake", "multiprocess", "local", "spawn"),
    Config("lake_celery", "ducklake", "celery", "local"),
    Config("lake_s3_multiprocess", "ducklake", "multiprocess", "s3"),
)


# -- pipelines ------------------------------------------------------------------------------------
def _q(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar


def bench_job(rows: int) -> str:
    return f"lake_bench_{human(rows).lower().replace('.', '_')}"


def source_sql(rows: int) -> str:
    customers = max(rows // 10, 1)
    cats = ", ".join(f"'{c}'" for c in CATEGORIES)
    return (f"SELECT range AS id, hash(range) % {customers} AS customer, "
            f"[{cats}][1 + (range % {len(CATEGORIES)})::INTEGER] AS category, "
            "(hash(range * 7) % 100000) / 100.0 AS amount, 1 + range % 9 AS quantity, "
            "DATE '2024-01-01' + (range % 730)::INTEGER AS order_date "
            f"FROM range({rows})")


REVENUE_SQL = ("SELECT customer, count(*) AS orders, sum(amount * quantity) AS revenue, "
               "count(DISTINCT category) AS categories, max(order_date) AS last_order "
               "FROM input_df GROUP BY customer")
JUMPS_SQL = ("WITH d AS (SELECT customer, amount, amount - lag(amount) OVER (PARTITION BY "
             "customer ORDER BY order_date, id) AS jump FROM input_df) "
             "SELECT customer, max(jump) AS max_jump, median(amount) AS median_amount "
             "FROM d GROUP BY customer")
REPORT_SQL = ("SELECT r.customer, r.orders, r.revenue, r.revenue / r.orders AS avg_ticket, "
              "j.max_jump, j.median_amount FROM df_revenue r JOIN df_jumps j USING (customer)")
BRANCHES = ("revenue", "jumps")


def bench_pipeline(rows: int) -> str:
    return f"""# osiris-dagster benchmark: 2 branches and a join (written by benchmarks/lake.py)
oml_version: "0.1.0"
name: {bench_job(rows)}
steps:
  - id: source
    component: duckdb.processor
    mode: transform
    config:
      query: {_q(source_sql(rows))}
  - id: revenue
    component: duckdb.processor
    mode: transform
    needs: [source]
    config:
      query: {_q(REVENUE_SQL)}
  - id: jumps
    component: duckdb.processor
    mode: transform
    needs: [source]
    config:
      query: {_q(JUMPS_SQL)}
  - id: report
    component: duckdb.processor
    mode: transform
    needs: [revenue, jumps]
    config:
      query: {_q(REPORT_SQL)}
"""


def chain_pipeline() -> str:
    lines = ["# osiris-dagster benchmark: the fixed cost of a step (written by benchmarks/lake.py)",
             'oml_version: "0.1.0"', f"name: {CHAIN_JOB}", "steps:",
             "  - id: s1", "    component: duckdb.processor", "    mode: transform",
             "    config:", f"      query: {_q('SELECT range AS id FROM range(100)')}"]
    for i in range(2, CHAIN_STEPS + 1):
        lines += [f"  - id: s{i}", "    component: duckdb.processor", "    mode: transform",
                  "    config:", f"      query: {_q(f'SELECT *, {i} AS step_{i} FROM input_df')}"]
    return "\n".join(lines) + "\n"


def write_project(root: Path, sizes: list[int]) -> Path:
    """The scratch project every configuration runs: pipelines/ and defs.py."""
    pipelines = root / "pipelines"
    pipelines.mkdir(parents=True)
    for rows in sizes:
        (pipelines / f"{bench_job(rows)}.yaml").write_text(bench_pipeline(rows), encoding="utf-8")
    (pipelines / f"{CHAIN_JOB}.yaml").write_text(chain_pipeline(), encoding="utf-8")
    (root / "defs.py").write_text(
        "from osiris_dagster import build_definitions\n\n"
        f"defs = build_definitions(pipelines_dir={str(pipelines)!r})\n", encoding="utf-8")
    return root


# -- services -------------------------------------------------------------------------------------
@dataclass
class Prepared:
    """A configuration ready to run: its environment and where its Dagster instance lives."""

    config: Config
    env: dict[str, str]
    home: Path
    sessions: Path
    metadata_schema: str | None = None


@dataclass
class Services:
    project: Path
    prepared: dict[str, Prepared]
    workers: object | None = None  # tests.lake.celery_workers.Workers
    s3: object | None = None  # tests.lake.s3_server.S3Server
    schemas: list[str] = field(default_factory=list)


@contextlib.contextmanager
def services(root: Path, configs: list[Config], sizes: list[int],
             extra_env: dict[str, str] | None = None) -> Iterator[Services]:
    """Start what the configurations need (PostgreSQL Dagster instances, SeaweedFS, 2 Celery
    workers) and stop it all afterwards, dropping the DuckLake metadata schemas and the
    instances' databases. Fails loudly when a server is missing. ``extra_env`` (e.g.
    OSIRIS_DUCKDB_MEMORY_LIMIT) goes to every configuration, its workers included."""
    from tests.lake.celery_workers import celery_workers
    from tests.lake.dagster_home import postgres_dagster_home

    token = uuid.uuid4().hex[:8]
    project = write_project(root / "project", sizes)
    out = Services(project=project, prepared={})
    with contextlib.ExitStack() as stack:
        stack.callback(_drop_schemas, out.schemas)  # runs last: after the workers stopped
        if any(c.data == "s3" for c in configs):
            from tests.lake.s3_server import running_s3_server

            out.s3 = stack.enter_context(running_s3_server(root / "seaweedfs"))
        for config in configs:
            base = root / config.name
            home = base / "dagster_home"
            if config.instance == "postgres":
                stack.enter_context(postgres_dagster_home(home))
            else:
                home.mkdir(parents=True)
                (home / "dagster.yaml").write_text(SQLITE_DAGSTER_YAML, encoding="utf-8")
            sessions = base / "sessions"
            sessions.mkdir(parents=True, exist_ok=True)
            env = child_env({})
            for key in [k for k in env if k.startswith("AWS_")]:
                env.pop(key)
            env.update({"DAGSTER_HOME": str(home), "OSIRIS_SESSIONS_DIR": str(sessions),
                        "OSIRIS_SESSION_STORE": config.store, "OSIRIS_EXECUTOR": config.executor,
                        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
                        **(extra_env or {})})
            if config.start_method:
                env["OSIRIS_MULTIPROCESS_START_METHOD"] = config.start_method
            prepared = Prepared(config, env, home, sessions)
            if config.store == "ducklake":
                schema = f"osiris_bench_{token}_{config.name}"
                out.schemas.append(schema)
                prepared.metadata_schema = schema
                if config.data == "s3":
                    assert out.s3 is not None
                    env.update(out.s3.env)  # type: ignore[attr-defined]
                    data_path = f"s3://{out.s3.bucket}/{schema}/"  # type: ignore[attr-defined]
                else:
                    data_path = str(base / "lake") + "/"
                env.update({"OSIRIS_DUCKLAKE_CATALOG": f"postgres:{PG_DSN}",
                            "OSIRIS_DUCKLAKE_DATA_PATH": data_path,
                            "OSIRIS_DUCKLAKE_METADATA_SCHEMA": schema})
            if config.executor == "celery":
                queue = f"osiris-bench-{token}"
                env.update({"OSIRIS_CELERY_BROKER": BROKER, "OSIRIS_CELERY_QUEUE": queue})
                out.workers = stack.enter_context(celery_workers(
                    BROKER, env, base / "workers", count=CELERY_WORKERS, queue=queue,
                    remove_queue=True))
            out.prepared[config.name] = prepared
        yield out


def _drop_schemas(schemas: list[str]) -> None:
    if not schemas:
        return
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5) as pg:
        for schema in schemas:
            pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
