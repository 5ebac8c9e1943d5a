"""Whether the process of an ``osiris-dagster run`` is still there, where the Dagster instance
cannot tell: a run killed with SIGKILL (by hand, or by the kernel's OOM killer) stays STARTED in
the instance for good, and its session unfinished, so ``sessions clean`` kept it (gigabytes of
spill files) until ``--force``, which would also delete the sessions of runs still going.

The CLI holds an exclusive flock on ``<sessions dir>/.dagster/running/<run id>.lock`` while its
run lasts (the kernel lets go of it however the process ends) and removes the file when it ends.
The file appears already locked (made under a temporary name, locked, then renamed), and names
the host: a lock seen from another machine (a shared sessions directory) proves nothing there,
so only locks of this host count. Runs launched by Dagster (a run worker, whose run monitoring
marks a lost run failed) hold none: for those the instance decides, as before."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path

RUNNING_DIR = Path(".dagster") / "running"


def _lock_path(sessions_dir: Path, run_id: str) -> Path:
    return Path(sessions_dir) / RUNNING_DIR / f"{run_id}.lock"


@contextlib.contextmanager
def process_running(sessions_dir: Path, run_id: str) -> Iterator[None]:
    """Hold the run's lock while inside (nothing, where the directory cannot be written)."""
    path = _lock_path(sessions_dir, run_id)
    made = path.with_name(f".{run_id}.{os.getpid()}.tmp")
    fd = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(made, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode())
        os.rename(made, path)
    except OSError:
        if fd is not None:
            os.close(fd)
            fd = None
            with contextlib.suppress(OSError):
                made.unlink()  # (a full disk: not left behind)
    try:
        yield
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                path.unlink()
            os.close(fd)


def runs_whose_process_is_gone(sessions_dir: Path, run_ids: Iterable[str]) -> set[str]:
    """Those of ``run_ids`` whose ``osiris-dagster run`` on this host has ended without
    removing its lock (killed). The locks stay (a clean that keeps the session, or a dry run,
    must find them again): :func:`forget_runs` removes them with the sessions."""
    gone: set[str] = set()
    host = socket.gethostname()
    for run_id in set(run_ids):
        path = _lock_path(sessions_dir, run_id)
        try:
            holder = json.loads(path.read_text(encoding="utf-8"))
            fd = os.open(path, os.O_RDONLY)  # never made here: a missing lock says nothing
        except (OSError, ValueError):
            continue  # no lock: not a CLI run, or it ended and removed it
        try:
            if not isinstance(holder, dict) or holder.get("host") != host:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process holds it: the run is going
            gone.add(run_id)
        finally:
            os.close(fd)  # (releases the lock taken to test it)
    return gone


def forget_runs(sessions_dir: Path, run_ids: Iterable[str]) -> None:
    """Remove the locks of runs whose sessions were deleted."""
    for run_id in set(run_ids):
        with contextlib.suppress(OSError):
            _lock_path(sessions_dir, run_id).unlink()
