"""The duckdb store's sessions for `osiris-dagster sessions`: one directory per session under the
sessions root, its tables in `pipeline_data.duckdb`, its records as files beside it."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import duckdb

from osiris_dagster.core.errors import OsirisError
from osiris_dagster.core.naming import quote_ident
from osiris_dagster.runtime import duckdb_instances
from osiris_dagster.runtime.stores.duckdb_file import DB_FILE
from osiris_dagster.runtime.stores.inventory import (
    DropReport,
    SessionInfo,
    directory_size,
    summarise_events,
)


def list_sessions(root: Path) -> list[SessionInfo]:
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        if not d.is_dir() or d.name.startswith(".") or not _looks_like_session(d):
            continue
        events = d / "logs" / "events.jsonl"
        lines = (events.read_text(encoding="utf-8", errors="replace").splitlines()
                 if events.exists() else [])
        run = summarise_events(lines)
        started = run.started or d.stat().st_mtime
        out.append(SessionInfo(d.name, d, run.pipeline, run.status, started, directory_size(d)))
    return sorted(out, key=lambda s: s.started, reverse=True)


def session_tables(session_dir: Path) -> list[tuple[str, int]] | None:
    """(table, rows) of the session's database; None when there is no such session."""
    if not session_dir.is_dir():
        return None
    db_path = session_dir / DB_FILE
    if not db_path.exists():
        return []
    duckdb_instances.release_parked(str(db_path.resolve()))  # one attachment per process
    try:
        with duckdb.connect(str(db_path), read_only=True) as con:
            names = [r[0] for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
                "ORDER BY table_name").fetchall()]
            return [(name, _count(con, name)) for name in names]
    except duckdb.Error as exc:
        raise OsirisError(f"cannot open {db_path}: {str(exc).splitlines()[0]}") from None


def session_files(session_dir: Path) -> dict[str, int]:
    """The session's manifest and step artifacts (relative name -> bytes)."""
    found = [session_dir / "manifest.yaml"]
    artifacts = session_dir / "artifacts"
    if artifacts.is_dir():
        found += sorted(artifacts.rglob("*"))
    return {p.relative_to(session_dir).as_posix(): p.stat().st_size
            for p in found if p.is_file()}


def drop_sessions(sessions: Sequence[SessionInfo]) -> DropReport:
    for info in sessions:
        if info.path is not None and info.path.exists():
            shutil.rmtree(info.path)
    return DropReport()


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM main.{quote_ident(table)}").fetchone()
    return int(row[0]) if row else 0


def _looks_like_session(d: Path) -> bool:
    return (d / DB_FILE).exists() or (d / "logs").is_dir() or (d / "manifest.yaml").exists()
