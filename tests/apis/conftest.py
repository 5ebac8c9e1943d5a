"""Fixtures for the HTTP API extractors: local fakes of PostHog's HogQL query API and of a
Relay-style GraphQL API (pytest-httpserver on 127.0.0.1), and a helper running a driver in a
real StepWorkspace over a session DuckDB file."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from osiris_dagster.core.settings import Settings
from osiris_dagster.drivers.base import DriverResult
from osiris_dagster.drivers.http import client as http_client
from osiris_dagster.drivers.posthog import options as posthog_options
from osiris_dagster.runtime.session import Session, write_json_atomic
from osiris_dagster.runtime.workspace import StepWorkspace

FAST = http_client.RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05,
                               max_retry_after=5.0, retry_timeouts=False)


@pytest.fixture(autouse=True)
def _fast_posthog_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(posthog_options, "RETRY_POLICY", FAST)


# -- the HTTP server --------------------------------------------------------------------------
@pytest.fixture(scope="session")
def _api_http_server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def api_server(_api_http_server: HTTPServer) -> Iterator[HTTPServer]:
    _api_http_server.clear()
    yield _api_http_server
    _api_http_server.clear()


def base_url(server: HTTPServer) -> str:
    return f"http://127.0.0.1:{server.port}"


# -- running a driver -------------------------------------------------------------------------
@dataclass
class Ran:
    """A driver run read back: its table, events and metrics."""

    result: DriverResult
    columns: list[str]
    types: dict[str, str]
    rows: list[tuple[Any, ...]]
    events: list[dict[str, Any]]
    metrics: dict[str, Any]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]


RunDriver = Callable[..., Ran]


@pytest.fixture
def sessions_dir(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


@pytest.fixture
def run_driver(sessions_dir: Path) -> RunDriver:
    """``run_driver(module, config, connection=None, session_id="s1")``: one step in a fresh
    session (same sessions root, so the step's state_dir carries over between calls). As the
    runtime does when a step succeeds, the driver's pending state is then saved (unless
    ``commit_state=False``)."""
    counter = {"n": 0}

    def run(module: Any, config: Mapping[str, Any], connection: Mapping[str, Any] | None = None,
            session_id: str | None = None, commit_state: bool = True) -> Ran:
        counter["n"] += 1
        session = Session(Settings.from_env(sessions_dir),
                          session_id or f"s{counter['n']}").ensure()
        before = len(session.read_events())
        with StepWorkspace(session, pipeline_name="p", step_id="api", output_table="api",
                           connection=connection) as ws:
            result = module.run(ws, dict(config), [])
            types = dict(ws.output_columns())
            _, rows = ws.preview_rows(limit=1_000_000)
        if commit_state and result.pending_state is not None:
            write_json_atomic(result.pending_state.path, result.pending_state.document)
        evs = session.read_events()[before:]
        mets: dict[str, Any] = {}
        if session.metrics_path.exists():
            for line in session.metrics_path.read_text().splitlines():
                m = json.loads(line)
                mets[m["metric"]] = m["value"]
        return Ran(result, list(types), types, rows, evs, mets)

    return run


# -- PostHog fake -----------------------------------------------------------------------------
def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


_LIT = r"(toDateTime64\('[^']*', 6, 'UTC'\)|toUUID\('[^']*'\)|'(?:[^'\\]|\\.)*'|-?\d+)"
_SEEK = re.compile(rf"\((\S+) > {_LIT} OR \((\S+) = {_LIT} AND (\S+) > {_LIT}\)\)")
_GE = re.compile(rf"(\S+) >= {_LIT}")
_LT = re.compile(rf"(\S+) < {_LIT}")
_IN = re.compile(r"event IN \((.*?)\)(?: AND| ORDER)")
_FROM = re.compile(r"\bFROM (\w+)")
_LIMIT = re.compile(r"\bLIMIT (\d+)\s*$")
_ORDER = re.compile(r"ORDER BY (\S+) ASC, (\S+) ASC")


def _unquote(lit: str) -> Any:
    m = re.fullmatch(r"toDateTime64\('([^']*)', 6, 'UTC'\)", lit)
    if m:
        return datetime.fromisoformat(m.group(1)).replace(tzinfo=UTC)
    m = re.fullmatch(r"toUUID\('([^']*)'\)", lit)
    if m:
        return m.group(1)
    if lit.startswith("'"):
        return re.sub(r"\\(.)", r"\1", lit[1:-1])
    return int(lit)


def _sortable(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).astimezone(UTC)
        except ValueError:
            return value
    return value


@dataclass
class FakePostHog:
    """The HogQL query endpoint over in-memory tables, evaluating the driver's queries (window,
    event filter, seek, ORDER BY, LIMIT). ``script`` holds canned responses served first;
    ``next_chunk`` splits each answer into `next`-linked parts."""

    server: HTTPServer
    project_id: str = "4242"
    api_key: str = "phx_TestKey-Abc123-Secret"
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    columns: dict[str, list[str]] = field(default_factory=dict)
    script: list[Callable[[], Response]] = field(default_factory=list)
    next_chunk: int | None = None
    queries: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    _pending: dict[str, list[list[Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.tables.setdefault("events", [])
        self.columns.setdefault("events", ["uuid", "event", "timestamp", "distinct_id",
                                           "person_id", "properties"])
        path = f"/api/projects/{self.project_id}/query/"
        self.server.expect_request(path, method="POST").respond_with_handler(self._query)
        self.server.expect_request(re.compile(r"^/next/\w+$"), method="GET") \
            .respond_with_handler(self._next)

    @property
    def base_url(self) -> str:
        return base_url(self.server)

    def connection(self, **extra: Any) -> dict[str, Any]:
        return {"api_key": self.api_key, "project_id": self.project_id,
                "region": "self_hosted", "custom_base_url": self.base_url, **extra}

    def add_events(self, *events: dict[str, Any]) -> None:
        self.tables["events"].extend(events)

    # -- handlers
    def _record(self, request: Request, query: str | None) -> Response | None:
        with self._lock:
            self.requests.append({"method": request.method, "path": request.path,
                                  "auth": request.headers.get("Authorization"),
                                  "query": query, "at": time.monotonic()})
            if self.script:
                return self.script.pop(0)()
        return None

    def _query(self, request: Request) -> Response:
        body = json.loads(request.get_data())
        assert body["query"]["kind"] == "HogQLQuery"
        query = body["query"]["query"]
        canned = self._record(request, query)
        if canned is not None:
            return canned
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _json({"type": "authentication_error", "code": "authentication_failed",
                          "detail": "Personal API key found in request Authorization header "
                                    "is invalid."}, 401)
        self.queries.append(query)
        table = _FROM.search(query).group(1)
        rows = self._evaluate(table, query)
        cols = self.columns[table]
        results = [[r.get(c) for c in cols] for r in rows]
        return _json(self._page(query, cols, results))

    def _page(self, query: str, cols: list[str], results: list[list[Any]]) -> dict[str, Any]:
        limit = int(_LIMIT.search(query).group(1))
        page: dict[str, Any] = {
            "cache_key": "x", "is_cached": False, "clickhouse": "SELECT ...", "hogql": query,
            "columns": cols, "types": [[c, "String"] for c in cols], "error": None,
            "hasMore": False, "limit": limit, "offset": 0, "modifiers": {}, "timings": [],
            "results": results, "next": None,
        }
        if self.next_chunk and len(results) > self.next_chunk:
            page["results"] = results[:self.next_chunk]
            rest = results[self.next_chunk:]
            page["next"] = self._remember(rest)
        return page

    def _remember(self, rest: list[list[Any]]) -> str:
        with self._lock:
            token = f"t{len(self._pending) + 1}"
            chunks = [rest[i:i + (self.next_chunk or 1)]
                      for i in range(0, len(rest), self.next_chunk or 1)]
            self._pending[token] = chunks
        return f"{self.base_url}/next/{token}"

    def _next(self, request: Request) -> Response:
        canned = self._record(request, None)
        if canned is not None:
            return canned
        token = request.path.rsplit("/", 1)[1]
        chunks = self._pending[token]
        part = chunks.pop(0)
        nxt = f"{self.base_url}/next/{token}" if chunks else None
        return _json({"results": part, "next": nxt})

    def _evaluate(self, table: str, query: str) -> list[dict[str, Any]]:
        rows = list(self.tables.get(table, []))
        where = query.split(" ORDER BY ")[0]
        seek = _SEEK.search(where)
        plain = _SEEK.sub("", where)
        for m in _GE.finditer(plain):
            col, value = m.group(1), _unquote(m.group(2))
            rows = [r for r in rows if r.get(col) is not None and _sortable(r[col]) >= value]
        for m in _LT.finditer(plain):
            col, value = m.group(1), _unquote(m.group(2))
            rows = [r for r in rows if r.get(col) is not None and _sortable(r[col]) < value]
        m = _IN.search(query)
        if m:
            names = [_unquote(x.strip()) for x in re.findall(r"'(?:[^'\\]|\\.)*'", m.group(1))]
            rows = [r for r in rows if r.get("event") in names]
        first, second = _ORDER.search(query).groups()
        if seek:
            a, av, _, _, b, bv = seek.groups()
            assert (a, b) == (first, second)
            v1, v2 = _unquote(av), _unquote(bv)
            rows = [r for r in rows if (_sortable(r[a]), r[b]) > (v1, v2)]
        rows.sort(key=lambda r: (_sortable(r.get(first)), r.get(second)))
        return rows[:int(_LIMIT.search(query).group(1))]


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(data), status=status, headers=dict(headers or {}),
                    content_type="application/json")


def canned(status: int, body: Any = None, headers: Mapping[str, str] | None = None,
           raw: str | None = None, delay: float = 0.0) -> Callable[[], Response]:
    def make() -> Response:
        if delay:
            time.sleep(delay)
        if raw is not None:
            return Response(raw, status=status, headers=dict(headers or {}),
                            content_type="text/html")
        return _json(body if body is not None else {"detail": "error"}, status, headers)
    return make


@pytest.fixture
def posthog(api_server: HTTPServer) -> FakePostHog:
    return FakePostHog(api_server)


# -- GraphQL fake ----------------------------------------------------------------------------
def _cursor(i: int) -> str:
    return base64.b64encode(f"cursor:{i}".encode()).decode()


@dataclass
class FakeGraphQL:
    """``users(first, after)`` as a Relay connection with ``pageInfo {hasNextPage endCursor}``;
    ``/graphql``. Records every request's headers and variables."""

    server: HTTPServer
    users: list[dict[str, Any]] = field(default_factory=list)
    script: list[Callable[[], Response]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    expected_auth: tuple[str, str] | None = None  # (header, value) required, else 401
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.server.expect_request("/graphql", method="POST").respond_with_handler(self._handle)

    @property
    def endpoint(self) -> str:
        return f"{base_url(self.server)}/graphql"

    def _handle(self, request: Request) -> Response:
        body = json.loads(request.get_data())
        with self._lock:
            self.requests.append({"headers": dict(request.headers), "body": body})
            if self.script:
                return self.script.pop(0)()
        if self.expected_auth is not None:
            name, value = self.expected_auth
            if request.headers.get(name) != value:
                return _json({"errors": [{"message": "Bad credentials"}]}, 401)
        query: str = body["query"]
        variables = body.get("variables") or {}
        if "users" not in query:
            return _json({"errors": [{"message": "Cannot query field \"nope\" on type "
                                                 "\"Query\".", "locations": [
                                                     {"line": 1, "column": 3}]}]})
        first = int(variables.get("first", 100))
        after = variables.get("after")
        start = 0
        if after:
            start = int(base64.b64decode(after).decode().split(":")[1]) + 1
        chunk = self.users[start:start + first]
        edges = [{"cursor": _cursor(start + i), "node": u} for i, u in enumerate(chunk)]
        end = start + len(chunk) - 1
        return _json({"data": {"users": {
            "totalCount": len(self.users),
            "edges": edges,
            "pageInfo": {"hasNextPage": start + len(chunk) < len(self.users),
                         "endCursor": _cursor(end) if chunk else None},
        }}})


@pytest.fixture
def graphql(api_server: HTTPServer) -> FakeGraphQL:
    return FakeGraphQL(api_server)


def session_files_contain(sessions: Path, secret: str) -> list[Path]:
    """Every file under the sessions root whose bytes contain ``secret``."""
    needle = secret.encode()
    return [f for f in sessions.rglob("*") if f.is_file() and needle in f.read_bytes()]
