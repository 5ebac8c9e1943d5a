"""Where a session's step tables live, behind one small interface.

Two stores: ``duckdb`` (the default: one DuckDB file per session, nothing to configure) and
``ducklake`` (one schema per session in a DuckLake catalog shared by every worker, so steps of one
run may execute in different processes and machines). Drivers never see the difference: each step
gets an in-memory DuckDB connection with its session attached and its upstream tables as views.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Protocol

import duckdb

from osiris_dagster.core.errors import SessionStoreError, UpstreamMissingError
from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime.stores.ducklake_records import LakeRecords
from osiris_dagster.runtime.stores.inventory import DropReport, SessionInfo


class SessionStore(Protocol):
    """What the runtime needs of a store; every method takes plain strings (session ids and
    *locations*, the store's own name for a session that is recorded on materialisations)."""

    kind: str
    # True: a step's table is built and swapped in inside one transaction, so a reader (or a
    # parallel step) never sees a temporary table. False: build under a temporary name, then
    # swap (a DuckDB file has one writer, which makes that equally safe and cheaper).
    replaces_in_one_transaction: bool
    # True: a sealed SQL step's instance, its session attached, may serve the session's next
    # SQL step in the same thread (see runtime/duckdb_instances.py); detach() must work.
    step_instances_can_be_parked: bool
    # None: events, metrics, manifest and artifacts are files of the session directory. Else
    # they are kept by the store, where every worker reads and writes them.
    records: LakeRecords | None

    def location(self, session_id: str) -> str:
        """The session's location, recorded on every materialisation of its tables."""
        ...

    def canonical(self, location: str) -> str:
        """One spelling per session (two spellings of one file are one attachment)."""
        ...

    def owns(self, location: str) -> bool:
        """Whether ``location`` names a session of this kind of store."""
        ...

    def exists(self, location: str) -> bool:
        """False only when the session is known to be gone (a cheap check; a store that cannot
        tell cheaply says True and lets the table lookup fail)."""
        ...

    def attach_session(self, con: duckdb.DuckDBPyConnection, session_id: str) -> None:
        """Attach the session for writing (creating it when new)."""
        ...

    def session_prefix(self, session_id: str) -> str:
        """The qualified prefix of the session's tables once attached (``catalog.schema``)."""
        ...

    def attach_reader(self, con: duckdb.DuckDBPyConnection, location: str, alias: str) -> str:
        """Make the session at ``location`` readable in ``con`` (``alias`` if it needs an
        ATTACH of its own); returns the qualified prefix of its tables."""
        ...

    def detach(self, con: duckdb.DuckDBPyConnection, reader_aliases: Sequence[str]) -> bool:
        """Detach the session and the readers attached as ``reader_aliases`` from a step's
        instance, each written one checkpointed; False (nothing done) when the store cannot,
        and closing the instance has to do it."""
        ...

    def write_error(self, exc: duckdb.Error) -> SessionStoreError | None:
        """The store's own failure to write (naming its setting), or None for the query's."""
        ...

    def allowed_directories(self, locations: Sequence[str]) -> list[str]:
        """Paths a sealed SQL step must still reach to write its session and read these."""
        ...

    def table_name(self, session_id: str, table: str) -> str:
        """How a user finds the table (``dagster/table_name``)."""
        ...

    def missing(self, what: str, rematerialise: str, session_id: str,
                location: str) -> UpstreamMissingError:
        """The error for an upstream whose session is gone."""
        ...

    # -- housekeeping (`osiris-dagster sessions list|show|clean`) -------------------------------
    def describe(self) -> str:
        """Where the sessions are, for messages (``under <dir>``, ``in DuckLake catalog ...``)."""
        ...

    def list_sessions(self) -> list[SessionInfo]:
        """Every session of the store, newest first."""
        ...

    def session_tables(self, session_id: str) -> list[tuple[str, int]] | None:
        """(step table, rows) of a session, our own bookkeeping tables left out; None when the
        store has no such session."""
        ...

    def session_files(self, session_id: str) -> dict[str, int]:
        """The session's manifest and step artifacts: name -> bytes."""
        ...

    def drop_sessions(self, sessions: Sequence[SessionInfo], keep_snapshots: float
                      ) -> DropReport:
        """Delete these sessions and free the space they held (data files and the session
        directory on this machine, if any). A store with snapshots keeps those younger than
        ``keep_snapshots`` seconds (transactions still running are checked against them)."""
        ...


def store_for(settings: Settings) -> SessionStore:
    """The store the settings choose (one object per distinct settings in a process)."""
    return _store_for(settings)


@functools.lru_cache(maxsize=8)
def _store_for(settings: Settings) -> SessionStore:
    if settings.session_store == "ducklake":
        from osiris_dagster.runtime.stores.ducklake import DuckLakeStore

        return DuckLakeStore(settings)
    from osiris_dagster.runtime.stores.duckdb_file import DuckDBFileStore

    return DuckDBFileStore(settings)
