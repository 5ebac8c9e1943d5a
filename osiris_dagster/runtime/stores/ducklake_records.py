"""A session's records (events, metrics, manifest, step artifacts) in its DuckLake schema.

With the ducklake store a run's steps may execute on different machines, so nothing about a
session may stay on one worker's disk: each record is a row of ``__osiris_records`` in the
session's schema. Rows this small are inlined in the catalog database by DuckLake (no data file
per event), and concurrent inserts of several processes all commit. Exactly-once records
(run_start, run_end) are claimed by creating a marker table: of concurrent creates DuckLake
commits exactly one.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import duckdb

from osiris_dagster.core.naming import quote_ident

RECORDS_TABLE = "__osiris_records"
STATE_SCHEMA = "__osiris_state"  # per-step state that outlives sessions (high-water marks)
CLAIM_PREFIX = "__osiris_claim_"
META_TABLE_PREFIX = "__osiris_"  # tables of ours in a session schema, never a step's
_RETRIES = 8


class LakeRecords:
    """One DuckDB connection per process (opening a lake costs ~0.3 s), shared by its threads
    under a lock; it never runs user SQL, so it is never sealed. With ``borrow`` instead, each
    piece of work gets a connection from it for its duration (a catalog in a DuckDB file, which
    the instances of the process hold in turn: ``ducklake_file``)."""

    def __init__(self, connect: Callable[[], duckdb.DuckDBPyConnection],
                 prefix: Callable[[str], str],
                 explain: Callable[[duckdb.Error], Exception | None] = lambda exc: None,
                 borrow: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
                 | None = None) -> None:
        self._connect = connect
        self._borrow = borrow
        self._prefix = prefix
        self._explain = explain  # the store's error naming its setting, when it is to blame
        self._lock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._pid = 0
        self._ready: set[str] = set()

    # -- records --------------------------------------------------------------------------------
    def append(self, session_id: str, kind: str, body: str) -> None:
        table = self._table(session_id)
        self._run(lambda con: con.execute(
            f"INSERT INTO {table} VALUES (?, ?, NULL, ?)", [time.time_ns(), kind, body]))

    def read(self, session_id: str, kind: str) -> list[str]:
        rows = self._read(session_id, "SELECT body FROM {table} WHERE kind = ? ORDER BY seq",
                          [kind])
        return [r[0] for r in rows]

    def put_file(self, session_id: str, name: str, body: str) -> None:
        """Replace the session's file ``name`` (``manifest.yaml``, ``artifacts/<step>/x``)."""
        table = self._table(session_id)
        self._replace((f"DELETE FROM {table} WHERE kind = 'file' AND name = ?", [name]),
                      (f"INSERT INTO {table} VALUES (?, 'file', ?, ?)",
                       [time.time_ns(), name, body]))

    def files(self, session_id: str) -> dict[str, str]:
        rows = self._read(session_id,
                          "SELECT name, body FROM {table} WHERE kind = 'file' ORDER BY name", [])
        return {str(r[0]): str(r[1]) for r in rows}

    def claim(self, session_id: str, name: str) -> bool:
        """True for exactly one caller per (session, name), whichever process it runs in."""
        self._table(session_id)
        marker = f"{self._prefix(session_id)}.{quote_ident(CLAIM_PREFIX + name)}"
        with self._connection() as con:
            try:
                con.execute(f"CREATE TABLE {marker} (claimed_by VARCHAR)")
                return True
            except (duckdb.CatalogException, duckdb.TransactionException):
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                return False

    # -- state that outlives sessions -----------------------------------------------------------
    def put_state(self, pipeline: str, step_id: str, name: str, body: str) -> None:
        """Replace the step's state file ``name``, in one transaction."""
        table = self._state_table()
        self._replace((f"DELETE FROM {table} WHERE pipeline = ? AND step_id = ? AND name = ?",
                       [pipeline, step_id, name]),
                      (f"INSERT INTO {table} VALUES (?, ?, ?, ?)",
                       [pipeline, step_id, name, body]))

    def state_files(self, pipeline: str, step_id: str) -> dict[str, str]:
        table = self._state_table()
        rows = self._run(lambda con: con.execute(
            f"SELECT name, body FROM {table} WHERE pipeline = ? AND step_id = ?",
            [pipeline, step_id]).fetchall())
        return {str(r[0]): str(r[1]) for r in rows}

    def state_files_named(self, name: str) -> list[str]:
        """The bodies of every step's state file ``name``."""
        table = self._state_table()
        rows = self._run(lambda con: con.execute(
            f"SELECT body FROM {table} WHERE name = ? ORDER BY pipeline, step_id", [name]
        ).fetchall())
        return [str(r[0]) for r in rows]

    def _state_table(self) -> str:
        return self._ensure_table(STATE_SCHEMA, "files", "pipeline VARCHAR, step_id VARCHAR, "
                                  "name VARCHAR, body VARCHAR")

    # -- plumbing -------------------------------------------------------------------------------
    def _replace(self, delete: tuple[str, list[Any]], insert: tuple[str, list[Any]]) -> None:
        """The delete and the insert as one transaction (a reader sees the old row or the new)."""

        def replace(con: duckdb.DuckDBPyConnection) -> None:
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(*delete)
                con.execute(*insert)
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise

        self._run(replace)

    def _read(self, session_id: str, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` on the session's records; none when it has none (reading creates
        nothing: `sessions show` must not leave a schema behind for a mistyped id)."""
        table = f"{self._prefix(session_id)}.{quote_ident(RECORDS_TABLE)}"

        def read(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
            try:
                return con.execute(sql.format(table=table), params).fetchall()
            except duckdb.CatalogException:  # no such schema or table (yet)
                return []

        return self._run(read)

    def _table(self, session_id: str) -> str:
        return self._ensure_table(session_id, RECORDS_TABLE, "seq BIGINT, kind VARCHAR, "
                                  "name VARCHAR, body VARCHAR")

    def _ensure_table(self, schema: str, name: str, columns: str) -> str:
        """``schema.name`` of the lake, created (with its schema) once per process."""
        prefix = self._prefix(schema)
        table = f"{prefix}.{quote_ident(name)}"
        if schema not in self._ready:
            self._run(lambda con: (
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {prefix}"),
                con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")))
            self._ready.add(schema)
        return table

    def _run(self, work: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
        """``work`` on the connection, again after a conflicting commit of another process."""
        delay = 0.02
        for attempt in range(_RETRIES):
            with self._connection() as con:
                try:
                    return work(con)
                except duckdb.TransactionException:
                    with contextlib.suppress(duckdb.Error):
                        con.execute("ROLLBACK")
                    if attempt == _RETRIES - 1:
                        raise
                except duckdb.ConnectionException:
                    # a borrowed instance closed under the work: the next one is another
                    if self._borrow is None or attempt == _RETRIES - 1:
                        raise
                except duckdb.Error as exc:
                    explained = self._explain(exc)  # the store's setting to blame, if it is
                    if explained is None:
                        raise
                    raise explained from None
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection for one piece of work, this object's lock held."""
        with self._lock:
            if self._borrow is not None:
                with self._borrow() as con:
                    yield con
                return
            if self._con is None or self._pid != os.getpid():  # a forked child opens its own
                self._con = self._connect()
                self._pid = os.getpid()
                self._ready.clear()
            yield self._con
