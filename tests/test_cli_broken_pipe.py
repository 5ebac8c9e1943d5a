"""The CLI whose stdout reader leaves early (`osiris-dagster sessions list | head -1`): it exits
quietly with 141 (128 + SIGPIPE, what a shell reports for a program its pipe's reader ended),
without a Python traceback, and a `run` still finishes its steps."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from .test_cli_run import CONNECTIONS, EXAMPLE, cli

PYTHON_BUFFERS = 2 * 8192  # TextIOWrapper's pending chunk + BufferedWriter's buffer, at most


def _env(unbuffered: bool = False) -> dict[str, str]:
    """The environment without our settings; stdout block-buffered (a user's default: the last
    output meets the closed pipe at the interpreter's final flush) unless ``unbuffered``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OSIRIS_") and k not in ("DAGSTER_HOME", "PYTHONUNBUFFERED")}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    return env


def _command(*args: str) -> list[str]:
    """The installed console script when there is one (what users run), else the module."""
    script = Path(sys.executable).parent / "osiris-dagster"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "osiris_dagster.cli", *args]


def _small_pipe() -> tuple[int, int, int]:
    """(read fd, write fd, capacity): the pipe shrunk to its minimum so that a modest output
    overflows it."""
    r, w = os.pipe()
    if hasattr(fcntl, "F_SETPIPE_SZ"):
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    capacity = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) if hasattr(fcntl, "F_GETPIPE_SZ") else 1 << 20
    return r, w, capacity


def _fake_sessions(root: Path, count: int) -> None:
    """``count`` finished sessions as a run leaves them in the duckdb store (its event log)."""
    for i in range(count):
        logs = root / str(uuid.uuid4()) / "logs"
        logs.mkdir(parents=True)
        ts = f"2024-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}+00:00"
        events = [{"ts": ts, "event": "run_start", "pipeline": "director-stats"},
                  {"ts": ts, "event": "run_end", "status": "success"}]
        (logs / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events),
                                           encoding="utf-8")


def _assert_quiet(stderr: str) -> None:
    for marker in ("Traceback", "BrokenPipeError", "Exception ignored", "Broken pipe"):
        assert marker not in stderr, stderr


def test_sessions_list_into_head_one_exits_quietly(tmp_path: Path) -> None:
    r, w, capacity = _small_pipe()
    # Before the reader closes, the process has produced at most the pipe's capacity, the line
    # read and Python's buffers: a longer listing must write again after the close.
    line_length = 80  # a listed session's line is longer than this
    count = (capacity + PYTHON_BUFFERS + 4096) // line_length + 1
    _fake_sessions(tmp_path / "s", count)
    proc = subprocess.Popen(_command("sessions", "--sessions-dir", str(tmp_path / "s"), "list"),
                            cwd=tmp_path, env=_env(), stdout=w, stderr=subprocess.PIPE,
                            text=True)
    os.close(w)
    first = b""
    try:
        while not first.endswith(b"\n"):
            chunk = os.read(r, 1)
            assert chunk, "the listing ended before its first line"
            first += chunk
    finally:
        os.close(r)  # like `head -1`: the reader leaves after one line
    stderr = proc.communicate(timeout=120)[1]
    assert "director-stats" in first.decode() and "success" in first.decode()
    _assert_quiet(stderr)
    assert proc.returncode == 141


def _run_without_reader(args: list[str], cwd: Path, unbuffered: bool = False
                        ) -> subprocess.CompletedProcess[str]:
    """The command with stdout to a pipe whose reader has already gone: its first write (or
    flush) fails with EPIPE, whatever the output's size."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run(_command(*args), cwd=cwd, env=_env(unbuffered), stdout=w,
                              stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(w)


@pytest.mark.parametrize("args", [
    ["--help"],
    ["validate", str(EXAMPLE), "--connections", str(CONNECTIONS)],
    ["sessions", "--sessions-dir", "s", "list"],
    ["unsettled", "--sessions-dir", "s", "list"],
    ["deliveries", "--sessions-dir", "s", "list"],
    ["init-home", "home"],
], ids=["help", "validate", "sessions", "unsettled", "deliveries", "init-home"])
@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_every_command_exits_quietly_when_its_reader_is_gone(tmp_path: Path, args: list[str],
                                                            unbuffered: bool) -> None:
    (tmp_path / "s").mkdir()
    done = _run_without_reader(args, tmp_path, unbuffered)
    _assert_quiet(done.stderr)
    # argparse itself drops an OSError of its help text's write (unbuffered: exit 0 then)
    assert done.returncode == (0 if args == ["--help"] and unbuffered else 141)


def test_run_finishes_its_steps_when_its_reader_is_gone(tmp_path: Path) -> None:
    """Printing a step's progress must not fail the step: the run goes on, its output to
    /dev/null, and ends as it would have (141 says the output was cut)."""
    done = _run_without_reader(["run", str(EXAMPLE), "--connections", str(CONNECTIONS),
                                "--sessions-dir", "s"], tmp_path)
    _assert_quiet(done.stderr)
    assert done.returncode == 141, done.stderr
    listed = cli("sessions", "--sessions-dir", "s", "list", cwd=tmp_path)
    lines = [ln for ln in listed.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1 and "success" in lines[0], listed.stdout


def test_a_failed_run_keeps_exit_1_when_its_error_output_is_cut(tmp_path: Path) -> None:
    """`run fail.yaml 2>&1 | head -1` exited 141, which says the run succeeded with its output
    cut: the error lines met the closed pipe after the step had failed."""
    pipeline = tmp_path / "fail.yaml"
    pipeline.write_text('oml_version: "0.1.0"\nname: fail\nsteps:\n  - id: boom\n'
                        "    component: duckdb.processor\n    mode: transform\n"
                        "    config: {query: \"SELECT error('boom') AS x\"}\n", encoding="utf-8")
    r, w = os.pipe()
    os.close(r)
    try:
        done = subprocess.run(_command("run", str(pipeline), "--sessions-dir", "s"),
                              cwd=tmp_path, env=_env(), stdout=w, stderr=w, timeout=300)
    finally:
        os.close(w)
    assert done.returncode == 1
