"""Runtime settings from the environment, with defaults sized for a small machine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SESSIONS_DIR = ".osiris_sessions"
DEFAULT_MEMORY_LIMIT = "224MB"
DEFAULT_MEMORY_LIMIT_MAX = "2GB"  # what a step may be raised to when it needs more (wide tables)


@dataclass(frozen=True)
class Settings:
    sessions_dir: Path
    memory_limit: str = DEFAULT_MEMORY_LIMIT
    memory_limit_max: str = DEFAULT_MEMORY_LIMIT_MAX
    threads: int | None = None
    lock_timeout_seconds: float = 60.0
    heartbeat_seconds: float = 10.0

    @classmethod
    def from_env(cls, sessions_dir: str | os.PathLike[str] | None = None) -> Settings:
        """Settings from OSIRIS_* variables; an explicit sessions_dir wins over the environment."""
        root = sessions_dir or os.environ.get("OSIRIS_SESSIONS_DIR") or DEFAULT_SESSIONS_DIR
        threads = os.environ.get("OSIRIS_DUCKDB_THREADS")
        return cls(
            sessions_dir=Path(root).expanduser().resolve(),
            memory_limit=os.environ.get("OSIRIS_DUCKDB_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT,
            memory_limit_max=os.environ.get("OSIRIS_DUCKDB_MEMORY_LIMIT_MAX")
            or DEFAULT_MEMORY_LIMIT_MAX,
            threads=int(threads) if threads else None,
            lock_timeout_seconds=float(os.environ.get("OSIRIS_LOCK_TIMEOUT_SECONDS") or 60),
            heartbeat_seconds=float(os.environ.get("OSIRIS_HEARTBEAT_SECONDS") or 10),
        )
