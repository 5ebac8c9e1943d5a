"""A DuckLake catalog that is a DuckDB file, shared in turn by the DuckDB instances of a process.

DuckDB lets one instance of a process attach a database file for writing at a time (a second
ATTACH, from any other instance of the process, fails with "Unique file handle conflict"), and
one process at a time (the file's lock). A run's process has several instances that need the
lake: the store's own (its records, `osiris-dagster sessions`), each step's, a reader's. So they
take it in turn:

- the store's own instance attaches the lake when a record needs it, and keeps it;
- a step's (or a reader's) instance that attaches the lake takes it: the own instance detaches
  it first, while no record is being written (both hold this catalog's lock);
- while that instance is open, records are written through a cursor of it (a step's progress
  and heartbeats go into the instance the step writes its table with);
- once it is closed, the own instance attaches the lake again for the next record.

Two other instances at once cannot be (a reader still open when a step starts): the second is
refused, saying so. Another process (a multiprocess executor's step) meets the file's lock while
this one holds it: see :func:`lock_conflict`.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterator

import duckdb

from osiris_dagster.core.errors import SessionStoreError
from osiris_dagster.core.naming import quote_ident

Attach = Callable[[duckdb.DuckDBPyConnection], None]
_catalogs: dict[str, FileCatalog] = {}
_catalogs_lock = threading.Lock()
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9_]+")  # one letter: a Windows drive, a path


def is_file_catalog(catalog: str) -> bool:
    """Whether a DuckLake catalog string (``ducklake:`` removed) names a DuckDB file: a path,
    or ``duckdb:<path>``; ``postgres:``, ``sqlite:``, ``mysql:``, ... name other databases."""
    kind, sep, _rest = catalog.partition(":")
    return not sep or kind == "duckdb" or not _SCHEME.fullmatch(kind)


def file_catalog(path: str) -> FileCatalog:
    """The process's one :class:`FileCatalog` of the DuckDB file at ``path`` (absolute)."""
    with _catalogs_lock:
        found = _catalogs.get(path)
        if found is None:
            found = _catalogs[path] = FileCatalog(path)
        return found


def lock_conflict(path: str, text: str) -> SessionStoreError | None:
    """The error for DuckDB's ``text`` when it is another process holding the catalog file."""
    if "could not set lock" not in text.lower():
        return None
    holder = _LOCK_HOLDER.search(text)
    who = f"process {holder['pid']} ({holder['program']})" if holder else "another process"
    return SessionStoreError(
        f"the DuckLake catalog {path} is a DuckDB file, which one process at a time can open, "
        f"and {who} has it open. A DuckDB-file catalog serves one run at a "
        "time, all its steps in the run's process: OSIRIS_EXECUTOR=in_process. To run steps in "
        "several processes (OSIRIS_EXECUTOR=multiprocess, the ducklake store's default, or "
        "celery), or several runs at once, use a PostgreSQL catalog: "
        "OSIRIS_DUCKLAKE_CATALOG='postgres:dbname=osiris host=... user=...'.")


class FileCatalog:
    """Which instance of this process has the catalog attached; see the module docstring."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._own: duckdb.DuckDBPyConnection | None = None  # the store's, lake attached or not
        self._own_attached = False
        self._holder: weakref.ref[duckdb.DuckDBPyConnection] | None = None  # another instance
        self._pid = os.getpid()

    @contextlib.contextmanager
    def connection(self, new_instance: Callable[[], duckdb.DuckDBPyConnection],
                   alias: str, attach: Attach) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with the lake attached as ``alias`` for one piece of work (a cursor of
        the instance that holds it, closed after), other instances kept from taking it."""
        with self._lock:
            self._forget_if_forked()
            holder = self._live_holder(alias)
            if holder is None:
                holder = self._own_instance(new_instance)
                if not self._own_attached:
                    attach(holder)
                    self._own_attached = True
            cursor = holder.cursor()
            try:
                yield cursor
            finally:
                cursor.close()

    def take(self, con: duckdb.DuckDBPyConnection, alias: str, attach: Attach) -> None:
        """Attach the lake to ``con`` (a step's or a reader's instance), the own instance
        detaching it first; refused while another instance of the process holds it."""
        with self._lock:
            self._forget_if_forked()
            holder = self._live_holder(alias)
            if holder is not None and holder is not con:
                raise SessionStoreError(
                    f"the DuckLake catalog {self.path} is a DuckDB file, which one DuckDB "
                    "instance of a process can attach at a time, and another instance of this "
                    "process has it attached (a step's, or a reader of a session's tables that "
                    "is still open): close that one first, or use a PostgreSQL catalog "
                    "(OSIRIS_DUCKLAKE_CATALOG='postgres:...'), which any number of instances "
                    "and processes share.")
            self._detach_own(alias)
            attach(con)
            self._holder = weakref.ref(con)

    def _live_holder(self, alias: str) -> duckdb.DuckDBPyConnection | None:
        """The other instance that has the lake attached, if it is still open and has it."""
        con = self._holder() if self._holder is not None else None
        if con is not None:
            try:
                with con.cursor() as cursor:
                    if cursor.execute("SELECT 1 FROM duckdb_databases() WHERE database_name = ?",
                                      [alias]).fetchone():
                        return con
            except duckdb.ConnectionException:  # closed
                pass
        self._holder = None
        return None

    def _own_instance(self, new_instance: Callable[[], duckdb.DuckDBPyConnection]
                      ) -> duckdb.DuckDBPyConnection:
        if self._own is None:
            self._own = new_instance()
            self._own_attached = False
        return self._own

    def _detach_own(self, alias: str) -> None:
        if self._own is not None and self._own_attached:
            self._own.execute(f"DETACH {quote_ident(alias)}")
            self._own_attached = False

    def _forget_if_forked(self) -> None:
        """A forked child has its parent's connections in memory only: it opens its own."""
        if self._pid != os.getpid():
            self._own, self._own_attached, self._holder = None, False, None
            self._pid = os.getpid()
