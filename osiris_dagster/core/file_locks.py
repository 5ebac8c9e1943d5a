"""flocks on lock files: exclusive, for set-up that one process at a time must do (creating a
Dagster instance's SQLite files, changing a step's records), shared, for work that must not
overlap such a change (a step receiving an incremental extractor's rows), and one tried
without waiting."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def held_lock(path: Path, shared: bool = False) -> Iterator[bool]:
    """Hold an exclusive flock on the file ``path`` (made, 0644, if missing) while inside,
    waiting for it first. Another user's lock file is locked through a read-only descriptor
    (flock needs no write access), so users who share a directory still wait on each other.
    Yields False, holding nothing, only when the file can be neither made nor opened (a
    read-only or closed directory): whatever the caller then writes there fails on its own."""
    fd = None
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            fd = os.open(path, flags, 0o644)
            break
        except OSError:
            continue
    if fd is None:
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)


@contextmanager
def lock_or_none(path: Path, removed_after: bool = False) -> Iterator[bool]:
    """Hold an exclusive flock on ``path`` (made if missing) while inside, if it is free now:
    yields False, holding nothing, when another process holds it (shared or exclusive), and
    True too when the file cannot be made (nothing to hold it against).

    ``removed_after``: the holder removes the file before it lets go, so a file locked just
    after its holder removed it guards nothing: it is then opened and locked anew."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            yield True
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            if removed_after and not _still_at(fd, path):
                continue
            try:
                yield True
            finally:
                if removed_after:
                    with contextlib.suppress(OSError):
                        path.unlink()
            return
        finally:
            os.close(fd)


def _still_at(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False
