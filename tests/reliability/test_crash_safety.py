"""Real faults during a run: `kill -9` in the middle of an extract, a transform and a write, and a
full disk (a file-size limit) while writing. Afterwards the previous output is byte-identical, no
temporary file stays next to it after the next run, the killed session's database still opens,
and running the pipeline again (whole, or `--select` of the killed step) succeeds."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from .conftest import (
    TMP_TABLE_PREFIX,
    CliResult,
    assert_no_traceback,
    db_tables,
    hidden_temp_files,
    kill_group,
    run_cli,
    start_cli,
    step_events,
)

N_ROWS = 2_000_000

PIPELINE = """\
oml_version: "0.1.0"
name: crash-test
steps:
  - id: extract
    component: filesystem.csv_extractor
    mode: read
    config: {{path: "{csv}"}}
  - id: transform
    component: duckdb.processor
    mode: transform
    config:
      query: >
        SELECT id, name, amount * 2 AS amount2, grp, md5(name || id::VARCHAR) AS h
        FROM input_df
  - id: write
    component: filesystem.csv_writer
    mode: write
    config: {{path: out/big_out.csv}}
"""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("crash_data") / "big.csv"
    with duckdb.connect() as con:
        con.execute(
            "COPY (SELECT range AS id, 'name_' || (range % 1000) AS name, range * 0.5 AS amount, "
            f"range % 7 AS grp FROM range({N_ROWS})) TO '{path}' (HEADER)")
    yield path
    path.unlink(missing_ok=True)


@dataclass
class Project:
    cwd: Path

    @property
    def sessions(self) -> Path:
        return self.cwd / "sessions"

    @property
    def target(self) -> Path:
        return self.cwd / "out" / "big_out.csv"

    def run(self, *args: str, preexec_fn: Callable[[], None] | None = None) -> CliResult:
        res = run_cli(["run", "pipeline.yaml", "--sessions-dir", "sessions", *args], self.cwd,
                      timeout=180, preexec_fn=preexec_fn)
        assert not res.timed_out, res.describe()
        assert_no_traceback(res.output)
        return res

    def session_dirs(self) -> set[Path]:
        if not self.sessions.is_dir():
            return set()
        return {p for p in self.sessions.iterdir() if not p.name.startswith(".")}


def _remove_big_files(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size > (1 << 20):
            path.unlink()


@pytest.fixture
def project(tmp_path: Path, big_csv: Path) -> Iterator[Project]:
    (tmp_path / "pipeline.yaml").write_text(PIPELINE.format(csv=big_csv), encoding="utf-8")
    yield Project(tmp_path)
    _remove_big_files(tmp_path)  # a few hundred MB per test otherwise


def run_and_kill(project: Project, step_id: str) -> Path:
    """Start a run, SIGKILL its process group while ``step_id`` is running; the session dir."""
    before = project.session_dirs()
    proc = start_cli(["run", "pipeline.yaml", "--sessions-dir", "sessions"], project.cwd,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    session: Path | None = None
    deadline = time.monotonic() + 120
    try:
        while True:
            assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before {step_id}"
            assert time.monotonic() < deadline, f"step {step_id} never started"
            if session is None:
                new = project.session_dirs() - before
                session = next(iter(new), None)
            if session is not None and "step_start" in step_events(session, step_id):
                break
            time.sleep(0.005)
        if step_id == "write":
            # mid-write for certain: the writer's temporary file exists
            while not hidden_temp_files(project.target):
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.002)
            time.sleep(0.05)
        else:
            # the step has opened the session database (a loaded machine can take a while)
            while not (session / "pipeline_data.duckdb").is_file():
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.002)
            time.sleep(0.15)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert proc.returncode == -signal.SIGKILL
    assert session is not None
    events = step_events(session, step_id)
    assert "step_start" in events and "step_complete" not in events, \
        f"{step_id} was not mid-step when killed: {events}"
    return session


def assert_session_db_opens(session: Path) -> dict[str, int]:
    """Tables -> rows of a session database opened with duckdb.connect(read_only=True)."""
    db = session / "pipeline_data.duckdb"
    assert db.is_file(), f"{db} is missing"
    return db_tables(db)


@pytest.mark.parametrize("step_id", ["extract", "transform", "write"])
def test_kill_9_mid_step_keeps_previous_output_and_recovers(project: Project,
                                                            step_id: str) -> None:
    first = project.run()
    assert first.rc == 0, first.describe()
    baseline = sha256(project.target)
    completed_before = {"extract": [], "transform": ["extract"],
                        "write": ["extract", "transform"]}[step_id]

    killed = run_and_kill(project, step_id)

    # the previous output is byte-identical
    assert sha256(project.target) == baseline
    if step_id == "write":
        assert hidden_temp_files(project.target), "expected the killed writer's temporary file"
    # the killed session's database opens; completed steps are whole, the killed one absent
    tables = assert_session_db_opens(killed)
    assert {t: n for t, n in tables.items() if not t.startswith(TMP_TABLE_PREFIX)} == \
        dict.fromkeys(completed_before, N_ROWS)

    # `--select` of the killed step: its upstream comes from the killed (latest) session
    selected = project.run("--select", step_id)
    assert selected.rc == 0, selected.describe()
    new_session = selected.session_dir
    assert new_session is not None and new_session != killed
    if step_id != "write":
        assert assert_session_db_opens(new_session) == {step_id: N_ROWS}
    else:
        assert sha256(project.target) == baseline
    assert hidden_temp_files(project.target) == [], \
        "a temporary file of the killed run is still next to the output after the next run"

    # and the whole pipeline runs again, writing the same bytes
    again = project.run()
    assert again.rc == 0, again.describe()
    assert sha256(project.target) == baseline
    assert hidden_temp_files(project.target) == []
    assert assert_session_db_opens(again.session_dir) == {"extract": N_ROWS, "transform": N_ROWS}
    assert_session_db_opens(killed)  # still opens after later runs


# -- disk full --------------------------------------------------------------------------------
FULL_PIPELINE = """\
oml_version: "0.1.0"
name: disk-full
steps:
  - id: {gen_id}
    component: duckdb.processor
    mode: transform
    config:
      query: "{query}"
  - id: write-out
    component: filesystem.csv_writer
    mode: write
    config: {{path: out/full.csv}}
"""
FILE_SIZE_LIMIT = 16 << 20


def limit_file_size(limit: int) -> Callable[[], None]:
    """`ulimit -f`: a write past ``limit`` bytes fails with EFBIG instead of killing the process."""
    def pre() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


def test_disk_full_while_writing_csv_fails_clearly_and_keeps_previous_output(
        tmp_path: Path) -> None:
    # ~54 MB of CSV from a table DuckDB stores in well under 1 MB
    (tmp_path / "pipeline.yaml").write_text(FULL_PIPELINE.format(
        gen_id="gen", query="SELECT range AS id, repeat('x', 100) AS pad FROM range(500000)"),
        encoding="utf-8")
    project = Project(tmp_path)
    target = tmp_path / "out" / "full.csv"
    try:
        first = project.run()
        assert first.rc == 0, first.describe()
        baseline = sha256(target)
        assert target.stat().st_size > 2 * FILE_SIZE_LIMIT

        full = project.run(preexec_fn=limit_file_size(FILE_SIZE_LIMIT))
        assert full.rc == 1, full.describe()
        assert "step 'write-out' failed" in full.stderr, full.describe()
        assert str(target) in full.stderr
        assert sha256(target) == baseline
        assert hidden_temp_files(target) == []
        assert assert_session_db_opens(full.session_dir) == {"gen": 500_000}

        again = project.run()
        assert again.rc == 0, again.describe()
        assert sha256(target) == baseline
        assert hidden_temp_files(target) == []
    finally:
        _remove_big_files(tmp_path)


def test_disk_full_while_building_a_step_table_fails_clearly(tmp_path: Path) -> None:
    # ~70 MB of incompressible text in the session database
    (tmp_path / "pipeline.yaml").write_text(FULL_PIPELINE.format(
        gen_id="gen-big", query="SELECT range AS id, md5(range::VARCHAR) AS h "
                                "FROM range(2000000)"), encoding="utf-8")
    previous = b"id,h\n1,previous\n"
    target = tmp_path / "out" / "full.csv"
    target.parent.mkdir()
    target.write_bytes(previous)
    project = Project(tmp_path)
    try:
        full = project.run(preexec_fn=limit_file_size(FILE_SIZE_LIMIT))
        assert full.rc == 1, full.describe()
        assert "step 'gen-big' failed" in full.stderr, full.describe()
        assert target.read_bytes() == previous
        assert hidden_temp_files(target) == []
        tables = assert_session_db_opens(full.session_dir)
        assert "gen_big" not in tables
    finally:
        _remove_big_files(tmp_path)
