"""The step instances prepared ahead (runtime/duckdb_instances.py): used only when they match,
always fresh, never leaking one step's state into the next, closed at exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime import duckdb_instances
from osiris_dagster.runtime.session import Session
from osiris_dagster.runtime.workspace import SEALED_SETTINGS, StepWorkspace

CONFIG = {"memory_limit": "256MB"}
STATEMENTS = ("SET TimeZone = 'UTC'",)


@pytest.fixture
def created_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The name of the thread that created each instance, in order of creation."""
    duckdb_instances.reset()
    threads: list[str] = []
    real = duckdb_instances.create_instance

    def recording(config: Any, statements: Any = ()) -> duckdb.DuckDBPyConnection:
        con = real(config, statements)
        threads.append(threading.current_thread().name)
        return con

    monkeypatch.setattr(duckdb_instances, "create_instance", recording)
    yield threads
    duckdb_instances.reset()


def _setting(con: duckdb.DuckDBPyConnection, name: str) -> str:
    return con.execute("SELECT current_setting(?)", [name]).fetchone()[0]


def test_a_process_prepares_from_its_second_step_on(created_in: list[str]) -> None:
    first = duckdb_instances.new_instance(CONFIG, STATEMENTS, step_start=True)
    duckdb_instances.discard_spare()  # nothing to discard: one step prepares nothing
    assert created_in == ["MainThread"]
    second = duckdb_instances.new_instance(CONFIG, STATEMENTS, step_start=True)
    third = duckdb_instances.new_instance(CONFIG, STATEMENTS, step_start=True)
    # the second was connected directly and started preparing the third
    assert sorted(created_in[1:3]) == ["MainThread", "osiris-duckdb-spare"]
    assert created_in.count("MainThread") == 2
    for con in (first, second, third):
        assert _setting(con, "TimeZone") == "UTC"
        assert _setting(con, "memory_limit") == "244.1 MiB"
        con.close()


def test_a_prepared_instance_is_new_whatever_the_previous_step_did(
        created_in: list[str]) -> None:
    used = []
    for step in range(4):
        con = duckdb_instances.new_instance(CONFIG, STATEMENTS, step_start=True)
        tables = con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        assert tables == [], f"step {step} sees an earlier step's tables: {tables}"
        assert _setting(con, "enable_external_access") is True
        con.execute("CREATE TABLE leftover AS SELECT 1 AS x")
        for statement in SEALED_SETTINGS:  # as a SQL step seals its instance
            con.execute(statement)
        used.append(con)
    assert "osiris-duckdb-spare" in created_in
    for con in used:
        con.close()


def test_a_spare_with_another_configuration_is_not_used(created_in: list[str]) -> None:
    duckdb_instances.new_instance(CONFIG, STATEMENTS, step_start=True).close()
    # prepares one for CONFIG
    duckdb_instances.new_instance(CONFIG, STATEMENTS, step_start=True).close()
    other = duckdb_instances.new_instance({"memory_limit": "128MB"}, STATEMENTS, step_start=True)
    assert _setting(other, "memory_limit") == "122.0 MiB"
    other.close()
    statements = duckdb_instances.new_instance({"memory_limit": "128MB"},
                                               ("SET TimeZone = 'Asia/Tokyo'",), step_start=True)
    assert _setting(statements, "TimeZone") == "Asia/Tokyo"
    statements.close()


def test_a_failed_preparation_fails_in_the_caller(created_in: list[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    unhandled: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: unhandled.append(args.exc_value))
    bad = ("SELECT * FROM no_such_table",)
    duckdb_instances.new_instance(CONFIG, STATEMENTS, step_start=True).close()
    with pytest.raises(duckdb.CatalogException, match="no_such_table"):
        duckdb_instances.new_instance(CONFIG, bad, step_start=True)  # prepares one that fails too
    with pytest.raises(duckdb.CatalogException, match="no_such_table"):
        duckdb_instances.new_instance(CONFIG, bad, step_start=True)
    duckdb_instances.discard_spare()  # waits for the third preparation, failed as well
    assert created_in == ["MainThread"]  # the failed ones never returned an instance
    assert unhandled == []  # a failed preparation is the caller's error, not a thread's


def test_only_the_requests_that_start_a_step_count_and_prepare(created_in: list[str]) -> None:
    for _ in range(3):  # a step's other instances: a Python value stored, a retry
        duckdb_instances.new_instance(CONFIG, STATEMENTS, step_start=False).close()
    # the process' first step
    duckdb_instances.new_instance(CONFIG, STATEMENTS, step_start=True).close()
    duckdb_instances.discard_spare()
    assert created_in == ["MainThread"] * 4
    # its second: prepares the next
    duckdb_instances.new_instance(CONFIG, STATEMENTS, step_start=True).close()
    retry = duckdb_instances.new_instance(CONFIG, STATEMENTS, step_start=False)
    retry.close()
    duckdb_instances.discard_spare()
    # the step connected directly and had the next one prepared, which the retry took
    assert sorted(created_in[4:]) == ["MainThread", "osiris-duckdb-spare"]


def test_a_process_that_cannot_start_a_thread_connects_directly(
        created_in: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    class NoThreads(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't start new thread")

    monkeypatch.setattr(duckdb_instances.threading, "Thread", NoThreads)
    for _ in range(3):
        con = duckdb_instances.new_instance(CONFIG, STATEMENTS, step_start=True)
        assert con.execute("SELECT 42").fetchone() == (42,)
        duckdb_instances.retire(con)  # closed at once, in this thread
        with pytest.raises(duckdb.ConnectionException):
            con.execute("SELECT 1")
    assert created_in == ["MainThread"] * 3


def test_every_step_of_a_session_gets_its_spill_directory_and_sees_earlier_tables(
        tmp_path: Path, created_in: list[str]) -> None:
    for session_id in ("s1", "s2"):
        session = Session(Settings(sessions_dir=tmp_path, memory_limit="64MB"), session_id)
        for step in ("a", "b", "c"):
            with StepWorkspace(session, pipeline_name="p", step_id=step, output_table=step) as ws:
                spill = Path(_setting(ws.con, "temp_directory"))
                assert spill.parent == session.tmp_dir
                tables = {r[0] for r in ws.con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()}
                assert tables == set("abc"[:"abc".index(step)])  # the earlier steps' tables
                ws.create_output(f"SELECT '{step}' AS step")
    assert "osiris-duckdb-spare" in created_in


PROCESS_THAT_LEAVES_A_SPARE = textwrap.dedent("""
    import atexit
    import duckdb
    left = []

    def after_the_module_s_exit_handler():  # registered first, so it runs last
        try:
            left[0].execute("SELECT 1")
        except duckdb.ConnectionException:
            print("spare closed", flush=True)

    atexit.register(after_the_module_s_exit_handler)
    from osiris_dagster.runtime import duckdb_instances
    for _ in range(3):
        con = duckdb_instances.new_instance({"memory_limit": "256MB"}, (), step_start=True)
        con.execute("SELECT 1").fetchall()
        con.close()
    duckdb_instances._spare._thread.join()
    left.append(duckdb_instances._spare._con)
    print("done", flush=True)
""")


def test_a_process_with_a_spare_left_closes_it_at_exit() -> None:
    done = subprocess.run([sys.executable, "-c", PROCESS_THAT_LEAVES_A_SPARE],
                          capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout.split(), done.stderr) == \
        (0, ["done", "spare", "closed"], "")


FORKED_CHILD_AFTER_A_SPARE = textwrap.dedent("""
    import os, sys
    from osiris_dagster.runtime import duckdb_instances
    created = []
    real = duckdb_instances.create_instance
    def recording(config, statements=()):
        con = real(config, statements)
        created.append(os.getpid())
        return con
    duckdb_instances.create_instance = recording
    for _ in range(2):
        duckdb_instances.new_instance({"memory_limit": "256MB"}, (), step_start=True).close()
    duckdb_instances._spare._thread.join()  # the spare is ready when the process forks
    pid = os.fork()
    if pid == 0:
        before = len(created)
        con = duckdb_instances.new_instance({"memory_limit": "256MB"}, (), step_start=True)
        total = con.execute("SELECT sum(range) FROM range(1000000)").fetchone()[0]
        con.close()
        own = created[before:] == [os.getpid()]
        print(f"child own={own} total={total}", flush=True)
        sys.exit(0)  # a normal exit: the parent's instance must not be freed in the child
    _, status = os.waitpid(pid, 0)
    print(f"parent child_exit={os.waitstatus_to_exitcode(status)}", flush=True)
""")


def test_a_forked_child_never_uses_its_parents_spare() -> None:
    done = subprocess.run([sys.executable, "-c", FORKED_CHILD_AFTER_A_SPARE],
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.split("\n")[:2] == ["child own=True total=499999500000",
                                           "parent child_exit=0"], done.stderr


def test_a_step_releases_its_session_file_before_it_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, created_in: list[str]) -> None:
    """The step's file is checkpointed and unlocked in the step's own thread: nothing waits
    for the background close of its (by then empty) instance."""
    kept: list[duckdb.DuckDBPyConnection] = []
    monkeypatch.setattr(duckdb_instances, "retire", kept.append)  # never closed meanwhile
    session = Session(Settings(sessions_dir=tmp_path, memory_limit="64MB"), "s1")
    for step in ("a", "b"):
        with StepWorkspace(session, pipeline_name="p", step_id=step, output_table=step) as ws:
            ws.create_output(f"SELECT '{step}' AS step FROM range(3)")
    db = Path(session.location)
    assert len(kept) == 2 and not db.with_name(db.name + ".wal").exists()
    writer = subprocess.run(  # another process may write the file: no lock is left
        [sys.executable, "-c", "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
         "con.execute('CREATE TABLE c AS SELECT 1'); "
         "print(con.execute('SELECT count(*) FROM a, b').fetchone()[0])", str(db)],
        capture_output=True, text=True, timeout=300)
    assert (writer.returncode, writer.stdout.strip()) == (0, "9"), writer.stderr
    for con in kept:
        assert con.execute("SELECT count(*) FROM duckdb_databases() WHERE NOT internal"
                           ).fetchone() == (1,)  # only its own in-memory catalog
        con.close()


def test_a_retired_instance_is_closed_in_the_background() -> None:
    con = duckdb_instances.create_instance(CONFIG, STATEMENTS)
    duckdb_instances.retire(con)
    for thread, _con in list(duckdb_instances._closing):
        assert thread.name == "osiris-duckdb-retire"
        thread.join()
    with pytest.raises(duckdb.ConnectionException):
        con.execute("SELECT 1")


def test_statements_run_in_order_in_one_call() -> None:
    con = duckdb_instances.create_instance(
        CONFIG, ("SET TimeZone = 'Asia/Tokyo'", "SET Calendar = 'gregorian' -- a comment",
                 "SET TimeZone = 'UTC'"))
    assert (_setting(con, "TimeZone"), _setting(con, "Calendar")) == ("UTC", "gregorian")
    con.close()


FORKED_WHILE_AN_INSTANCE_IS_CLOSING = textwrap.dedent("""
    import os, sys, threading
    from osiris_dagster.runtime import duckdb_instances

    class NotYetRunning(threading.Thread):  # started, its target not run yet at the fork
        def start(self):
            pass

    con = duckdb_instances.create_instance({"memory_limit": "256MB"}, ())
    con.execute("SELECT sum(range) FROM range(10000000)").fetchall()  # its worker threads ran
    real, threading.Thread = threading.Thread, NotYetRunning
    duckdb_instances.retire(con)
    threading.Thread = real
    del con  # only the module's list of instances being closed holds it now
    pid = os.fork()
    if pid == 0:
        con = duckdb_instances.new_instance({"memory_limit": "256MB"}, (), step_start=True)
        total = con.execute("SELECT sum(range) FROM range(1000000)").fetchone()[0]
        con.close()
        print(f"child total={total}", flush=True)
        sys.exit(0)  # a normal exit: the parent's instance must not be freed in the child
    _, status = os.waitpid(pid, 0)
    for _thread, con in duckdb_instances._closing:
        con.close()
    print(f"parent child_exit={os.waitstatus_to_exitcode(status)}", flush=True)
""")


def test_a_forked_child_never_frees_an_instance_its_parent_was_closing() -> None:
    done = subprocess.run([sys.executable, "-c", FORKED_WHILE_AN_INSTANCE_IS_CLOSING],
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.split("\n")[:2] == ["child total=499999500000",
                                           "parent child_exit=0"], done.stderr
