"""core/atomic_files: owned temporary files, and the sweep of what a killed process left."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from osiris_dagster.core import atomic_files
from osiris_dagster.core.atomic_files import (
    LOCK_SUFFIX,
    NEW_LOCK_MAX_AGE_S,
    NEW_LOCK_SUFFIX,
    owned_temporary,
    prepare_replacement,
    publish,
    remove_orphaned_temp_files,
    replaced_file,
    temporary_name,
    write_text_atomic,
)

from .helpers import as_another_user, gone_pid, lock_is_held


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_only_the_files_of_gone_processes_are_removed(tmp_path: Path) -> None:
    dead, me, alive = gone_pid(), os.getpid(), os.getppid()
    gone = [f".out.csv.{dead}.0123abcd.tmp", f".out.csv.{dead}.1.tmp-wal",
            f".a.b.db.{dead}.2.tmp", f".a.b.db.{dead}.2.tmp-journal"]
    kept = [f".out.csv.{me}.0123abcd.tmp", f".out.csv.{alive}.0123abcd.tmp",
            ".out.csv.\u00b2.x.tmp", ".out.csv.\u0663.x.tmp",  # digits, not ASCII ones
            ".out.csv.99999999999.x.tmp", ".out.csv.12.tmp",  # no pid any system has; no token
            f"out.csv.{dead}.x.tmp", f".out.csv.{dead}.x.tmpx", "out.csv", temporary_name(
                tmp_path / "state.json").name]
    for name in gone + kept:
        (tmp_path / name).write_text("x")
    remove_orphaned_temp_files(tmp_path)
    assert _names(tmp_path) == sorted(kept)


def test_a_name_limits_the_sweep_to_that_targets_files(tmp_path: Path) -> None:
    dead = gone_pid()
    for name in (f".out.csv.{dead}.a.tmp", f".other.csv.{dead}.a.tmp", f".csv.{dead}.a.tmp"):
        (tmp_path / name).write_text("x")
    remove_orphaned_temp_files(tmp_path, "out.csv")
    assert _names(tmp_path) == sorted([f".other.csv.{dead}.a.tmp", f".csv.{dead}.a.tmp"])


@pytest.mark.parametrize("name", ["é" * 115 + ".csv", "x" * 251 + ".csv"])
def test_a_name_near_the_length_limit_is_written_and_swept(tmp_path: Path, name: str) -> None:
    """A 230-byte file name plus `.<pid>.<token>.tmp` passed the 255-byte limit: every write
    of such a file failed. The temporary name now holds the name's start and a digest."""
    target = tmp_path / name
    write_text_atomic(target, "rows\n")
    assert target.read_text() == "rows\n" and _names(tmp_path) == [name]
    with owned_temporary(target) as tmp:
        assert len(tmp.name.encode()) + len(NEW_LOCK_SUFFIX) <= 255
    tmp.unlink(missing_ok=True)
    orphan = temporary_name(target).name.replace(f".{os.getpid()}.", f".{gone_pid()}.")
    (tmp_path / orphan).write_text("x")
    remove_orphaned_temp_files(tmp_path, "other.csv")
    assert orphan in _names(tmp_path)
    remove_orphaned_temp_files(tmp_path, name)
    assert _names(tmp_path) == [name]


def test_a_missing_directory_is_nothing_to_sweep(tmp_path: Path) -> None:
    remove_orphaned_temp_files(tmp_path / "absent")


# A process that makes an owned temporary file for the target in argv[1], writes it, prints its
# path, and keeps it (and its lock) until its standard input closes.
_OWNER = """
import sys
from pathlib import Path
from osiris_dagster.core.atomic_files import owned_temporary, remove_quietly
with owned_temporary(Path(sys.argv[1])) as tmp:
    tmp.write_text("partial")
    print(tmp, flush=True)
    sys.stdin.read()
    remove_quietly(tmp)
"""


@contextmanager
def _owner(target: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    child = subprocess.Popen([sys.executable, "-c", _OWNER, str(target)], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        yield child, Path(child.stdout.readline().strip())
    finally:
        child.kill()
        child.wait()


def _renamed_to_pid(tmp: Path, pid: int) -> Path:
    """The owned file and its lock file, renamed as if their pid were ``pid`` (what a reused
    pid, or another PID namespace's process, looks like to the sweep)."""
    head, _pid, token, tail = tmp.name.rsplit(".", 3)
    new = tmp.with_name(f"{head}.{pid}.{token}.{tail}")
    tmp.rename(new)
    Path(f"{tmp}{LOCK_SUFFIX}").rename(f"{new}{LOCK_SUFFIX}")
    return new


def test_an_ended_owners_file_goes_though_its_pid_is_in_use(tmp_path: Path) -> None:
    """In a container every run is pid 1: a killed run's file carries the pid of a live
    process. Its lock is free, so the sweep removes it, and the lock file with it."""
    with _owner(tmp_path / "out.csv") as (child, tmp):
        child.kill()
        child.wait()
    reused = _renamed_to_pid(tmp, os.getppid())
    assert reused.exists() and Path(f"{reused}{LOCK_SUFFIX}").exists()
    remove_orphaned_temp_files(tmp_path)
    assert _names(tmp_path) == []


def test_a_live_owners_file_stays_though_its_pid_looks_gone(tmp_path: Path) -> None:
    """A process of another PID namespace that shares the directory looks gone by its pid;
    its lock is held, so its file stays until it ends."""
    with _owner(tmp_path / "out.csv") as (child, tmp):
        elsewhere = _renamed_to_pid(tmp, gone_pid())
        remove_orphaned_temp_files(tmp_path)
        remove_orphaned_temp_files(tmp_path, "out.csv")
        assert _names(tmp_path) == sorted([elsewhere.name, f"{elsewhere.name}{LOCK_SUFFIX}"])
        child.kill()
        child.wait()
        remove_orphaned_temp_files(tmp_path)
        assert _names(tmp_path) == []


def test_a_lock_file_without_its_file_goes_once_free(tmp_path: Path) -> None:
    """An owner killed after it made its lock and before its file (or after it removed it)."""
    with _owner(tmp_path / "out.csv") as (child, tmp):
        tmp.unlink()
        remove_orphaned_temp_files(tmp_path)
        assert _names(tmp_path) == [f"{tmp.name}{LOCK_SUFFIX}"]  # held: stays
        child.kill()
        child.wait()
    foreign = tmp_path / f".other.csv.{os.getpid()}.x.tmp{LOCK_SUFFIX}"
    foreign.write_text("")
    remove_orphaned_temp_files(tmp_path, "out.csv")
    assert _names(tmp_path) == [foreign.name]  # another target's: not this sweep's
    remove_orphaned_temp_files(tmp_path)
    assert _names(tmp_path) == []


def test_an_owner_ending_normally_leaves_nothing(tmp_path: Path) -> None:
    with _owner(tmp_path / "out.csv") as (child, _tmp):
        child.communicate("")  # closes its standard input: the block ends
        assert child.returncode == 0
    assert _names(tmp_path) == []


def test_owned_names_differ_per_call(tmp_path: Path) -> None:
    """Two processes with one pid (two containers' first processes) never share a name."""
    names = {temporary_name(tmp_path / "out.csv").name for _ in range(100)}
    assert len(names) == 100


def _with_flock(flock: Any) -> SimpleNamespace:
    """The fcntl module as atomic_files sees it, with ``flock`` replaced."""
    return SimpleNamespace(flock=flock, LOCK_EX=fcntl.LOCK_EX, LOCK_NB=fcntl.LOCK_NB)


def test_a_sweep_in_the_writers_lock_gap_leaves_its_new_lock_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between making its lock file and locking it, a writer's lock file is unlocked. It is
    made as ``.lock-new``, which a sweep judges by its pid (a live one here), and renamed to
    ``.lock`` once locked: a ``.lock`` file is never unlocked while its owner lives, so a sweep
    cannot take it for an ended owner's."""
    swept: list[list[str]] = []

    def sweep_first(fd: Any, operation: int) -> None:
        if not swept:  # the writer's first attempt: a sweep comes first
            swept.append([])
            remove_orphaned_temp_files(tmp_path)
            swept[0] = _names(tmp_path)
        fcntl.flock(fd, operation)

    monkeypatch.setattr(atomic_files, "fcntl", _with_flock(sweep_first))
    with owned_temporary(tmp_path / "out.csv") as tmp:
        monkeypatch.setattr(atomic_files, "fcntl", fcntl)
        assert swept == [[f"{tmp.name}{NEW_LOCK_SUFFIX}"]]
        assert _names(tmp_path) == [f"{tmp.name}{LOCK_SUFFIX}"] and lock_is_held(tmp)
        tmp.write_text("partial")
        remove_orphaned_temp_files(tmp_path)
        assert tmp.exists()
        tmp.unlink()
    assert _names(tmp_path) == []


def test_a_new_lock_file_goes_once_old_and_unlocked(tmp_path: Path) -> None:
    """A writer killed in the instant between making its lock file and renaming it leaves a
    ``.lock-new``. It goes once older than NEW_LOCK_MAX_AGE_S and unlocked, whatever its pid
    (in a container it is pid 1, always alive); a young one stays, even if its pid looks gone
    (its writer may be in another PID namespace, about to lock it)."""
    old = time.time() - NEW_LOCK_MAX_AGE_S - 5
    ended = tmp_path / f".out.csv.1.a.tmp{NEW_LOCK_SUFFIX}"
    young = tmp_path / f".out.csv.{gone_pid()}.b.tmp{NEW_LOCK_SUFFIX}"
    locked = tmp_path / f".out.csv.1.c.tmp{NEW_LOCK_SUFFIX}"
    for path in (ended, young, locked):
        path.write_text("")
    for path in (ended, locked):
        os.utime(path, (old, old))
    with open(locked, "r+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        remove_orphaned_temp_files(tmp_path, "other.csv")
        assert _names(tmp_path) == sorted(p.name for p in (ended, young, locked))
        remove_orphaned_temp_files(tmp_path, "out.csv")
        assert _names(tmp_path) == sorted([young.name, locked.name])


def _removed_before_locking(times: int) -> SimpleNamespace:
    """flock as the writer meets it when a sweep of another PID namespace (which misjudged the
    new lock file) removed that file just before, ``times`` times."""
    left = [times]

    def flock(fd: Any, operation: int) -> None:
        if left[0] > 0:
            left[0] -= 1
            for new in Path(os.readlink(f"/proc/self/fd/{fd}")).parent.glob(
                    f"*{NEW_LOCK_SUFFIX}"):
                new.unlink()
        fcntl.flock(fd, operation)

    return _with_flock(flock)


def test_a_writer_whose_new_lock_file_was_removed_makes_another(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic_files, "fcntl", _removed_before_locking(3))
    with owned_temporary(tmp_path / "out.csv") as tmp:
        assert _names(tmp_path) == [f"{tmp.name}{LOCK_SUFFIX}"] and lock_is_held(tmp)
    assert _names(tmp_path) == []


def test_a_writer_that_cannot_keep_a_lock_does_not_write_without_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic_files, "fcntl", _removed_before_locking(10**6))
    with pytest.raises(OSError, match="could not lock"), \
            owned_temporary(tmp_path / "out.csv"):
        pytest.fail("the block must not run without the lock")
    assert _names(tmp_path) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a sweep as another user")
def test_a_sweep_as_another_user_removes_an_ended_owners_files() -> None:
    """Lock files are 0644: another user's sweep locks them through a read-only descriptor.
    (In the system's temporary directory: pytest's own is closed to other users.)"""
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        directory.chmod(0o777)
        with _owner(directory / "out.csv") as (child, _tmp):
            child.kill()
            child.wait()
        assert len(_names(directory)) == 2
        assert as_another_user(lambda: remove_orphaned_temp_files(directory) is None)
        assert _names(directory) == []


def test_a_sweep_never_takes_a_lock_file_that_was_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep opened an ended owner's lock file; before it locked it, that file was removed
    and a live owner's took its name (with its own temporary file). The sweep gets the old
    file's lock, sees that it is no longer the file at that path, and removes nothing."""
    tmp = tmp_path / f".out.csv.{os.getpid()}.1.tmp"
    lock = Path(f"{tmp}{LOCK_SUFFIX}")
    lock.write_text("")
    tmp.write_text("partial")
    held: list[Any] = []

    def replaced_first(fd: Any, operation: int) -> None:
        if not held:
            lock.unlink()
            held.append(open(lock, "wb"))  # noqa: SIM115 - a live owner's, closed below
            fcntl.flock(held[0], fcntl.LOCK_EX)
        fcntl.flock(fd, operation)

    monkeypatch.setattr(atomic_files, "fcntl", _with_flock(replaced_first))
    try:
        remove_orphaned_temp_files(tmp_path)
    finally:
        for fh in held:
            fh.close()
    assert _names(tmp_path) == sorted([tmp.name, lock.name])


@pytest.mark.parametrize("process_wide_locks", [False, True], ids=["flock", "posix-locks"])
def test_this_process_owned_file_stays_and_its_lock_goes_with_the_block(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, process_wide_locks: bool) -> None:
    """A sweep in the owner's process leaves its file. Also where locks belong to the process
    (NFS emulates flock with POSIX locks): a sweep in another thread would get the lock (and,
    closing its descriptor, drop the writer's), so it leaves this process' own files without
    opening them."""
    if process_wide_locks:
        monkeypatch.setattr(atomic_files, "fcntl", _with_flock(
            lambda fd, operation: fcntl.lockf(fd, operation)))
    with owned_temporary(tmp_path / "out.csv") as tmp:
        tmp.write_text("partial")
        remove_orphaned_temp_files(tmp_path)
        assert _names(tmp_path) == sorted([tmp.name, f"{tmp.name}{LOCK_SUFFIX}"])
        tmp.unlink()
    assert _names(tmp_path) == []


# -- replacing a file: symbolic links, mode and owner -------------------------------------------
def test_the_file_replaced_is_a_links_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "real.csv").write_text("x")
    (tmp_path / "hop.csv").symlink_to("d/real.csv")
    (tmp_path / "out.csv").symlink_to("hop.csv")
    (tmp_path / "dir").symlink_to("d")
    assert replaced_file(tmp_path / "out.csv") == tmp_path / "d" / "real.csv"
    assert replaced_file(tmp_path / "dir" / "real.csv") == tmp_path / "d" / "real.csv"
    assert replaced_file(tmp_path / "plain.csv") == tmp_path / "plain.csv"
    (tmp_path / "dangling.csv").symlink_to("d/new.csv")
    assert replaced_file(tmp_path / "dangling.csv") == tmp_path / "d" / "new.csv"
    (tmp_path / "loop.csv").symlink_to("loop.csv")
    with pytest.raises(OSError, match="symbolic links"):
        replaced_file(tmp_path / "loop.csv")


def test_a_replacement_keeps_the_replaced_files_mode_and_owner(tmp_path: Path) -> None:
    """The temporary file is made readable by this user only while the data go in, then takes
    the old file's mode and (where permitted) owner and group just before the rename."""
    target = tmp_path / "out.csv"
    target.write_text("old")
    target.chmod(0o640)
    owner = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    os.chown(target, *owner)
    with owned_temporary(target) as tmp:
        like = prepare_replacement(tmp, target)
        assert like is not None and os.stat(tmp).st_mode & 0o777 == 0o600
        with open(tmp, "w") as fh:  # a writer writes into the file (O_TRUNC keeps its mode)
            fh.write("new")
        publish(tmp, target, like=like)
    status = os.stat(target)
    assert (status.st_mode & 0o777, status.st_uid, status.st_gid) == (0o640, *owner)
    assert target.read_text() == "new" and _names(tmp_path) == ["out.csv"]


def test_a_new_file_is_made_as_usual(tmp_path: Path) -> None:
    target = tmp_path / "new.csv"
    with owned_temporary(target) as tmp:
        assert prepare_replacement(tmp, target) is None
        assert not tmp.exists()  # the writer makes it, with the default mode
        tmp.write_text("new")
        publish(tmp, target, like=None)
    assert target.read_text() == "new"


def test_write_text_atomic_keeps_mode_and_owner(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("{}")
    target.chmod(0o604)
    owner = (65534, 0) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    os.chown(target, *owner)
    write_text_atomic(target, "{\"a\": 1}", like=os.stat(target))
    status = os.stat(target)
    assert (status.st_mode & 0o777, status.st_uid, status.st_gid) == (0o604, *owner)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_user_who_may_not_give_a_file_away_keeps_its_group() -> None:
    """Only root may change a file's owner; its owner may still give it a group it is in.
    (In the system's temporary directory: pytest's own is closed to other users.)"""
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        directory.chmod(0o777)
        target = directory / "out.csv"
        target.write_text("old")
        os.chown(target, 0, 4242)  # root's file in a group of nobody's (not its primary one)
        like = os.stat(target)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.setgroups([65534, 4242])
                os.setgid(65534)
                os.setuid(65534)
                write_text_atomic(target, "new", like=like)
                code = 0
            finally:
                os._exit(code)
        assert os.waitpid(pid, 0)[1] == 0
        status = os.stat(target)
        assert (status.st_uid, status.st_gid) == (65534, 4242)
        assert target.read_text() == "new"
