"""What `osiris-dagster sessions` knows about a session, whichever store keeps it.

Each store lists, shows and drops its own sessions (a directory per session, or a schema per
session in a DuckLake catalog); the choice of what to clean (`runtime/housekeeping.py`) and the
printing (`cli.py`) work on these plain records only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    path: Path | None  # the session directory on this machine, when there is one
    pipeline: str | None
    status: str | None  # success / failure / None (running or killed)
    started: float  # epoch seconds
    size_bytes: int  # what deleting the session frees (its data files and its directory)


@dataclass
class DropReport:
    """What a clean did beyond removing the sessions (shown to the user)."""

    files_deleted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bytes_left: int = 0  # of the sessions' size, what a later clean still has to free


@dataclass(frozen=True)
class RunSummary:
    pipeline: str | None
    status: str | None
    started: float | None


def summarise_events(lines: Iterable[str]) -> RunSummary:
    """Pipeline, final status and start time from a session's event lines (JSON, one each);
    a line that does not parse (a half-written one of a killed process) is skipped."""
    pipeline = status = None
    started: float | None = None
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get("event") == "run_start":
            pipeline = event.get("pipeline")
            started = epoch(event.get("ts")) or started
        elif event.get("event") == "run_end":
            status = event.get("status")
    return RunSummary(pipeline, status, started)


def directory_size(path: Path | None) -> int:
    """Bytes of the files under ``path`` (0 when there is no such directory)."""
    if path is None or not path.is_dir():
        return 0
    total = 0
    for f in path.rglob("*"):
        try:
            if f.is_file():
                total += f.stat().st_size
        except OSError:  # removed while we walk (a step's temporary file)
            continue
    return total


def epoch(ts: object) -> float | None:
    """An event's ISO timestamp as epoch seconds."""
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
