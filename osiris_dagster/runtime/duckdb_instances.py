"""New in-memory DuckDB instances for steps, the next one prepared while the current step runs.

Every step works in a fresh in-memory DuckDB instance (``Session.open_workspace_connection``):
a SQL step's instance is sealed, and a sealed instance cannot serve another step. Creating one
costs about 20 ms of CPU (DuckDB registers its thousands of built-in functions in the new
catalog), a large part of what one more asset costs a run. DuckDB does that work without
holding Python's GIL, so a process that runs steps one after another (Dagster's in-process
executor, which the `duckdb` session store uses) creates the next instance in a background
thread while the current step runs and Dagster records it.

Rules that keep this invisible:

- a process prepares only from its second step on (requests that start a step are counted;
  a step's other instances, for a Python value it stores or a retry with more memory, take a
  matching spare but neither count nor prepare): a process that runs one step (a step worker
  of the multiprocess executor) never creates one it does not use;
- a spare is used only for the same configuration and statements it was prepared with; any
  other request closes it and connects directly, as does a spare whose preparation failed (the
  direct connect then raises the error, in the caller's thread);
- instance-wide settings that differ per session (``temp_directory``) are set by the caller
  after it takes the instance, so one spare serves any session;
- at interpreter exit the preparing thread is joined (it is not a daemon thread) and the spare
  is closed;
- a process forked from one with a spare starts without it: DuckDB is not fork-safe (the
  instance's worker threads do not exist in the child), so the child never uses, closes or
  frees the parent's instance (freeing it at the child's exit would crash the child);
- a process that cannot start a thread connects directly.

A step's instance is freed the same way (:func:`retire`): once its files are detached (their
checkpoint done and their locks released, in the step's thread, so a failure still fails the
step), what is left is an empty in-memory instance whose teardown (~2-4 ms of CPU, DuckDB
freeing the catalog) a background thread does while the run goes on. Those threads are not
daemon threads: Python joins them before it exits. A forked child never frees an instance that
its parent was closing.

A sealed instance (a SQL step's) can serve the next SQL step of the same session in the same
thread instead (:func:`park`, :func:`take_parked`), which saves creating, attaching, sealing,
checkpointing and freeing one per step. Each thread parks at most one instance, and only while
an execution in that thread allows it (:func:`allow_parking`: the IO manager's, for the duration
of a Dagster execution); the caller parks only when a SQL step that reads this one follows in
the same run. A parked instance keeps its session file attached, and DuckDB attaches a file once
per process, so it is released (its files detached: checkpointed and unlocked; then retired)
before this process attaches that file again (:func:`release_parked` with the file), when the
thread's next step cannot use it, when the execution ends, and at exit. What a SQL step leaves
in its connection besides (its query and transaction counters: ``current_query_id()``,
``current_transaction_id()``) is not data. SQL that may change the instance itself (a table
function that does more than return rows: ``drivers.duckdb.seal``) keeps it from being parked
(``StepWorkspace.seal_sql_access``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import duckdb

PREPARE_FROM = 2  # the step that starts preparing (1-based count of this process' steps)

_Key = tuple[tuple[tuple[str, Any], ...], tuple[str, ...]]


class _Spare:
    """One instance being prepared (or ready) in a background thread."""

    def __init__(self, key: _Key, config: Mapping[str, Any], statements: Sequence[str]) -> None:
        self.key = key
        self._config = dict(config)
        self._statements = tuple(statements)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._thread = threading.Thread(target=self._prepare, name="osiris-duckdb-spare")
        self._thread.start()  # RuntimeError when the process cannot start a thread

    def _prepare(self) -> None:
        try:
            self._con = create_instance(self._config, self._statements)
        except Exception:  # noqa: BLE001 (the caller connects directly and sees the error)
            self._con = None

    def take(self) -> duckdb.DuckDBPyConnection | None:
        """The prepared instance (after waiting for it), or None when preparing failed."""
        self._thread.join()
        con, self._con = self._con, None
        return con

    def close(self) -> None:
        con = self.take()
        if con is not None:
            con.close()


_lock = threading.Lock()
_spare: _Spare | None = None
_steps = 0


def create_instance(config: Mapping[str, Any],
                    statements: Sequence[str] = ()) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB instance with ``config``, after running ``statements``."""
    con = duckdb.connect(":memory:", config=dict(config))
    try:
        execute_all(con, statements)
    except BaseException:
        con.close()
        raise
    return con


def execute_all(con: duckdb.DuckDBPyConnection, statements: Sequence[str]) -> None:
    """Run ``statements`` (without parameters) in order, in one call into DuckDB."""
    if statements:  # each on lines of its own: a trailing -- comment ends at its line
        con.execute("\n;\n".join(statements))


def new_instance(config: Mapping[str, Any], statements: Sequence[str] = (), *,
                 step_start: bool) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB instance, as :func:`create_instance` gives: the one prepared for
    this request when there is one; a request that starts a step (``step_start``) then has the
    next one prepared (module docstring)."""
    global _spare, _steps
    key: _Key = (tuple(sorted(config.items())), tuple(statements))
    with _lock:
        spare, _spare = _spare, None
        if step_start:
            _steps += 1
            if _steps >= PREPARE_FROM:
                try:
                    _spare = _Spare(key, config, statements)
                except RuntimeError:  # no thread to be had: connect directly from now on
                    _spare = None
    con = None
    if spare is not None:
        if spare.key == key:
            con = spare.take()
        else:
            spare.close()
    return con if con is not None else create_instance(config, statements)


def retire(con: duckdb.DuckDBPyConnection) -> None:
    """Close ``con``, an instance with no database file attached any more, in a background
    thread (module docstring); in this thread when no thread can be started."""
    if not threading.main_thread().is_alive():
        con.close()  # Python is exiting (atexit): a thread started now would never be joined
        return
    thread = threading.Thread(target=con.close, name="osiris-duckdb-retire")
    with _lock:
        _closing[:] = [(t, c) for t, c in _closing if t.is_alive()]
        try:
            thread.start()
        except RuntimeError:
            pass
        else:
            _closing.append((thread, con))
            return
    con.close()


# Instances being closed by retire(), with their threads: a forked child keeps them alive.
_closing: list[tuple[threading.Thread, duckdb.DuckDBPyConnection]] = []


class _Parked(NamedTuple):
    path: str  # the database file it holds attached
    key: Hashable  # what else it is made of (its configuration, ...)
    con: duckdb.DuckDBPyConnection
    release: Callable[[duckdb.DuckDBPyConnection], None]  # detaches its files, then retires it


_parked: dict[int, _Parked] = {}  # thread -> the instance it parked
_parking: dict[int, int] = {}  # thread -> executions in it that allow parking


@contextlib.contextmanager
def parking_allowed() -> Iterator[None]:
    """While inside, :func:`park` keeps this thread's instances; released at the end."""
    allow_parking()
    try:
        yield
    finally:
        stop_parking()


def allow_parking() -> None:
    """This thread's steps may park their sealed instances until :func:`stop_parking`."""
    me = threading.get_ident()
    with _lock:
        _parking[me] = _parking.get(me, 0) + 1


def stop_parking() -> None:
    """The end of what :func:`allow_parking` began; releases this thread's parked instance."""
    me = threading.get_ident()
    with _lock:
        left = _parking.pop(me, 0) - 1
        if left > 0:
            _parking[me] = left
    release_parked()


def park(path: str, key: Hashable, con: duckdb.DuckDBPyConnection,
         release: Callable[[duckdb.DuckDBPyConnection], None]) -> bool:
    """Keep ``con`` (a sealed step instance, the database file ``path`` still attached) for
    this thread's :func:`take_parked` with the same ``path`` and ``key``; False, and nothing
    kept, when this thread does not allow parking now."""
    me = threading.get_ident()
    with _lock:
        if not _parking.get(me):
            return False
        previous = _parked.pop(me, None)
        _parked[me] = _Parked(path, key, con, release)
    if previous is not None:
        previous.release(previous.con)
    return True


def take_parked(path: str, key: Hashable) -> duckdb.DuckDBPyConnection | None:
    """The instance this thread parked when it was parked with ``path`` and ``key`` (the
    caller's from now on); one parked with others is released."""
    with _lock:
        parked = _parked.pop(threading.get_ident(), None)
    if parked is None:
        return None
    if (parked.path, parked.key) == (path, key):
        return parked.con
    parked.release(parked.con)
    return None


def release_parked(path: str | None = None) -> None:
    """Release this thread's parked instance; with ``path``, every parked instance that holds
    that database file, whichever thread parked it (module docstring: when and why)."""
    with _lock:
        if path is None:
            found = [p for p in (_parked.pop(threading.get_ident(), None),) if p is not None]
        else:
            found = [_parked.pop(t) for t, p in list(_parked.items()) if p.path == path]
    for parked in found:
        parked.release(parked.con)


def _release_all_parked() -> None:
    with _lock:
        found = list(_parked.values())
        _parked.clear()
    for parked in found:
        parked.release(parked.con)


def discard_spare() -> None:
    """Close the prepared instance, if any (at exit; tests)."""
    global _spare
    with _lock:
        spare, _spare = _spare, None
    if spare is not None:
        spare.close()


def reset() -> None:
    """Back to a new process' state: no spare, no steps counted (tests)."""
    global _steps
    discard_spare()
    with _lock:
        _steps = 0


def _forget_in_child() -> None:
    global _lock, _spare, _steps
    _lock = threading.Lock()  # the parent's may have been held by another thread at the fork
    spare, _spare, _steps = _spare, None, 0
    inherited = [c for _t, c in _closing]
    _closing.clear()
    inherited += [p.con for p in _parked.values()]
    _parked.clear()
    _parking.clear()
    if spare is not None and spare._con is not None:
        inherited.append(spare._con)
    if inherited:  # never freed: a destructor would join threads the child does not have
        import ctypes

        for con in inherited:
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(con))


atexit.register(discard_spare)
atexit.register(_release_all_parked)  # registered last, so run first: files checkpointed
os.register_at_fork(after_in_child=_forget_in_child)
