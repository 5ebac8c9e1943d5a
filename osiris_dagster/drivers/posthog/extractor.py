"""``posthog.extractor``: events, persons, sessions or person_distinct_ids from PostHog's HogQL
query API -> the step's table, incrementally from one run to the next.

* **Connection.** ``api_key`` and ``project_id`` come from the ``@posthog.<alias>`` connection
  (the default alias when the step names none). ``region`` (``us`` ->
  https://us.posthog.com, ``eu`` -> https://eu.posthog.com, ``self_hosted`` ->
  ``custom_base_url``) and ``custom_base_url`` come from the step if set there, else from the
  connection (Osiris ignores the step's values); with no ``region`` anywhere, a
  ``custom_base_url`` means self-hosted, else ``us``. Optional connection fields ``timeout``
  (seconds, default 30) and ``max_retries`` (default 5) tune the HTTP client.
* **Queries.** ``POST <base>/api/projects/<project_id>/query/`` with ``{"query": {"kind":
  "HogQLQuery", "query": ...}}`` and ``Authorization: Bearer <api_key>``. Rows come back as
  lists named by the response's ``columns``. Keyset ("seek") pagination as in Osiris:
  ``ORDER BY <time>, <key> LIMIT page_size`` and the next page starts after the last row
  (events: ``timestamp, uuid``; persons: ``created_at, id``; sessions: ``$start_timestamp,
  session_id``; person_distinct_ids: ``person_id, distinct_id`` instead of Osiris' OFFSET
  paging). Unlike Osiris, the seek timestamp keeps its microseconds (truncating to seconds
  re-reads rows and can loop). A response carrying a ``next`` URL is followed (same host only:
  the API key is never sent elsewhere) before the next seek query. Pagination stops at a short
  page.
* **Window.** events and sessions: from the high-water mark minus ``lookback_window_minutes``,
  else ``initial_since``, else 30 days ago; up to the run's start. persons: from the high-water
  mark minus the lookback, else ``initial_since``, else all persons. person_distinct_ids: a full
  snapshot every run (the table has no time column). ``event_types`` filters events.
* **Incremental state** (``<state_dir>/posthog_state.json``): returned as the result's
  ``pending_state`` and written (atomically) by the runtime only once the step's output is
  accepted: table committed, ``schema: strict`` and blocking checks passed, materialisation
  recorded. A step that fails anywhere before leaves the file as it was, so the next run reads
  the same rows again. Per data type the last row's time and key, and the keys of the
  rows inside the lookback window before it (at most 100,000). The next run starts at that time
  minus the lookback and drops rows whose key it already delivered (``deduplication_enabled``,
  keyed by ``uuid`` / ``id`` / ``session_id`` / ``distinct_id``; within a run a bounded FIFO of
  100,000 keys). State of another host or project, or of other ``event_types``, is ignored. To
  start over, delete the file (the step's ``.state`` directory under the sessions root).
* **Flattening** (as Osiris): events -> ``uuid, event, timestamp, distinct_id, person_id`` +
  ``properties_<key>``; persons -> ``id, created_at, is_identified`` +
  ``person_properties_<key>``; sessions and person_distinct_ids as returned. Nested values are
  JSON text. Timestamps stay text (as PostHog returns them): cast them downstream.
* **Failures.** The shared client (:mod:`osiris_dagster.drivers.http.client`: urllib3's
  ``Retry``) retries 429 and 5xx
  (the HogQL query POST is a read, declared idempotent) and refused connections with capped
  exponential backoff and jitter, honouring ``Retry-After`` (up to 120 s); 401/403 fail at once
  naming the host and project; timeouts are not retried (a slow query stays slow) and fail with
  the host named; nothing printed contains the API key.
* **Storage.** Pages stream into a staging NDJSON file and become the table in one read with
  the union of all columns (see :mod:`osiris_dagster.drivers.staging.json_records`), so properties
  first seen on a late page are kept and memory stays flat.
* Metrics: ``rows_read`` (rows fetched), ``rows_deduplicated``, ``rows_output``,
  ``requests_made``, ``pages_fetched``; ``ctx.progress(rows=...)`` after every page.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.base import DriverResult, PendingState, StepContext, UpstreamTable
from osiris_dagster.drivers.http import client as hc
from osiris_dagster.drivers.staging.json_records import JsonStager, to_scalar

BASE_URLS = {"us": "https://us.posthog.com", "eu": "https://eu.posthog.com"}
TIMEOUT = 30.0
RETRY_POLICY = hc.RetryPolicy(max_retries=5, base_delay=1.0, max_delay=16.0,
                              max_retry_after=120.0, retry_timeouts=False,
                              retry_connection_errors=True)
STATE_FILE = "posthog_state.json"
STATE_VERSION = 1
RECENT_KEYS_LIMIT = 100_000
DEFAULT_HISTORY = timedelta(days=30)
DATA_TYPES = ("events", "persons", "sessions", "person_distinct_ids")


# -- data types -----------------------------------------------------------------------------------
def _flatten_with_prefix(base: tuple[str, ...], prefix: str) -> Callable[[Mapping[str, Any]],
                                                                         dict[str, Any]]:
    def flatten(row: Mapping[str, Any]) -> dict[str, Any]:
        out = {c: to_scalar(row.get(c)) for c in base}
        for key, value in row.items():
            if key in base or key == "properties":
                continue
            out[key] = to_scalar(value)
        props = row.get("properties")
        if isinstance(props, str):
            try:
                parsed = json.loads(props)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                props = parsed
            else:
                out["properties"] = props
                props = None
        if isinstance(props, dict):
            for key, value in props.items():
                out[f"{prefix}{key}"] = to_scalar(value)
        return out
    return flatten


def _as_returned(row: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): to_scalar(v) for k, v in row.items()}


@dataclass(frozen=True)
class Kind:
    """How one data type is queried, paged, keyed and flattened."""

    table: str
    select: str
    order: str  # first seek column
    order_is_time: bool
    order_is_uuid: bool
    key: str  # second seek column and dedup key
    key_is_uuid: bool
    window: str | None  # time column for the window (None: no window)
    upper_bound: bool  # window ends at the run's start
    default_history: bool  # without state/initial_since: 30 days (else everything)
    incremental: bool
    base_columns: tuple[tuple[str, str], ...]
    flatten: Callable[[Mapping[str, Any]], dict[str, Any]]
    columns: tuple[str, ...] = ()  # expected response columns when `columns` is absent


_EVENT_BASE = ("uuid", "event", "timestamp", "distinct_id", "person_id")
_PERSON_BASE = ("id", "created_at", "is_identified")

KINDS: dict[str, Kind] = {
    "events": Kind(
        table="events", select="uuid, event, timestamp, distinct_id, person_id, properties",
        order="timestamp", order_is_time=True, order_is_uuid=False, key="uuid",
        key_is_uuid=True, window="timestamp", upper_bound=True, default_history=True,
        incremental=True, base_columns=tuple((c, "VARCHAR") for c in _EVENT_BASE),
        flatten=_flatten_with_prefix(_EVENT_BASE, "properties_"),
        columns=(*_EVENT_BASE, "properties")),
    "persons": Kind(
        table="persons", select="id, created_at, properties, is_identified",
        order="created_at", order_is_time=True, order_is_uuid=False, key="id",
        key_is_uuid=True, window="created_at", upper_bound=False, default_history=False,
        incremental=True,
        base_columns=(("id", "VARCHAR"), ("created_at", "VARCHAR"), ("is_identified", "BOOLEAN")),
        flatten=_flatten_with_prefix(_PERSON_BASE, "person_properties_"),
        columns=("id", "created_at", "properties", "is_identified")),
    "sessions": Kind(
        table="sessions", select="*", order="$start_timestamp", order_is_time=True,
        order_is_uuid=False, key="session_id", key_is_uuid=False, window="$start_timestamp",
        upper_bound=True, default_history=True, incremental=True, base_columns=(),
        flatten=_as_returned),
    "person_distinct_ids": Kind(
        table="person_distinct_ids", select="distinct_id, person_id", order="person_id",
        order_is_time=False, order_is_uuid=True, key="distinct_id", key_is_uuid=False,
        window=None, upper_bound=False, default_history=False, incremental=False,
        base_columns=(("distinct_id", "VARCHAR"), ("person_id", "VARCHAR")),
        flatten=_as_returned, columns=("distinct_id", "person_id")),
}


# -- HogQL rendering ------------------------------------------------------------------------------
_ESCAPES = {"\b": "\\b", "\f": "\\f", "\r": "\\r", "\n": "\\n", "\t": "\\t", "\0": "\\0",
            "\a": "\\a", "\v": "\\v", "\\": "\\\\", "'": "\\'"}


def hogql_string(value: str) -> str:
    """A HogQL string literal (PostHog's own escaping: backslash escapes)."""
    return "'" + "".join(_ESCAPES.get(c, c) for c in value) + "'"


def hogql_datetime(value: datetime) -> str:
    """A HogQL DateTime64 literal with microseconds in UTC (as PostHog renders datetimes)."""
    text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return f"toDateTime64({hogql_string(text)}, 6, 'UTC')"


def parse_time(value: Any, what: str) -> datetime:
    """An ISO-8601 timestamp (``Z`` or offset; naive means UTC) as an aware UTC datetime."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str) and value.strip():
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise DriverError(f"posthog.extractor: {what} {value!r} is not an ISO-8601 "
                              "timestamp (e.g. 2024-01-31T00:00:00Z)") from None
    else:
        raise DriverError(f"posthog.extractor: {what} is missing or not a timestamp: {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


@dataclass(frozen=True)
class Cursor:
    order: Any
    key: Any


def build_query(kind: Kind, *, since: datetime | None, until: datetime,
                event_types: Sequence[str], cursor: Cursor | None, page_size: int) -> str:
    where: list[str] = []
    if kind.window and since is not None:
        where.append(f"{kind.window} >= {hogql_datetime(since)}")
    if kind.window and kind.upper_bound:
        where.append(f"{kind.window} < {hogql_datetime(until)}")
    if event_types and kind.table == "events":
        where.append(f"event IN ({', '.join(hogql_string(e) for e in event_types)})")
    if cursor is not None:
        order = _literal(cursor.order, time=kind.order_is_time, is_uuid=kind.order_is_uuid,
                         what=kind.order)
        key = _literal(cursor.key, time=False, is_uuid=kind.key_is_uuid, what=kind.key)
        where.append(f"({kind.order} > {order} OR ({kind.order} = {order} AND "
                     f"{kind.key} > {key}))")
    sql = f"SELECT {kind.select} FROM {kind.table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return f"{sql} ORDER BY {kind.order} ASC, {kind.key} ASC LIMIT {int(page_size)}"


def _literal(value: Any, *, time: bool, is_uuid: bool, what: str) -> str:
    if time:
        return hogql_datetime(parse_time(value, f"the {what} of the last row"))
    if isinstance(value, bool) or value is None:
        raise DriverError(f"posthog.extractor: cannot continue after a row whose {what} is "
                          f"{value!r}")
    if isinstance(value, int | float):
        return str(value)
    text = hogql_string(str(value))
    return f"toUUID({text})" if is_uuid else text


# -- options --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    api_key: str
    project_id: str
    base_url: str
    data_type: str
    event_types: tuple[str, ...]
    lookback: timedelta
    initial_since: datetime | None
    page_size: int
    dedup: bool
    timeout: float
    max_retries: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any], connection: Mapping[str, Any] | None
                    ) -> Options:
        conn = dict(connection or {})
        api_key = conn.get("api_key")
        project_id = conn.get("project_id")
        if not api_key:
            raise DriverError("posthog.extractor: the posthog connection has no `api_key`; add "
                              "`api_key: ${POSTHOG_API_KEY}` to it in osiris_connections.yaml")
        if project_id in (None, ""):
            raise DriverError("posthog.extractor: the posthog connection has no `project_id`")
        base_url = _base_url(config, conn)
        data_type = str(config.get("data_type") or "events")
        if data_type not in KINDS:
            raise DriverError(f"posthog.extractor: unknown data_type {data_type!r} (use one of "
                              f"{', '.join(DATA_TYPES)})")
        event_types = _event_types(config)
        lookback = int(config.get("lookback_window_minutes") or 15)
        page_size = int(config.get("page_size") or 1000)
        if page_size < 1:
            raise DriverError("posthog.extractor: `page_size` must be at least 1")
        since_raw = config.get("initial_since")
        initial = parse_time(since_raw, "`initial_since`") if since_raw else None
        return cls(
            api_key=str(api_key), project_id=str(project_id).strip(), base_url=base_url,
            data_type=data_type, event_types=event_types,
            lookback=timedelta(minutes=max(0, lookback)), initial_since=initial,
            page_size=page_size, dedup=bool(config.get("deduplication_enabled", True)),
            timeout=float(conn.get("timeout") or TIMEOUT),
            max_retries=int(conn["max_retries"]) if conn.get("max_retries") is not None
            else RETRY_POLICY.max_retries,
        )

    @property
    def query_url(self) -> str:
        return f"{self.base_url}/api/projects/{quote(self.project_id, safe='')}/query/"


def _base_url(config: Mapping[str, Any], conn: Mapping[str, Any]) -> str:
    """The API's base URL from ``region`` / ``custom_base_url`` (the step's, else the
    connection's; no region: self-hosted with a custom URL, else ``us``)."""
    region = config.get("region") or conn.get("region")
    custom = config.get("custom_base_url") or conn.get("custom_base_url")
    if not region:
        region = "self_hosted" if custom else "us"
    if region == "self_hosted":
        if not custom:
            raise DriverError("posthog.extractor: region 'self_hosted' needs "
                              "`custom_base_url` (e.g. https://posthog.example.com)")
        base_url = str(custom).strip().rstrip("/")
    elif region in BASE_URLS:
        base_url = BASE_URLS[region]
    else:
        raise DriverError(f"posthog.extractor: unknown region {region!r} (use us, eu or "
                          "self_hosted)")
    if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
        raise DriverError(f"posthog.extractor: `custom_base_url` must be an http(s) URL, got "
                          f"{hc.display_url(base_url)!r}")
    return base_url


def _event_types(config: Mapping[str, Any]) -> tuple[str, ...]:
    """``event_types``: one name or a list of names (none: every event)."""
    raw_types = config.get("event_types") or []
    if isinstance(raw_types, str):
        raw_types = [raw_types]
    if not isinstance(raw_types, list | tuple) or \
            not all(isinstance(t, str) and t for t in raw_types):
        raise DriverError("posthog.extractor: `event_types` must be a list of event names")
    return tuple(raw_types)


# -- dedup and state ------------------------------------------------------------------------------
class SeenKeys:
    """Keys already delivered: a FIFO set of at most ``limit`` keys."""

    def __init__(self, limit: int, initial: Iterable[str] = ()) -> None:
        self.limit = limit
        self._keys: OrderedDict[str, None] = OrderedDict()
        for k in initial:
            self.add(k)

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.limit:
            self._keys.popitem(last=False)


class RecentKeys:
    """Keys of the rows within ``window`` of the latest time seen (rows arrive in time order);
    what the next run's lookback will fetch again."""

    def __init__(self, window: timedelta, limit: int) -> None:
        self.window = window
        self.limit = limit
        self._entries: deque[tuple[datetime, str]] = deque()
        self.latest: datetime | None = None

    def add(self, when: datetime, key: str) -> None:
        if self.latest is None or when > self.latest:
            self.latest = when
        self._entries.append((when, key))
        edge = self.latest - self.window
        while self._entries and (self._entries[0][0] < edge or len(self._entries) > self.limit):
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
        doc = _read_json_file(self.path)
        if doc is not None and (not isinstance(doc, dict) or doc.get("version") != STATE_VERSION
                                or doc.get("scope") != self.scope):
            ctx.log_event("posthog_state_ignored", path=str(self.path),
                          reason="written for another host/project or format")
            doc = None
        self.doc: dict[str, Any] = doc or {"version": STATE_VERSION, "scope": self.scope,
                                           "data_types": {}}

    def entry(self) -> dict[str, Any] | None:
        entry = self.doc.get("data_types", {}).get(self.opts.data_type)
        if not isinstance(entry, dict) or not entry.get("last_time"):
            return None
        if self.opts.data_type == "events" and \
                sorted(entry.get("event_types") or []) != sorted(self.opts.event_types):
            self.ctx.log_event("posthog_state_ignored", path=str(self.path),
                               reason="event_types changed since the last run")
            return None
        return entry

    def pending(self, last_time: datetime, last_key: Any, recent: list[str], rows: int
                ) -> PendingState:
        """The state file with this data type's new high-water mark, for the runtime to save
        once the step's output is accepted (never saved from here: the step may still fail)."""
        entry = {
            "last_time": last_time.isoformat(),
            "last_key": last_key,
            "recent_keys": recent,
            "lookback_window_minutes": int(self.opts.lookback.total_seconds() // 60),
            "updated_at": datetime.now(UTC).isoformat(),
            "rows_last_run": rows,
        }
        if self.opts.data_type == "events":
            entry["event_types"] = sorted(self.opts.event_types)
        data_types = {**(self.doc.get("data_types") or {}), self.opts.data_type: entry}
        return PendingState(self.path, {**self.doc, "data_types": data_types})


def _read_json_file(path: Path) -> Any:
    """The JSON in ``path``, or None when it does not exist or cannot be parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# -- the run --------------------------------------------------------------------------------------
def run(ctx: StepContext, config: Mapping[str, Any], inputs: Sequence[UpstreamTable]
        ) -> DriverResult:
    opts = Options.from_config(config, ctx.connection)
    hc.register_secrets(ctx, [opts.api_key])
    kind = KINDS[opts.data_type]
    client = _client(ctx, opts)
    store = StateStore(ctx, opts) if kind.incremental else None
    until = datetime.now(UTC)
    since, previous = _window_start(ctx, opts, kind, store.entry() if store else None, until)
    stager = JsonStager(ctx.tmp_dir, f"posthog-{ctx.step_id}")
    for name, duckdb_type in kind.base_columns:
        stager.declare(name, duckdb_type)
    fetch = _Fetch(ctx, opts, kind, client, stager,
                   seen=SeenKeys(max(RECENT_KEYS_LIMIT, len(previous)), previous),
                   recent=RecentKeys(opts.lookback, RECENT_KEYS_LIMIT))
    try:
        fetch.all_pages(since, until)
        rows_out = stager.create_output(ctx)
        columns = len(stager.columns)
    finally:
        stager.close()
        client.close()
    pending = None
    if store is not None and fetch.recent.latest is not None and fetch.last_row is not None:
        pending = store.pending(fetch.recent.latest, fetch.last_row.get(kind.key),
                                fetch.recent.keys(), rows_out)
    return _result(ctx, fetch, rows_out, columns, pending)


def _client(ctx: StepContext, opts: Options) -> hc.HttpClient:
    host = hc.origin_of(opts.base_url)
    return hc.HttpClient(
        service="PostHog", timeout=opts.timeout,
        headers={"Authorization": f"Bearer {opts.api_key}", "Content-Type": "application/json",
                 "Accept": "application/json", "User-Agent": "osiris-dagster posthog extractor"},
        policy=_policy(opts.max_retries), secrets=[opts.api_key],
        auth_hint=(f"the `api_key` of the posthog connection: it must be a personal API key "
                   f"(phx_...) with query:read access to project {opts.project_id} on {host}"),
        check_hint=(f"`project_id` ({opts.project_id}) and `region` / `custom_base_url` "
                    f"({opts.base_url})"),
        on_retry=lambda info: ctx.log_event("http_retry", **info),
    )


def _window_start(ctx: StepContext, opts: Options, kind: Kind, entry: dict[str, Any] | None,
                  until: datetime) -> tuple[datetime | None, list[str]]:
    """Where this run's window starts, and the keys already delivered from there on: the saved
    high-water mark minus the lookback with its recent keys; else ``initial_since``, else the
    default history (or everything) with none."""
    if entry is not None:
        since = parse_time(entry["last_time"], "the saved high-water mark") - opts.lookback
        previous = [str(k) for k in entry.get("recent_keys") or []]
        ctx.log_event("posthog_resume", data_type=opts.data_type, since=since.isoformat(),
                      overlap_keys=len(previous))
        return since, previous
    start = opts.initial_since
    if start is None and kind.default_history:
        start = until - DEFAULT_HISTORY
    return start, []


@dataclass
class _Fetch:
    """The paging of one run: seek queries, each followed by the ``next`` links of its answer;
    every row counted, deduplicated by key and staged."""

    ctx: StepContext
    opts: Options
    kind: Kind
    client: hc.HttpClient
    stager: JsonStager
    seen: SeenKeys  # keys already delivered (dropped when met again)
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
        """Count one row, remember its key, and stage it unless it was already delivered."""
        kind = self.kind
        self.fetched += 1
        key = row.get(kind.key)
        key_text = "" if key is None else str(key)
        if kind.order_is_time and row.get(kind.order) is not None:
            self.recent.add(parse_time(row[kind.order], f"`{kind.order}`"), key_text)
        self.last_row = row
        if key is not None:
            if self.opts.dedup and key_text in self.seen:
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


def _result(ctx: StepContext, fetch: _Fetch, rows_out: int, columns: int,
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


def _policy(max_retries: int) -> hc.RetryPolicy:
    return RETRY_POLICY.with_retries(max_retries)


def _rows_of(body: Any, kind: Kind, host: str, client: hc.HttpClient,
             stager: JsonStager) -> list[dict[str, Any]]:
    """The rows of one response as dicts (``results`` lists zipped with ``columns``)."""
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise client.error(f"PostHog: unexpected answer from {host}: no `results` list. Check "
                           "`region` / `custom_base_url`: it must be the PostHog API.")
    error = body.get("error")
    if isinstance(error, str) and error.strip():
        raise client.error(f"PostHog: the query failed at {host}: {error.strip()[:300]}")
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
