"""The ducklake store's sessions for `osiris-dagster sessions`: one schema per session in the
shared catalog, one table per step, plus our own ``__osiris_*`` tables (records, claim markers).

Dropping a schema only ends its tables in a new snapshot: older snapshots still reference their
data files. To give the space back, a clean expires the lake's snapshots and deletes the files no
remaining snapshot references (DuckLake's ``ducklake_expire_snapshots`` and
``ducklake_cleanup_old_files``; sessions offer no time travel). Snapshots younger than a margin
stay: DuckLake checks a committing transaction against the snapshots made since it began, and
expiring those lets a conflicting commit through (measured: two creates of one claim marker both
commit, and the catalog then holds the table twice). A deleted session's files still referenced
by a kept snapshot go with a later clean.

Files a killed writer left were never in the catalog; DuckLake's orphan sweep removes them when
every orphan it finds lies under a session whose schema is gone (else a writer may be mid-step).
"""

from __future__ import annotations

import contextlib
import random
import re
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from osiris_dagster.core.naming import quote_ident, quote_literal
from osiris_dagster.runtime.stores.ducklake_records import META_TABLE_PREFIX, RECORDS_TABLE
from osiris_dagster.runtime.stores.inventory import (
    DropReport,
    SessionInfo,
    directory_size,
    summarise_events,
)

_RETRIES = 5
_T = TypeVar("_T")
_SESSION_ID = re.compile(r"[A-Za-z0-9_.-]+")  # Session's own rule: a safe directory name too


class LakeSessions:
    """Listing, showing and dropping the sessions of one lake (attached as ``alias``)."""

    def __init__(self, connect: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]],
                 alias: str, data_path: str, sessions_dir: Path, remote: bool,
                 metadata_schema: str | None = None) -> None:
        """``connect``: a connection with the lake attached as ``alias``, for one block."""
        self._connect = connect
        self._alias = alias
        self._metadata_schema = metadata_schema
        self._data_path = data_path
        self._sessions_dir = sessions_dir
        self._remote = remote

    # -- list -----------------------------------------------------------------------------------
    def list_sessions(self) -> list[SessionInfo]:
        with self._connect() as con:
            tables = self._tables(con)
            ids = sorted(sid for sid, names in tables.items()
                         if _SESSION_ID.fullmatch(sid) and sid not in {".", ".."}
                         and any(n.startswith(META_TABLE_PREFIX) for n in names))
            runs = self._run_events(con, [s for s in ids if RECORDS_TABLE in tables[s]])
            sizes = self._session_sizes(con, ids, tables)
        out = []
        for sid in ids:
            lines, first_seq = runs.get(sid, ([], None))
            run = summarise_events(lines)
            local = self._local_dir(sid)
            started = run.started or (first_seq / 1e9 if first_seq else None) or (
                local.stat().st_mtime if local else 0.0)
            out.append(SessionInfo(sid, local, run.pipeline, run.status, started,
                                   sizes.get(sid, 0) + directory_size(local)))
        return sorted(out, key=lambda s: s.started, reverse=True)

    # -- show -----------------------------------------------------------------------------------
    def session_tables(self, session_id: str) -> list[tuple[str, int]] | None:
        with self._connect() as con:
            if not con.execute(
                    "SELECT 1 FROM duckdb_schemas() WHERE database_name = ? AND schema_name = ?",
                    [self._alias, session_id]).fetchall():
                return None
            names = sorted(self._tables(con, session_id).get(session_id, []))
            prefix = f"{self._alias}.{quote_ident(session_id)}"
            out = []
            for name in names:
                if name.startswith(META_TABLE_PREFIX):
                    continue
                row = con.execute(f"SELECT count(*) FROM {prefix}.{quote_ident(name)}").fetchone()
                out.append((name, int(row[0]) if row else 0))
            return out

    # -- clean ----------------------------------------------------------------------------------
    def drop_sessions(self, sessions: Sequence[SessionInfo], keep_snapshots: float
                      ) -> DropReport:
        """Drop the sessions' schemas and free their files; snapshots (and uncommitted files)
        younger than ``keep_snapshots`` seconds stay."""
        report = DropReport()
        if not sessions:
            return report
        ids = [s.session_id for s in sessions]
        alias = quote_literal(self._alias)
        with self._connect() as con:
            sizes = self._session_sizes(con, ids)
            self._retry(con, lambda: self._drop_schemas(con, ids))
            row = con.execute("SELECT CAST(now() - to_seconds(CAST(? AS DOUBLE)) AS VARCHAR)",
                              [keep_snapshots]).fetchone()
            cutoff = f"CAST({quote_literal(str(row[0]) if row else '')} AS TIMESTAMPTZ)"
            expired = self._retry(con, lambda: con.execute(
                f"CALL ducklake_expire_snapshots({alias}, older_than => {cutoff})").fetchall())
            deleted = self._retry(con, lambda: con.execute(
                f"CALL ducklake_cleanup_old_files({alias}, cleanup_all => true)").fetchall())
            report.files_deleted += [str(r[0]) for r in deleted]
            report.notes.append(f"expired {len(expired)} snapshot(s) of the lake; deleted "
                                f"{len(deleted)} data file(s) from {self._data_path}")
            self._delete_orphans(con, cutoff, report)
            left = self._files_under(con, ids)
            live = self._schemas(con)
            if left:
                report.bytes_left = min(self._listed_bytes(con, ids, left),
                                        sum(sizes.values()))
        if left:
            report.notes.append(
                f"{len(left)} file(s) of the deleted sessions stay while snapshots younger than "
                f"{keep_snapshots:g}s reference them (or a writer may still own them): a later "
                "clean frees them")
        if not self._remote:  # object storage has no folders
            _remove_empty_session_dirs(Path(self._data_path), live)
        for info in sessions:
            if info.path is not None and info.path.exists():
                shutil.rmtree(info.path)
        return report

    def _delete_orphans(self, con: duckdb.DuckDBPyConnection, cutoff: str,
                        report: DropReport) -> None:
        """DuckLake's sweep of files no snapshot knows (a writer killed mid-step), run only
        when every file it would delete lies under a session whose schema is gone. A file under
        a live session may be a running writer's next table: a writer's schema is committed
        before it writes, so the schemas read after the dry run include every writer whose
        file the dry run saw; files newer than the cutoff are left to a later clean."""
        sweep = (f"CALL ducklake_delete_orphaned_files({quote_literal(self._alias)}, "
                 f"older_than => {cutoff}")
        found = [str(r[0]) for r in con.execute(sweep + ", dry_run => true)").fetchall()]
        if not found:
            return
        live = self._schemas(con)
        dead = [p for p in found if _session_of_file(p, self._data_path) not in live | {None}]
        if len(dead) < len(found):
            if dead:
                report.notes.append(
                    f"left {len(dead)} file(s) of killed writers of deleted sessions: the data "
                    f"path holds {len(found) - len(dead)} other uncommitted file(s) (a writer "
                    "may be mid-step); a later clean removes them")
            return
        gone = [str(r[0]) for r in con.execute(sweep + ")").fetchall()]
        report.files_deleted += gone
        report.notes.append(f"deleted {len(gone)} file(s) of killed writers")

    # -- plumbing -------------------------------------------------------------------------------
    def _schemas(self, con: duckdb.DuckDBPyConnection) -> set[str]:
        return {str(r[0]) for r in con.execute(
            "SELECT schema_name FROM duckdb_schemas() WHERE database_name = ?",
            [self._alias]).fetchall()}

    def _tables(self, con: duckdb.DuckDBPyConnection,
                schema: str | None = None) -> dict[str, list[str]]:
        sql = "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ?"
        params: list[Any] = [self._alias]
        if schema is not None:
            sql += " AND schema_name = ?"
            params.append(schema)
        out: dict[str, list[str]] = {}
        for schema_name, table in con.execute(sql, params).fetchall():
            out.setdefault(str(schema_name), []).append(str(table))
        return out

    def _run_events(self, con: duckdb.DuckDBPyConnection, ids: list[str]
                    ) -> dict[str, tuple[list[str], int | None]]:
        """Per session: its run_start / run_end event lines and its first record's time (ns).
        One query per session (a UNION of them all is no faster: DuckLake's per-table lookups
        dominate), so one unreadable session does not hide the others."""
        out: dict[str, tuple[list[str], int | None]] = {}
        for sid in ids:
            try:
                row = con.execute(
                    "SELECT min(seq), list(body ORDER BY seq) FILTER (WHERE kind = 'event' AND "
                    "(contains(body, '\"run_start\"') OR contains(body, '\"run_end\"'))) "
                    f"FROM {self._alias}.{quote_ident(sid)}.{quote_ident(RECORDS_TABLE)}"
                ).fetchone()
            except duckdb.Error:  # dropped meanwhile by another clean: listed as unfinished
                continue
            if row is not None:
                out[sid] = (list(row[1] or []), row[0])
        return out

    def _session_sizes(self, con: duckdb.DuckDBPyConnection, ids: list[str],
                       tables: dict[str, list[str]] | None = None) -> dict[str, int]:
        """Bytes of each session's data and delete files in the current snapshot (rows inlined
        in the catalog have no file). One query on DuckLake's own catalog tables; per table
        through ``ducklake_list_files`` (~10 ms each) when those cannot be read."""
        meta = self._metadata(con)
        if meta is not None:
            live = (f"SELECT DISTINCT t.table_id, s.schema_name FROM {meta}.ducklake_table t "
                    f"JOIN {meta}.ducklake_schema s ON s.schema_id = t.schema_id "
                    "WHERE t.end_snapshot IS NULL AND s.end_snapshot IS NULL")
            files = (f"SELECT table_id, file_size_bytes FROM {meta}.ducklake_data_file "
                     "WHERE end_snapshot IS NULL UNION ALL "
                     f"SELECT table_id, file_size_bytes FROM {meta}.ducklake_delete_file "
                     "WHERE end_snapshot IS NULL")
            try:
                rows = con.execute(
                    f"SELECT l.schema_name, sum(f.file_size_bytes) FROM ({files}) f "
                    f"JOIN ({live}) l USING (table_id) GROUP BY 1").fetchall()
                return {str(sid): int(size or 0) for sid, size in rows if sid in ids}
            except duckdb.Error:
                pass
        tables = self._tables(con) if tables is None else tables
        per_session = {sid: tables.get(sid, []) for sid in ids}
        sizes: dict[str, int] = {}
        for path, size in self._data_files(con, per_session).items():
            owner = _session_of_file(path, self._data_path)
            if owner is not None:
                sizes[owner] = sizes.get(owner, 0) + size
        return sizes

    def _listed_bytes(self, con: duckdb.DuckDBPyConnection, session_ids: list[str],
                      left: list[str]) -> int:
        """Bytes of the dropped sessions' files the catalog still lists (older snapshots keep
        them); the sizes on disk when the catalog's tables cannot be read."""
        meta = self._metadata(con)
        if meta is not None:
            names = ", ".join(quote_literal(sid) for sid in session_ids)
            tables = (f"SELECT table_id FROM {meta}.ducklake_table WHERE schema_id IN ("
                      f"SELECT schema_id FROM {meta}.ducklake_schema "
                      f"WHERE schema_name IN ({names}))")
            try:
                row = con.execute(
                    f"SELECT (SELECT coalesce(sum(file_size_bytes), 0) FROM "
                    f"{meta}.ducklake_data_file WHERE table_id IN ({tables})) + "
                    f"(SELECT coalesce(sum(file_size_bytes), 0) FROM "
                    f"{meta}.ducklake_delete_file WHERE table_id IN ({tables}))").fetchone()
                return int(row[0]) if row else 0
            except duckdb.Error:
                pass
        sizes = [Path(p).stat().st_size for p in left
                 if not self._remote and Path(p).is_file()]
        return sum(sizes)

    def _metadata(self, con: duckdb.DuckDBPyConnection) -> str | None:
        """``catalog.schema`` of DuckLake's own tables (documented by the DuckLake spec): the
        configured metadata schema, else the metadata database's default one."""
        catalog = f"__ducklake_metadata_{self._alias}"
        schema = self._metadata_schema
        if not schema:
            try:
                con.execute(f"USE {quote_ident(catalog)}")
                row = con.execute("SELECT current_schema()").fetchone()
                schema = str(row[0]) if row else None
            except duckdb.Error:
                return None
            finally:
                with contextlib.suppress(duckdb.Error):
                    con.execute("USE memory")
        return f"{quote_ident(catalog)}.{quote_ident(schema)}" if schema else None

    def _data_files(self, con: duckdb.DuckDBPyConnection,
                    tables: dict[str, list[str]]) -> dict[str, int]:
        """Path -> bytes of every data and delete file of these sessions' tables, through
        DuckLake's ``ducklake_list_files`` (one call per table)."""
        parts = [
            "SELECT data_file, data_file_size_bytes, delete_file, delete_file_size_bytes "
            f"FROM ducklake_list_files({quote_literal(self._alias)}, {quote_literal(table)}, "
            f"schema => {quote_literal(sid)})"
            for sid, names in tables.items() for table in names]
        out: dict[str, int] = {}
        for data, data_size, delete, delete_size in (
                con.execute(" UNION ALL ".join(parts)).fetchall() if parts else []):
            out[str(data)] = int(data_size or 0)
            if delete:
                out[str(delete)] = int(delete_size or 0)
        return out

    def _files_under(self, con: duckdb.DuckDBPyConnection, session_ids: list[str]) -> list[str]:
        """Files still under these sessions' data directories (local or object storage)."""
        out: list[str] = []
        for sid in session_ids:
            rows = con.execute("SELECT file FROM glob(?)",
                               [f"{self._data_path}{sid}/**"]).fetchall()
            out += [str(r[0]) for r in rows]
        return out

    def _local_dir(self, session_id: str) -> Path | None:
        path = self._sessions_dir / session_id
        return path if path.is_dir() else None

    def _drop_schemas(self, con: duckdb.DuckDBPyConnection, ids: list[str]) -> None:
        """One transaction, one snapshot, for all of them (a DROP each costs a commit)."""
        con.execute("BEGIN TRANSACTION")
        try:
            for sid in ids:
                con.execute(f"DROP SCHEMA IF EXISTS {self._alias}.{quote_ident(sid)} CASCADE")
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise

    def _retry(self, con: duckdb.DuckDBPyConnection, work: Callable[[], _T]) -> _T:
        """``work`` again after a conflicting commit of another process (a step writing)."""
        delay = 0.05
        for attempt in range(_RETRIES):
            try:
                return work()
            except duckdb.TransactionException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                if attempt == _RETRIES - 1:
                    raise
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")


def _session_of_file(path: str, data_path: str) -> str | None:
    """The session a data file belongs to (``<data path><session>/<table>/<file>``)."""
    if not path.startswith(data_path):
        return None
    parts = path[len(data_path):].split("/")
    return parts[0] if len(parts) > 1 and parts[0] else None


def _remove_empty_session_dirs(data_path: Path, live: set[str]) -> None:
    """The empty folders DuckLake leaves on a local data path once a session's files are gone.
    Only sessions whose schema is gone: a live session's writer may be about to fill one."""
    if not data_path.is_dir():
        return
    for top in data_path.iterdir():
        if not top.is_dir() or top.name in live:
            continue
        below = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                       reverse=True)
        for d in [*below, top]:
            with contextlib.suppress(OSError):  # not empty: a later clean's
                d.rmdir()
