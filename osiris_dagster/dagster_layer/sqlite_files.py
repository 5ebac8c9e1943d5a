"""Keep a Dagster instance's SQLite files open while a run writes its events.

Dagster's SQLite storages open a fresh connection for every event they store and close it
again. When the last connection to a database in WAL mode closes, SQLite checkpoints the WAL
into the database and deletes it, two fsyncs and a file deletion, so every event write pays
that (about 13 ms against 3 ms here: measured with plain sqlite3 on this machine's disk). A run
stores ten or so events per step (start, input, output, materialisation, success, ...), in the
run's own shard and mirrored into the index.

Holding one idle connection to each file for the duration of the run makes Dagster's
connections never the last one: the WAL stays, writes are appended to it and SQLite's own
automatic checkpoint (every 1000 pages) keeps it short; the checkpoint runs once when the
holder closes. Nothing else changes: same files, same rows, same schema; readers and writers
in WAL mode do not wait on an idle connection. Instances not stored in SQLite are left alone.

The run's own event shard is not held: ``dagster dev`` shows a run's events live by watching
that file for changes, which rows left in the WAL do not make. With Dagster's own event log
class each close then checkpoints it, as without this module; ``PooledSqliteEventLogStorage``
keeps its connection to it anyway and touches the file after each event it stores.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url


@contextlib.contextmanager
def sqlite_files_held_open(instance: Any) -> Iterator[list[Path]]:
    """While inside, one idle connection is held to the event index and the run storage, two of
    the SQLite files a run writes (not its event shard: see the module's text). Yields the files
    held (empty for non-SQLite instances). It reads Dagster's
    private storage classes, so anything unexpected there means no files are held (the run
    goes on, only slower), never a failed run."""
    held: list[sqlite3.Connection] = []
    held_paths: list[Path] = []
    try:
        paths = _files_of(instance)
    except Exception:  # noqa: BLE001 - Dagster internals moved: run without the speed-up
        paths = []
    try:
        for path in paths:
            try:
                con = sqlite3.connect(str(path), timeout=30)
                con.execute("SELECT count(*) FROM sqlite_master").fetchall()  # opens the WAL
            except sqlite3.Error:
                continue  # an optimisation only: never fail a run for it
            held.append(con)
            held_paths.append(path)
        yield held_paths
    finally:
        for con in held:
            con.close()


def _files_of(instance: Any) -> list[Path]:
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
        INDEX_SHARD_NAME,
        SqliteEventLogStorage,
    )
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

    paths: list[Path] = []
    events = instance.event_log_storage
    if isinstance(events, SqliteEventLogStorage):
        with events.index_connection():  # the index, with its schema and WAL mode
            pass
        paths.append(Path(events.path_for_shard(INDEX_SHARD_NAME)))
    runs = instance.run_storage
    conn_string = getattr(runs, "_conn_string", None)
    if isinstance(runs, SqliteRunStorage) and isinstance(conn_string, str):
        database = make_url(conn_string).database
        if database:
            paths.append(Path(database))
    return [p for p in paths if p.is_file()]
