"""Files that readers see whole or not at all: write a temporary file next to the target, flush
it to disk, rename it into place, then persist the rename. The one place for this, used by
session state and manifests, the CSV writer, the CLI's instance config and its run shards; and
for removing the temporary files of a process killed mid-write."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path


def write_text_atomic(path: Path, text: str, like: os.stat_result | None = None) -> None:
    """``text`` in ``path``, replaced in one rename (the temporary name is unique per process
    and thread, so concurrent writers never share one). ``like``: the status of the file being
    replaced, whose mode and, where this process may set them, owner and group the new file
    keeps (it is written readable by this user only until then; see :func:`publish`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        mode = 0o666 if like is None else 0o600  # 0o666: as open() makes it, less the umask
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        publish(tmp, path, like=like)
    finally:
        remove_quietly(tmp)


def replaced_file(path: Path) -> Path:
    """The file that replacing ``path`` renames over: ``path``, or for a symbolic link the file
    it points to (through every link, made if missing), so that the link stays a link and its
    file gets the new content, as writing through the link does. (A hard link cannot be kept
    so: the rename gives ``path`` a new file; the file's other names keep the old content.)
    OSError ELOOP for links that point in a circle."""
    real = Path(os.path.realpath(path))
    if real.is_symlink():  # realpath stops where links point in a circle
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path))
    return real


def prepare_replacement(tmp: Path, target: Path) -> os.stat_result | None:
    """Before the temporary file ``tmp`` is written to replace ``target``: ``target``'s status
    (for :func:`publish`'s ``like``) when it exists, with ``tmp`` made, empty and readable by
    this user only, so that the new data are never readable by more users than the old file
    let in; write into that file then (``open(tmp, "wb")`` keeps its mode; DuckDB's ``COPY``
    with ``USE_TMP_FILE false``). None, and nothing made, when there is no ``target``: the new
    file gets the default mode (the umask's). OSError when ``target`` is not a regular file (a
    device such as /dev/null, a FIFO: the rename would replace it, not write to it)."""
    try:
        like = os.stat(target)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(like.st_mode):
        raise OSError(errno.EINVAL, "not a regular file: a device, FIFO or socket cannot be "
                      "replaced by a file", str(target))
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return like


def temporary_name(path: Path, directory: Path | None = None) -> Path:
    """``.<name>.<pid>.<token>.tmp`` for ``path``, in ``directory`` (default: beside it): unique
    per call (the token is the thread's id and random digits, so two processes that share a
    directory and a pid, say two containers' first processes, do not share one either), and
    what :func:`remove_orphaned_temp_files` recognises."""
    token = f"{threading.get_ident():x}{secrets.token_hex(4)}"
    return (directory or path.parent) / f".{_temp_stem(path.name)}.{os.getpid()}.{token}.tmp"


# a file name may hold 255 bytes; the temporary name adds ~35 and its lock file ~9 more
_TEMP_STEM_BYTES = 190


def _temp_stem(name: str) -> str:
    """``name`` in temporary file names: itself, or for a name too long to carry the rest
    (a 230-byte export name made every write fail) its start and a digest of the whole."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= _TEMP_STEM_BYTES:
        return name
    digest = hashlib.blake2b(raw, digest_size=6).hexdigest()
    start = raw[:_TEMP_STEM_BYTES - len(digest) - 1].decode("utf-8", "ignore")
    return f"{start}~{digest}"


LOCK_SUFFIX = ".lock"  # beside an owned temporary file: see owned_temporary
# A lock file before it is locked: made under this name, locked, then renamed to its .lock
# name, so that no lock file is ever at a .lock name without its lock held while its owner
# lives. A sweep removes one only when it is older than NEW_LOCK_MAX_AGE_S and unlocked (its
# owner ended between making and renaming it); a writer holds it for an instant.
NEW_LOCK_SUFFIX = ".lock-new"
NEW_LOCK_MAX_AGE_S = 60.0
_LOCK_ATTEMPTS = 100  # each lost only when a sweep misjudged a new lock file's age
# Why a lock file cannot be made where its temporary file can: a read-only or closed directory
# (the write fails anyway), or a name near the 255-byte limit that ".lock-new" takes past it.
# Then the pid rule applies.
_NO_LOCK_FILE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG})
# flock errors that mean the filesystem has no flock (then the pid rule applies)
_NO_FLOCK = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL,
                       errno.EBADF, errno.ENOSYS})


@contextlib.contextmanager
def owned_temporary(path: Path, directory: Path | None = None) -> Iterator[Path]:
    """A temporary name for ``path`` (:func:`temporary_name`) that this process owns while the
    block runs: it holds an exclusive ``flock`` on ``<temporary name>.lock``, and
    :func:`remove_orphaned_temp_files` removes a temporary file only once it can take that lock
    itself, i.e. once its owner has ended, however it ended, whatever its pid (pids are reused:
    every container's first process is pid 1, and another PID namespace's processes are not
    visible). Remove the temporary file before the block ends; the lock file goes then.

    Where a lock file cannot be made (a read-only directory, a name within 9 bytes of the
    filesystem's limit) or the filesystem has no ``flock``, the file is judged by its pid as
    before. A filesystem whose locks each host
    keeps to itself (NFS mounted with ``local_lock``) does not protect a writer on another
    host; neither does the pid rule there. Raises OSError when the lock cannot be had for
    another reason (never a write without it)."""
    tmp = temporary_name(path, directory)
    lock = Path(f"{tmp}{LOCK_SUFFIX}")
    with _OWN_LOCK:
        _OWN.add(tmp.name)
    try:
        fd = _hold(tmp)
        try:
            yield tmp
        finally:
            if fd is not None:
                remove_quietly(lock)  # before the lock is released: see the sweep
                with contextlib.suppress(OSError):
                    os.close(fd)
    finally:
        with _OWN_LOCK:
            _OWN.discard(tmp.name)


# The temporary files (names) this process owns now: its own sweeps leave them and their lock
# files alone without opening them. Where flock is emulated with POSIX locks (NFS), a lock belongs
# to the process, so a sweep in another thread would get it, and closing any descriptor of
# the file would drop the writer's lock.
_OWN: set[str] = set()
_OWN_LOCK = threading.Lock()


def _hold(tmp: Path) -> int | None:
    """An open descriptor of ``<tmp>.lock`` with an exclusive flock on it; None when the lock
    file cannot be made or the filesystem has no flock. It is made and locked as
    ``<tmp>.lock-new``, then renamed into place, so a ``.lock`` file is never there unlocked
    while its owner lives. A new lock file that a sweep removed or locked meanwhile (it misjudged
    its age) is made again."""
    lock, new = Path(f"{tmp}{LOCK_SUFFIX}"), Path(f"{tmp}{NEW_LOCK_SUFFIX}")
    for attempt in range(_LOCK_ATTEMPTS):
        try:  # read-write: NFS emulates flock with fcntl locks, which need it
            fd = os.open(new, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno in _NO_LOCK_FILE:
                return None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a sweep holds it and is about to remove it: give it time
            os.close(fd)
            time.sleep(min(0.001 * 2 ** attempt, 0.064))
            continue
        except OSError as exc:
            remove_quietly(new)
            os.close(fd)
            if exc.errno in _NO_FLOCK:
                return None
            raise
        if _is_at(fd, new):  # locked now, so no sweep removes it
            try:
                os.rename(new, lock)
                return fd
            except OSError:
                remove_quietly(new)
                os.close(fd)
                raise
        os.close(fd)
    raise OSError(errno.EAGAIN, f"could not lock {new}: a sweep removed it {_LOCK_ATTEMPTS} "
                  "times (is the system clock far off the file system's?)")


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is the one at ``path`` now."""
    try:
        at = os.stat(path)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (at.st_dev, at.st_ino)


def publish(tmp: Path, target: Path, like: os.stat_result | None = None) -> None:
    """Rename a finished temporary file over ``target`` durably: its data first, then the rename.
    ``like``: the status of the file replaced (:func:`prepare_replacement`), whose mode and,
    where this process may set them, owner and group ``tmp`` takes first."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        if like is not None:
            _take_status(fd, like)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    fsync_dir(target.parent)


def _take_status(fd: int, like: os.stat_result) -> None:
    """``like``'s owner and group where permitted (only root may give a file away; its owner
    may give it any group it is in), then its mode (after: a change of owner clears setuid)."""
    try:
        os.fchown(fd, like.st_uid, like.st_gid)
    except OSError:
        with contextlib.suppress(OSError):
            os.fchown(fd, -1, like.st_gid)
    os.fchmod(fd, stat.S_IMODE(like.st_mode))


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

    A file made with :func:`owned_temporary` is removed once its lock can be taken, i.e. its
    owner has ended; a lock file on its own too; a new lock file once it is also older than
    NEW_LOCK_MAX_AGE_S (its owner holds it unlocked for an instant). Any other file (from an
    earlier version, or where no lock could be made) stays while a process with its pid
    exists, this one included: it may be writing it; so where every run is a container's
    first process (always pid 1), such a file stays for good, and a process in another PID
    namespace may look gone. Names that cannot carry a process id
    (no ASCII digits, a pid no system has) are left alone."""
    try:
        entries = [entry.name for entry in os.scandir(directory)]
    except OSError:
        return
    temps: dict[str, int] = {}  # temporary file -> the pid in its name
    locks: list[str] = []  # lock files' temporary files
    for entry in entries:
        if entry.endswith(NEW_LOCK_SUFFIX):  # unlocked for an instant before its rename
            if _temp_file_pid(entry[:-len(NEW_LOCK_SUFFIX)], name) is not None and \
                    _older_than(Path(directory, entry), NEW_LOCK_MAX_AGE_S):
                _remove_if_unlocked(Path(directory, entry), [])
        elif entry.endswith(LOCK_SUFFIX):
            locks.append(entry[:-len(LOCK_SUFFIX)])
        else:
            pid = _temp_file_pid(entry, name)
            if pid is not None:
                temps.setdefault(_without_side_suffix(entry), pid)
    for temp, pid in temps.items():
        _remove_if_orphaned(directory, temp, pid)
    for temp in locks:  # an owner ended before it made its file or after it removed it
        if temp not in temps and _temp_file_pid(temp, name) is not None:
            _remove_if_unlocked(Path(directory, f"{temp}{LOCK_SUFFIX}"), [])


def _remove_if_orphaned(directory: Path, temp: str, pid: int) -> None:
    """Remove the temporary file ``temp`` (with its side files and lock file) if its owner has
    ended: by its lock when it has one, else by ``pid``."""
    lock = directory / f"{temp}{LOCK_SUFFIX}"
    if os.path.lexists(lock):
        _remove_if_unlocked(lock, [directory / temp])
    elif pid != os.getpid() and not process_alive(pid):
        remove_with_side_files(directory / temp)


def _remove_if_unlocked(lock: Path, temps: list[Path]) -> None:
    """Remove ``temps`` (with their side files), then ``lock``, if its lock can be taken: its
    owner has ended."""
    if _owned_here(lock):
        return
    try:  # read-write where allowed (NFS's flock needs it), else read-only (another user's)
        fd = os.open(lock, os.O_RDWR | os.O_NONBLOCK)  # a FIFO there must not block the sweep
    except PermissionError:
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return
    except OSError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its owner is writing; or no flock here: cannot tell
            return
        if _is_at(fd, lock):  # not a lock file its owner removed (and maybe made anew)
            for temp in temps:
                remove_with_side_files(temp)
            remove_quietly(lock)
    finally:
        os.close(fd)


def _owned_here(lock: Path) -> bool:
    """Whether ``lock`` (``.lock`` or ``.lock-new``) is of a temporary file this process owns."""
    text = lock.name  # names are unique (pid, thread, random digits): a name is enough
    temp = text[:-len(NEW_LOCK_SUFFIX)] if text.endswith(NEW_LOCK_SUFFIX) else \
        text[:-len(LOCK_SUFFIX)]
    with _OWN_LOCK:
        return temp in _OWN


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - os.stat(path).st_mtime > seconds
    except OSError:
        return False


def remove_with_side_files(path: Path) -> None:
    """Remove a temporary file and what SQLite may have written beside it."""
    for suffix in ("", *SQLITE_SIDE_FILES):
        remove_quietly(Path(f"{path}{suffix}"))


def _without_side_suffix(entry: str) -> str:
    return next((entry[:-len(s)] for s in SQLITE_SIDE_FILES if entry.endswith(s)), entry)


_MAX_PID = 2**22  # Linux's highest pid_max; other systems stay below it


def _temp_file_pid(entry: str, name: str | None) -> int | None:
    """The pid in a temporary file's name (see :func:`remove_orphaned_temp_files`); None for
    any other name."""
    stem = _without_side_suffix(entry)
    if not (stem.startswith(".") and stem.endswith(".tmp")):
        return None
    owner, _, _token = stem[1:-len(".tmp")].rpartition(".")
    target, _, pid = owner.rpartition(".")
    if not (target and pid.isascii() and pid.isdigit()) or \
            (name is not None and target != _temp_stem(name)):
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
