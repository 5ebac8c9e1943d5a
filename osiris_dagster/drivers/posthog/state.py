"""``posthog.extractor``'s incremental state: the state file (:class:`StateStore`) and the keys
remembered within and across runs (:class:`SeenKeys`, :class:`RecentKeys`).

* **Incremental state** (``<state_dir>/posthog_state.json``): returned as the result's
  ``pending_state`` and written (atomically) by the runtime only once the step's output is
  accepted: table committed, ``schema: strict`` and blocking checks passed, materialisation
  recorded. A step that fails anywhere before leaves the file as it was, so the next run reads
  the same rows again. Per data type the last row's time and key, the keys of all the
  rows inside the lookback window before it and the time from which those keys are complete
  (``keys_since``). The next run starts at that time minus the lookback, but not before
  ``keys_since`` (a lookback made longer widens the window run by run), and drops rows whose
  key the last run delivered (keyed by ``uuid`` / ``id`` / ``session_id`` / ``distinct_id``),
  whatever ``deduplication_enabled`` says: Osiris' seek starts after the mark, so it never
  reads them again either. ``deduplication_enabled`` (Osiris: drop a uuid met again) drops,
  within a run, a key the data repeats (a page repeated, in a bounded FIFO of 100,000 keys);
  ``false`` keeps those. State of another host or project, or one that did not read every
  event type ``event_types`` now lists (widened), is ignored with a notice; narrowed, it is
  kept; a
  file that is not JSON fails the step. To start over, delete the file (the step's ``.state``
  directory under the sessions root).
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.base import PendingState, StepContext
from osiris_dagster.drivers.posthog.options import Options

STATE_FILE = "posthog_state.json"
STATE_VERSION = 1
REPEATED_PAGE_KEYS = 100_000  # keys of this run kept to drop a page the server repeats


class SeenKeys:
    """Keys already delivered: every key the last run saved (``delivered``), and a FIFO set of
    at most ``limit`` keys met in this run (a page the server repeats). The saved keys are
    never evicted: a bounded set of both had the first saved key it dropped evict the next one
    to be checked, so a window of more than ``limit`` rows was delivered again whole."""

    def __init__(self, limit: int, delivered: Iterable[str] = ()) -> None:
        self.limit = limit
        self._delivered = frozenset(delivered)
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._delivered or key in self._keys

    def delivered(self, key: str) -> bool:
        """Whether the last run delivered ``key`` (a row at or before its high-water mark)."""
        return key in self._delivered

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.limit:
            self._keys.popitem(last=False)


class RecentKeys:
    """Keys of the rows within ``window`` of the latest time seen (rows arrive in time order);
    what the next run's lookback will fetch again. All of them: the next run drops exactly
    these, so one left out would be delivered twice (memory and the state file grow with the
    rows of one lookback window, ~50 bytes a key)."""

    def __init__(self, window: timedelta) -> None:
        self.window = window
        self._entries: deque[tuple[datetime, str]] = deque()
        self.latest: datetime | None = None

    def add(self, when: datetime, key: str) -> None:
        if self.latest is None or when > self.latest:
            self.latest = when
        self._entries.append((when, key))
        edge = self.latest - self.window
        while self._entries and self._entries[0][0] < edge:
            self._entries.popleft()

    def keys(self) -> list[str]:
        return list(dict.fromkeys(k for _, k in self._entries))


class StateStore:
    """``posthog_state.json``: high-water marks per data type for one host and project."""

    def __init__(self, ctx: StepContext, opts: Options) -> None:
        self.ctx = ctx
        self.opts = opts
        self.path = ctx.state_dir / STATE_FILE
        self.scope = {"base_url": opts.base_url, "project_id": opts.project_id}
        self.text = _read_text(self.path)  # as read: the runtime saves over nothing else
        doc = _parse(self.path, self.text)
        if doc is not None and (not isinstance(doc, dict) or doc.get("version") != STATE_VERSION
                                or doc.get("scope") != self.scope):
            self._start_over("it was written for another host, project or format")
            doc = None
        self.doc: dict[str, Any] = doc or {"version": STATE_VERSION, "scope": self.scope,
                                           "data_types": {}}

    def entry(self) -> dict[str, Any] | None:
        entry = self.doc.get("data_types", {}).get(self.opts.data_type)
        if not isinstance(entry, dict) or not entry.get("last_time"):
            return None
        if self.opts.data_type == "events":
            before = set(entry.get("event_types") or [])  # none: every event
            now = set(self.opts.event_types)
            if now != before:
                if not now or (before and not now <= before):
                    added = ", ".join(sorted(now - before)) if now else "every event"
                    self._start_over(f"`event_types` now reads events it did not ({added})")
                    return None
                # fewer event types: every row of those up to the mark was read already
                self.ctx.log_event("posthog_state_narrowed", path=str(self.path),
                                   event_types=sorted(now), before=sorted(before))
        return entry

    def _start_over(self, why: str) -> None:
        """The state cannot be used: the run reads from ``initial_since`` again, so rows
        earlier runs delivered come again. Said where the person running it reads."""
        self.ctx.log_event("posthog_state_ignored", path=str(self.path), reason=why)
        self.ctx.notice(
            f"the incremental state {self.path} is not used, since {why}: this run reads from "
            "`initial_since` again, so rows earlier runs delivered are delivered again (an "
            "append writer writes them twice). Leaving event types out of `event_types` keeps "
            "the state; to read a new event type, give it a step of its own.")

    def pending(self, last_time: datetime, last_key: Any, recent: list[str], keys_since: datetime,
                rows: int) -> PendingState:
        """The state file with this data type's new high-water mark, for the runtime to save
        once the step's output is accepted (never saved from here: the step may still fail).
        ``keys_since``: ``recent`` holds the key of every row from then on."""
        entry = {
            "last_time": last_time.isoformat(),
            "last_key": last_key,
            "recent_keys": recent,
            "keys_since": keys_since.isoformat(),
            "lookback_window_minutes": int(self.opts.lookback.total_seconds() // 60),
            "updated_at": datetime.now(UTC).isoformat(),
            "rows_last_run": rows,
        }
        if self.opts.data_type == "events":
            entry["event_types"] = sorted(self.opts.event_types)
        data_types = {**(self.doc.get("data_types") or {}), self.opts.data_type: entry}
        return PendingState(self.path, {**self.doc, "data_types": data_types},
                            replaces=self.text)


def _read_text(path: Path) -> str | None:
    """The state file's text; None when there is none."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DriverError(f"posthog.extractor: cannot read the incremental state {path} "
                          f"({type(exc).__name__}: {exc}); fix its permissions, or delete it to "
                          "start over (the next run then reads from `initial_since`)") from None


def _parse(path: Path, text: str | None) -> Any:
    """The state file's JSON. A file that is not JSON fails the step: starting over would
    deliver every row of the history again."""
    if text is None or not text.strip():  # (the lake keeps a removed state as empty text)
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DriverError(f"posthog.extractor: the incremental state {path} is not JSON ({exc}); "
                          "restore it, or delete it to start over (the next run then reads "
                          "from `initial_since`, else the last 30 days, and delivers those rows "
                          "again)") from None
