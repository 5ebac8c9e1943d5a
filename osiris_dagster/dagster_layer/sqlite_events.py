"""Dagster's SQLite event log, with its database connections kept for reuse.

Dagster's ``SqliteEventLogStorage`` builds a new SQLAlchemy engine, and a new SQLite
connection, for every statement it runs: about five per event (the insert, the asset index,
schema probes), some forty per step. Building them is most of what an event write costs: a
plain Dagster job's per-asset cost falls from about 100 ms to about 50 ms on this project's
test machine when the engines are kept (``python -m benchmarks --cases overhead``:
``dagster_noop`` against ``dagster_noop_cli``).

:class:`PooledSqliteEventLogStorage` is that storage with one engine per shard database (the
index and the most recent run shards), each holding one connection. Every use of it is already
serialised by the storage's own lock, which is why one connection per file is enough. Same
files, same schema, same rows: an instance written through it reads back through Dagster's
own class (``dagster dev`` on the same directory needs no configuration).

``osiris-dagster run`` opens its own instance with it (:func:`cli_instance_overrides`). Any
Dagster instance can use it through ``dagster.yaml``::

    event_log_storage:
      module: osiris_dagster.dagster_layer.sqlite_events
      class: PooledSqliteEventLogStorage
      config:
        base_dir: /path/to/dagster_home/history/runs
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

# The index shard and the shards of the runs this process writes or reads now; older engines
# are disposed (a process that reads many runs' events holds at most this many files open).
MAX_OPEN_SHARDS = 8


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` that keeps one engine and connection per shard database.

    It relies on private parts of Dagster's class (:data:`DAGSTER_INTERNALS`); a Dagster
    release without them makes it behave exactly as Dagster's own class (slower, never
    broken)."""

    DAGSTER_INTERNALS = ("_db_lock", "_initialized_dbs", "_initdb", "conn_string_for_shard")

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._tables_present: set[str] = set()
        self._pooled = False  # Dagster's own connections while its __init__ runs
        super().__init__(base_dir, inst_data)
        self._pooled = all(hasattr(self, name) for name in self.DAGSTER_INTERNALS)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,  # type: ignore[override]
                          config_value: Any) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = create_engine(
            self.conn_string_for_shard(shard),
            poolclass=StaticPool,  # one connection, reused; the storage's lock serialises use
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        self._engines[shard] = engine
        while len(self._engines) > MAX_OPEN_SHARDS:
            _, oldest = self._engines.popitem(last=False)
            oldest.dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        if not self._pooled:
            with super()._connect(shard) as conn:
                yield conn
            return
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        """Dagster asks for every asset event whether the index has a table, on a new
        connection each time (it may be asked while the index's connection is in use, so it
        keeps its own); a table that exists stays (until :meth:`wipe`)."""
        if self._pooled and table_name in self._tables_present:
            return True
        present = super().has_table(table_name)
        if present:
            self._tables_present.add(table_name)
        return present

    def wipe(self) -> None:
        self._dispose_engines()  # before Dagster unlinks the run shards they point at
        self._tables_present.clear()
        super().wipe()

    def dispose(self) -> None:
        super().dispose()
        self._dispose_engines()

    def _dispose_engines(self) -> None:
        if not self._pooled:
            return
        with self._db_lock:
            while self._engines:
                _, engine = self._engines.popitem()
                engine.dispose()


def cli_instance_overrides(home: str) -> dict[str, Any]:
    """Instance overrides for a DagsterInstance under ``home`` that stores its event log
    through :class:`PooledSqliteEventLogStorage`, in the directory Dagster's default SQLite
    storage uses there (``history/runs``), so the instance's history is the same either way."""
    return {"event_log_storage": {
        "module": __name__,
        "class": PooledSqliteEventLogStorage.__name__,
        "config": {"base_dir": os.path.join(home, "history", "runs")},
    }}
