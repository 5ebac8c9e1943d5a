"""Fresh in-memory DuckDB instances for steps, the next one built ahead in a thread.

Every step works in its own in-memory DuckDB instance: sealing a SQL step's access changes
settings that are global to an instance and cannot be undone (see runtime/workspace.py). Building
an instance costs about 23 ms of CPU here (DuckDB registers the functions of its statically
linked extensions), a fixed cost of every step. DuckDB releases the GIL while it builds one, so
after handing out an instance this module starts building the next one with the same
configuration in a background thread: it is ready by the time the next step asks (Dagster's own
bookkeeping between two steps takes longer), and on a machine with a free core the step no longer
waits for it. A spare is never shared: each instance is handed out once; one that failed to build
is replaced by building again in the caller's thread.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Mapping
from typing import Any

import duckdb

_lock = threading.Lock()
_spares: dict[tuple[tuple[str, str], ...], _Spare] = {}


class _Spare:
    """One instance being built in a background thread."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.con: duckdb.DuckDBPyConnection | None = None
        self._thread = threading.Thread(target=self._build, args=(config,), daemon=True,
                                        name="osiris-duckdb-spare")
        self._thread.start()

    def _build(self, config: dict[str, Any]) -> None:
        try:
            self.con = duckdb.connect(":memory:", config=config)
        except Exception:  # noqa: BLE001 - the caller builds its own instead (and sees the error)
            self.con = None

    def take(self) -> duckdb.DuckDBPyConnection | None:
        self._thread.join()
        con, self.con = self.con, None
        return con


def new_memory_instance(config: Mapping[str, Any]) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB instance with this configuration, never handed out before."""
    settings = dict(config)
    key = tuple(sorted((k, str(v)) for k, v in settings.items()))
    with _lock:
        spare = _spares.pop(key, None)
    con = spare.take() if spare is not None else None
    if con is None:
        con = duckdb.connect(":memory:", config=settings)
    with _lock:  # one spare at a time: the configuration of the latest request (its session)
        others = [s for k, s in _spares.items() if k != key]
        if key not in _spares:
            _spares.clear()
            _spares[key] = _Spare(settings)
    _close(others)
    return con


def _close(spares: list[_Spare]) -> None:
    for spare in spares:
        con = spare.take()
        if con is not None:
            con.close()


@atexit.register
def _close_spares() -> None:
    with _lock:
        spares = list(_spares.values())
        _spares.clear()
    _close(spares)
