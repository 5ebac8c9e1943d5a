"""A real Osiris pipeline on two Celery workers with the ducklake store, RabbitMQ and Redis.

Launched as a user would: `python -m dagster job execute -f defs.py -j <job>`, where defs.py
calls `build_definitions` on the pipeline file and the OSIRIS_* environment picks the ducklake
store and the celery executor; Dagster's instance is in PostgreSQL, the lake's catalog too (its
own metadata schema per test) and its data in a temporary directory. Two `dagster-celery`
workers (one step at a time each) get the same environment.

The pipeline has two branches and a join:

    wait_at_gate (graphql.extractor)   ----------------------------\
    numbers (range(1, 101)) -> squares (n, n*n)  -> summary (both) --

`wait_at_gate` calls a local endpoint that answers only when the test opens it. The test opens
it only after Dagster's event log shows `squares` succeeded: since each worker runs one step at
a time and one of them is held at the gate, branch B can only finish in the other worker while
branch A is still running. That is the proof of parallelism (a condition, not a timing); the
STEP_START events' pids then show the two processes. Afterwards every step's table is read
from the session's schema in the lake by a fresh DuckDB connection, and the session's events
(written by whichever worker ran each step) hold run_start and run_end once each.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import psycopg
import pytest

from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime.session import Session
from osiris_dagster.runtime.stores import store_for
from tests.gate import Gate, gate_step

from .celery_workers import Workers, celery_workers
from .dagster_home import postgres_dagster_home

BROKERS = {
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
    "redis": "redis://127.0.0.1:6379/13",  # a database number no other test uses
}
PG_DSN = "dbname=test host=127.0.0.1 user=postgres"
CATALOG = f"postgres:{PG_DSN}"
JOB = "celery_lake"
STEPS = ("wait_at_gate", "numbers", "squares", "summary")
WAIT_SECONDS = 120.0  # a bound for each condition, never a pause

DEFS = """\
from pathlib import Path

from osiris_dagster import build_definitions

defs = build_definitions([Path(__file__).with_name("pipeline.yaml")])
"""


def pipeline_text(gate_url: str) -> str:
    return (
        'oml_version: "0.1.0"\nname: celery-lake\nsteps:\n'
        + gate_step("wait_at_gate", gate_url, [])
        + "  - id: numbers\n    component: duckdb.processor\n    mode: transform\n"
          "    needs: []\n"
          "    config: {query: 'SELECT range AS n FROM range(1, 101)'}\n"
        + "  - id: squares\n    component: duckdb.processor\n    mode: transform\n"
          "    needs: [numbers]\n"
          "    config: {query: 'SELECT n, n * n AS sq FROM input_df'}\n"
        + "  - id: summary\n    component: duckdb.processor\n    mode: transform\n"
          "    needs: [wait_at_gate, squares]\n"
          "    config: {query: 'SELECT (SELECT count(*) FROM df_wait_at_gate) AS gate_rows, "
          "(SELECT sum(ok) FROM df_wait_at_gate) AS gate_ok, "
          "(SELECT count(*) FROM df_squares) AS n_rows, "
          "(SELECT sum(sq) FROM df_squares) AS sum_sq'}\n")


@pytest.fixture
def dagster_home(tmp_path: Path) -> Iterator[Path]:
    with postgres_dagster_home(tmp_path / "dagster_home") as home:
        yield home


@pytest.fixture
def lake_schema() -> Iterator[str]:
    """The lake's own metadata schema in the catalog database, dropped afterwards."""
    schema = f"lake_celery_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, connect_timeout=5):  # fail loudly, before any worker starts
        pass
    yield schema
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5) as pg:
        pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.close()


@pytest.mark.parametrize("broker", sorted(BROKERS))
def test_pipeline_branches_run_at_once_on_two_workers(broker: str, tmp_path: Path,
                                                       dagster_home: Path, lake_schema: str,
                                                       gate: Gate) -> None:
    url = BROKERS[broker]
    queue = f"osiris-test-{uuid.uuid4().hex[:10]}"
    lake = {"session_store": "ducklake", "ducklake_catalog": CATALOG,
            "ducklake_data_path": str(tmp_path / "lake"),
            "ducklake_metadata_schema": lake_schema}
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_")}
    env.update({"DAGSTER_HOME": str(dagster_home), "OSIRIS_EXECUTOR": "celery",
                "OSIRIS_CELERY_BROKER": url, "OSIRIS_CELERY_QUEUE": queue,
                **{f"OSIRIS_{k.upper()}": v for k, v in lake.items()}})
    code = tmp_path / "code"
    code.mkdir()
    (code / "pipeline.yaml").write_text(pipeline_text(gate.url))
    (code / "defs.py").write_text(DEFS)

    started = time.monotonic()
    with celery_workers(url, env, tmp_path / "workers", queue=queue,
                        remove_queue=True) as workers, \
            dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        with _job_execute(code, env, tmp_path / "cli.log") as cli:
            try:
                run_id = _wait_for_run(instance, cli, workers)
                watch = _Watch(instance, run_id, cli, workers)
                watch.until(gate.hit.is_set, "a worker called the gate in step 'wait_at_gate'")
                watch.until(lambda: "squares" in watch.succeeded(),
                            "step 'squares' succeeded while 'wait_at_gate' is held")
                assert gate.calls == 1  # branch A is still held at the gate
            finally:
                gate.open()  # also on failure: a worker stops only once its step returns
            try:
                returncode = cli.process.wait(timeout=WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                returncode = None
            assert returncode == 0, _diagnostics(cli, workers)
        starts = _step_starts(instance, run_id)
        groups = {step: os.getpgid(pid) for step, pid in starts.items()}  # workers still alive
        run = instance.get_run_by_id(run_id)
    seconds = time.monotonic() - started

    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    assert f'to queue "{queue}"' in cli.output()
    assert set(starts) == set(STEPS), starts
    # branch A waited at the gate in one worker while branch B ran in the other
    for step in ("numbers", "squares"):
        assert starts["wait_at_gate"] != starts[step], starts
        assert groups["wait_at_gate"] != groups[step], groups
    assert set(groups.values()) == set(workers.pgids), (groups, workers.pgids)
    assert os.getpid() not in starts.values()

    settings = Settings.from_env(str(tmp_path / "reader-sessions"), **lake)
    assert _session_tables(settings, run_id) == {
        "wait_at_gate": [(1,)],
        "numbers": [(n,) for n in range(1, 101)],
        "squares": [(n, n * n) for n in range(1, 101)],
        "summary": [(1, 1, 100, sum(n * n for n in range(1, 101)))],
    }
    events = Session(settings, run_id).read_events()
    kinds = [e["event"] for e in events]
    assert kinds.count("run_start") == 1, kinds
    assert sorted(e["step_id"] for e in events if e["event"] == "step_complete") == \
        sorted(STEPS), kinds
    (run_end,) = [e for e in events if e["event"] == "run_end"]
    assert run_end["status"] == "success", run_end
    assert run_end["steps_completed"] == len(STEPS)
    assert "step_error" not in kinds
    print(f"{broker}: pipeline of {len(STEPS)} steps on two workers, {seconds:.1f} s "
          "(workers' start and CLI start included)")


class _Cli:
    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def _job_execute(code: Path, env: dict[str, str], log: Path) -> Iterator[_Cli]:
    """`python -m dagster job execute` in its own process group, stopped with it if the test
    fails before the run ends."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dagster", "job", "execute", "-f", str(code / "defs.py"),
             "-j", JOB], cwd=code, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        yield _Cli(process, log)
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _wait_for_run(instance: dg.DagsterInstance, cli: _Cli, workers: Workers) -> str:
    deadline = time.monotonic() + WAIT_SECONDS
    while not (runs := instance.get_runs()):
        _check_alive(cli, workers, deadline, "the run was created")
        time.sleep(0.2)
    (run,) = runs
    return run.run_id


def _check_alive(cli: _Cli, workers: Workers, deadline: float, what: str) -> None:
    if cli.process.poll() is not None:
        raise AssertionError(f"`dagster job execute` exited ({cli.process.returncode}) "
                             f"before {what}\n{_diagnostics(cli, workers)}")
    if time.monotonic() > deadline:
        raise AssertionError(f"not within {WAIT_SECONDS} s: {what}\n"
                             f"{_diagnostics(cli, workers)}")


@dataclass
class _Watch:
    """Waits on conditions of a running run, failing at once (with the step's error) when a
    step fails or the CLI exits, and after WAIT_SECONDS at most (a bound, not a pause)."""

    instance: dg.DagsterInstance
    run_id: str
    cli: _Cli
    workers: Workers

    def until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while not condition():
            failed = self._events(dg.DagsterEventType.STEP_FAILURE)
            if failed:
                raise AssertionError(f"a step failed before {what}: " + "\n".join(
                    f"{e.step_key}: {_failure_text(e)}" for e in failed))
            _check_alive(self.cli, self.workers, deadline, what)
            time.sleep(0.2)

    def succeeded(self) -> set[str]:
        return {_step_of(e.step_key) for e in self._events(dg.DagsterEventType.STEP_SUCCESS)}

    def _events(self, kind: dg.DagsterEventType) -> list[dg.DagsterEvent]:
        return [r.dagster_event for r in self.instance.all_logs(self.run_id, of_type=kind)
                if r.dagster_event is not None]


def _failure_text(event: dg.DagsterEvent) -> str:
    error = event.step_failure_data.error if event.step_failure_data else None
    while error is not None and error.cause is not None:  # the user code's own error
        error = error.cause
    return error.message.strip() if error is not None else event.message or ""


def _step_starts(instance: dg.DagsterInstance, run_id: str) -> dict[str, int]:
    """The pid of each step's STEP_START event (the process the step ran in)."""
    starts: dict[str, int] = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START):
        event = record.dagster_event
        assert event is not None and event.step_key and event.pid is not None
        starts[_step_of(event.step_key)] = event.pid
    return starts


def _step_of(step_key: str | None) -> str:
    """The Osiris step id of a Dagster step key (`celery_lake__squares`)."""
    return (step_key or "").removeprefix(f"{JOB}__")


def _session_tables(settings: Settings, run_id: str) -> dict[str, list[tuple[object, ...]]]:
    """Every step table of the session, read through a fresh connection to the lake."""
    con = duckdb.connect()
    try:
        prefix = store_for(settings).attach_reader(con, f"ducklake:{run_id}", "x")
        assert prefix == f'osiris_lake."{run_id}"'
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'osiris_lake' "
            "AND schema_name = ? AND NOT starts_with(table_name, '__osiris_') "
            "ORDER BY table_name", [run_id]).fetchall()]
        return {name: con.execute(f"SELECT * FROM {prefix}.{name} ORDER BY ALL").fetchall()
                for name in names}
    finally:
        con.close()


def _diagnostics(cli: _Cli, workers: Workers) -> str:
    return f"--- dagster job execute:\n{cli.output()[-4000:]}\n{workers.log_tail()}"
