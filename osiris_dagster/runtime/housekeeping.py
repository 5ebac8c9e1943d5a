"""Choosing which sessions `osiris-dagster sessions clean` deletes. No Dagster here: the caller
passes the ids of sessions that the latest materialisations still reference. Listing and
deleting are the store's (``SessionStore.list_sessions`` / ``drop_sessions``)."""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from osiris_dagster.runtime.stores.inventory import SessionInfo

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """'7d', '12h', '30m', '90s', '2w' -> seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"duration {text!r} must look like 30s, 15m, 12h, 7d or 2w")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True)
class Kept:
    """A session that matched the criteria but stays, and why (shown to the user)."""

    session: SessionInfo
    reason: str


REFERENCED = "latest materialisation of an asset or partition"
UNFINISHED = "unfinished: its run may still be going"


def select_for_cleaning(sessions: Iterable[SessionInfo], *, older_than: float | None,
                        keep: int | None, referenced: set[str], force: bool,
                        ended: Collection[str] = (), now: float | None = None
                        ) -> tuple[list[SessionInfo], list[Kept]]:
    """(to delete, kept with the reason). `keep` = newest N per pipeline always stay.

    Without `force`, two kinds stay: sessions the latest materialisation of an asset, or of
    one of its partitions, still reads from, and unfinished ones (no run_end). A session cannot
    tell a run that is still going from one that was killed, and deleting the first makes that
    run fail, so only `--force` removes them; except those in `ended`, whose run the Dagster
    instance records as over (succeeded, failed or canceled)."""
    if keep is not None and keep < 0:
        raise ValueError(f"--keep must be 0 or more, got {keep}")
    now = time.time() if now is None else now
    by_pipeline: dict[str | None, int] = {}
    delete: list[SessionInfo] = []
    protected: list[Kept] = []
    for s in sorted(sessions, key=lambda s: s.started, reverse=True):
        rank = by_pipeline.get(s.pipeline, 0)
        by_pipeline[s.pipeline] = rank + 1
        if keep is not None and rank < keep:
            continue
        if older_than is not None and now - s.started < older_than:
            continue
        if older_than is None and keep is None:
            continue  # nothing asked: never delete everything by accident
        if not force and s.status is None and s.session_id not in ended:
            protected.append(Kept(s, UNFINISHED))
            continue
        if not force and s.session_id in referenced:
            protected.append(Kept(s, REFERENCED))
            continue
        delete.append(s)
    return delete, protected
