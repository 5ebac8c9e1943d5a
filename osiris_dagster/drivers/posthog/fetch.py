"""The paging of one ``posthog.extractor`` run over HTTP (:class:`Fetch`): the PostHog client,
seek query after seek query, the ``next`` links of each answer, every row counted, deduplicated
and staged.

* **Queries.** ``POST <base>/api/projects/<project_id>/query/`` with ``{"query": {"kind":
  "HogQLQuery", "query": ...}}`` and ``Authorization: Bearer <api_key>``. Rows come back as
  lists named by the response's ``columns``. Each seek query
  (:mod:`~osiris_dagster.drivers.posthog.hogql`) starts after the last row of the page before.
  A response carrying a ``next`` URL is followed (same host only: the API key is never sent
  elsewhere) before the next seek query. Pagination stops at a short page.
* **Failures.** The shared client (:mod:`osiris_dagster.drivers.http.client`: urllib3's
  ``Retry``) retries 429 and 5xx
  (the HogQL query POST is a read, declared idempotent) and refused connections with capped
  exponential backoff and jitter, honouring ``Retry-After`` (up to 120 s); 401/403 fail at once
  naming the host and project; timeouts are not retried (a slow query stays slow) and fail with
  the host named; nothing printed contains the API key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.base import StepContext
from osiris_dagster.drivers.http import client as hc
from osiris_dagster.drivers.posthog.data_types import Kind
from osiris_dagster.drivers.posthog.hogql import Cursor, build_query, parse_time
from osiris_dagster.drivers.posthog.options import Options, retry_policy
from osiris_dagster.drivers.posthog.state import RecentKeys, SeenKeys
from osiris_dagster.drivers.staging.json_records import JsonStager


def posthog_client(ctx: StepContext, opts: Options) -> hc.HttpClient:
    """The HTTP client of one run: the API key as bearer token, the options' retry policy, and
    hints naming what to check when PostHog rejects the key or the project."""
    host = hc.origin_of(opts.base_url)
    return hc.HttpClient(
        service="PostHog", timeout=opts.timeout,
        headers={"Authorization": f"Bearer {opts.api_key}", "Content-Type": "application/json",
                 "Accept": "application/json", "User-Agent": "osiris-dagster posthog extractor"},
        policy=retry_policy(opts.max_retries), secrets=[opts.api_key],
        auth_hint=(f"the `api_key` of the posthog connection: it must be a personal API key "
                   f"(phx_...) with query:read access to project {opts.project_id} on {host}"),
        check_hint=(f"`project_id` ({opts.project_id}) and `region` / `custom_base_url` "
                    f"({opts.base_url})"),
        on_retry=lambda info: ctx.log_event("http_retry", **info),
    )


@dataclass
class Fetch:
    """The paging of one run: seek queries, each followed by the ``next`` links of its answer;
    every row counted, deduplicated by key and staged."""

    ctx: StepContext
    opts: Options
    kind: Kind
    client: hc.HttpClient
    stager: JsonStager
    seen: SeenKeys  # keys delivered by the last run, and met in this one
    recent: RecentKeys  # keys the next run's lookback will fetch again
    fetched: int = 0
    dropped: int = 0
    pages: int = 0
    last_row: Mapping[str, Any] | None = None  # the seek position and the new high-water key

    @property
    def host(self) -> str:
        return hc.origin_of(self.opts.base_url)

    def all_pages(self, since: datetime | None, until: datetime) -> None:
        """Seek query after seek query until one returns a short page."""
        cursor: Cursor | None = None
        while True:
            query = build_query(self.kind, since=since, until=until,
                                event_types=self.opts.event_types, cursor=cursor,
                                page_size=self.opts.page_size)
            rows = self._query_with_next_links(query)
            if rows < self.opts.page_size or self.last_row is None:
                return
            cursor = self._cursor_after(self.last_row, cursor)

    def _query_with_next_links(self, query: str) -> int:
        """One seek query and the ``next`` pages its answer links to; the rows they held."""
        body = self.client.request_json("POST", self.opts.query_url,
                                        {"query": {"kind": "HogQLQuery", "query": query}},
                                        idempotent=True)  # a read-only query: safe to repeat
        chain_rows = 0
        visited: set[str] = set()
        while True:
            chain_rows += self._page(body)
            next_url = body.get("next") if isinstance(body, dict) else None
            if not next_url:
                return chain_rows
            next_url = _same_origin_next(str(next_url), self.opts.query_url, self.client)
            if next_url in visited:
                raise self.client.error(f"PostHog: {self.host} returned the same `next` page "
                                        f"twice ({hc.display_url(next_url)}); stopping")
            visited.add(next_url)
            body = self.client.request_json("GET", next_url)

    def _page(self, body: Any) -> int:
        """Stage the rows of one answer; how many it held."""
        rows = _rows_of(body, self.kind, self.host, self.client, self.stager)
        self.pages += 1
        for row in rows:
            self._take(row)
        self.ctx.progress(rows=self.stager.rows, message=f"page {self.pages}")
        return len(rows)

    def _take(self, row: Mapping[str, Any]) -> None:
        """Count one row, remember its key, and stage it unless the last run delivered it or,
        with ``deduplication_enabled``, this run met its key before."""
        kind = self.kind
        self.fetched += 1
        key = row.get(kind.key)
        key_text = "" if key is None else str(key)
        if kind.order_is_time and row.get(kind.order) is not None:
            self.recent.add(parse_time(row[kind.order], f"`{kind.order}`"), key_text)
        self.last_row = row
        if key is not None:
            if self.seen.delivered(key_text) or (self.opts.dedup and key_text in self.seen):
                self.dropped += 1
                return
            self.seen.add(key_text)
        self.stager.add(kind.flatten(row))

    def _cursor_after(self, last_row: Mapping[str, Any], cursor: Cursor | None) -> Cursor:
        """The seek position of the next query: the last row's order and key columns."""
        kind = self.kind
        new_cursor = Cursor(last_row.get(kind.order), last_row.get(kind.key))
        if new_cursor.order is None or new_cursor.key is None:
            raise DriverError(f"posthog.extractor: the last row of a page has no "
                              f"`{kind.order}`/`{kind.key}`; cannot continue paging")
        if new_cursor == cursor:
            raise DriverError(f"posthog.extractor: {self.host} returned the same page twice "
                              f"(after {kind.order} {new_cursor.order!r}); stopping")
        return new_cursor


def _rows_of(body: Any, kind: Kind, host: str, client: hc.HttpClient,
             stager: JsonStager) -> list[dict[str, Any]]:
    """The rows of one response as dicts (``results`` lists zipped with ``columns``)."""
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise client.error(f"PostHog: unexpected answer from {host}: no `results` list. Check "
                           "`region` / `custom_base_url`: it must be the PostHog API.")
    error = body.get("error")
    if isinstance(error, str) and error.strip():
        raise client.error(f"PostHog: the query failed at {host}: "
                           f"{client.redact.shortened(error.strip(), 300)}")
    columns = body.get("columns")
    if not isinstance(columns, list) or not columns:
        columns = list(kind.columns)
    names = [str(c) for c in columns]
    if not kind.base_columns:  # sessions: the response says which columns exist
        for name in names:
            stager.declare(name)
    out: list[dict[str, Any]] = []
    for row in body["results"]:
        if isinstance(row, dict):
            out.append(row)
        elif isinstance(row, list):
            if len(row) != len(names):
                raise client.error(f"PostHog: a row from {host} has {len(row)} values but the "
                                   f"response names {len(names)} columns")
            out.append(dict(zip(names, row, strict=True)))
        else:
            raise client.error(f"PostHog: unexpected row from {host}: {type(row).__name__}")
    return out


def _same_origin_next(next_url: str, base: str, client: hc.HttpClient) -> str:
    target = urljoin(base, next_url)
    if hc.origin_of(target) != hc.origin_of(base):
        raise client.error(f"PostHog: the `next` link points to {hc.origin_of(target)}, not "
                           f"{hc.origin_of(base)}; refusing to send the API key there")
    return target
