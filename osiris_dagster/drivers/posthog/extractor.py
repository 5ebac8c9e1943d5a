"""``posthog.extractor``: events, persons, sessions or person_distinct_ids from PostHog's HogQL
query API -> the step's table, incrementally from one run to the next.

This module is the step's run (:func:`run`, the driver entry point). Its parts, in
``osiris_dagster.drivers.posthog``: :mod:`~osiris_dagster.drivers.posthog.options` (the step's
options and connection), :mod:`~osiris_dagster.drivers.posthog.data_types` (how each data type
is queried, keyed and flattened), :mod:`~osiris_dagster.drivers.posthog.hogql` (the query text
and keyset pagination), :mod:`~osiris_dagster.drivers.posthog.fetch` (the paging over HTTP and
its failures), :mod:`~osiris_dagster.drivers.posthog.state` (the incremental state between
runs).

* **Window.** events and sessions: from the high-water mark minus ``lookback_window_minutes``,
  else ``initial_since``, else 30 days ago; up to the run's start. persons: from the high-water
  mark minus the lookback, else ``initial_since``, else all persons. person_distinct_ids: a full
  snapshot every run (the table has no time column). ``event_types`` filters events.
* **Storage.** Pages stream into a staging NDJSON file and become the table in one read with
  the union of all columns (see :mod:`osiris_dagster.drivers.staging.json_records`), so properties
  first seen on a late page are kept and memory stays flat.
* Metrics: ``rows_read`` (rows fetched), ``rows_deduplicated``, ``rows_output``,
  ``requests_made``, ``pages_fetched``; ``ctx.progress(rows=...)`` after every page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from osiris_dagster.drivers.base import DriverResult, PendingState, StepContext, UpstreamTable
from osiris_dagster.drivers.http import client as hc
from osiris_dagster.drivers.posthog.data_types import KINDS, Kind
from osiris_dagster.drivers.posthog.fetch import Fetch, posthog_client
from osiris_dagster.drivers.posthog.hogql import parse_time
from osiris_dagster.drivers.posthog.options import Options
from osiris_dagster.drivers.posthog.state import (
    REPEATED_PAGE_KEYS,
    RecentKeys,
    SeenKeys,
    StateStore,
)
from osiris_dagster.drivers.staging.json_records import JsonStager

DEFAULT_HISTORY = timedelta(days=30)


def run(ctx: StepContext, config: Mapping[str, Any], inputs: Sequence[UpstreamTable]
        ) -> DriverResult:
    opts = Options.from_config(config, ctx.connection)
    hc.register_secrets(ctx, [opts.api_key])
    kind = KINDS[opts.data_type]
    client = posthog_client(ctx, opts)
    store = StateStore(ctx, opts) if kind.incremental else None
    until = datetime.now(UTC)
    since, previous = _window_start(ctx, opts, kind, store.entry() if store else None, until)
    stager = JsonStager(ctx.tmp_dir, f"posthog-{ctx.step_id}")
    for name, duckdb_type in kind.base_columns:
        stager.declare(name, duckdb_type)
    fetch = Fetch(ctx, opts, kind, client, stager,
                  seen=SeenKeys(REPEATED_PAGE_KEYS, previous),
                  recent=RecentKeys(opts.lookback))
    try:
        fetch.all_pages(since, until)
        rows_out = stager.create_output(ctx)
        columns = len(stager.columns)
    finally:
        stager.close()
        client.close()
    pending = None
    latest = fetch.recent.latest
    if store is not None and latest is not None and fetch.last_row is not None:
        # every row from `since` on was read now: the keys cover the window's rows from there
        keys_since = latest - opts.lookback if since is None else max(since,
                                                                      latest - opts.lookback)
        pending = store.pending(latest, fetch.last_row.get(kind.key), fetch.recent.keys(),
                                keys_since, rows_out)
    return _result(ctx, fetch, rows_out, columns, pending)


def _window_start(ctx: StepContext, opts: Options, kind: Kind, entry: dict[str, Any] | None,
                  until: datetime) -> tuple[datetime | None, list[str]]:
    """Where this run's window starts, and the keys already delivered from there on: the saved
    high-water mark minus the lookback, but not before the saved keys are complete (a longer
    lookback than the last run's would read rows delivered then whose keys were not kept), with
    its recent keys; else ``initial_since``, else the default history (or everything) with
    none."""
    if entry is not None:
        last_time = parse_time(entry["last_time"], "the saved high-water mark")
        since = last_time - opts.lookback
        if entry.get("keys_since"):
            covered = parse_time(entry["keys_since"], "the saved `keys_since`")
        else:  # a state file from before keys_since: its keys cover its own lookback
            covered = last_time - timedelta(minutes=int(entry.get("lookback_window_minutes")
                                                        or 0))
        since = max(since, covered)
        previous = [str(k) for k in entry.get("recent_keys") or []]
        ctx.log_event("posthog_resume", data_type=opts.data_type, since=since.isoformat(),
                      overlap_keys=len(previous))
        return since, previous
    start = opts.initial_since
    if start is None and kind.default_history:
        start = until - DEFAULT_HISTORY
    return start, []


def _result(ctx: StepContext, fetch: Fetch, rows_out: int, columns: int,
            pending: PendingState | None) -> DriverResult:
    """The run's metrics, logged and returned."""
    requests_made = fetch.client.requests_made
    ctx.log_metric("rows_read", fetch.fetched)
    ctx.log_metric("rows_deduplicated", fetch.dropped)
    ctx.log_metric("rows_output", rows_out)
    ctx.log_metric("columns", columns)
    ctx.log_metric("requests_made", requests_made)
    ctx.log_metric("pages_fetched", fetch.pages)
    return DriverResult(table=ctx.output_table, rows_read=fetch.fetched, rows_written=rows_out,
                        extra_metadata={"pages_fetched": fetch.pages,
                                        "requests_made": requests_made,
                                        "rows_deduplicated": fetch.dropped},
                        pending_state=pending)
