"""The ``ducklake`` store: one schema per session, one table per step, in a DuckLake catalog.

The catalog (e.g. PostgreSQL) and the data path (a shared directory or ``s3://bucket/prefix/``)
are shared by every worker, so the steps of one run may execute in parallel processes and on
other machines, and a later run anywhere reads an earlier session's tables. DuckLake gives each
commit snapshot isolation: a reader never sees a partial table, and two processes writing
different tables of one session both commit.

Locations are ``ducklake:<session id>``: the session's schema in the configured lake.

A catalog that is a DuckDB file serves one process: its DuckDB instances take the lake in turn
(:mod:`.ducklake_file`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import duckdb

from osiris_dagster.core.errors import SessionStoreError, UpstreamMissingError
from osiris_dagster.core.masking import Masker
from osiris_dagster.core.naming import quote_ident, quote_literal
from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime.stores.ducklake_file import (
    FileCatalog,
    file_catalog,
    is_file_catalog,
    lock_conflict,
)
from osiris_dagster.runtime.stores.ducklake_records import LakeRecords
from osiris_dagster.runtime.stores.ducklake_sessions import LakeSessions
from osiris_dagster.runtime.stores.extensions import WHEEL_PACKAGES, load_extension
from osiris_dagster.runtime.stores.inventory import DropReport, SessionInfo

LAKE_ALIAS = "osiris_lake"
_ATTACH_ATTEMPTS = 5
LOCATION_PREFIX = "ducklake:"
_REMOTE_SCHEMES = ("s3://", "s3a://", "gs://", "gcs://", "r2://", "http://", "https://")


class DuckLakeStore:
    kind = "ducklake"
    step_instances_can_be_parked = False  # a step's instance holds the lake's attachments
    replaces_in_one_transaction = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        catalog = (settings.ducklake_catalog or "").strip()
        if not catalog:
            raise SessionStoreError(
                "the ducklake session store needs a catalog: set OSIRIS_DUCKLAKE_CATALOG, e.g. "
                "'postgres:dbname=osiris host=db.internal user=osiris' (a PostgreSQL database "
                "every worker reaches)")
        data_path = (settings.ducklake_data_path or "").strip()
        if not data_path:
            raise SessionStoreError(
                "the ducklake session store needs a data path: set OSIRIS_DUCKLAKE_DATA_PATH to a "
                "directory every worker shares, or to s3://bucket/prefix/")
        self.catalog = catalog.removeprefix("ducklake:")
        self._file: FileCatalog | None = None
        if is_file_catalog(self.catalog):
            self.catalog = _normalise_file_path(self.catalog)
            self._file = file_catalog(self.catalog)
        self.data_path = _normalise_data_path(data_path)
        self.metadata_schema = settings.ducklake_metadata_schema
        self.records = LakeRecords(self._records_connection, self.session_prefix,
                                   self._records_error,
                                   borrow=self._use_lake if self._file is not None else None)

    # -- names ----------------------------------------------------------------------------------
    def location(self, session_id: str) -> str:
        return LOCATION_PREFIX + session_id

    def canonical(self, location: str) -> str:
        return location

    def owns(self, location: str) -> bool:
        return location.startswith(LOCATION_PREFIX)

    def exists(self, location: str) -> bool:
        return True  # asking the catalog costs an ATTACH; a missing table says it clearly

    def session_prefix(self, session_id: str) -> str:
        return f"{LAKE_ALIAS}.{quote_ident(session_id)}"

    def table_name(self, session_id: str, table: str) -> str:
        return f"{LAKE_ALIAS}.{session_id}.{table}"

    def missing(self, what: str, rematerialise: str, session_id: str,
                location: str) -> UpstreamMissingError:
        return UpstreamMissingError(
            f"{what} was materialised in session {session_id}, whose schema is gone from the "
            f"DuckLake catalog (cleaned or dropped); materialise '{rematerialise}' again")

    def allowed_directories(self, locations: Sequence[str]) -> list[str]:
        """The data files of these sessions only: DuckLake writes a schema's tables under
        ``<data path>/<schema>/``."""
        return [f"{self.data_path}{_session_of(loc)}/" for loc in locations if self.owns(loc)]

    # -- housekeeping (`osiris-dagster sessions`) -----------------------------------------------
    def describe(self) -> str:
        return (f"in the DuckLake catalog {_without_password(self.catalog)}"
                + (f" (metadata schema {self.metadata_schema})" if self.metadata_schema else "")
                + f", data path {self.data_path}")

    def list_sessions(self) -> list[SessionInfo]:
        return self._sessions().list_sessions()

    def session_tables(self, session_id: str) -> list[tuple[str, int]] | None:
        return self._sessions().session_tables(session_id)

    def session_files(self, session_id: str) -> dict[str, int]:
        return {name: len(body.encode("utf-8"))
                for name, body in self.records.files(session_id).items()}

    def drop_sessions(self, sessions: Sequence[SessionInfo], keep_snapshots: float
                      ) -> DropReport:
        return self._sessions().drop_sessions(sessions, keep_snapshots)

    def _sessions(self) -> LakeSessions:
        return LakeSessions(self._use_lake, LAKE_ALIAS, self.data_path,
                            self.settings.sessions_dir,
                            remote=self.data_path.startswith(_REMOTE_SCHEMES),
                            metadata_schema=self.metadata_schema)

    # -- connections ----------------------------------------------------------------------------
    def attach_session(self, con: duckdb.DuckDBPyConnection, session_id: str) -> None:
        self._attach_lake(con)
        self._ensure_session_directory(session_id)
        statement = f"CREATE SCHEMA IF NOT EXISTS {self.session_prefix(session_id)}"
        try:
            con.execute(statement)
        except duckdb.TransactionException:
            # parallel first steps of one run create the schema at once: one commits, the
            # others conflict; by now the schema is there
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            con.execute(statement)

    def attach_reader(self, con: duckdb.DuckDBPyConnection, location: str, alias: str) -> str:
        if not self.owns(location):
            raise UpstreamMissingError(
                f"session location {location} is a DuckDB file, but the configured session "
                "store is ducklake (OSIRIS_SESSION_STORE); materialise the upstream again")
        self._attach_lake(con)
        return self.session_prefix(_session_of(location))

    def _ensure_session_directory(self, session_id: str) -> None:
        """A local data path gets the session's directory now: a sealed SQL step may write
        only inside it (allowed_directories) and so cannot create it itself."""
        if self.data_path.startswith(_REMOTE_SCHEMES):
            return
        try:
            Path(self.data_path, session_id).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SessionStoreError(
                f"cannot create the session's data directory {self.data_path}{session_id}: "
                f"{exc.strerror or exc}. Check OSIRIS_DUCKLAKE_DATA_PATH ({self.data_path}): "
                "a directory every worker can write.") from None

    def detach(self, con: duckdb.DuckDBPyConnection, reader_aliases: Sequence[str]) -> bool:
        return False  # the lake's catalog and its metadata database are closed with the instance

    def write_error(self, exc: duckdb.Error) -> SessionStoreError | None:
        """A SessionStoreError naming the setting when ``exc`` is the lake failing to store
        (its data path or catalog), not the step's query; else None."""
        text = self._error_text(exc)
        # not PermissionException: that is the seal refusing the step's own query
        if isinstance(exc, duckdb.IOException | duckdb.HTTPException) and \
                self.data_path.rstrip("/") in text:
            return SessionStoreError(
                f"the DuckLake session store cannot write its data files: {text}. Check "
                f"OSIRIS_DUCKLAKE_DATA_PATH ({self.data_path}): a directory or bucket every "
                "worker can write.")
        return None

    def _records_error(self, exc: duckdb.Error) -> Exception | None:
        """Creating a session's records table writes under the data path first."""
        return self.write_error(exc) or (self._attach_error(exc) if isinstance(
            exc, duckdb.IOException) else None)

    def _use_lake(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A connection with the lake attached for one piece of work, closed after (a DuckDB
        connection closes itself at the end of a ``with`` block)."""
        if self._file is not None:
            return self._file.connection(self._new_instance, LAKE_ALIAS, self._attach_now)
        return self._records_connection()

    def _new_instance(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(":memory:", config={"memory_limit": self.settings.memory_limit})

    def _records_connection(self) -> duckdb.DuckDBPyConnection:
        """A new instance with the lake attached (a catalog database every process reaches)."""
        con = self._new_instance()
        try:
            self._attach_now(con)
        except BaseException:
            con.close()
            raise
        return con

    def _attach_lake(self, con: duckdb.DuckDBPyConnection) -> None:
        attached = {r[0] for r in con.execute(
            "SELECT database_name FROM duckdb_databases()").fetchall()}
        if LAKE_ALIAS in attached:
            return
        if self._file is not None:
            self._file.take(con, LAKE_ALIAS, self._attach_now)
        else:
            self._attach_now(con)

    def _attach_now(self, con: duckdb.DuckDBPyConnection) -> None:
        load_extension(con, "ducklake", "OSIRIS_SESSION_STORE=ducklake")
        kind = self.catalog.split(":", 1)[0] if self._file is None else "duckdb"
        if kind == "postgres":
            load_extension(con, "postgres_scanner", "OSIRIS_DUCKLAKE_CATALOG")
        elif kind == "sqlite":
            _load_sqlite(con)
        if self.data_path.startswith(_REMOTE_SCHEMES):
            load_extension(con, "httpfs", "OSIRIS_DUCKLAKE_DATA_PATH")
            self._create_s3_secret(con)
        options = [f"DATA_PATH {quote_literal(self.data_path)}"]
        if self.metadata_schema:
            options.append(f"METADATA_SCHEMA {quote_literal(self.metadata_schema)}")
        sql = (f"ATTACH {quote_literal('ducklake:' + self.catalog)} AS {LAKE_ALIAS} "
               f"({', '.join(options)})")
        for attempt in range(_ATTACH_ATTEMPTS):
            try:
                con.execute(sql)
                return
            except duckdb.Error as exc:
                # the first ATTACH of a new catalog creates its tables; PostgreSQL refuses a
                # second worker doing the same at the same moment: by the retry they exist
                if attempt + 1 < _ATTACH_ATTEMPTS and _is_creation_race(exc):
                    time.sleep(0.05 * (attempt + 1) * random.uniform(0.5, 1.5))
                    continue
                raise self._attach_error(exc) from None

    def _create_s3_secret(self, con: duckdb.DuckDBPyConnection) -> None:
        from osiris_dagster.core.environment import environment
        from osiris_dagster.runtime.stores.s3 import s3_secret_sql

        statement = s3_secret_sql(environment())
        if statement is not None:
            con.execute(statement)

    def _error_text(self, exc: duckdb.Error) -> str:
        """DuckDB's error on one line, the catalog's and S3's secrets masked, then cut (cut
        first, a password across the cut would show its first characters)."""
        from osiris_dagster.core.environment import environment
        from osiris_dagster.runtime.stores.s3 import SECRET_VARS, TOKEN_VARS

        env = environment()
        masker = Masker(env.get(name) for name in SECRET_VARS + TOKEN_VARS)
        masker.add_from_connection({"catalog": self.catalog})
        return masker.shortened(" ".join(str(exc).split()), 400)

    def _attach_error(self, exc: duckdb.Error) -> SessionStoreError:
        # a file catalog's error names its path only: read whole, the holder's PID is at its end
        held = lock_conflict(self.catalog, str(exc)) if self._file is not None else None
        if held is not None:
            return held
        text = self._error_text(exc)
        lowered = text.lower()
        if any(word in lowered for word in ("data_path", "data path", "directory", "s3",
                                             "http", "permission", "no such file")):
            setting = "OSIRIS_DUCKLAKE_DATA_PATH"
            value = self.data_path
        else:
            setting = "OSIRIS_DUCKLAKE_CATALOG"
            value = _without_password(self.catalog)
        return SessionStoreError(
            f"cannot open the DuckLake session store (catalog {_without_password(self.catalog)}"
            f", data path {self.data_path}): {text}. Check {setting} ({value}): the catalog "
            "database must be reachable from every worker and the data path shared by all.")


def _load_sqlite(con: duckdb.DuckDBPyConnection) -> None:
    """DuckDB's sqlite extension, which the lake extra does not bring: without internet it is
    there only when its wheel is installed."""
    try:
        load_extension(con, "sqlite_scanner", "OSIRIS_DUCKLAKE_CATALOG")
    except SessionStoreError:
        if importlib.util.find_spec(WHEEL_PACKAGES["sqlite_scanner"]) is not None:
            raise  # the wheel is there and does not load: its own message says why
        raise SessionStoreError(
            "a sqlite: DuckLake catalog (OSIRIS_DUCKLAKE_CATALOG) needs DuckDB's sqlite_scanner "
            "extension, which DuckDB could not install here and osiris-dagster[lake] does not "
            "bring. Without internet access install DuckDB's signed wheel of it: pip install "
            f"duckdb-extension-sqlite-scanner=={duckdb.__version__}; or use a postgres: "
            "catalog (several machines) or a DuckDB file (one process).") from None


def _is_creation_race(exc: duckdb.Error) -> bool:
    text = str(exc).lower()
    return "duplicate key value" in text or "already exists" in text


def _session_of(location: str) -> str:
    return location.removeprefix(LOCATION_PREFIX)


def _normalise_file_path(catalog: str) -> str:
    """A DuckDB file catalog as an absolute path: one name per file, whatever the directory
    (DuckDB tells two attachments of one file apart by their paths)."""
    return str(Path(catalog.removeprefix("duckdb:")).expanduser().resolve())


def _normalise_data_path(path: str) -> str:
    """A trailing ``/``; a local directory made absolute (every worker must mean one place)."""
    if not path.startswith(_REMOTE_SCHEMES):
        path = str(Path(path).expanduser().resolve())
    return path if path.endswith("/") else path + "/"


def _without_password(catalog: str) -> str:
    """The catalog string for messages (``password=`` and URL passwords masked)."""
    return Masker().text(catalog)
