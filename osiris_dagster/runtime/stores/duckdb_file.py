"""The default store: one DuckDB file per session (`<session dir>/pipeline_data.duckdb`).

A DuckDB file has one writer at a time, so the steps of a run execute one after another in one
process (the in-process executor); readers attach other sessions' files read-only."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path

import duckdb

from osiris_dagster.core.errors import (
    OsirisError,
    SessionLockedError,
    SessionStoreError,
    UpstreamMissingError,
)
from osiris_dagster.core.naming import quote_ident, quote_literal
from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime import duckdb_instances
from osiris_dagster.runtime.stores.inventory import DropReport, SessionInfo

DB_FILE = "pipeline_data.duckdb"
SESSION_ALIAS = "session"  # the session's file in a step's instance
_LOCK_MARKERS = ("Could not set lock", "Conflicting lock")


class DuckDBFileStore:
    kind = "duckdb"
    replaces_in_one_transaction = False
    step_instances_can_be_parked = True
    records = None  # the session directory's files are its records

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def location(self, session_id: str) -> str:
        return str(self.settings.sessions_dir / session_id / DB_FILE)

    def canonical(self, location: str) -> str:
        return str(Path(location).resolve())

    def owns(self, location: str) -> bool:
        return not location.startswith("ducklake:")

    def exists(self, location: str) -> bool:
        return Path(location).exists()

    def attach_session(self, con: duckdb.DuckDBPyConnection, session_id: str) -> None:
        attach_with_retry(con, Path(self.location(session_id)), SESSION_ALIAS,
                          self.settings.lock_timeout_seconds)

    def session_prefix(self, session_id: str) -> str:
        return f"{quote_ident(SESSION_ALIAS)}.main"

    def detach(self, con: duckdb.DuckDBPyConnection, reader_aliases: Sequence[str]) -> bool:
        for alias in (*reader_aliases, SESSION_ALIAS):
            con.execute(f"DETACH {quote_ident(alias)}")  # checkpoints a written file
        return True

    def attach_reader(self, con: duckdb.DuckDBPyConnection, location: str, alias: str) -> str:
        attach_with_retry(con, Path(location).resolve(), alias,
                          self.settings.lock_timeout_seconds, read_only=True)
        return f"{quote_ident(alias)}.main"

    def write_error(self, exc: duckdb.Error) -> SessionStoreError | None:
        return None  # a session file's own errors are DuckDB's, and say so

    def allowed_directories(self, locations: Sequence[str]) -> list[str]:
        return []  # attached files stay usable when file access is switched off

    def table_name(self, session_id: str, table: str) -> str:
        return f"pipeline_data.main.{table}"

    def missing(self, what: str, rematerialise: str, session_id: str,
                location: str) -> UpstreamMissingError:
        return UpstreamMissingError.session_gone(what, rematerialise, session_id, location)

    # -- housekeeping (`osiris-dagster sessions`) -----------------------------------------------
    def describe(self) -> str:
        return f"under {self.settings.sessions_dir}"

    def list_sessions(self) -> list[SessionInfo]:
        from osiris_dagster.runtime.stores import duckdb_sessions

        return duckdb_sessions.list_sessions(self.settings.sessions_dir)

    def session_tables(self, session_id: str) -> list[tuple[str, int]] | None:
        from osiris_dagster.runtime.stores import duckdb_sessions

        return duckdb_sessions.session_tables(self.settings.sessions_dir / session_id)

    def session_files(self, session_id: str) -> dict[str, int]:
        from osiris_dagster.runtime.stores import duckdb_sessions

        return duckdb_sessions.session_files(self.settings.sessions_dir / session_id)

    def drop_sessions(self, sessions: Sequence[SessionInfo], keep_snapshots: float
                      ) -> DropReport:
        from osiris_dagster.runtime.stores import duckdb_sessions

        return duckdb_sessions.drop_sessions(sessions)


def attach_with_retry(con: duckdb.DuckDBPyConnection, db_path: Path, alias: str,
                      timeout_seconds: float, read_only: bool = False) -> None:
    """ATTACH a database file, retrying DuckDB's one-writer file lock with jittered backoff."""
    duckdb_instances.release_parked(str(db_path.resolve()))  # one attachment per process
    sql = f"ATTACH {quote_literal(str(db_path))} AS {quote_ident(alias)}"
    if read_only:
        sql += " (READ_ONLY)"
    deadline = time.monotonic() + timeout_seconds
    delay = 0.05
    while True:
        try:
            con.execute(sql)
            return
        except duckdb.IOException as exc:
            text = str(exc)
            if not any(marker in text for marker in _LOCK_MARKERS):
                raise _database_error(db_path, exc) from exc
            if time.monotonic() >= deadline:
                raise SessionLockedError(
                    f"session database {db_path} is locked by another process for more than "
                    f"{timeout_seconds:.0f}s ({text.splitlines()[0]}). A DuckDB file has one "
                    "writer: run the pipeline's steps in one process (the in-process executor, "
                    "run config `execution: {config: {in_process: {}}}`), use the ducklake "
                    "session store (OSIRIS_SESSION_STORE=ducklake) for steps in parallel, or "
                    "raise OSIRIS_LOCK_TIMEOUT_SECONDS."
                ) from exc
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)
        except duckdb.Error as exc:
            raise _database_error(db_path, exc) from exc


def _database_error(db_path: Path, exc: Exception) -> OsirisError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return OsirisError(
        f"cannot open session database {db_path}: {first}. If the file is corrupt or was written "
        "by an incompatible DuckDB version, delete that session directory and materialise the "
        "affected steps again."
    )
