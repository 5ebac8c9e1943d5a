"""held_lock: one process at a time, also across users sharing a directory."""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import pytest

from osiris_dagster.core.file_locks import held_lock

from .helpers import as_another_user


def _held_elsewhere(path: Path) -> bool:
    """Whether an open file other than a new one holds the flock of ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_the_lock_is_held_inside_and_released_after(tmp_path: Path) -> None:
    path = tmp_path / ".set-up.lock"
    with held_lock(path) as locked:
        assert locked and _held_elsewhere(path)
    assert not _held_elsewhere(path)


def test_where_no_lock_file_can_be_made_nothing_is_held(tmp_path: Path) -> None:
    with held_lock(tmp_path / "missing" / ".set-up.lock") as locked:
        assert locked is False


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to lock as another user")
def test_another_users_lock_file_is_locked_read_only() -> None:
    """The first user's run made the lock file (0644) in a shared directory: a second user's
    run cannot open it for writing, and must still wait on it, not go on without it. (In the
    system's temporary directory: pytest's own is closed to other users.)"""
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        directory.chmod(0o1777)
        path = directory / ".set-up.lock"
        with held_lock(path):
            pass
        assert path.stat().st_uid == 0 and path.stat().st_mode & 0o777 == 0o644

        def locks_it() -> bool:
            with held_lock(path) as locked:
                return locked and _held_elsewhere(path)

        assert as_another_user(locks_it)
