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

It also skips the part of Dagster's shard set-up whose outcome is known without it. Before
Dagster uses a shard file in a process it loads Alembic's ~90 migration scripts (~13 ms) to learn
the head revision, then creates the schema and stamps it only when the file has no revision yet;
a file that has one is left as it is. Here, a file that has a revision is left as it is
without loading them, and a new run's shard, which Dagster would build with its schema and a
second load of the scripts to stamp it (~50 ms per run), is a copy of an empty shard that
Dagster's own code built once in this directory for the installed Dagster version
(``.osiris-empty-run-shard-dagster-<version>.sqlite`` beside the shards, which replaces other
versions' ones; a copy that does not read back as stamped is not used, and Dagster builds the
shard itself). Copies are made in ``.osiris-tmp/`` beside the shards and linked into place; what
a process killed meanwhile leaves there is removed by the next one that makes a copy, once the
killed one's lock on it is free (:func:`~osiris_dagster.core.atomic_files.owned_temporary`;
and, once, what earlier versions left beside the shards).

``dagster dev`` shows a run's events live by watching the run's shard file for changes, and a
kept connection leaves new rows in SQLite's write-ahead log beside it. So each event written
through this class touches the shard file, as a checkpoint would.

One mix is not covered: a process writing with Dagster's own class changes the file only when
its connection is the last one. While a process using this class keeps one to that shard (a
webserver that has read it, say), that webserver's live view of the run gets no new events;
reloading the page shows them. Every process that opens a home through its ``dagster.yaml``
gets the same class, so this takes a mix of Dagster versions, one of them without the parts
that :data:`PooledSqliteEventLogStorage.DAGSTER_INTERNALS` names.

``osiris-dagster run`` opens its own instance with it (:func:`cli_instance_overrides`), and so
the instance of ``$DAGSTER_HOME`` when its ``dagster.yaml`` leaves the storage to Dagster's
default. ``osiris-dagster init-home`` writes it into a home's ``dagster.yaml``, with the
stamped run and schedule storages (:mod:`.dagster_home`). Any Dagster instance can use it
through ``dagster.yaml``::

    event_log_storage:
      module: osiris_dagster.dagster_layer.sqlite_events
      class: PooledSqliteEventLogStorage
      config:
        dagster_home: {env: DAGSTER_HOME}   # its files under the home; or base_dir: <directory>
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from dagster import Field
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._serdes import ConfigurableClassData
from dagster.version import __version__ as DAGSTER_VERSION
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import NullPool, StaticPool

from osiris_dagster.core.atomic_files import (
    owned_temporary,
    publish,
    publish_new,
    remove_orphaned_temp_files,
    remove_quietly,
    remove_with_side_files,
)
from osiris_dagster.dagster_layer.sqlite_storages import (
    HOME_LAYOUT,
    StampedSqliteRunStorage,
    StampedSqliteScheduleStorage,
    configured_base_dir,
    directory_config_type,
    stamped,
)

# The index shard and the shards of the runs this process writes or reads now; older engines
# are disposed (a process that reads many runs' events holds at most this many files open).
MAX_OPEN_SHARDS = 8
# An empty run shard as Dagster builds it, per Dagster version (its schema may change with it).
TEMPLATE_GLOB = ".osiris-empty-run-shard-dagster-*.sqlite"
TEMPLATE_NAME = TEMPLATE_GLOB.replace("*", DAGSTER_VERSION)
# Where shards and the template are copied and built before they are linked into place: not the
# shards' directory itself, whose listing grows with the runs, so that removing what a killed
# process left there costs next to nothing per run.
TEMP_DIR = ".osiris-tmp"


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` that keeps one engine and connection per shard database.

    It relies on private parts of Dagster's class (:data:`DAGSTER_INTERNALS`); a Dagster
    release without them makes it behave exactly as Dagster's own class (slower, never
    broken)."""

    DAGSTER_INTERNALS = ("_db_lock", "_initialized_dbs", "_initdb", "conn_string_for_shard")

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._known_present: set[tuple[str, str]] = set()  # see has_table
        self._pooled = False  # Dagster's own connections while its __init__ runs
        super().__init__(base_dir, inst_data)
        self._pooled = all(hasattr(self, name) for name in self.DAGSTER_INTERNALS)

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return directory_config_type()

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,  # type: ignore[override]
                          config_value: Any) -> PooledSqliteEventLogStorage:
        return cls(configured_base_dir(cls.__name__, "event_log_storage", config_value),
                   inst_data=inst_data)

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

    def _initdb(self, engine: Engine, for_index_shard: bool = False) -> None:
        """Dagster's own, where its outcome is not known beforehand (see the module's text)."""
        path = engine.url.database
        if self._pooled and path:
            if stamped(path):
                return  # Dagster's would load the migration scripts, then change nothing
            if not for_index_shard and not os.path.exists(path) and \
                    self._shard_from_template(Path(path)):
                return
        super()._initdb(engine, for_index_shard=for_index_shard)

    def _shard_from_template(self, path: Path) -> bool:
        """A new run shard as a copy of the empty one; False when there is none or the copy
        is not a stamped database (Dagster then builds the shard)."""
        template = self._template()
        if template is None:
            return False
        with self._temporary(path) as tmp:
            if tmp is None:
                return False
            try:
                # created as SQLite creates a database file: mode 0644 less the umask
                with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644),
                               "wb") as out, open(template, "rb") as src:
                    shutil.copyfileobj(src, out)
                if not stamped(str(tmp)):
                    remove_quietly(template)  # made anew by the next run
                    return False
                return publish_new(tmp, path)
            except OSError:
                return False
            finally:
                remove_with_side_files(tmp)

    def _template(self) -> Path | None:
        """The empty run shard for this Dagster version, built by Dagster's own code on first
        use: checkpointed (no WAL beside it), then renamed into place."""
        template = Path(self._base_dir) / TEMPLATE_NAME
        if template.exists():
            return template
        with self._temporary(template) as tmp:
            if tmp is None:
                return None
            try:
                engine = create_engine(URL.create("sqlite", database=str(tmp)),
                                       poolclass=NullPool)
                try:
                    super()._initdb(engine)
                finally:
                    engine.dispose()
                with closing(sqlite3.connect(tmp)) as con:
                    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                if Path(f"{tmp}-wal").exists() or not stamped(str(tmp)):
                    return None
                publish(tmp, template)  # two processes building it at once: the same schema
                for old in template.parent.glob(TEMPLATE_GLOB):  # other Dagster versions' ones
                    if old.name != template.name:
                        remove_quietly(old)
                return template
            except Exception:  # noqa: BLE001 - an optimisation only: Dagster builds the shard
                return None
            finally:
                remove_with_side_files(tmp)

    @contextmanager
    def _temporary(self, path: Path) -> Iterator[Path | None]:
        """A name for ``path`` in :data:`TEMP_DIR` that this process owns while the block runs
        (:func:`~osiris_dagster.core.atomic_files.owned_temporary`), once what ended processes
        left there is gone: a copy killed between its link into place and its removal would
        otherwise keep a second link to a live shard (whose space ``wipe`` would then not
        free). None when the directory cannot be made or the lock cannot be had (Dagster
        builds the shard)."""
        directory = Path(self._base_dir) / TEMP_DIR
        try:
            if not directory.is_dir():  # first use here: see _remove_leftovers_beside_shards
                _remove_leftovers_beside_shards(Path(self._base_dir))
            directory.mkdir(exist_ok=True)
            remove_orphaned_temp_files(directory)
        except Exception:  # noqa: BLE001 - an optimisation only: Dagster builds the shard
            yield None
            return
        with contextlib.ExitStack() as stack:
            try:
                tmp: Path | None = stack.enter_context(owned_temporary(path, directory))
            except OSError:  # no lock to be had: Dagster builds the shard
                tmp = None
            yield tmp

    def store_event(self, event: Any) -> None:
        super().store_event(event)
        if self._pooled:
            self._show_written(event.run_id)

    def _show_written(self, run_id: str) -> None:
        """Mark the run's shard file as changed. Whoever shows a run's events live (``dagster
        dev``'s run page, through :meth:`watch`) waits for the file to change, and with the
        connection kept new rows stay in SQLite's write-ahead log beside it until a checkpoint
        (every ~1000 pages, or when the connection closes), so without this the page would show
        nothing new until the run ends. Touching the file (one ``utime``) is what the watchers
        react to; reading the log after that sees the rows."""
        with contextlib.suppress(OSError):  # no shard (yet): nothing to watch
            os.utime(self.path_for_shard(run_id))

    # Dagster asks, for every asset event and asset read and on a connection of its own each
    # time, whether the index has a table, an asset_keys column or a completed data migration
    # (a SQL probe or a schema reflection, ~0.2 ms each, about seven per step). None of them
    # goes away once there (migrations add, ``wipe`` resets), so a yes is kept; a no is asked
    # again. Dagster's ConsolidatedSqliteEventLogStorage keeps its secondary-index answers too.
    def has_table(self, table_name: str) -> bool:
        return self._present("table", table_name, lambda: super(
            PooledSqliteEventLogStorage, self).has_table(table_name))

    def has_secondary_index(self, name: str) -> bool:
        return self._present("secondary index", name, lambda: super(
            PooledSqliteEventLogStorage, self).has_secondary_index(name))

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        return self._present("asset_keys column", column_name, lambda: super(
            PooledSqliteEventLogStorage, self)._has_asset_key_col_on_connection(
                conn, column_name))

    def _present(self, kind: str, name: str, ask: Callable[[], bool]) -> bool:
        if self._pooled and (kind, name) in self._known_present:
            return True
        present = ask()
        if present:
            self._known_present.add((kind, name))
        return present

    def wipe(self) -> None:
        self._dispose_engines()  # before Dagster unlinks the run shards they point at
        self._known_present.clear()
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


def _remove_leftovers_beside_shards(base_dir: Path) -> None:
    """Before :data:`TEMP_DIR` existed (commits 1a74302 up to, not including, f976b18), shards
    and the template were copied beside the shards themselves, so a process killed mid-copy left
    its file there. Those are removed once, when this directory is first used by code that
    copies into :data:`TEMP_DIR` (before it is made: a process killed meanwhile leaves the sweep
    to the next one). Every later leftover is in :data:`TEMP_DIR`, whose sweep costs next to
    nothing per run; this one lists every shard."""
    remove_orphaned_temp_files(base_dir)


def cli_instance_overrides(home: str) -> dict[str, Any]:
    """Instance overrides for a DagsterInstance under ``home`` that stores its event log
    through :class:`PooledSqliteEventLogStorage` and opens its run and schedule storages as
    :mod:`.sqlite_storages` does, in the directories Dagster's default SQLite storages use
    there (``history/runs``, ``history``, ``schedules``), so the instance's history is the same
    either way."""
    return {key: {"module": cls.__module__, "class": cls.__name__,
                  "config": {"base_dir": os.path.join(home, *HOME_LAYOUT[key])}}
            for key, cls in STORAGE_CLASSES.items()}


STORAGE_CLASSES: dict[str, type] = {"event_log_storage": PooledSqliteEventLogStorage,
                                    "run_storage": StampedSqliteRunStorage,
                                    "schedule_storage": StampedSqliteScheduleStorage}
