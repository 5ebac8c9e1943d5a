"""The step instances prepared ahead (runtime/duckdb_instances.py): used only when they match,
always fresh, never leaking one step's state into the next, closed at exit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from osiris_dagster.core.settings import Settings
from osiris_dagster.drivers.duckdb.seal import check_query
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


FORK_THEN_A_NEW_INSTANCE_IN_THE_CHILD = textwrap.dedent("""
    import os
    created = []
    real = duckdb_instances.create_instance
    def recording(config, statements=()):
        con = real(config, statements)
        created.append(os.getpid())
        return con
    duckdb_instances.create_instance = recording
    pid = os.fork()
    if pid == 0:
        con = duckdb_instances.new_instance({"memory_limit": "256MB"}, (), step_start=True)
        total = con.execute("SELECT sum(range) FROM range(1000000)").fetchone()[0]
        con.close()
        print(f"child own={created == [os.getpid()]} total={total}", flush=True)
        sys.exit(0)  # a normal exit: the parent's instance must not be freed in the child
    _, status = os.waitpid(pid, 0)
""")


def _a_forked_child_exits_normally(before_fork: str, after_fork: str = "",
                                   *args: str) -> None:
    """``before_fork`` leaves the parent with an instance in some state; the forked child
    creates and uses its own instance (not the parent's) and exits normally."""
    script = (textwrap.dedent(before_fork) + FORK_THEN_A_NEW_INSTANCE_IN_THE_CHILD
              + textwrap.dedent(after_fork)
              + 'print(f"parent child_exit={os.waitstatus_to_exitcode(status)}", flush=True)\n')
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, timeout=300)
    assert done.stdout.split("\n")[:2] == ["child own=True total=499999500000",
                                           "parent child_exit=0"], done.stderr


def test_a_forked_child_never_uses_its_parents_spare() -> None:
    _a_forked_child_exits_normally("""
        import sys
        from osiris_dagster.runtime import duckdb_instances
        for _ in range(2):
            duckdb_instances.new_instance({"memory_limit": "256MB"}, (), step_start=True).close()
        duckdb_instances._spare._thread.join()  # the spare is ready when the process forks
    """)


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


def _wait_for_background_closes() -> None:
    for thread, _con in list(duckdb_instances._closing):
        assert thread.name == "osiris-duckdb-retire"
        thread.join()


def test_a_retired_instance_is_closed_in_the_background() -> None:
    con = duckdb_instances.create_instance(CONFIG, STATEMENTS)
    duckdb_instances.retire(con)
    _wait_for_background_closes()
    with pytest.raises(duckdb.ConnectionException):
        con.execute("SELECT 1")


def test_statements_run_in_order_in_one_call() -> None:
    con = duckdb_instances.create_instance(
        CONFIG, ("SET TimeZone = 'Asia/Tokyo'", "SET Calendar = 'gregorian' -- a comment",
                 "SET TimeZone = 'UTC'"))
    assert (_setting(con, "TimeZone"), _setting(con, "Calendar")) == ("UTC", "gregorian")
    con.close()


def test_a_forked_child_never_frees_an_instance_its_parent_was_closing() -> None:
    _a_forked_child_exits_normally("""
        import sys, threading
        from osiris_dagster.runtime import duckdb_instances

        class NotYetRunning(threading.Thread):  # started, its target not run yet at the fork
            def start(self):
                pass

        con = duckdb_instances.create_instance({"memory_limit": "256MB"}, ())
        con.execute("SELECT sum(range) FROM range(10000000)").fetchall()  # its threads ran
        real, threading.Thread = threading.Thread, NotYetRunning
        duckdb_instances.retire(con)
        threading.Thread = real
        del con  # only the module's list of instances being closed holds it now
    """, """
        for _thread, con in duckdb_instances._closing:
            con.close()
    """)


def _sql_step(session: Session, step: str, query: str, upstream: str | None = None,
              upstream_session: Session | None = None
              ) -> tuple[duckdb.DuckDBPyConnection, list[tuple[Any, ...]]]:
    """A SQL step as the processor runs it: its upstream as a view, sealed, then its table."""
    with StepWorkspace(session, pipeline_name="p", step_id=step, output_table=step,
                       sealed_reuse=True, park_when_done=True) as ws:
        views = ws.con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal"
                               ).fetchall()
        if upstream:
            ws.add_upstream(upstream, "input_df", (upstream_session or session).location,
                            upstream)
        check_query(ws.con, query, ["input_df"] if upstream else [])
        ws.seal_sql_access(leaves_instance_unchanged=True)
        ws.create_output(query)
        rows = ws.con.execute(f"SELECT * FROM {ws.output_relation}").fetchall()
        return ws.con, [*views, *rows]


def test_sql_steps_of_a_session_share_one_sealed_instance_and_nothing_else(
        tmp_path: Path, created_in: list[str]) -> None:
    session = Session(Settings(sessions_dir=tmp_path, memory_limit="64MB"), "s1")
    with duckdb_instances.parking_allowed():
        first, rows = _sql_step(session, "a", "SELECT setseed(0.5) AS s, 1 AS n")
        second, rows = _sql_step(session, "b", "SELECT n + 1 AS n, random() AS r FROM input_df",
                                 upstream="a")
        assert second is first and len(created_in) == 1  # one instance for both steps
        assert rows[0][0] == 2  # and no view of the step before was left in it
        seeded = duckdb.connect()
        seeded.execute("SELECT setseed(0.5)")
        assert rows[0][1] != seeded.execute("SELECT random()").fetchone()[0]
        assert _setting(second, "TimeZone") == "UTC"
        db = Path(session.location)
        assert db.with_name(db.name + ".wal").exists()  # parked: not checkpointed yet
    assert not db.with_name(db.name + ".wal").exists()  # released at the end
    _wait_for_background_closes()
    with pytest.raises(duckdb.ConnectionException):
        second.execute("SELECT 1")
    assert duckdb.connect(str(db)).execute("SELECT n FROM b").fetchall() == [(2,)]


def test_a_parked_instance_is_released_before_anything_attaches_its_file(
        tmp_path: Path, created_in: list[str]) -> None:
    session = Session(Settings(sessions_dir=tmp_path, memory_limit="64MB"), "s1")
    with duckdb_instances.parking_allowed():
        a, _ = _sql_step(session, "a", "SELECT 1 AS n")
        with StepWorkspace(session, pipeline_name="p", step_id="csv", output_table="csv") as ws:
            ws.create_output("SELECT n FROM session.main.a")  # a step that is not SQL
            assert ws.con is not a
        assert duckdb_instances._parked == {}
        b, _ = _sql_step(session, "b", "SELECT 2 AS n")
        assert b is not a and duckdb_instances._parked != {}
        other = Session(Settings(sessions_dir=tmp_path, memory_limit="64MB"), "s2")
        c, rows = _sql_step(other, "c", "SELECT n FROM input_df", upstream="b",
                            upstream_session=session)
        assert rows == [(2,)]  # s1's instance released for s2 to attach s1's file
        assert c is not b and duckdb_instances._parked == {}  # it had s1's file attached


def test_outside_an_execution_or_after_a_failure_nothing_is_parked(
        tmp_path: Path, created_in: list[str]) -> None:
    session = Session(Settings(sessions_dir=tmp_path, memory_limit="64MB"), "s1")
    _sql_step(session, "a", "SELECT 1 AS n")
    assert duckdb_instances._parked == {}
    with duckdb_instances.parking_allowed():
        with pytest.raises(duckdb.Error):
            _sql_step(session, "b", "SELECT no_such_column")
        assert duckdb_instances._parked == {}
        c, _ = _sql_step(session, "c", "SELECT 3 AS n")
        assert duckdb_instances._parked != {}
    _wait_for_background_closes()
    with pytest.raises(duckdb.ConnectionException):
        c.execute("SELECT 1")  # released at the end of the execution


PROCESS_THAT_EXITS_WITH_A_PARKED_INSTANCE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from osiris_dagster.core.settings import Settings
    from osiris_dagster.runtime import duckdb_instances
    from osiris_dagster.runtime.session import Session
    from osiris_dagster.runtime.workspace import StepWorkspace

    session = Session(Settings(sessions_dir=Path(sys.argv[1]), memory_limit="64MB"), "s1")
    duckdb_instances.allow_parking()  # and never stopped: the process just exits
    with StepWorkspace(session, pipeline_name="p", step_id="a", output_table="a",
                       sealed_reuse=True, park_when_done=True) as ws:
        ws.seal_sql_access(leaves_instance_unchanged=True)
        ws.create_output("SELECT 42 AS n")
    assert duckdb_instances._parked != {}
    print(session.location, flush=True)
""")


def test_a_process_that_exits_with_a_parked_instance_checkpoints_its_file(
        tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", PROCESS_THAT_EXITS_WITH_A_PARKED_INSTANCE,
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stderr) == (0, "")
    db = Path(done.stdout.strip())
    assert not db.with_name(db.name + ".wal").exists()
    assert duckdb.connect(str(db)).execute("SELECT n FROM a").fetchall() == [(42,)]


def test_a_forked_child_never_frees_its_parents_parked_instance(tmp_path: Path) -> None:
    _a_forked_child_exits_normally("""
        import sys
        from pathlib import Path
        from osiris_dagster.core.settings import Settings
        from osiris_dagster.runtime import duckdb_instances
        from osiris_dagster.runtime.session import Session
        from osiris_dagster.runtime.workspace import StepWorkspace

        session = Session(Settings(sessions_dir=Path(sys.argv[1]), memory_limit="64MB"), "s1")
        duckdb_instances.allow_parking()
        with StepWorkspace(session, pipeline_name="p", step_id="a", output_table="a",
                           sealed_reuse=True, park_when_done=True) as ws:
            ws.seal_sql_access(leaves_instance_unchanged=True)
            ws.create_output("SELECT sum(range) AS n FROM range(10000000)")
        assert duckdb_instances._parked != {}
    """, """
        duckdb_instances.stop_parking()
    """, str(tmp_path))


CHAIN = """\
oml_version: "0.1.0"
name: chain
steps:
  - id: s1
    component: filesystem.csv_extractor
    mode: read
    config: {path: data.csv}
"""


def _cli_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipeline: str) -> int:
    """`osiris-dagster run PIPELINE` from ``tmp_path``, on the CLI's own Dagster instance."""
    from osiris_dagster import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return cli.main(["run", pipeline, "--sessions-dir", str(tmp_path / "sessions")])


def test_a_run_of_sql_steps_creates_an_instance_for_the_first_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, created_in: list[str]) -> None:
    """Through Dagster, as `osiris-dagster run` runs a pipeline: the SQL steps after the first
    take the instance it parked, and the session file is checkpointed when the run ends."""
    (tmp_path / "data.csv").write_text("id,v\n1,a\n2,b\n", encoding="utf-8")
    steps = "".join(f"  - id: s{i}\n    component: duckdb.processor\n    mode: transform\n"
                    f"    config: {{query: 'SELECT *, {i} AS c{i} FROM input_df'}}\n"
                    for i in range(2, 7))
    (tmp_path / "chain.yaml").write_text(CHAIN + steps, encoding="utf-8")
    assert _cli_run(tmp_path, monkeypatch, "chain.yaml") == 0
    assert len(created_in) <= 3  # extract, first SQL step, one spare prepared (6 steps)
    [db] = (tmp_path / "sessions").glob("*/pipeline_data.duckdb")
    assert not db.with_name(db.name + ".wal").exists()
    assert duckdb.connect(str(db), read_only=True).execute(
        "SELECT id, v, c2, c6 FROM s6 ORDER BY id").fetchall() == [(1, "a", 2, 6), (2, "b", 2, 6)]


def test_two_threads_running_sessions_at_once_keep_their_own_parked_instances(
        tmp_path: Path) -> None:
    """Two executions in one process, each in its thread: neither releases the other's
    instance (a release racing its owner's next ATTACH failed a step: 'Unique file handle
    conflict')."""
    errors: list[str] = []
    done = threading.Event()

    def run(session_id: str, steps: int | None, query: str) -> None:
        session = Session(Settings(sessions_dir=tmp_path, memory_limit="256MB"), session_id)
        with duckdb_instances.parking_allowed():
            i = 0
            while (i < steps) if steps else not done.is_set():
                try:
                    _sql_step(session, f"t{i % 3}", query)
                except Exception as exc:  # noqa: BLE001 - collected for the assertion
                    errors.append(f"{session_id} step {i}: {exc}")
                i += 1
        if steps:
            done.set()

    threads = [threading.Thread(target=run, args=("sA", 12, "SELECT range AS i, md5(range::"
                                                  "VARCHAR) AS m FROM range(200000)")),
               threading.Thread(target=run, args=("sB", None, "SELECT 1 AS n"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert duckdb_instances._parked == {}


def test_a_sql_step_that_no_sql_step_reads_releases_its_file_when_it_ends(
        tmp_path: Path) -> None:
    """The pipeline's last SQL step parks nothing: an asset after it, and any other process,
    can open the session file while the run goes on."""
    from osiris_dagster.dagster_layer.loader import build_definitions

    (tmp_path / "data.csv").write_text("id,v\n1,a\n2,b\n", encoding="utf-8")
    steps = "".join(f"  - id: s{i}\n    component: duckdb.processor\n    mode: transform\n"
                    f"    config: {{query: 'SELECT *, {i} AS c{i} FROM input_df'}}\n"
                    for i in (2, 3))
    (tmp_path / "chain.yaml").write_text(CHAIN.replace("data.csv", str(tmp_path / "data.csv"))
                                         + steps, encoding="utf-8")
    sessions = tmp_path / "sessions"
    defs = build_definitions([tmp_path / "chain.yaml"], sessions_dir=str(sessions))
    [last] = [k for k in defs.resolve_asset_graph().get_all_asset_keys() if k.path[-1] == "s3"]
    seen: list[tuple[str, int]] = []

    @dg.asset(deps=[last])
    def report(context) -> None:  # noqa: ANN001 (dagster inspects annotations)
        probe = subprocess.run(
            [sys.executable, "-c", "import duckdb, sys; print(duckdb.connect(sys.argv[1], "
             "read_only=True).execute('SELECT count(*) FROM s3').fetchone()[0])",
             str(sessions / context.run_id / "pipeline_data.duckdb")],
            capture_output=True, text=True, timeout=300)
        seen.append((probe.stderr.strip()[-200:], int(probe.stdout or -1)))

    job = dg.Definitions.merge(defs, dg.Definitions(assets=[report])
                               ).get_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=dg.DagsterInstance.ephemeral()).success
    assert seen == [("", 2)]  # another process read the last step's table during the run


REGISTERS = "SELECT * FROM register_external_resource_type('note', kind := '{}', " \
            "create_function := 'f')"


@pytest.mark.parametrize("where", ["query", "check"])
def test_sql_that_would_change_the_instance_itself_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """DuckDB keeps an external resource type, registered by a SELECT, for the whole instance,
    which the session's next SQL step would find in the instance it is handed (its own
    registration of the name then failed). A query or check expression may call only the
    table functions that make rows, so no pipeline SQL changes the instance: `validate`
    refuses this one, and nothing runs."""
    registers = REGISTERS.format("a")
    checks, query = "", registers
    if where == "check":
        checks = ("x-dagster:\n  steps:\n    a:\n      checks:\n        expression: "
                  f"{json.dumps(f'(SELECT count(*) FROM ({registers})) = 1')}\n")
        query = "SELECT 1 AS n"
    (tmp_path / "p.yaml").write_text(
        'oml_version: "0.1.0"\nname: registers\n' + checks + "steps:\n  - id: a\n"
        "    component: duckdb.processor\n    mode: transform\n"
        f"    config: {{query: {json.dumps(query)}}}\n", encoding="utf-8")
    assert _cli_run(tmp_path, monkeypatch, "p.yaml") == 2
    assert not (tmp_path / "sessions").exists()


def test_sql_nested_deeper_than_pythons_recursion_limit_is_checked_and_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seal reads DuckDB's parse tree as JSON, nested ~3 times as deep as the SQL; past
    Python's default recursion limit (DuckDB takes 1000 levels) a query failed with a bare
    RecursionError, and a check expression was not read. Both are checked and run."""
    deep = "+".join(["n"] * 900)
    (tmp_path / "p.yaml").write_text(
        'oml_version: "0.1.0"\nname: deep\nx-dagster:\n  steps:\n    a:\n      checks:\n'
        f"        expression: {json.dumps(deep + ' > 0')}\nsteps:\n  - id: a\n"
        "    component: duckdb.processor\n    mode: transform\n"
        f"    config: {{query: {json.dumps(f'SELECT {deep} AS n FROM (SELECT 1 AS n)')}}}\n",
        encoding="utf-8")
    assert _cli_run(tmp_path, monkeypatch, "p.yaml") == 0
    [db] = (tmp_path / "sessions").glob("*/pipeline_data.duckdb")
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT * FROM a").fetchall() == [(900,)]
