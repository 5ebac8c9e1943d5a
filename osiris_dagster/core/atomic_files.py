"""Files that readers see whole or not at all: write a temporary file next to the target, flush
it to disk, rename it into place, then persist the rename. The one place for this, used by
session state and manifests, the CSV writer, the CLI's instance config and its run shards; and
for removing the temporary files of a process killed mid-write."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` in ``path``, replaced in one rename (the temporary name is unique per process
    and thread, so concurrent writers never share one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        publish(tmp, path)
    finally:
        remove_quietly(tmp)


def temporary_name(path: Path, directory: Path | None = None) -> Path:
    """``.<name>.<pid>.<thread>.tmp`` for ``path``, in ``directory`` (default: beside it): unique
    per process and thread, and what :func:`remove_orphaned_temp_files` recognises."""
    return (directory or path.parent) / \
        f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"


def publish(tmp: Path, target: Path) -> None:
    """Rename a finished temporary file over ``target`` durably: its data first, then the rename."""
    fsync_file(tmp)
    os.replace(tmp, target)
    fsync_dir(target.parent)


def publish_new(tmp: Path, target: Path) -> bool:
    """Like :func:`publish`, but never over an existing ``target``: False (and nothing changed)
    when one is already there. ``tmp`` stays; the caller removes it."""
    fsync_file(tmp)
    try:
        os.link(tmp, target)
    except FileExistsError:
        return False
    fsync_dir(target.parent)
    return True


def fsync_file(path: Path) -> None:
    """Flush a closed file (ours, or one DuckDB wrote) or a directory to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Persist a rename; best effort because some filesystems refuse fsync on directories."""
    with contextlib.suppress(OSError):
        fsync_file(path)


_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def remove_orphaned_temp_files(directory: Path, name: str | None = None) -> None:
    """Remove what a process killed mid-write (kill -9, power loss) left in ``directory``: its
    temporary files ``.<name>.<pid>.<token>.tmp`` (and SQLite's ``-wal``, ``-shm`` and
    ``-journal`` beside one), for ``name`` or, when None, for any name.

    A file is left when a process with its pid may still be writing it: one exists and, where
    ``/proc`` says when it started, it started before the file was last written. So the file
    of a process that had the same pid before this one (a container's first process is always
    pid 1) is removed. A process in another PID namespace may look gone; its writer then fails
    to publish that file and handles it as any write error. Names that cannot be a process'
    (no ASCII pid, a pid no system has) are left alone."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        pid = _temp_file_pid(entry.name, name)
        if pid is None:
            continue
        try:
            modified = entry.stat(follow_symlinks=False).st_mtime
        except OSError:  # gone meanwhile
            continue
        if not _may_be_writing(pid, modified):
            remove_quietly(Path(entry.path))


def _temp_file_pid(entry: str, name: str | None) -> int | None:
    """The pid in a temporary file's name (see :func:`remove_orphaned_temp_files`); None for
    any other name."""
    stem = next((entry[:-len(s)] for s in _SQLITE_SIDE_FILES if entry.endswith(s)), entry)
    if not (stem.startswith(".") and stem.endswith(".tmp")):
        return None
    owner, _, _token = stem[1:-len(".tmp")].rpartition(".")
    target, _, pid = owner.rpartition(".")
    if not (target and pid.isascii() and pid.isdigit()) or (name is not None and target != name):
        return None
    return int(pid) if int(pid) <= _MAX_PID else None


_MAX_PID = 2**22  # Linux's highest pid_max; other systems stay below it
# A process' start is counted in clock ticks (10 ms) and a file's time is the kernel's coarse
# clock (a tick or so behind): a file counts as older than a process only when it is older by
# more than that.
_START_ROUNDING_S = 0.1


def _may_be_writing(pid: int, modified: float) -> bool:
    """Whether the process with ``pid`` may have written a file last modified at ``modified``."""
    if pid != os.getpid() and not process_alive(pid):
        return False
    started = process_start(pid)
    return started is None or modified >= started - _START_ROUNDING_S


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_start(pid: int) -> float | None:
    """When the process with this id started (seconds since the epoch), where ``/proc`` tells
    (Linux); None otherwise. ``/proc`` counts it in clock ticks since boot; the boot time is
    taken from the clocks now, not from ``/proc/stat``'s ``btime``, which is cut to the second."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        ticks = int(stat[stat.rindex(")") + 2:].split()[19])  # field 22, starttime
        booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        return booted + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):  # no /proc, no CLOCK_BOOTTIME
        return None


def remove_quietly(path: Path) -> None:
    """Delete a temporary file; a failure to delete must never hide the original error."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
