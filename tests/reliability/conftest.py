"""Helpers for the reliability tests: the real CLI in subprocesses (own process group, timeouts,
kill -9), a batch runner that runs many `osiris-dagster run` cases in one interpreter, and checks
shared by the bad-input, crash-safety and concurrency tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

PY = sys.executable
TMP_TABLE_PREFIX = "__osiris_tmp_"


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process environment without OSIRIS_* / DAGSTER_HOME (plus ``extra``)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OSIRIS_") and k != "DAGSTER_HOME"}
    env["OSIRIS_HEARTBEAT_SECONDS"] = "0"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


@dataclass
class CliResult:
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        tail = self.output[-3000:]
        return f"rc={self.rc} timed_out={self.timed_out} seconds={self.seconds:.1f}\n{tail}"

    @property
    def session_dir(self) -> Path | None:
        return session_dir_from(self.stdout)


def session_dir_from(stdout: str) -> Path | None:
    for line in stdout.splitlines():
        if line.startswith("session dir: "):
            return Path(line.removeprefix("session dir: ").strip())
    return None


def start_cli(args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None,
              preexec_fn: Callable[[], None] | None = None, stdout: Any = subprocess.PIPE,
              stderr: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    """`python -m osiris_dagster.cli ARGS` in its own session / process group (pgid == pid)."""
    kwargs: dict[str, Any] = {}
    if preexec_fn is not None:
        def _pre() -> None:
            os.setsid()
            preexec_fn()
        kwargs["preexec_fn"] = _pre
    else:
        kwargs["start_new_session"] = True
    return subprocess.Popen([PY, "-m", "osiris_dagster.cli", *args], cwd=cwd,
                            env=clean_env(env), stdout=stdout, stderr=stderr, text=True,
                            **kwargs)


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the process group of a process we started (never anything else)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=30)


def run_cli(args: Sequence[str], cwd: Path, timeout: float = 120,
            env: Mapping[str, str] | None = None,
            preexec_fn: Callable[[], None] | None = None) -> CliResult:
    started = time.monotonic()
    proc = start_cli(args, cwd, env, preexec_fn)
    try:
        out, err = proc.communicate(timeout=timeout)
        return CliResult(proc.returncode, out, err, time.monotonic() - started)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        return CliResult(None, out or "", err or "", time.monotonic() - started, True)
    finally:
        if proc.poll() is None:
            kill_group(proc)


def read_events(session_dir: Path) -> list[dict[str, Any]]:
    path = session_dir / "logs" / "events.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def step_events(session_dir: Path, step_id: str) -> list[str]:
    return [e.get("event") for e in read_events(session_dir) if e.get("step_id") == step_id]


def hidden_temp_files(target: Path) -> list[Path]:
    """Temporary files a writer may leave next to ``target`` (``.<name>.*``)."""
    if not target.parent.is_dir():
        return []
    return sorted(p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}."))


def db_tables(db_path: Path) -> dict[str, int]:
    """table -> row count of a session database, opened read-only."""
    with duckdb.connect(str(db_path), read_only=True) as con:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()]
        return {n: int(con.execute(f'SELECT count(*) FROM "{n.replace(chr(34), chr(34) * 2)}"')
                       .fetchone()[0]) for n in names}


def db_query(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def assert_no_traceback(text: str) -> None:
    assert "Traceback (most recent call last)" not in text, text[-4000:]


# -- many `run` cases in one interpreter ------------------------------------------------------
_BATCH_RUNNER = r'''
import contextlib, io, json, os, sys, time, traceback
spec_path, result_path = sys.argv[1], sys.argv[2]
with open(spec_path, encoding="utf-8") as fh:
    items = json.load(fh)
from osiris_dagster import cli

def emit(record):
    with open(result_path, "a", encoding="utf-8") as res:
        res.write(json.dumps(record) + "\n")

for item in items:
    emit({"id": item["id"], "event": "start"})
    os.chdir(item["cwd"])
    saved = dict(os.environ)
    os.environ.update(item["env"])
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(item["argv"])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 2
    except BaseException:
        err.write(traceback.format_exc())
        rc = -1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    emit({"id": item["id"], "event": "end", "rc": rc, "stdout": out.getvalue()[:2000000],
          "stderr": err.getvalue()[:2000000], "seconds": time.monotonic() - started})
'''


@dataclass
class BatchItem:
    id: str
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 60.0


def run_batch(items: Sequence[BatchItem], workdir: Path) -> dict[str, CliResult]:
    """Run each item's `cli.main(argv)` in one subprocess, in order, output captured per item.

    A case that exceeds its timeout (or kills the interpreter) is recorded as such and the
    remaining cases continue in a fresh subprocess, so one hang costs only its own timeout.
    """
    results: dict[str, CliResult] = {}
    pending = list(items)
    attempt = 0
    while pending:
        attempt += 1
        spec = workdir / f"batch_{attempt}.json"
        result_file = workdir / f"batch_{attempt}.jsonl"
        spec.write_text(json.dumps([{"id": i.id, "argv": i.argv, "cwd": str(i.cwd),
                                     "env": i.env} for i in pending]), encoding="utf-8")
        log = open(workdir / f"batch_{attempt}.log", "w+", encoding="utf-8")  # noqa: SIM115
        proc = subprocess.Popen([PY, "-c", _BATCH_RUNNER, str(spec), str(result_file)],
                                cwd=workdir, env=clean_env(), stdout=log, stderr=log,
                                start_new_session=True, text=True)
        by_id = {i.id: i for i in pending}
        current: str | None = None
        current_since = time.monotonic()
        seen_lines = 0
        stuck: str | None = None
        try:
            while True:
                exited = proc.poll() is not None
                lines = (result_file.read_text(encoding="utf-8").splitlines()
                         if result_file.exists() else [])
                for line in lines[seen_lines:]:
                    rec = json.loads(line)
                    if rec["event"] == "start":
                        current, current_since = rec["id"], time.monotonic()
                    else:
                        results[rec["id"]] = CliResult(rec["rc"], rec["stdout"], rec["stderr"],
                                                       rec["seconds"])
                        current = None
                seen_lines = len(lines)
                if exited:
                    break
                if current is not None and \
                        time.monotonic() - current_since > by_id[current].timeout:
                    stuck = current
                    kill_group(proc)
                    break
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                kill_group(proc)
            log.seek(0)
            process_output = log.read()
            log.close()
        if stuck is not None:
            results[stuck] = CliResult(None, "", f"(killed after {by_id[stuck].timeout}s)",
                                       by_id[stuck].timeout, timed_out=True)
        elif current is not None:  # the interpreter died inside a case
            results[current] = CliResult(proc.returncode, "", "interpreter died:\n"
                                         + process_output[-4000:], 0.0)
        elif "Traceback" in process_output:
            for item in pending:
                if item.id in results:
                    results[item.id].stderr += "\n[batch process output]\n" + process_output
        done = set(results)
        if stuck is None and current is None and not all(i.id in done for i in pending):
            raise RuntimeError(f"batch runner stopped early:\n{process_output[-4000:]}")
        pending = [i for i in pending if i.id not in done]
    return results
