"""The one HTTP client (requests + urllib3's Retry) against a real local HTTP server: which
failures are retried for which requests, how long it waits, and that no secret leaks.

Waits are recorded through the client's ``sleep`` hook instead of being slept, so the tests
check the exact delays without depending on the clock."""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from osiris_dagster.core.errors import DriverError, OutcomeUnknownError
from osiris_dagster.drivers.http import client as hc

SECRET = "s3cr3t-Token-4711"


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    drop: bool = False  # read the request, then close the connection without an answer


@dataclass
class ScriptedServer:
    """A ThreadingHTTPServer on 127.0.0.1 answering from ``script`` (then 200 ``{"ok": true}``)
    and logging every request it read. ``start(sock)`` serves on an already bound socket, so a
    test can hold a port that refuses connections and open it later."""

    script: list[Answer] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, sock: socket.socket | None = None) -> ScriptedServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with fake._lock:
                    fake.requests.append((self.command, self.path))
                    answer = fake.script.pop(0) if fake.script else Answer(body={"ok": True})
                if answer.drop:
                    self.close_connection = True
                    return
                data = json.dumps(answer.body if answer.body is not None else {}).encode()
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _answer  # noqa: N815

        if sock is None:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        else:
            self._server = ThreadingHTTPServer(sock.getsockname(), Handler,
                                               bind_and_activate=False)
            self._server.socket.close()
            self._server.socket = sock
            self._server.server_activate()
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer().start()
    yield srv
    srv.stop()


@dataclass
class Recorder:
    sleeps: list[float] = field(default_factory=list)
    retries: list[dict[str, Any]] = field(default_factory=list)


def client(rec: Recorder, on_retry: Callable[[dict[str, Any]], None] | None = None,
           **policy: Any) -> hc.HttpClient:
    settings = {"max_retries": 3, "base_delay": 0.01, "max_delay": 0.05,
                "max_retry_after": 5.0, **policy}

    def retried(info: dict[str, Any]) -> None:
        rec.retries.append(info)
        if on_retry is not None:
            on_retry(info)

    return hc.HttpClient(service="Test API", headers={"Authorization": f"Bearer {SECRET}"},
                         timeout=5.0, policy=hc.RetryPolicy(**settings), secrets=[SECRET],
                         check_hint="`url`", on_retry=retried, sleep=rec.sleeps.append)


# -- which failures are retried for which requests ------------------------------------------------
@pytest.mark.parametrize("retry_after", ["2", "soon"])
def test_429_on_a_non_idempotent_post_is_retried(server: ScriptedServer, retry_after: str
                                                 ) -> None:
    """A 429 was rejected unprocessed: safe to repeat even an append; Retry-After is waited
    for (a malformed one means plain backoff, not a crash)."""
    server.script.append(Answer(429, {"Retry-After": retry_after}, {"message": "slow down"}))
    rec = Recorder()
    with client(rec) as http:
        resp = http.request("POST", f"{server.url}/rows", json_body=[{"id": 1}],
                            idempotent=False)
        assert resp.status_code == 200 and http.requests_made == 2
    assert server.requests == [("POST", "/rows"), ("POST", "/rows")]
    assert rec.retries[0]["reason"] == "HTTP 429 Too Many Requests"
    assert rec.sleeps == ([2.0] if retry_after == "2" else [])  # first backoff: at once


@pytest.mark.parametrize("answer", [Answer(500), Answer(503, {"Retry-After": "1"}),
                                    Answer(drop=True)], ids=["500", "503", "dropped"])
def test_a_non_idempotent_post_that_reached_the_server_is_never_sent_again(
        server: ScriptedServer, answer: Answer) -> None:
    server.script.append(answer)
    rec = Recorder()
    with client(rec) as http, pytest.raises(OutcomeUnknownError) as err:
        http.request("POST", f"{server.url}/rows?on=1", json_body=[{"id": 1}],
                     idempotent=False, what="writing rows 1-1")
    assert server.requests == [("POST", "/rows?on=1")] and rec.retries == []
    text = str(err.value)
    assert "Test API: writing rows 1-1: POST " in text and "may have taken effect" in text
    assert "?on=1" not in text
    reason = "connection closed by the server" if answer.drop else f"HTTP {answer.status}"
    assert err.value.reason.startswith(reason)


@pytest.mark.parametrize("answer", [Answer(500), Answer(502), Answer(drop=True)],
                         ids=["500", "502", "dropped"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_idempotent_requests_are_retried_after_it_reached_the_server(
        server: ScriptedServer, answer: Answer, method: str) -> None:
    """GETs by their method, a POST the caller declares idempotent (a query, an upsert)."""
    server.script.append(answer)
    rec = Recorder()
    with client(rec) as http:
        body = http.request_json(method, f"{server.url}/q", idempotent=True)
    assert body == {"ok": True} and len(server.requests) == 2 and len(rec.retries) == 1


def test_connect_refused_then_success_retries_even_a_non_idempotent_post() -> None:
    """Nothing was sent while the port refused connections: repeating cannot write twice."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    late = ScriptedServer()
    rec = Recorder()
    try:
        with client(rec, on_retry=lambda info: late.start(sock)) as http:
            url = f"http://127.0.0.1:{sock.getsockname()[1]}/rows"
            resp = http.request("POST", url, json_body=[{"id": 1}], idempotent=False)
            assert resp.status_code == 200 and http.requests_made == 2
        assert late.requests == [("POST", "/rows")]  # the first attempt never arrived
        assert rec.retries[0]["reason"] == "connection refused"
    finally:
        late.stop()
        sock.close()


# -- how long it waits ----------------------------------------------------------------------------
def test_retry_after_is_honoured_up_to_the_cap(server: ScriptedServer) -> None:
    server.script += [Answer(503, {"Retry-After": "3"}), Answer(429, {"Retry-After": "60"})]
    rec = Recorder()
    with client(rec, max_retry_after=10.0) as http, pytest.raises(DriverError) as err:
        http.request("GET", f"{server.url}/q")
    assert rec.sleeps == [3.0]  # the 3 s were waited, the 60 s are not
    assert len(server.requests) == 2
    assert "asks to wait 60 s (Retry-After), longer than the 10 s this step waits" in \
        str(err.value)


def test_backoff_doubles_with_jitter_and_is_capped(server: ScriptedServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "random", lambda: 0.5)  # urllib3's jitter: random() * jitter
    server.script += [Answer(500)] * 4
    rec = Recorder()
    with client(rec, max_retries=4, base_delay=1.0, max_delay=3.0) as http:
        http.request("GET", f"{server.url}/q")
    # urllib3: the first retry at once, then base * 2^(n-1) + 0.5 * base of jitter, capped
    assert [r["delay_s"] for r in rec.retries] == [0.0, 2.5, 3.0, 3.0]
    assert rec.sleeps == [2.5, 3.0, 3.0]


def test_exhausted_retries_say_how_many_attempts(server: ScriptedServer) -> None:
    server.script += [Answer(503, body={"message": f"down, token {SECRET}"})] * 3
    rec = Recorder()
    with client(rec, max_retries=2) as http, pytest.raises(DriverError) as err:
        http.request("GET", f"{server.url}/q")
    text = str(err.value)
    assert f"server error at {server.url}: HTTP 503 Service Unavailable (3 attempts)" in text
    assert SECRET not in text and "token ***" in text


# -- secrets ---------------------------------------------------------------------------------------
def test_urllib3_texts_with_the_query_string_never_reach_messages_or_logs(
        caplog: pytest.LogCaptureFixture) -> None:
    """urllib3's MaxRetryError and its retry warnings quote the path with its query string."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    rec = Recorder()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/graphql?token={SECRET}&x=1"
    try:
        with caplog.at_level(logging.DEBUG, logger="urllib3"), client(rec, max_retries=2) as http, \
                pytest.raises(DriverError) as err:
            http.request("GET", url)
    finally:
        sock.close()
    assert SECRET in repr(err.value.__context__)  # what urllib3 said (not shown anywhere)
    text = str(err.value)
    assert "cannot connect to http://127.0.0.1:" in text and "(connection refused; 3 attempts)" \
        in text and SECRET not in text
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any("Retrying" in m for m in logged)
    assert not [m for m in logged if SECRET in m]
    assert all(SECRET not in json.dumps(r) for r in rec.retries)


def _header_recorder(seen: list[dict[str, str]], redirect_to: str | None) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            seen.append({k.lower(): v for k, v in self.headers.items()})
            if redirect_to:
                self.send_response(302)
                self.send_header("Location", redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    return srv


def test_a_redirect_to_another_host_never_carries_credential_headers() -> None:
    """requests itself drops only Authorization; `apikey` (PostgREST) and `X-API-Key` (GraphQL)
    must not follow a redirect to another host either."""
    other_seen: list[dict[str, str]] = []
    first_seen: list[dict[str, str]] = []
    other = _header_recorder(other_seen, None)
    first = _header_recorder(first_seen, f"http://localhost:{other.server_address[1]}/x")
    try:
        api = hc.HttpClient(
            service="Test API", timeout=5.0, policy=hc.RetryPolicy(max_retries=0),
            headers={"Authorization": f"Bearer {SECRET}", "apikey": SECRET,
                     "X-API-Key": SECRET, "Accept-Profile": "public"}, secrets=[SECRET])
        api.request_json("GET", f"http://127.0.0.1:{first.server_address[1]}/start")
    finally:
        first.shutdown()
        other.shutdown()
    assert first_seen[0]["apikey"] == SECRET and first_seen[0]["x-api-key"] == SECRET
    (followed,) = other_seen
    assert followed.get("accept-profile") == "public"
    assert not [v for v in followed.values() if SECRET in v], followed


def test_a_redirect_to_another_origin_carries_no_header_the_client_masks() -> None:
    """A header without a credential's name whose value is one of the client's secrets (a
    GraphQL connection's `X-Session`) stays behind too; other headers follow."""
    other_seen: list[dict[str, str]] = []
    first_seen: list[dict[str, str]] = []
    other = _header_recorder(other_seen, None)
    first = _header_recorder(first_seen, f"http://127.0.0.1:{other.server_address[1]}/x")
    session = "sess-CONN-VALUE-555"
    try:
        api = hc.HttpClient(
            service="Test API", timeout=5.0, policy=hc.RetryPolicy(max_retries=0),
            headers={"X-Session": session, "X-Trace": f"session={session}",
                     "X-Tenant": "acme-corp"}, secrets=[session])
        api.request_json("GET", f"http://127.0.0.1:{first.server_address[1]}/start")
    finally:
        first.shutdown()
        other.shutdown()
    assert first_seen[0]["x-session"] == session
    (followed,) = other_seen
    assert followed.get("x-tenant") == "acme-corp"
    assert "x-session" not in followed and "x-trace" not in followed, followed
