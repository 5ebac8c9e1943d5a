"""Files that readers see whole or not at all: write a temporary file next to the target, flush
it to disk, rename it into place, then persist the rename. The one place for this, used by
session state and manifests, the CSV writer, the CLI's instance config and its run shards; and
for removing the temporary files of a process killed mid-write."""

from __future__ import annotations

import contextlib
import os
import threading
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


SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")  # beside a database file SQLite wrote


def remove_orphaned_temp_files(directory: Path, name: str | None = None) -> None:
    """Remove what a process killed mid-write (kill -9, power loss) left in ``directory``: its
    temporary files ``.<name>.<pid>.<token>.tmp`` (and SQLite's ``-wal``, ``-shm`` and
    ``-journal`` beside one), for ``name`` or, when None, for any name.

    A file stays while a process with its pid exists, this one included: it may be writing
    it. So a file whose pid has passed to another process stays until that process ends; where
    every run is a container's first process (always pid 1), a run killed there leaves its file
    for good. A process in another PID namespace may look gone; its writer then fails to
    publish that file and handles it as any write error. Names that cannot carry a process id
    (no ASCII digits, a pid no system has) are left alone."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        pid = _temp_file_pid(entry.name, name)
        if pid is not None and pid != os.getpid() and not process_alive(pid):
            remove_quietly(Path(entry.path))


_MAX_PID = 2**22  # Linux's highest pid_max; other systems stay below it


def _temp_file_pid(entry: str, name: str | None) -> int | None:
    """The pid in a temporary file's name (see :func:`remove_orphaned_temp_files`); None for
    any other name."""
    stem = next((entry[:-len(s)] for s in SQLITE_SIDE_FILES if entry.endswith(s)), entry)
    if not (stem.startswith(".") and stem.endswith(".tmp")):
        return None
    owner, _, _token = stem[1:-len(".tmp")].rpartition(".")
    target, _, pid = owner.rpartition(".")
    if not (target and pid.isascii() and pid.isdigit()) or (name is not None and target != name):
        return None
    return int(pid) if int(pid) <= _MAX_PID else None


def process_alive(pid: int) -> bool:
    """Whether a process with this id may exist (it may belong to another user; when the
    system will not say, it may)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: another user's; anything else: cannot tell
        return True
    return True


def remove_quietly(path: Path) -> None:
    """Delete a temporary file; a failure to delete must never hide the original error."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
