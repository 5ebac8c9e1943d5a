"""Session store: layout, lock backoff, atomic table swap, clear errors for bad databases."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from osiris_dagster.core.errors import OsirisError, SessionLockedError
from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime.session import Session
from osiris_dagster.runtime.workspace import StepWorkspace


def _hold_lock(db: Path, seconds: float) -> subprocess.Popen[str]:
    code = textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(db)!r})
        con.execute("CREATE TABLE IF NOT EXISTS held AS SELECT 1 AS x")
        print("locked", flush=True)
        time.sleep({seconds})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_held_by_another_process_is_waited_for(tmp_path: Path) -> None:
    session = Session(Settings(sessions_dir=tmp_path, lock_timeout_seconds=30), "s1").ensure()
    holder = _hold_lock(session.db_path, 1.5)
    started = time.monotonic()
    with StepWorkspace(session, pipeline_name="p", step_id="a", output_table="a") as ws:
        assert ws.create_output("SELECT 42 AS answer") == 1
    assert time.monotonic() - started >= 1.0
    holder.wait(timeout=30)


def test_lock_timeout_names_the_executor_setting(tmp_path: Path) -> None:
    session = Session(Settings(sessions_dir=tmp_path, lock_timeout_seconds=0.5), "s1").ensure()
    holder = _hold_lock(session.db_path, 5)
    try:
        with pytest.raises(SessionLockedError) as err, \
                StepWorkspace(session, pipeline_name="p", step_id="a", output_table="a"):
            pass
        assert "in_process" in str(err.value) and str(session.db_path) in str(err.value)
    finally:
        holder.kill()
        holder.wait()


def test_corrupt_session_database_gives_a_clear_error(tmp_path: Path) -> None:
    session = Session(Settings(sessions_dir=tmp_path), "s1").ensure()
    session.db_path.write_bytes(b"this is not a duckdb file" * 200)
    with pytest.raises(OsirisError) as err, \
            StepWorkspace(session, pipeline_name="p", step_id="a", output_table="a"):
        pass
    assert str(session.db_path) in str(err.value)
    assert "delete that session directory" in str(err.value)


def test_failed_output_keeps_the_previous_table(tmp_path: Path) -> None:
    session = Session(Settings(sessions_dir=tmp_path), "s1").ensure()
    with StepWorkspace(session, pipeline_name="p", step_id="a", output_table="a") as ws:
        ws.create_output("SELECT range AS x FROM range(3)")
    with pytest.raises(duckdb.Error), \
            StepWorkspace(session, pipeline_name="p", step_id="a", output_table="a") as ws:
        ws.create_output("SELECT CAST('x' || range AS INTEGER) AS x FROM range(5)")
    with duckdb.connect(str(session.db_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM a").fetchone() == (3,)
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    assert tables == {"a"}  # no temporary table left behind after the next open


def test_processor_sees_only_its_upstreams(tmp_path: Path) -> None:
    session = Session(Settings(sessions_dir=tmp_path), "s1").ensure()
    with StepWorkspace(session, pipeline_name="p", step_id="a", output_table="a") as ws:
        ws.create_output("SELECT 1 AS x")
    with StepWorkspace(session, pipeline_name="p", step_id="b", output_table="b") as ws:
        ws.create_output("SELECT 2 AS y")
    with StepWorkspace(session, pipeline_name="p", step_id="c", output_table="c") as ws:
        ws.add_upstream("a", "df_a", session.db_path, "a", ["input_df"])
        assert ws.create_output("SELECT x + 1 AS z FROM input_df") == 1
        with pytest.raises(duckdb.CatalogException):
            ws.create_output("SELECT * FROM b")


# -- several processes writing one session ---------------------------------------------------
# Real processes (spawned, not threads): the multiprocess executor, the CLI and a sensor's run
# may all write one session. They meet at barriers (no sleeps) to write at the same moment.
PROCESSES = 4


def _write_many(sessions: str, session_id: str, worker: int, lines: int,
                barrier: object) -> None:
    """Worker: `lines` events of very different sizes, many far above PIPE_BUF (4096)."""
    session = Session(Settings(sessions_dir=Path(sessions)), session_id)
    barrier.wait()  # type: ignore[attr-defined]
    for i in range(lines):
        size = (1, 300, 5_000, 70_000, 400_000)[i % 5]
        session.log_event("bulk", worker=worker, seq=i, payload=chr(ord("a") + worker) * size)
        session.log_metric("bulk", i, worker=worker)


def _read_while_written(sessions: str, session_id: str, stop: object, barrier: object) -> None:
    """Worker: read the events over and over while the others append (as finish_run_if_done
    and `osiris-dagster sessions show` do); a torn line would raise here."""
    session = Session(Settings(sessions_dir=Path(sessions)), session_id)
    barrier.wait()  # type: ignore[attr-defined]
    reads = 0
    while not stop.is_set() or reads == 0:  # type: ignore[attr-defined]
        for e in session.read_events():
            assert e["event"] == "bulk"
        reads += 1


def _finish_steps(sessions: str, pipeline_file: str, worker: int, rounds: int,
                  barrier: object) -> None:
    """Worker: in each round's session, complete step `s<worker>` and then try to end the run
    at the same moment as every other worker (the last step of a run finishing in several
    processes at once)."""
    from osiris_dagster.oml import load_pipeline
    from osiris_dagster.runtime.runner import finish_run_if_done

    pipeline = load_pipeline(Path(pipeline_file))
    steps = [s.id for s in pipeline.steps]
    for r in range(rounds):
        session = Session(Settings(sessions_dir=Path(sessions)), f"round-{r}")
        session.log_event("step_complete", step_id=f"s{worker}")
        barrier.wait()  # type: ignore[attr-defined]
        finish_run_if_done(session, pipeline, steps)


def _run_workers(target: object, args: list[tuple[object, ...]],
                 reader: tuple[object, ...] | None = None) -> None:
    """Run `target(*a, barrier)` per args in its own process (plus, if given, a reader process
    that runs until the writers are done); every process must exit cleanly."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(args) + (reader is not None))
    stop = ctx.Event()
    procs = [ctx.Process(target=target, args=(*a, barrier)) for a in args]
    readers = [ctx.Process(target=_read_while_written, args=(*reader, stop, barrier))
               ] if reader else []
    for p in procs + readers:
        p.start()
    for p in procs:
        p.join()
    stop.set()
    for p in readers:
        p.join()
    assert [p.exitcode for p in procs + readers] == [0] * len(procs + readers)


def test_processes_appending_to_one_session_lose_and_mix_no_line(tmp_path: Path) -> None:
    lines = 60
    _run_workers(_write_many, [(str(tmp_path), "shared", w, lines) for w in range(PROCESSES)],
                 reader=(str(tmp_path), "shared"))
    logs = tmp_path / "shared" / "logs"
    for name, key in (("events.jsonl", "seq"), ("metrics.jsonl", "value")):
        raw = (logs / name).read_bytes()
        assert raw.endswith(b"\n")
        seen: dict[int, list[int]] = {w: [] for w in range(PROCESSES)}
        for line in raw.decode("utf-8").split("\n")[:-1]:
            record = json.loads(line)  # every line whole: no interleaved or torn line
            seen[record["worker"]].append(record[key])
            if "payload" in record:
                assert set(record["payload"]) == {chr(ord("a") + record["worker"])}
        for worker, got in seen.items():  # none lost, none doubled, each in its order
            assert got == list(range(lines)), (name, worker)


def test_run_end_is_written_once_when_processes_finish_together(tmp_path: Path) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text('oml_version: "0.1.0"\nname: p\nsteps:\n' + "".join(
        f"  - id: s{w}\n    component: duckdb.processor\n    mode: transform\n"
        f"    config: {{query: SELECT 1 AS x}}\n" for w in range(PROCESSES)))
    rounds = 25
    _run_workers(_finish_steps, [(str(tmp_path / "sessions"), str(pipeline), w, rounds)
                                 for w in range(PROCESSES)])
    for r in range(rounds):
        events = Session(Settings(sessions_dir=tmp_path / "sessions"), f"round-{r}"
                         ).read_events()
        ends = [i for i, e in enumerate(events) if e["event"] == "run_end"]
        assert len(ends) == 1, (r, [e["event"] for e in events])
        assert events[ends[0]]["status"] == "success"
        assert ends[0] == len(events) - 1  # after every step_complete


def test_log_lock_is_reentrant_across_spellings_of_one_session(tmp_path: Path) -> None:
    """Holding the lock (reading events before run_end) and appending through another Session
    object for the same directory, reached through a symlink, must not lock itself out."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    a = Session(Settings(sessions_dir=tmp_path / "real"), "s")
    b = Session(Settings(sessions_dir=tmp_path / "link"), "s")
    a.log_event("first")
    with a.locked_events() as events:
        assert [e["event"] for e in events] == ["first"]
        b.log_event("second")
    assert [e["event"] for e in a.read_events()] == ["first", "second"]


SPILL_DIR_OF_ANOTHER_PROCESS = """
import sys
from pathlib import Path
from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime.session import Session
con = Session(Settings(sessions_dir=Path(sys.argv[1])), "s1").open_workspace_connection()
print(con.execute("SELECT current_setting('temp_directory')").fetchone()[0])
"""


def test_steps_of_one_session_in_two_processes_never_share_spill_files(tmp_path: Path) -> None:
    """DuckDB names its spill files alike in every process: parallel steps of one session (the
    multiprocess or Celery executor) spilling into one directory broke each other's queries."""
    session = Session(Settings(sessions_dir=tmp_path, memory_limit="64MB"), "s1")
    con = session.open_workspace_connection()
    mine = con.execute("SELECT current_setting('temp_directory')").fetchone()[0]
    con.close()  # a session file has one writer: the other process opens it after us
    other = subprocess.run([sys.executable, "-c", SPILL_DIR_OF_ANOTHER_PROCESS, str(tmp_path)],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert mine != other
    assert Path(mine).parent == Path(other).parent == session.tmp_dir
    # a sort larger than the memory limit spills into a directory DuckDB creates itself
    con = session.open_workspace_connection()
    total = con.execute("SELECT sum(x) FROM (SELECT range AS x, md5(range::VARCHAR) AS h "
                        "FROM range(3000000) ORDER BY h)").fetchone()[0]
    con.close()
    assert total == sum(range(3000000))
