"""Shared pieces of the HTTP API extractors (``posthog.extractor``, ``graphql.extractor``).

* :class:`ApiClient`: a ``requests`` session that retries 429 and 5xx answers (and, if asked,
  timeouts and refused connections) with capped exponential backoff and jitter, honouring
  ``Retry-After`` up to a bound. Only requests that are safe to repeat are repeated once they
  were sent: an idempotent request (GET/HEAD/PUT/DELETE, or a POST the caller declares
  idempotent, such as a read-only query) after a 5xx, a read timeout or a dropped connection; any
  request after a 429 (rejected unprocessed) or a failure before a byte was sent
  (:func:`nothing_was_sent`). Anything else fails with :class:`OutcomeUnknownError`: it may have
  taken effect. Every error names the service, the host and what to check, and
  never contains a secret: the client knows the secrets it sends and masks them (with the one
  :class:`~osiris_dagster.masking.Masker`) out of every message (also out of response bodies
  quoted in errors); URLs are shown without user info and
  query string.
* :func:`find_path` / :func:`rows_at`: a JSONPath-like lookup of dotted paths (``data.users``,
  ``$.data.users.edges[*].node``, ``items[0]``; a name step applied to a list applies to each
  element).
* :func:`flatten_record` / :func:`to_scalar`: nested objects -> dotted column names (as pandas'
  ``json_normalize`` does), lists and other nested values JSON-encoded.
* :class:`JsonStager`: rows are appended page by page to a newline-delimited JSON file in the
  session's ``tmp`` directory while their columns and value kinds are tracked, so memory stays
  flat however many pages arrive and columns first seen on a late page are kept. At the end one
  ``read_ndjson`` with an explicit schema (the union of all columns, in first-seen order) builds
  the step's table; types come from every value, not from a sample: only booleans -> BOOLEAN,
  only integers -> BIGINT, integers and floats -> DOUBLE, anything else (text, mixed kinds) ->
  VARCHAR. Text is never re-typed (an ISO timestamp stays VARCHAR: cast it downstream), so a
  column's type does not change from run to run with the data. Column names are unique ignoring
  case (DuckDB identifiers are case-insensitive): a later ``Name`` next to ``name`` becomes
  ``Name.1``. With no row and no known column the table has one VARCHAR column ``_empty``.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from ..errors import DriverError, OutcomeUnknownError
from ..masking import Masker
from ..naming import quote_ident, quote_literal

EMPTY_COLUMN = "_empty"
_INT64 = (-(2**63), 2**63 - 1)
_DEFAULT_MAX_OBJECT = 16 * 1024 * 1024  # DuckDB's default maximum_object_size


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


# -- HTTP -----------------------------------------------------------------------------------------
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def nothing_was_sent(exc: BaseException) -> bool:
    """True when a ``requests`` failure happened before any byte of the request left this
    machine (connection refused, connect timeout, host name not resolved): repeating such a
    request cannot apply it twice. A read timeout or a connection dropped after sending is
    different: the server may have carried the request out, only its answer was lost."""
    from urllib3.exceptions import ConnectTimeoutError  # NewConnectionError is a subclass

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        cur = todo.pop()
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ConnectTimeoutError):
            return True
        todo += [*cur.args, getattr(cur, "reason", None), cur.__cause__, cur.__context__]
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of transient failures: ``max_retries`` after the first attempt, exponential
    backoff from ``base_delay`` capped at ``max_delay`` with jitter (50-100% of the step), and
    ``Retry-After`` honoured when it is at most ``max_retry_after`` seconds (a longer wait is an
    error: we would only be rate-limited again)."""

    max_retries: int = 3
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    retry_timeouts: bool = True
    retry_connection_errors: bool = True

    def backoff(self, retry: int) -> float:
        step = min(self.max_delay, self.base_delay * (2 ** retry))
        return step * random.uniform(0.5, 1.0)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


@dataclass
class ApiClient:
    """JSON over HTTP with retries and secret-free errors.

    ``service`` names the API in messages ("PostHog", "GraphQL endpoint"); ``auth_hint`` says
    what to check when the server rejects the credentials; ``check_hint`` what to check when the
    host cannot be reached.
    """

    service: str
    headers: Mapping[str, str]
    timeout: float
    policy: RetryPolicy
    verify: bool = True
    secrets: Iterable[Any] = ()
    auth_hint: str = "the credentials"
    check_hint: str = "the URL"
    on_retry: Callable[[dict[str, Any]], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    requests_made: int = 0
    redact: Masker = field(init=False)
    _session: requests.Session = field(init=False)

    def __post_init__(self) -> None:
        self.redact = Masker(self.secrets)
        self._session = requests.Session()
        self._session.verify = self.verify
        self._session.headers.update(self.headers)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def error(self, message: str) -> DriverError:
        return DriverError(self.redact(message))

    # -- the request loop
    def request_json(self, method: str, url: str, json_body: Any = None, *,
                     idempotent: bool | None = None) -> Any:
        """The decoded JSON body of a 2xx answer; retries transient failures; raises
        DriverError (secret-free) for everything else.

        ``idempotent`` (default: by method, see :data:`IDEMPOTENT_METHODS`) says whether the
        request may be repeated after it reached the server (a read-only POST query may);
        a request that may not is never repeated after a 5xx, a read timeout or a dropped
        connection: :class:`OutcomeUnknownError` says it may have taken effect."""
        if idempotent is None:
            idempotent = method.upper() in IDEMPOTENT_METHODS
        where = origin_of(url)
        retries = 0
        while True:
            failure: str
            wait: float | None = None
            try:
                self.requests_made += 1
                resp = self._session.request(method, url, json=json_body, timeout=self.timeout)
            except requests.exceptions.Timeout as exc:
                failure = f"no response within {self.timeout:g} s"
                if not (idempotent or nothing_was_sent(exc)):
                    raise self._unknown(method, url, failure) from None
                if not self.policy.retry_timeouts or retries >= self.policy.max_retries:
                    raise self.error(
                        f"{self.service}: {failure} from {where} "
                        f"({_attempts(retries + 1)}). Check that {where} is reachable and "
                        "healthy, or raise `timeout`.") from None
            except requests.exceptions.SSLError as exc:
                raise self.error(
                    f"{self.service}: TLS/SSL error talking to {where} ({_ssl_reason(exc)}). "
                    "Check the certificate; for a self-signed certificate set "
                    "`validate_ssl: false` where the component supports it.") from None
            except requests.exceptions.ConnectionError as exc:
                failure = _connection_reason(exc)
                if not (idempotent or nothing_was_sent(exc)):
                    raise self._unknown(method, url, failure) from None
                if not self.policy.retry_connection_errors or \
                        retries >= self.policy.max_retries:
                    raise self.error(
                        f"{self.service}: cannot connect to {where} ({failure}; "
                        f"{_attempts(retries + 1)}). Check {self.check_hint}, that the host is "
                        "up, and your network/proxy settings.") from None
            except requests.exceptions.RequestException as exc:
                raise self.error(f"{self.service}: request to {display_url(url)} failed "
                                 f"({type(exc).__name__}). Check {self.check_hint}.") from None
            else:
                status = resp.status_code
                if 200 <= status < 300:
                    return self._decode(resp, url)
                if status in (401, 403):
                    raise self.error(
                        f"{self.service}: authentication failed at {where} ("
                        f"{_status_text(resp)}){self._detail(resp)}. Check {self.auth_hint}.")
                if status not in self.policy.retry_statuses:
                    raise self.error(self._status_message(resp, url))
                if status != 429 and not idempotent:  # 429: rejected before it was processed
                    raise self._unknown(method, url, f"{_status_text(resp)}{self._detail(resp)}")
                failure = _status_text(resp)
                wait = parse_retry_after(resp.headers.get("Retry-After"))
                if retries >= self.policy.max_retries:
                    what = "rate limit" if status == 429 else "server error"
                    raise self.error(
                        f"{self.service}: {what} at {where}: {failure} "
                        f"({_attempts(retries + 1)}){self._detail(resp)}. "
                        + ("Wait and try again later, or lower the request rate."
                           if status == 429 else "The service is failing; try again later."))
                if wait is not None and wait > self.policy.max_retry_after:
                    raise self.error(
                        f"{self.service}: {where} answered {failure} and asks to wait "
                        f"{wait:.0f} s (Retry-After), longer than the "
                        f"{self.policy.max_retry_after:g} s this step waits. Try again later.")
            delay = self.policy.backoff(retries)
            if wait is not None:
                delay = max(delay, wait)
            retries += 1
            if self.on_retry is not None:
                self.on_retry({"host": where, "reason": failure, "retry": retries,
                               "delay_s": round(delay, 3)})
            self.sleep(delay)

    def _unknown(self, method: str, url: str, failure: str) -> OutcomeUnknownError:
        """A request that changes data reached the server and failed: say it may have taken
        effect, and that it was not repeated (a second attempt could apply it twice)."""
        return OutcomeUnknownError(self.redact(
            f"{self.service}: {method.upper()} {display_url(url)} was sent, then failed: "
            f"{failure}. It may have taken effect on the server, so it was not sent again (a "
            "second attempt could apply it twice). Check the data on the service before "
            "running the step again."), reason=self.redact(failure))

    def _decode(self, resp: requests.Response, url: str) -> Any:
        try:
            return json.loads(resp.content)
        except ValueError:
            ctype = resp.headers.get("Content-Type", "?")
            snippet = resp.content[:120].decode("utf-8", "replace")
            raise self.error(
                f"{self.service}: the response from {display_url(url)} is not valid JSON "
                f"(HTTP {resp.status_code}, Content-Type {ctype}, starts with {snippet!r}). "
                f"Check {self.check_hint}: it must be the API's URL, not a web page or "
                "proxy.") from None

    def _detail(self, resp: requests.Response) -> str:
        text = error_detail(resp)
        return f": {text}" if text else ""

    def _status_message(self, resp: requests.Response, url: str) -> str:
        status = resp.status_code
        head = f"{self.service}: {_status_text(resp)}"
        head += f" from {display_url(url)}{self._detail(resp)}"
        if status == 404:
            return head + f". Check {self.check_hint}."
        if 400 <= status < 500:
            return head + ". Check the step's configuration."
        return head + ". The service is failing; try again later."


def _status_text(resp: requests.Response) -> str:
    return f"HTTP {resp.status_code} {resp.reason or ''}".rstrip()


def _attempts(n: int) -> str:
    return "1 attempt" if n == 1 else f"{n} attempts"


def _connection_reason(exc: BaseException) -> str:
    text = repr(exc)
    if "Connection refused" in text or "ConnectionRefused" in text:
        return "connection refused"
    if "Name or service not known" in text or "NameResolution" in text or \
            "getaddrinfo" in text or "nodename nor servname" in text:
        return "host name not found"
    if "RemoteDisconnected" in text or "Connection aborted" in text or "reset" in text:
        return "connection closed by the server"
    if "ProxyError" in type(exc).__name__:
        return "proxy error"
    return "connection failed"


def _ssl_reason(exc: BaseException) -> str:
    text = repr(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "certificate verification failed"
    if "WRONG_VERSION_NUMBER" in text:
        return "the server does not speak TLS on this port"
    return "handshake failed"


def error_detail(resp: requests.Response, limit: int = 300) -> str:
    """A short explanation from an error response: GraphQL ``errors`` messages, or the
    ``detail`` / ``error`` / ``message`` field of a JSON body, or the start of a text body."""
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


# -- paths ----------------------------------------------------------------------------------------
_TOKEN = re.compile(r"\[(\*|-?\d+)\]|\[(?:'([^']*)'|\"([^\"]*)\")\]|\.?([^.\[\]]+)")


def parse_path(path: str) -> list[str | int]:
    """``$.a.b[*].c[0]`` -> ``['a', 'b', '*', 'c', 0]``; ``*`` is a wildcard step."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    text = text.lstrip(".")
    tokens: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise DriverError(f"cannot parse the path {path!r} at {text[pos:]!r}; use dotted "
                              "names with optional [*] or [n] steps, e.g. data.users.edges[*].node")
        index, q1, q2, name = m.groups()
        if index is not None:
            tokens.append("*" if index == "*" else int(index))
        elif q1 is not None or q2 is not None:
            tokens.append(q1 if q1 is not None else q2)  # type: ignore[arg-type]
        else:
            tokens.append(name)
        pos = m.end()
    return tokens


def find_path(obj: Any, path: str) -> list[Any]:
    """Every value at ``path`` (JSONPath-like; an empty path or ``$`` is the object itself).
    A name step on a list applies to each element, as if written ``[*].name``."""
    current = [obj]
    for token in parse_path(path):
        nxt: list[Any] = []
        for value in current:
            _step(value, token, nxt)
        current = nxt
        if not current:
            break
    return current


def _step(value: Any, token: str | int, out: list[Any]) -> None:
    if token == "*":
        if isinstance(value, list):
            out.extend(value)
        elif isinstance(value, dict):
            out.extend(value.values())
    elif isinstance(token, int):
        if isinstance(value, list) and -len(value) <= token < len(value):
            out.append(value[token])
    elif isinstance(value, dict):
        if token in value:
            out.append(value[token])
    elif isinstance(value, list):
        for item in value:
            _step(item, token, out)


def first_at(obj: Any, path: str) -> Any:
    found = find_path(obj, path)
    return found[0] if found else None


def rows_at(obj: Any, path: str) -> list[Any]:
    """The records at ``path``: a list match gives its elements, several matches are
    concatenated (lists extended), ``null`` and no match give no rows."""
    rows: list[Any] = []
    for match in find_path(obj, path):
        if match is None:
            continue
        if isinstance(match, list):
            rows.extend(m for m in match if m is not None)
        else:
            rows.append(match)
    return rows


# -- flattening -----------------------------------------------------------------------------------
def to_json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def to_scalar(value: Any) -> Any:
    """A value for one column: scalars as they are, nested values JSON-encoded."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return to_json_text(value)


def flatten_record(record: Any, sep: str = ".") -> dict[str, Any]:
    """Nested objects -> ``parent.child`` keys (pandas ``json_normalize``); lists JSON-encoded;
    empty nested objects produce no column. A non-object record becomes ``{"value": record}``."""
    if not isinstance(record, dict):
        return {"value": to_scalar(record)}
    out: dict[str, Any] = {}
    _flatten_into(record, "", sep, out)
    return out


def _flatten_into(obj: Mapping[str, Any], prefix: str, sep: str, out: dict[str, Any]) -> None:
    for key, value in obj.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, dict):
            _flatten_into(value, name, sep, out)
        else:
            out[name] = to_scalar(value)


def shallow_record(record: Any) -> dict[str, Any]:
    """Top-level keys only; nested values JSON-encoded (``flatten_result: false``)."""
    if not isinstance(record, dict):
        return {"value": to_scalar(record)}
    return {str(k): to_scalar(v) for k, v in record.items()}


# -- staging --------------------------------------------------------------------------------------
_KIND_TYPES = {
    frozenset({"bool"}): "BOOLEAN",
    frozenset({"int"}): "BIGINT",
    frozenset({"float"}): "DOUBLE",
    frozenset({"int", "float"}): "DOUBLE",
}


@dataclass
class _Column:
    name: str  # the DuckDB column (unique ignoring case)
    kinds: set[str] = field(default_factory=set)
    declared: str | None = None  # type when no value was seen


class JsonStager:
    """Streams records to an NDJSON file; builds the step's table from it in one read."""

    def __init__(self, tmp_dir: Path, label: str) -> None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^0-9A-Za-z_-]", "_", label) or "stage"
        self.path = tmp_dir / f"{safe}-{uuid.uuid4().hex[:12]}.ndjson"
        self._fh: Any = None
        self._columns: dict[str, _Column] = {}  # source key -> column
        self._used: set[str] = set()  # lower-cased column names
        self.rows = 0
        self._max_line = 0
        self.renamed: dict[str, str] = {}

    # -- columns
    def declare(self, key: str, duckdb_type: str = "VARCHAR") -> None:
        """A column the table has even when no row carries it (e.g. the fixed event fields)."""
        self._column(key).declared = duckdb_type

    def _column(self, key: str) -> _Column:
        col = self._columns.get(key)
        if col is None:
            name = key if key else "unnamed"
            base, n = name, 0
            while name.lower() in self._used:
                n += 1
                name = f"{base}.{n}"
            if name != key:
                self.renamed[key] = name
            self._used.add(name.lower())
            col = self._columns[key] = _Column(name)
        return col

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self._columns.values()]

    # -- rows
    def add(self, record: Mapping[str, Any]) -> None:
        """Append one flat record (values: None, bool, int, float, str)."""
        line: dict[str, Any] = {}
        for key, value in record.items():
            col = self._column(str(key))
            if value is None:
                continue
            if isinstance(value, bool):
                col.kinds.add("bool")
            elif isinstance(value, int):
                if _INT64[0] <= value <= _INT64[1]:
                    col.kinds.add("int")
                else:
                    value = str(value)
                    col.kinds.add("str")
            elif isinstance(value, float):
                if math.isnan(value) or math.isinf(value):
                    continue
                col.kinds.add("float")
            elif isinstance(value, str):
                col.kinds.add("str")
            else:
                value = to_json_text(value)
                col.kinds.add("str")
            line[col.name] = value
        text = json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"
        if self._fh is None:
            self._fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._fh.write(text)
        self._max_line = max(self._max_line, len(text.encode("utf-8")))
        self.rows += 1

    def add_many(self, records: Iterable[Mapping[str, Any]]) -> int:
        n = 0
        for r in records:
            self.add(r)
            n += 1
        return n

    # -- the table
    def column_types(self) -> dict[str, str]:
        out = {}
        for col in self._columns.values():
            if col.kinds:
                out[col.name] = _KIND_TYPES.get(frozenset(col.kinds), "VARCHAR")
            else:
                out[col.name] = col.declared or "VARCHAR"
        return out

    def select_sql(self) -> str:
        """The SELECT that materialises everything staged (call after the last ``add``)."""
        self._flush()
        types = self.column_types()
        if not types:
            return f"SELECT CAST(NULL AS VARCHAR) AS {quote_ident(EMPTY_COLUMN)} LIMIT 0"
        if self.rows == 0:
            cols = ", ".join(f"CAST(NULL AS {t}) AS {quote_ident(n)}" for n, t in types.items())
            return f"SELECT {cols} LIMIT 0"
        spec = ", ".join(f"{quote_literal(n)}: {quote_literal(t)}" for n, t in types.items())
        select = ", ".join(quote_ident(n) for n in types)
        size = max(_DEFAULT_MAX_OBJECT, self._max_line + 1024)
        return (f"SELECT {select} FROM read_ndjson({quote_literal(str(self.path))}, "
                f"columns={{{spec}}}, auto_detect=false, maximum_object_size={size})")

    def _flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        """Close and delete the staging file (safe to call more than once)."""
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> JsonStager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- state files ----------------------------------------------------------------------------------
def read_json_file(path: Path) -> Any:
    """The JSON in ``path``, or None when it does not exist or cannot be parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
