"""The one HTTP client of the drivers (PostHog, GraphQL, PostgREST): requests + urllib3's ``Retry``.

Retrying is urllib3's job, configured per request (:meth:`RetryPolicy.retry`) and mounted on a
``requests`` session through an :class:`~requests.adapters.HTTPAdapter`: ``status_forcelist``
(429, 500, 502, 503, 504), ``Retry-After`` honoured (``respect_retry_after_header``), exponential
backoff (``backoff_factor``; urllib3 repeats the first failure at once, then doubles) capped at
``backoff_max`` with ``backoff_jitter``, and ``allowed_methods`` saying which requests may be
repeated once they reached the server. On top of urllib3 only the product's rules:

* **Exactly once.** A request is *idempotent* by its method (GET/HEAD/OPTIONS/PUT/DELETE) or
  because the caller says so (a read-only POST query, an upsert that resolves conflicts on its
  key); only then is it in ``allowed_methods``, so only then is it repeated after a 5xx, a read
  timeout or a dropped connection. A request that is not idempotent is never repeated after it
  was sent: the client raises :class:`~osiris_dagster.core.errors.OutcomeUnknownError` (it may have
  taken effect). Two failures are safe for every request and always retried: a 429 (the server
  rejected it unprocessed; :class:`PolicyRetry` widens urllib3's rule, which would tie the 429
  to ``allowed_methods`` too) and a failure before a byte was sent (urllib3's ``connect``
  retries: connection refused, connect timeout, host name not resolved).
* **Bounded waits.** A ``Retry-After`` longer than ``max_retry_after`` is not waited for: the
  step fails at once saying so (we would only be rate-limited again).
* **Messages.** Every error names the service, the host and what to check, and never contains a
  secret: the client's :class:`~osiris_dagster.core.masking.Masker` knows the credentials it sends
  and
  masks them (also out of response bodies quoted in errors); URLs are shown without user info
  and query string, and urllib3's own texts (``MaxRetryError`` carries the URL with its query
  string) are never quoted but classified (:func:`failure_reason`). urllib3's log records
  (``Retrying ... /path?query``) pass through a filter that drops query strings and masks the
  secrets of every live client. A redirect to another origin carries no header with a
  credential's name or a value the masker hides (:class:`_CredentialSafeSession`).
* **Numbers.** :meth:`HttpClient.decode_json` fails on a number Python's :mod:`json` would make
  another value (``1e400``, ``NaN``, ``0.12345678901234567890``), naming the page, where and
  the number: a value from outside is kept exactly or the step fails.
* Each retry calls ``on_retry`` (the drivers log an ``http_retry`` event); ``requests_made``
  counts every attempt. Waits go through ``sleep`` (``time.sleep``).
"""

from __future__ import annotations

import http
import json
import logging
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    InvalidHeader,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)
from urllib3.util.retry import RequestHistory, Retry

from osiris_dagster.core.errors import DriverError, OutcomeUnknownError
from osiris_dagster.core.masking import Masker, is_secret_header
from osiris_dagster.drivers.json_keys import RepeatedKeyError, loads_unique_keys
from osiris_dagster.drivers.json_numbers import first_changed_number

#: Methods that may be repeated by their nature (urllib3's list without TRACE, which we never send).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RATE_LIMITED = 429


# -- URLs and secrets -----------------------------------------------------------------------------
def origin_of(url: str) -> str:
    """``scheme://host[:port]`` (no user info), for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}" if parts.scheme else url


def display_url(url: str) -> str:
    """The URL without user info, query string and fragment (they may carry credentials)."""
    parts = urlsplit(url)
    if not parts.scheme:
        return url.split("?", 1)[0]
    return urlunsplit((parts.scheme, origin_of(url).split("://", 1)[1], parts.path, "", ""))


def register_secrets(ctx: Any, values: Iterable[Any]) -> None:
    """Also hand secrets to the session's masker when the context has one (defence in depth:
    the runner masks step errors, events and metrics with it)."""
    masker = getattr(getattr(ctx, "session", None), "masker", None)
    add = getattr(masker, "add", None)
    if callable(add):
        add([str(v) for v in values if isinstance(v, str | int) and not isinstance(v, bool)])


_LIVE_MASKERS: weakref.WeakSet[Masker] = weakref.WeakSet()
_QUERY = re.compile(r"\?[^\s'\"()]*")


class _Urllib3LogFilter(logging.Filter):
    """urllib3 logs retries with the request's path and query string (``Retrying (...) after
    connection broken by ...: /graphql?token=...``): drop query strings, mask known secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = _QUERY.sub("?***", text)
        for masker in list(_LIVE_MASKERS):
            clean = masker.text(clean)
        if clean != text:
            record.msg, record.args = clean, ()
        return True


_LOG_FILTER = _Urllib3LogFilter()
for _name in ("urllib3.connectionpool", "urllib3.util.retry"):
    if _LOG_FILTER not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_LOG_FILTER)


# -- failures -------------------------------------------------------------------------------------
def _chain(exc: BaseException) -> Iterable[BaseException]:
    """``exc`` and every exception it wraps (``args``, urllib3's ``reason``, cause, context)."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        cur = todo.pop()
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        todo += [*cur.args, getattr(cur, "reason", None), getattr(cur, "original_error", None),
                 cur.__cause__, cur.__context__]


def nothing_was_sent(exc: BaseException) -> bool:
    """True when a failure happened before any byte of the request left this machine
    (connection refused, connect timeout, host name not resolved: urllib3's connect errors):
    repeating such a request cannot apply it twice. A read timeout or a connection dropped after
    sending is different: the server may have carried the request out, only its answer was
    lost."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    return any(isinstance(e, ConnectTimeoutError) for e in _chain(exc))


def failure_reason(exc: BaseException, timeout: float) -> tuple[str, str]:
    """``(kind, text)`` of a failed attempt, never quoting the exception (whose text holds the
    URL with its query string). ``kind``: ``timeout`` (no answer in time), ``connect`` (nothing
    was sent), ``dropped`` (the connection broke after sending), ``ssl``, ``other``."""
    chain = list(_chain(exc))
    text = " ".join(repr(e) for e in chain)
    if any(isinstance(e, ReadTimeoutError) for e in chain):
        return "timeout", f"no response within {timeout:g} s"
    if any(isinstance(e, SSLError | requests.exceptions.SSLError) for e in chain):
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return "ssl", "certificate verification failed"
        if "WRONG_VERSION_NUMBER" in text:
            return "ssl", "the server does not speak TLS on this port"
        return "ssl", "handshake failed"
    if any(isinstance(e, ProxyError | requests.exceptions.ProxyError) for e in chain):
        return "connect", "proxy error"
    if any(isinstance(e, NameResolutionError) for e in chain) or "getaddrinfo" in text or \
            "Name or service not known" in text or "nodename nor servname" in text:
        return "connect", "host name not found"
    if "Connection refused" in text or "ConnectionRefused" in text:
        return "connect", "connection refused"
    if any(isinstance(e, ConnectTimeoutError) and not isinstance(e, NewConnectionError)
           for e in chain):
        return "connect", f"no connection within {timeout:g} s"
    if any(isinstance(e, NewConnectionError) for e in chain):
        return "connect", "connection failed"
    if any(isinstance(e, ProtocolError) for e in chain) or "RemoteDisconnected" in text or \
            "reset" in text:
        return "dropped", "connection closed by the server"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "dropped", "connection failed"
    return "other", type(exc).__name__


def status_text(status: int, reason: str | None = None) -> str:
    """``HTTP 429 Too Many Requests``."""
    if reason is None:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    return f"HTTP {status} {reason or ''}".rstrip()


def _attempts(n: int) -> str:
    return "1 attempt" if n == 1 else f"{n} attempts"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), parsed by
    urllib3; None when absent or malformed."""
    if not value:
        return None
    try:
        return float(Retry().parse_retry_after(value))
    except InvalidHeader:
        return None


# -- retries --------------------------------------------------------------------------------------
@dataclass
class _Call:
    """One :meth:`HttpClient.request`: what its retries report and how they wait."""

    client: HttpClient
    where: str
    what: str
    retries: int = 0

    def retrying(self, last: RequestHistory, delay: float) -> None:
        self.retries += 1
        self.client.requests_made += 1
        if last.status is not None:
            reason = status_text(last.status)
        elif last.error is not None:
            reason = failure_reason(last.error, self.client.timeout)[1]
        else:
            reason = "unknown"
        if self.client.on_retry is not None:
            info: dict[str, Any] = {"host": self.where, "reason": reason, "retry": self.retries,
                                    "delay_s": round(delay, 3)}
            if self.what:
                info["what"] = self.what
            self.client.on_retry(info)
        if delay > 0:
            self.client.sleep(delay)


class PolicyRetry(Retry):
    """urllib3's ``Retry`` plus the product's rules (see the module docstring): a 429 is retried
    for any method; read timeouts are retried only if the policy says so; a ``Retry-After``
    beyond ``max_retry_after`` ends the retries (the answer goes back to the client, which says
    why); a malformed ``Retry-After`` means plain backoff; waits are reported and go through the
    client's ``sleep``."""

    call: _Call | None = None
    retry_read_timeouts: bool = True
    max_retry_after: float = 120.0

    def new(self, **kw: Any) -> PolicyRetry:
        retry = super().new(**kw)
        retry.call = self.call
        retry.retry_read_timeouts = self.retry_read_timeouts
        retry.max_retry_after = self.max_retry_after
        return retry

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code == RATE_LIMITED and status_code in self.status_forcelist:
            return True  # rejected before it was processed: safe whatever the method
        return super().is_retry(method, status_code, has_retry_after)

    def get_retry_after(self, response: Any) -> float | None:
        try:
            return super().get_retry_after(response)
        except InvalidHeader:
            return None

    def increment(self, method: str | None = None, url: str | None = None,
                  response: Any = None, error: Exception | None = None, _pool: Any = None,
                  _stacktrace: Any = None) -> PolicyRetry:
        if isinstance(error, ReadTimeoutError) and not self.retry_read_timeouts:
            raise error.with_traceback(_stacktrace)
        if response is not None and self.respect_retry_after_header:
            wait = self.get_retry_after(response)
            if wait is not None and wait > self.max_retry_after:
                # urllib3 hands the response back (raise_on_status=False); the client explains
                raise MaxRetryError(_pool, url, ResponseError("Retry-After too long"))
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def sleep(self, response: Any = None) -> None:
        wait = self.get_retry_after(response) if response is not None and \
            self.respect_retry_after_header else None
        delay = wait if wait else self.get_backoff_time()
        if self.call is None:  # a request the client did not prepare (a redirect)
            super().sleep(response)
        elif self.history:
            self.call.retrying(self.history[-1], delay)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of transient failures: up to ``max_retries`` after the first attempt; urllib3's
    exponential backoff (``backoff_factor`` = ``base_delay``: the first retry at once, then
    2x, 4x, ... ``base_delay``) capped at ``max_delay``, plus up to ``base_delay`` of jitter;
    ``Retry-After`` honoured when at most ``max_retry_after`` seconds (a longer wait is an
    error)."""

    max_retries: int = 3
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    retry_timeouts: bool = True
    retry_connection_errors: bool = True

    def with_retries(self, max_retries: int) -> RetryPolicy:
        return replace(self, max_retries=max(0, max_retries))

    def retry(self, method: str, idempotent: bool, call: _Call | None = None) -> PolicyRetry:
        """The urllib3 ``Retry`` of one request. ``allowed_methods`` holds the request's method
        only when the request is idempotent, so urllib3 repeats it after a 5xx, a read timeout
        or a dropped connection only then; connect errors (nothing sent) and 429 always."""
        method = method.upper()
        allowed = (IDEMPOTENT_METHODS | {method}) if idempotent else \
            (IDEMPOTENT_METHODS - {method})
        n = max(0, self.max_retries)
        retry = PolicyRetry(
            total=n, connect=n if self.retry_connection_errors else 0, read=n, status=n,
            other=0, redirect=0, allowed_methods=allowed,
            status_forcelist=self.retry_statuses, respect_retry_after_header=True,
            raise_on_status=False, backoff_factor=self.base_delay, backoff_max=self.max_delay,
            backoff_jitter=self.base_delay)
        retry.call = call
        retry.retry_read_timeouts = self.retry_timeouts
        retry.max_retry_after = self.max_retry_after
        return retry


class _PerRequestRetryAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose urllib3 ``Retry`` comes with each request (the client sets
    ``osiris_retry`` on the prepared request): whether a request may be repeated depends on the
    request, not on the session. ``HTTPAdapter.send`` reads ``self.max_retries``; here that is
    the request's own ``Retry`` (per thread), else the adapter's default."""

    def __init__(self) -> None:
        self._local = threading.local()
        super().__init__(max_retries=Retry(0, read=False, redirect=0))

    @property  # type: ignore[override]
    def max_retries(self) -> Retry:
        return getattr(self._local, "retry", None) or self._default_retry

    @max_retries.setter
    def max_retries(self, value: Retry) -> None:
        self._default_retry = value

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
             ) -> requests.Response:
        self._local.retry = getattr(request, "osiris_retry", None)
        try:
            return super().send(request, *args, **kwargs)
        finally:
            self._local.retry = None


# -- the client -----------------------------------------------------------------------------------
class _CredentialSafeSession(requests.Session):
    """requests drops only ``Authorization`` when a redirect leaves the host; credentials also
    travel in other headers (``apikey``, ``X-API-Key``, a connection's ``X-Session``): drop
    there every header with a credential's name or with a value ``masker`` hides (the client's
    secrets: a GraphQL connection's headers, ``${ENV}`` values, ...)."""

    def __init__(self, masker: Masker) -> None:
        super().__init__()
        self.masker = masker

    def rebuild_auth(self, prepared_request: requests.PreparedRequest,
                     response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)
        if self.should_strip_auth(response.request.url, prepared_request.url):
            for name, value in list(prepared_request.headers.items()):
                text = str(value)
                if is_secret_header(name) or self.masker.text(text) != text:
                    del prepared_request.headers[name]


@dataclass
class HttpClient:
    """JSON over HTTP with urllib3's retries and the product's secret-free errors.

    ``service`` names the API in messages ("PostHog", "GraphQL endpoint", "supabase.writer step
    'w' (Supabase REST API)"); ``auth_hint`` says what to check when the server rejects the
    credentials; ``check_hint`` what to check when the host cannot be reached or the URL is
    wrong; ``status_hints`` override the advice for given statuses; ``rate_hint`` how to ask
    less often.
    """

    service: str
    headers: Mapping[str, str]
    timeout: float
    policy: RetryPolicy
    verify: bool = True
    secrets: Iterable[Any] = ()
    auth_hint: str = "the credentials"
    check_hint: str = "the URL"
    status_hints: Mapping[int, str] = field(default_factory=dict)
    rate_hint: str = "lower the request rate"
    on_retry: Callable[[dict[str, Any]], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    requests_made: int = 0
    json_answers: int = 0  # answers decoded by :meth:`decode_json`: the API extractors' pages
    redact: Masker = field(init=False)
    _session: requests.Session = field(init=False)

    def __post_init__(self) -> None:
        self.redact = Masker(self.secrets)
        _LIVE_MASKERS.add(self.redact)
        self._session = _CredentialSafeSession(self.redact)
        self._session.verify = self.verify
        self._session.headers.update(self.headers)
        adapter = _PerRequestRetryAdapter()
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def error(self, message: str) -> DriverError:
        return DriverError(self.redact(message))

    # -- requests
    def request_json(self, method: str, url: str, json_body: Any = None, *,
                     idempotent: bool | None = None, what: str = "") -> Any:
        """The decoded JSON body of a 2xx answer (see :meth:`request`)."""
        resp = self.request(method, url, json_body=json_body, idempotent=idempotent, what=what)
        return self.decode_json(resp, url)

    def request(self, method: str, url: str, *, what: str = "", params: Any = None,
                json_body: Any = None, data: bytes | None = None,
                headers: Mapping[str, str] | None = None, idempotent: bool | None = None,
                allow_statuses: Collection[int] = ()) -> requests.Response:
        """One request with retries; the response when its status is below 400 or in
        ``allow_statuses``; else :class:`DriverError` (secret-free, naming ``what`` when given).

        ``idempotent`` (default: by method, see :data:`IDEMPOTENT_METHODS`) says whether the
        request may be repeated after it reached the server; one that may not is never repeated
        after a 5xx, a read timeout or a dropped connection: :class:`OutcomeUnknownError` says
        it may have taken effect."""
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        call = _Call(self, origin_of(url), what)
        prepared = self._session.prepare_request(requests.Request(
            method, url, params=params or {}, json=json_body, data=data,
            headers=dict(headers or {})))
        prepared.osiris_retry = self.policy.retry(method, idempotent, call)  # type: ignore[attr-defined]
        settings = self._session.merge_environment_settings(prepared.url, {}, None, None, None)
        self.requests_made += 1
        try:
            resp = self._session.send(prepared, timeout=self.timeout, allow_redirects=True,
                                      **settings)
        except requests.exceptions.RequestException as exc:
            raise self._failed(exc, method, url, idempotent, call) from None
        status = resp.status_code
        if status < 400 or status in allow_statuses:
            return resp
        raise self._refused(resp, method, url, idempotent, call)

    def decode_json(self, resp: requests.Response, url: str) -> Any:
        """The JSON body of an answer (the page ``json_answers`` counts). A number that Python's
        :mod:`json` would make another value (a float a double does not hold, ``1e400``,
        ``NaN``: see :mod:`osiris_dagster.drivers.json_numbers`), an object that writes a key
        twice (Python keeps the last value) or an integer of more digits than Python converts
        fails, naming where it is."""
        try:
            body = loads_unique_keys(resp.content)
        except RepeatedKeyError as exc:
            raise self.error(
                f"{self.service}: page {self.json_answers + 1} from {display_url(url)} holds "
                f"{exc.describe()}; only one of its values could be kept. A value from the "
                "API is stored exactly or the step fails: have the API send each key once."
            ) from None
        except ValueError as exc:
            if "integer string conversion" in str(exc):  # Python's int_max_str_digits
                raise self.error(
                    f"{self.service}: page {self.json_answers + 1} from {display_url(url)} "
                    f"holds an integer of more than {sys.get_int_max_str_digits()} digits, "
                    "more than Python converts. A value from the API is stored exactly or the "
                    "step fails: have the API send it as text, or leave it out.") from None
            ctype = resp.headers.get("Content-Type", "?")
            snippet = self.redact.shortened(  # masked before cut: a secret across the cut
                resp.content[:120 + _CUT_SLACK].decode("utf-8", "replace"), 120)
            raise self.error(
                f"{self.service}: the response from {display_url(url)} is not valid JSON "
                f"(HTTP {resp.status_code}, Content-Type {ctype}, starts with {snippet!r}). "
                f"Check {self.check_hint}: it must be the API's URL, not a web page or "
                "proxy.") from None
        self.json_answers += 1
        changed = first_changed_number(resp.content, python_json=True)
        if changed is not None:
            raise self.error(
                f"{self.service}: page {self.json_answers} from {display_url(url)} holds "
                f"{changed.describe()}. A value from the API is stored exactly or the step "
                "fails: have the API send it as text, or leave it out.")
        return body

    # -- errors
    def _lead(self, call: _Call) -> str:
        return f"{self.service}: {call.what}: " if call.what else f"{self.service}: "

    def _failed(self, exc: BaseException, method: str, url: str, idempotent: bool,
                call: _Call) -> DriverError:
        """The request got no answer (after the retries urllib3 was allowed)."""
        kind, failure = failure_reason(exc, self.timeout)
        where, lead, attempts = call.where, self._lead(call), _attempts(call.retries + 1)
        handshake = kind == "ssl" and failure != "handshake failed"  # before anything was sent
        if not idempotent and not handshake and not nothing_was_sent(exc):
            return self._unknown(method, url, failure, call)
        if kind == "timeout":
            return self.error(
                f"{lead}{failure} from {where} ({attempts}). Check that {where} is reachable "
                "and healthy, or raise `timeout`.")
        if kind == "ssl":
            return self.error(
                f"{lead}TLS/SSL error talking to {where} ({failure}). Check the certificate; "
                "for a self-signed certificate set `validate_ssl: false` where the component "
                "supports it.")
        if kind == "connect":
            return self.error(
                f"{lead}cannot connect to {where} ({failure}; {attempts}). Check "
                f"{self.check_hint}, that the host is up, and your network/proxy settings.")
        if kind == "dropped":
            return self.error(
                f"{lead}the connection to {where} failed ({failure}; {attempts}). Check "
                f"{self.check_hint} and that {where} is healthy; try again later.")
        return self.error(f"{lead}request to {display_url(url)} failed ({failure}). Check "
                          f"{self.check_hint}.")

    def _refused(self, resp: requests.Response, method: str, url: str, idempotent: bool,
                 call: _Call) -> DriverError:
        """The final answer is an error status (urllib3 retried what it was allowed to)."""
        status = resp.status_code
        where, lead, attempts = call.where, self._lead(call), _attempts(call.retries + 1)
        failure, detail = status_text(status, resp.reason), self._detail(resp)
        if status in (401, 403):
            hint = self.status_hints.get(status, self.auth_hint)
            return self.error(f"{lead}authentication failed at {where} ({failure}){detail}. "
                              f"Check {hint}.")
        if status in self.policy.retry_statuses:
            if status != RATE_LIMITED and not idempotent:
                return self._unknown(method, url, f"{failure}{detail}", call)
            wait = parse_retry_after(resp.headers.get("Retry-After"))
            if wait is not None and wait > self.policy.max_retry_after:
                return self.error(
                    f"{lead}{where} answered {failure} and asks to wait {wait:.0f} s "
                    f"(Retry-After), longer than the {self.policy.max_retry_after:g} s this step "
                    f"waits. Try again later, or {self.rate_hint}.")
            if status == RATE_LIMITED:
                return self.error(f"{lead}rate limit at {where}: {failure} ({attempts}){detail}. "
                                  f"Wait and try again later, or {self.rate_hint}.")
            return self.error(f"{lead}server error at {where}: {failure} ({attempts}){detail}. "
                              "The service is failing; try again later.")
        head = f"{lead}{failure} from {display_url(url)}{detail}"
        if status in self.status_hints:
            return self.error(f"{head}. {_sentence(self.status_hints[status])}.")
        if status == 404:
            return self.error(f"{head}. Check {self.check_hint}.")
        if 400 <= status < 500:
            return self.error(f"{head}. Check the step's configuration.")
        return self.error(f"{head}. The service is failing; try again later.")

    def _unknown(self, method: str, url: str, failure: str, call: _Call
                 ) -> OutcomeUnknownError:
        """A request that changes data reached the server and failed: say it may have taken
        effect, and that it was not repeated (a second attempt could apply it twice)."""
        return OutcomeUnknownError(self.redact(
            f"{self._lead(call)}{method} {display_url(url)} was sent, then failed: {failure}. "
            "It may have taken effect on the server, so it was not sent again (a second "
            "attempt could apply it twice). Check the data on the service before running the "
            "step again."), reason=self.redact(failure))

    def _detail(self, resp: requests.Response) -> str:
        # masked before it is cut: a secret across the cut would show its first characters
        text = self.redact.shortened(error_detail(resp, DETAIL_LIMIT + _CUT_SLACK), DETAIL_LIMIT)
        return f": {text}" if text else ""


DETAIL_LIMIT = 300  # characters of an error answer shown in a message
_CUT_SLACK = 4096  # read past the limit, so that a secret across it is masked whole


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def error_detail(resp: requests.Response, limit: int = DETAIL_LIMIT) -> str:
    """A short explanation from an error response: GraphQL ``errors`` messages; PostgREST's
    ``code; message; details; hint``; the ``detail`` / ``error`` / ``message`` field of another
    JSON body; or the start of a text body."""
    try:
        body = json.loads(resp.content)
    except ValueError:
        text = " ".join(resp.content[:limit].decode("utf-8", "replace").split())
        ctype = resp.headers.get("Content-Type", "")
        if not text or "html" in ctype.lower() or text.lstrip().startswith("<"):
            return ""
        return text[:limit]
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return graphql_messages(errors)[:limit]
        if isinstance(body.get("message"), str) and \
                any(body.get(k) for k in ("code", "details", "hint")):  # PostgREST
            parts = [str(body[k]) for k in ("code", "message", "details", "hint") if body.get(k)]
            return "; ".join(parts)[:limit]
        for key in ("detail", "error", "message", "error_description"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()[:limit]
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return value["message"][:limit]
    return ""


def graphql_messages(errors: Sequence[Any]) -> str:
    """GraphQL ``errors`` as ``message (at path a.b)`` texts joined with '; '."""
    out = []
    for err in errors[:10]:
        if isinstance(err, dict):
            msg = str(err.get("message") or err)
            path = err.get("path")
            if isinstance(path, list) and path:
                msg += f" (at {'.'.join(str(p) for p in path)})"
        else:
            msg = str(err)
        out.append(msg)
    if len(errors) > 10:
        out.append(f"... and {len(errors) - 10} more")
    return "; ".join(out)
