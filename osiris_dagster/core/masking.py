"""Masking of secrets by field name and by value, for everything we print or persist.

This is the one place that decides what is a secret: :data:`SECRET_NAMES` (and
:func:`is_secret_key`) is the single list of secret-looking names, used to mask logs, events,
artifacts, manifests, error messages, Dagster metadata and CLI output (:class:`Masker`), to tell
drivers which connection fields to hide (:func:`secret_values`), and by the OML validator to
reject literal credentials in a pipeline. A name added here is masked, registered and validated
everywhere at once (and the leak scans in the tests plant a secret under it automatically).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

MASK = "***MASKED***"

# Lower-case key names that always hold secrets: the union of the lists the masker, the OML
# validator (the compiler's inline-secret set and the specs' `secrets`) and the Supabase channel
# builder kept separately before.
SECRET_NAMES = frozenset(
    {
        "password", "passwd", "pwd", "pg_password",
        "token", "access_token", "refresh_token", "auth_token", "bearer_token",
        "secret", "secret_key", "client_secret", "client_key", "private_key",
        "key", "api_key", "apikey", "service_key", "service_role_key", "anon_key",
        "dsn", "pg_dsn", "sql_dsn", "connection_string",
        "authorization", "auth_username", "headers",
    }
)
# Any key containing one of these is a secret too (`mysql_password`, `x_api_key`, ...).
SECRET_NAME_PARTS = ("password", "passwd", "secret", "token", "api_key", "apikey", "dsn",
                     "private_key", "authorization", "credential")
# Configuration that only looks secret-ish: never masked, never rejected as an inline secret.
NOT_SECRET = frozenset({"primary_key", "upsert_keys", "url"})
# HTTP header names are freer (`X-Auth-User`, `Cookie`, `X-Custom-Key`): these parts also count.
_HEADER_PARTS = ("auth", "key", "cookie")

# user:password@host inside URLs / DSNs
# Bounded, anchored quantifiers: these run over every message and log line, some megabytes long.
_URL_PASSWORD = re.compile(r"(?P<pre>(?<![A-Za-z0-9+.-])[a-zA-Z][a-zA-Z0-9+.-]{0,30}://"
                           r"[^:/@\s]{0,256}:)(?P<pw>[^@\s/]{1,1024})(?=@)")
# name=value (DSN keywords, query strings, command lines); masked when the name is secret.
_KV = re.compile(r"(?<![A-Za-z0-9_])(?P<name>[A-Za-z][A-Za-z0-9_]{0,63})="
                 r"(?P<value>[^\s&;]{1,1024})")


def is_secret_key(key: str) -> bool:
    """Whether a field / option / parameter of this name holds a secret (case-insensitive)."""
    k = key.lower()
    if k in NOT_SECRET:
        return False
    return k in SECRET_NAMES or any(part in k for part in SECRET_NAME_PARTS)


def is_secret_header(name: str) -> bool:
    """Whether an HTTP header of this name carries a credential."""
    low = name.lower()
    return is_secret_key(low.replace("-", "_")) or any(p in low for p in _HEADER_PARTS)


def secret_values(values: Mapping[str, Any]) -> list[str]:
    """The values of the secret-named fields of a (resolved) connection or config, nested
    mappings included; what a driver hands to :class:`Masker` for its own messages."""
    out: list[str] = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            if is_secret_key(str(key)):
                out += [str(v) for v in value.values() if _maskable(v)]
            out += secret_values(value)
        elif is_secret_key(str(key)) and _maskable(value):
            out.append(str(value))
    return out


def _credential_like(value: str) -> bool:
    """A token, signature or key rather than a word, number or date (see
    :meth:`Masker._add_url_queries`)."""
    return len(value) >= 12 and sum(c.isalpha() for c in value) >= 4 and \
        any(c.isdigit() for c in value)  # (2024-01-01T00:00:00Z has two letters)


def _maskable(value: Any) -> bool:
    """Strings and numbers (123456 is a password too) of 4+ characters; shorter values would
    blank out ordinary text."""
    return isinstance(value, str | int | float) and not isinstance(value, bool) and \
        len(str(value)) >= 4


class Masker:
    """Replaces known secret values (and secret-named fields) wherever they would be shown.

    The session's masker learns the secrets of every connection it resolves and of every
    credential a driver registers; drivers build their own for their error texts."""

    def __init__(self, secret_values: Iterable[Any] = ()) -> None:
        self._values: set[str] = set()
        self._forms: list[str] = []  # the values and their encoded forms, longest first
        self._query_names: set[str] = set()  # of a connection URL's query string
        self._query_pairs: re.Pattern[str] | None = None  # `name=value` of those names
        self.add(secret_values)

    def add(self, values: Iterable[Any]) -> None:
        new = {str(v) for v in values if _maskable(v)} - self._values
        if new:
            self._values |= new
            forms = set(self._forms).union(*(encoded_forms(v) | {v} for v in new))
            self._forms = sorted(forms, key=len, reverse=True)

    @property
    def values(self) -> frozenset[str]:
        return frozenset(self._values)

    def add_from_connection(self, connection: Mapping[str, Any]) -> None:
        """Register every secret-named field of a resolved connection (and any password inside
        a URL / DSN field) as a secret value."""
        self.add(secret_values(connection))
        self._add_embedded_passwords(connection)

    def _add_embedded_passwords(self, obj: Any) -> None:
        """Passwords inside strings: ``user:pw@`` of URLs and ``password=pw`` of DSNs, and the
        query values of URLs."""
        for text in _strings(obj):
            self.add(m.group("pw") for m in _URL_PASSWORD.finditer(text))
            self.add(m.group("value").strip("'\"") for m in _KV.finditer(text)
                     if is_secret_key(m.group("name")))
            if "://" in text:
                self._add_url_queries(text)

    def add_url_queries(self, obj: Any) -> None:
        """The query strings of every URL in ``obj`` (a step's config: an `endpoint` given in
        the step rather than its connection), as for a connection's (below)."""
        for text in _strings(obj):
            if "://" in text:
                self._add_url_queries(text)

    def _add_url_queries(self, text: str) -> None:
        """A connection URL's query string carries credentials under any name (``?sig=``,
        ``?code=``), as ``cleaned_config.json`` assumes: ``name=value`` of each of its names is
        masked wherever it shows (a server quoting the URL back), and a value alone is a secret
        when its name is secret-like or it looks like a credential (12+ characters, 4+ letters
        and a digit): ``?format=json`` or ``?since=2024-01-01T00:00:00Z`` must not blank out
        those values."""
        names = set(self._query_names)
        for url in _URL_QUERY.finditer(text):
            for pair in _QUERY_VALUE.finditer(url.group("query")):
                name = unquote_plus(pair.group("pre")[1:-1])
                value = unquote_plus(pair.group(0)[len(pair.group("pre")):])
                if name:
                    names.add(name)
                if is_secret_key(name) or _credential_like(value):
                    self.add([value])
        if names != self._query_names:
            self._query_names = names
            alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
            self._query_pairs = re.compile(rf"(?P<pre>(?<![A-Za-z0-9_.-])(?:{alternatives})=)"
                                           r"(?!\*\*\*MASKED)[^\s&;#\"'<>)]{1,1024}")

    def shortened(self, s: str, limit: int) -> str:
        """``s`` masked, then cut to ``limit`` characters (cut first, a secret across the cut
        would no longer be recognised: its first characters would show)."""
        masked = self.text(s)
        return masked if len(masked) <= limit else masked[:limit]

    def text(self, s: str) -> str:
        for v in self._forms:
            if v in s:
                s = s.replace(v, MASK)
        s = _URL_PASSWORD.sub(lambda m: m.group("pre") + MASK, s)
        if self._query_pairs is not None:
            s = self._query_pairs.sub(lambda m: m.group("pre") + MASK, s)
        return _KV.sub(_mask_kv, s)

    __call__ = text

    def value(self, obj: Any, key: str | None = None) -> Any:
        """Deep copy of obj with secret-named fields and known secret values masked."""
        if key is not None and is_secret_key(key) and obj not in (None, "", {}, []):
            return MASK
        if isinstance(obj, dict):
            return {k: self.value(v, str(k)) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.value(v) for v in obj]
        if isinstance(obj, str):
            return self.text(obj)
        return obj


def _strings(obj: Any) -> Iterator[str]:
    """Every string in ``obj``, through mappings' values and lists."""
    if isinstance(obj, Mapping):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


def encoded_forms(secret: str) -> set[str]:
    """How a secret may come back inside a server's answer or a library's message: URL-encoded
    (a query string, a form; upper- or lower-case hex), JSON-escaped (ASCII or not), as Python's
    repr and SQL string literals quote it, and base64, standard or URL-safe, at each of the
    three offsets it can sit at inside a longer encoded text (``user:secret`` of HTTP Basic
    auth): there only the characters that encode the secret's own bytes are fixed, and those
    are masked when there are at least 8 of them."""
    percent = quote(secret, safe="")
    forms = {percent, re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), percent),
             quote(secret), quote_plus(secret),  # urllib's default keeps '/'
             json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             repr(secret)[1:-1],  # a Python message quoting it (both quote kinds inside)
             secret.replace("'", "''"),  # an SQL literal (DuckDB repeats its query)
             secret.replace("\\", "\\\\").replace("'", "\\'")}  # E'...' and MySQL strings
    raw = secret.encode()
    for offset in range(3):
        start = -(-4 * offset // 3)  # the first character after the offset's bits
        end = 8 * (offset + len(raw)) // 6  # past the last one within the secret's bits
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            core = encode(b"\0" * offset + raw).decode("ascii")[start:end]
            if len(core) >= 8:
                forms.add(core)
    forms.discard(secret)
    return forms


_URL_QUERY = re.compile(r"(?<![A-Za-z0-9+.-])[a-zA-Z][a-zA-Z0-9+.-]{0,30}://[^\s?#]*"
                        r"(?P<query>\?[^\s#]*)")
_QUERY_VALUE = re.compile(r"(?P<pre>[?&;][^=&;#\s]*=)[^&;#\s]+")


def mask_url_queries(value: Any) -> Any:
    """``value`` (a connection's fields) with every value of a URL's query string masked: a
    connection URL carries credentials there under any name (``?sig=``, ``?code=``)."""
    if isinstance(value, Mapping):
        return {k: mask_url_queries(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_url_queries(v) for v in value]
    if isinstance(value, str) and "://" in value:  # a URL anywhere in the text
        return _URL_QUERY.sub(lambda u: u.group(0)[:u.start("query") - u.start()] +
                              _QUERY_VALUE.sub(lambda m: m.group("pre") + MASK,
                                               u.group("query")), value)
    return value


def _mask_kv(m: re.Match[str]) -> str:
    if m.group("value").startswith(MASK) or not is_secret_key(m.group("name")):
        return m.group(0)
    return f"{m.group('name')}={MASK}"


def scrub(text: str, secrets: Iterable[Any]) -> str:
    """``text`` with the given secret values (and URL / key=value secrets) masked."""
    return Masker(secrets).text(text)
