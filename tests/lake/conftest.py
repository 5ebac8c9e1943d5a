"""Fixtures for the ducklake store's end-to-end tests.

Each test gets a lake of its own (a fresh PostgreSQL schema for DuckLake's metadata, dropped
afterwards, and a data directory under tmp_path), runs the real `osiris-dagster` or `dagster`
command lines in subprocesses (own process groups, output in files so a chatty run never blocks
on a full pipe while the test watches it), and checks the result through a fresh DuckDB
connection that attaches the same lake the way the product does.

These tests need PostgreSQL on 127.0.0.1:5432 and DuckDB's extension wheels for the installed
DuckDB (the lake virtualenv); without them every test fails at setup saying what is missing:
they never skip.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime.stores import store_for
from osiris_dagster.runtime.stores.ducklake import LAKE_ALIAS
from osiris_dagster.runtime.stores.ducklake_records import (
    META_TABLE_PREFIX,
    RECORDS_TABLE,
    STATE_SCHEMA,
)
from osiris_dagster.runtime.stores.extensions import WHEEL_PACKAGES
from osiris_dagster.runtime.workspace import TMP_PREFIX

from ..reliability.conftest import clean_env

PY = sys.executable
PG_DSN = "dbname=test host=127.0.0.1 user=postgres"
CATALOG = f"postgres:{PG_DSN}"
NEEDED_EXTENSIONS = ("ducklake", "postgres_scanner")
RUN_TIMEOUT = 240.0  # one subprocess run; far above what any of these takes (a few seconds)

DEFS = """\
from osiris_dagster import build_definitions

defs = build_definitions(["pipe.yaml"])
"""


# -- requirements: fail loudly, never skip ---------------------------------------------------
@pytest.fixture(scope="session")
def lake_requirements() -> None:
    """PostgreSQL and the extension wheels are there, or the test fails saying what is not."""
    problems = []
    for name in NEEDED_EXTENSIONS:
        package = WHEEL_PACKAGES[name]
        spec = importlib.util.find_spec(package)
        wheel_file = None
        if spec is not None and spec.submodule_search_locations:
            wheel_file = (Path(next(iter(spec.submodule_search_locations))) / "extensions" /
                          f"v{duckdb.__version__}" / f"{name}.duckdb_extension")
        if wheel_file is None or not wheel_file.exists():
            problems.append(f"DuckDB extension '{name}' for DuckDB {duckdb.__version__}: "
                            f"pip install {package.replace('_', '-')}=={duckdb.__version__}")
    try:
        import psycopg

        with psycopg.connect(PG_DSN, connect_timeout=5) as pg:
            pg.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is the same problem
        problems.append(f"PostgreSQL at '{PG_DSN}': {type(exc).__name__}: {exc}")
    if problems:
        pytest.fail("the lake tests need (run them in the lake virtualenv, with PostgreSQL "
                    "started):\n  " + "\n  ".join(problems), pytrace=False)


# -- one lake per test -------------------------------------------------------------------------
@dataclass
class Lake:
    """A DuckLake of one test: catalog schema in PostgreSQL, data and sessions under tmp."""

    root: Path
    metadata_schema: str

    @property
    def sessions(self) -> Path:
        return self.root / "sessions"

    @property
    def data_path(self) -> Path:
        return self.root / "lake"

    @property
    def env(self) -> dict[str, str]:
        return {"OSIRIS_SESSION_STORE": "ducklake", "OSIRIS_DUCKLAKE_CATALOG": CATALOG,
                "OSIRIS_DUCKLAKE_DATA_PATH": str(self.data_path),
                "OSIRIS_DUCKLAKE_METADATA_SCHEMA": self.metadata_schema,
                "OSIRIS_SESSIONS_DIR": str(self.sessions)}

    def settings(self) -> Settings:
        return Settings.from_env(self.sessions, session_store="ducklake",
                                 ducklake_catalog=CATALOG,
                                 ducklake_data_path=str(self.data_path),
                                 ducklake_metadata_schema=self.metadata_schema)

    @contextlib.contextmanager
    def reader(self, session_id: str = "any") -> Iterator[LakeReader]:
        """A fresh in-memory DuckDB with the lake attached as the product attaches it (kept
        open for the block: a test that polls the lake pays for one ATTACH)."""
        con = duckdb.connect(":memory:")
        try:
            prefix = store_for(self.settings()).attach_reader(con, f"ducklake:{session_id}", "x")
            yield LakeReader(con, prefix)
        finally:
            con.close()

    def tables(self, session_id: str) -> list[str]:
        with self.reader() as reader:
            return reader.tables(session_id)

    def schemas(self) -> list[str]:
        with self.reader() as reader:
            return reader.schemas()

    def events(self, session_id: str) -> list[dict[str, Any]]:
        with self.reader() as reader:
            return reader.events(session_id)

    def rows(self, session_id: str, table: str) -> list[tuple[Any, ...]]:
        """The table's rows, sorted (a set of rows, whatever order they were written in)."""
        with self.reader(session_id) as reader:
            return sorted(reader.con.execute(
                f'SELECT * FROM {LAKE_ALIAS}."{session_id}"."{table}"').fetchall())

    def assert_tables(self, session_id: str, expected: Sequence[str]) -> None:
        """The session's step tables are ``expected``, and no temporary table was committed
        (the session's own records, ``__osiris_*``, are not step tables)."""
        tables = self.tables(session_id)
        leftovers = [t for t in tables if t.startswith(TMP_PREFIX)]
        assert not leftovers, f"temporary tables committed in session {session_id}: {leftovers}"
        steps = [t for t in tables if not t.startswith(META_TABLE_PREFIX)]
        assert steps == sorted(expected), f"session {session_id} has tables {tables}"


@dataclass
class LakeReader:
    """Questions to the lake on one open connection."""

    con: duckdb.DuckDBPyConnection
    prefix: str

    def tables(self, session_id: str) -> list[str]:
        """Every table in the session's schema (temporary and record tables included)."""
        return sorted(r[0] for r in self.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? "
            "AND schema_name = ?", [LAKE_ALIAS, session_id]).fetchall())

    def schemas(self) -> list[str]:
        """The session schemas in the lake (DuckLake's `main` and our state schema left out)."""
        return sorted(r[0] for r in self.con.execute(
            "SELECT schema_name FROM duckdb_schemas() WHERE database_name = ? "
            "AND schema_name NOT IN ('main', ?)", [LAKE_ALIAS, STATE_SCHEMA]).fetchall())

    def events(self, session_id: str) -> list[dict[str, Any]]:
        """The session's events as the product records them in the lake, oldest first."""
        if RECORDS_TABLE not in self.tables(session_id):
            return []
        rows = self.con.execute(
            f'SELECT body FROM {LAKE_ALIAS}."{session_id}"."{RECORDS_TABLE}" '
            "WHERE kind = 'event' ORDER BY seq").fetchall()
        return [json.loads(r[0]) for r in rows]

    def has_event(self, session_id: str, event: str, step_id: str) -> bool:
        return any(e.get("event") == event and e.get("step_id") == step_id
                   for e in self.events(session_id))


@contextlib.contextmanager
def make_lake(root: Path, initialise: bool = True) -> Iterator[Lake]:
    """A lake under ``root`` whose metadata schema is dropped afterwards. ``initialise``
    creates DuckLake's catalog tables first (one ATTACH), as they are after a deployment's
    first run: the tests about runs then do not depend on how workers that open a brand-new
    catalog at the same moment behave (test_lake_catalog.py tests that on its own)."""
    import psycopg

    schema = f"osiris_test_lake_{uuid.uuid4().hex[:12]}"
    root.mkdir(parents=True)
    lake = Lake(root, schema)
    try:
        if initialise:
            lake.schemas()
        yield lake
    finally:
        with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5) as pg:
            pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def lake(tmp_path: Path, lake_requirements: None) -> Iterator[Lake]:
    with make_lake(tmp_path / "lakeroot") as the_lake:
        yield the_lake


@pytest.fixture
def fresh_lake(tmp_path: Path, lake_requirements: None) -> Iterator[Lake]:
    """A lake whose catalog no one has opened yet."""
    with make_lake(tmp_path / "lakeroot", initialise=False) as the_lake:
        yield the_lake


# -- subprocesses ------------------------------------------------------------------------------
@dataclass
class Proc:
    """A command started in its own process group, stdout and stderr in files."""

    name: str
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def running(self) -> bool:
        return self.popen.poll() is None

    def describe(self) -> str:
        return (f"{self.name}: rc={self.popen.poll()}\n--- stdout (tail)\n{self.stdout[-4000:]}"
                f"\n--- stderr (tail)\n{self.stderr[-6000:]}")

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not finish in {timeout:.0f}s\n"
                                 f"{self.describe()}") from None

    def kill(self) -> None:
        """SIGKILL the process group we started (the command and every process it spawned)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=30)

    def session_id(self) -> str:
        """The session an `osiris-dagster run` printed (`session  <id>`)."""
        for line in self.stdout.splitlines():
            if line.startswith("session  "):
                return line.split()[1]
        raise AssertionError(f"no session line in the output\n{self.describe()}")


def start_proc(argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None, name: str,
               logs: Path) -> Proc:
    """Start ``argv`` in a process group of its own, output in ``logs/<name>.out|err``."""
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    with open(out, "wb") as fout, open(err, "wb") as ferr:
        popen = subprocess.Popen(list(argv), cwd=cwd, env=clean_env(env), stdout=fout,
                                 stderr=ferr, stdin=subprocess.DEVNULL, start_new_session=True)
    return Proc(name, popen, out, err)


Spawn = Callable[..., Proc]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """spawn(argv, cwd, env, name=None) -> Proc; whatever still runs at the end is killed."""
    started: list[Proc] = []

    def _spawn(argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None,
               name: str | None = None) -> Proc:
        proc = start_proc(argv, cwd, env, name or f"proc-{len(started)}", tmp_path / "logs")
        started.append(proc)
        return proc

    yield _spawn
    for proc in started:
        if proc.running():
            proc.kill()


def osiris_run(*args: str) -> list[str]:
    return [PY, "-m", "osiris_dagster.cli", "run", *args]


def dagster_job(job: str, config: Path | None = None) -> list[str]:
    argv = [PY, "-m", "dagster", "job", "execute", "-f", "defs.py", "-j", job]
    return argv + (["-c", str(config)] if config else [])


def dagster_materialize(selection: str, config: Path | None = None) -> list[str]:
    argv = [PY, "-m", "dagster", "asset", "materialize", "-f", "defs.py", "--select", selection]
    return argv + (["-c", str(config)] if config else [])


# -- a Dagster project: pipeline, defs.py, DAGSTER_HOME ----------------------------------------
@dataclass
class Project:
    dir: Path
    lake: Lake

    @property
    def home(self) -> Path:
        return self.dir / "dagster_home"

    @property
    def env(self) -> dict[str, str]:
        return {**self.lake.env, "DAGSTER_HOME": str(self.home)}

    def run_config(self, name: str, job: str, params: Mapping[str, Any]) -> Path:
        """A run config file giving the pipeline's params (YAML is a superset of JSON)."""
        path = self.dir / name
        path.write_text(json.dumps({"resources": {f"osiris_params__{job}": {
            "config": {"params": dict(params)}}}}), encoding="utf-8")
        return path

    def step_starts(self, run_id: str) -> dict[str, int]:
        """Dagster step key -> pid of the process that started it (STEP_START events)."""
        import dagster as dg

        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            return {e.dagster_event.step_key: e.dagster_event.pid
                    for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
                    if e.dagster_event is not None}


def dagster_project(directory: Path, lake: Lake, pipeline: str,
                    files: Mapping[str, str] | None = None) -> Project:
    """`pipe.yaml`, a `defs.py` with the shipped `build_definitions` (which picks the
    multiprocess executor for the ducklake store) and a DAGSTER_HOME, plus data files."""
    directory.mkdir(parents=True)
    (directory / "pipe.yaml").write_text(pipeline, encoding="utf-8")
    (directory / "defs.py").write_text(DEFS, encoding="utf-8")
    for name, text in (files or {}).items():
        (directory / name).write_text(text, encoding="utf-8")
    project = Project(directory, lake)
    project.home.mkdir()
    (project.home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n",
                                               encoding="utf-8")
    return project


# -- waiting on conditions -------------------------------------------------------------------
def wait_for(condition: Callable[[], Any], what: str, watched: Sequence[Proc] = (),
             timeout: float = 120.0) -> Any:
    """Poll ``condition`` until it returns something true; fail early (with their output) if a
    watched process ends first, and after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        ended = [p for p in watched if not p.running()]
        if ended:
            raise AssertionError(f"waiting for {what}, but {ended[0].name} ended\n"
                                 f"{ended[0].describe()}")
        if time.monotonic() > deadline:
            detail = "\n".join(p.describe() for p in watched)
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail}")
        time.sleep(0.1)


def only_new_session(lake: Lake, before: Sequence[str]) -> str:
    new = set(lake.schemas()) - set(before)
    assert len(new) == 1, f"expected one new session in the lake, got {sorted(new)}"
    return new.pop()


def assert_no_traceback(proc: Proc) -> None:
    assert "Traceback (most recent call last)" not in proc.output, proc.describe()
