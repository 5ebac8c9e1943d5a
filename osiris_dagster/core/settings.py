"""Runtime settings from the environment, with defaults sized for a small machine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from osiris_dagster.core.errors import SessionStoreError

DEFAULT_SESSIONS_DIR = ".osiris_sessions"
DEFAULT_MEMORY_LIMIT = "224MB"
DEFAULT_MEMORY_LIMIT_MAX = "2GB"  # what a step may be raised to when it needs more (wide tables)
SESSION_STORES = ("duckdb", "ducklake")


@dataclass(frozen=True)
class Settings:
    sessions_dir: Path
    memory_limit: str = DEFAULT_MEMORY_LIMIT
    memory_limit_max: str = DEFAULT_MEMORY_LIMIT_MAX
    threads: int | None = None
    lock_timeout_seconds: float = 60.0
    heartbeat_seconds: float = 10.0
    # where step tables live: "duckdb" (one file per session) or "ducklake" (one schema per
    # session in a DuckLake catalog; runtime/stores/ducklake.py)
    session_store: str = "duckdb"
    ducklake_catalog: str | None = None  # e.g. "postgres:dbname=osiris host=db.internal"
    ducklake_data_path: str | None = None  # a shared directory or s3://bucket/prefix/
    ducklake_metadata_schema: str | None = None  # the catalog database's schema for its tables

    @classmethod
    def from_env(cls, sessions_dir: str | os.PathLike[str] | None = None, *,
                 session_store: str | None = None, ducklake_catalog: str | None = None,
                 ducklake_data_path: str | None = None,
                 ducklake_metadata_schema: str | None = None) -> Settings:
        """Settings from OSIRIS_* variables; an explicit argument wins over the environment."""
        root = sessions_dir or os.environ.get("OSIRIS_SESSIONS_DIR") or DEFAULT_SESSIONS_DIR
        threads = os.environ.get("OSIRIS_DUCKDB_THREADS")
        store = (session_store or os.environ.get("OSIRIS_SESSION_STORE") or "duckdb").strip()
        if store not in SESSION_STORES:
            raise SessionStoreError(f"OSIRIS_SESSION_STORE={store!r} is not a session store; "
                                    f"use one of {', '.join(SESSION_STORES)}")
        return cls(
            sessions_dir=Path(root).expanduser().resolve(),
            memory_limit=os.environ.get("OSIRIS_DUCKDB_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT,
            memory_limit_max=os.environ.get("OSIRIS_DUCKDB_MEMORY_LIMIT_MAX")
            or DEFAULT_MEMORY_LIMIT_MAX,
            threads=int(threads) if threads else None,
            lock_timeout_seconds=float(os.environ.get("OSIRIS_LOCK_TIMEOUT_SECONDS") or 60),
            heartbeat_seconds=float(os.environ.get("OSIRIS_HEARTBEAT_SECONDS") or 10),
            session_store=store,
            ducklake_catalog=ducklake_catalog or os.environ.get("OSIRIS_DUCKLAKE_CATALOG") or None,
            ducklake_data_path=ducklake_data_path
            or os.environ.get("OSIRIS_DUCKLAKE_DATA_PATH") or None,
            ducklake_metadata_schema=ducklake_metadata_schema
            or os.environ.get("OSIRIS_DUCKLAKE_METADATA_SCHEMA") or None,
        )
