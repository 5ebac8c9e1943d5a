"""New in-memory DuckDB instances for steps, the next one prepared while the current step runs.

Every step works in a fresh in-memory DuckDB instance (``Session.open_workspace_connection``):
a SQL step's instance is sealed, and a sealed instance cannot serve another step. Creating one
costs about 20 ms of CPU (DuckDB registers its thousands of built-in functions in the new
catalog), a large part of what one more asset costs a run. DuckDB does that work without
holding Python's GIL, so a process that runs steps one after another (Dagster's in-process
executor, which the `duckdb` session store uses) creates the next instance in a background
thread while the current step runs and Dagster records it.

Rules that keep this invisible:

- a process prepares only from its second instance on: a process that runs one step (a step
  worker of the multiprocess executor) never creates one it does not use;
- a spare is used only for the same configuration and statements it was prepared with; any
  other request closes it and connects directly, as does a spare whose preparation failed (the
  direct connect then raises the error, in the caller's thread);
- instance-wide settings that differ per session (``temp_directory``) are set by the caller
  after it takes the instance, so one spare serves any session;
- at interpreter exit the preparing thread is joined (it is not a daemon thread) and the spare
  is closed;
- a process forked from one with a spare starts without it: DuckDB is not fork-safe (the
  instance's worker threads do not exist in the child), so the child never uses, nor closes,
  the parent's instance.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb

PREPARE_FROM = 2  # the request that starts preparing (1-based count of this process' requests)

_Key = tuple[tuple[tuple[str, Any], ...], tuple[str, ...]]


class _Spare:
    """One instance being prepared (or ready) in a background thread."""

    def __init__(self, key: _Key, config: Mapping[str, Any], statements: Sequence[str]) -> None:
        self.key = key
        self._config = dict(config)
        self._statements = tuple(statements)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._thread = threading.Thread(target=self._prepare, name="osiris-duckdb-spare")
        self._thread.start()

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
_requests = 0
_from_parent: list[_Spare] = []  # a forked child's copies of its parent's spares: never touched


def create_instance(config: Mapping[str, Any],
                    statements: Sequence[str] = ()) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB instance with ``config``, after running ``statements``."""
    con = duckdb.connect(":memory:", config=dict(config))
    try:
        for statement in statements:
            con.execute(statement)
    except BaseException:
        con.close()
        raise
    return con


def new_instance(config: Mapping[str, Any],
                 statements: Sequence[str] = ()) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB instance, as :func:`create_instance` gives: the one prepared for
    this request when there is one, and the next one is then prepared (module docstring)."""
    global _spare, _requests
    key: _Key = (tuple(sorted(config.items())), tuple(statements))
    with _lock:
        _requests += 1
        spare, _spare = _spare, None
        if _requests >= PREPARE_FROM:
            _spare = _Spare(key, config, statements)
    con = None
    if spare is not None:
        if spare.key == key:
            con = spare.take()
        else:
            spare.close()
    return con if con is not None else create_instance(config, statements)


def discard_spare() -> None:
    """Close the prepared instance, if any (at exit; tests)."""
    global _spare
    with _lock:
        spare, _spare = _spare, None
    if spare is not None:
        spare.close()


def reset() -> None:
    """Back to a new process' state: no spare, no requests counted (tests)."""
    global _requests
    discard_spare()
    with _lock:
        _requests = 0


def _forget_in_child() -> None:
    global _lock, _spare, _requests
    _lock = threading.Lock()  # the parent's may have been held by another thread at the fork
    if _spare is not None:
        _from_parent.append(_spare)  # closing it here could wait forever on the parent's threads
    _spare, _requests = None, 0


atexit.register(discard_spare)
os.register_at_fork(after_in_child=_forget_in_child)
