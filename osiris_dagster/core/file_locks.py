"""An exclusive flock on a lock file, for set-up that one process at a time must do (creating a
Dagster instance's SQLite files)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def held_lock(path: Path) -> Iterator[bool]:
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
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)
