"""Masking of secrets by field name and by value, for everything we print or persist."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "***MASKED***"

# Lower-case key names that always hold secrets (the compiler's set plus the redactor's).
SECRET_KEY_NAMES = frozenset(
    {
        "password", "passwd", "pwd", "token", "secret", "secret_key", "service_key",
        "service_role_key", "api_key", "apikey", "access_token", "refresh_token", "auth_token",
        "bearer_token", "client_secret", "client_key", "key", "dsn", "connection_string",
        "anon_key", "pg_dsn", "sql_dsn", "pg_password", "authorization", "private_key",
        "auth_username", "headers",
    }
)
_SECRET_PARTS = ("password", "passwd", "secret", "token", "api_key", "apikey", "dsn",
                 "private_key", "authorization", "credential")
NOT_SECRET = frozenset({"primary_key", "upsert_keys", "url"})

# user:password@host inside URLs / DSNs
# Bounded, anchored quantifiers: these run over every message and log line, some megabytes long.
_URL_PASSWORD = re.compile(r"(?P<pre>(?<![A-Za-z0-9+.-])[a-zA-Z][a-zA-Z0-9+.-]{0,30}://"
                           r"[^:/@\s]{0,256}:)(?P<pw>[^@\s/]{1,1024})(?=@)")
_KV_PASSWORD = re.compile(r"(?i)\b(password|pwd|token|api_key|apikey|secret)=([^\s&;]{1,1024})")


def is_secret_key(key: str) -> bool:
    k = key.lower()
    if k in NOT_SECRET:
        return False
    return k in SECRET_KEY_NAMES or any(part in k for part in _SECRET_PARTS)


class Masker:
    """Replaces known secret values (and secret-named fields) wherever they would be shown."""

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self.add(secret_values)

    def add(self, values: Iterable[str]) -> None:
        for v in values:
            if isinstance(v, str) and len(v) >= 4:
                self._values.add(v)

    def add_from_connection(self, connection: dict[str, Any]) -> None:
        """Register every secret-named field of a resolved connection as a secret value."""
        for key, value in connection.items():
            if isinstance(value, dict):
                self.add_from_connection(value)
                continue
            if isinstance(value, int | float) and not isinstance(value, bool) and \
                    is_secret_key(key):
                value = str(value)
            if not isinstance(value, str):
                continue
            if is_secret_key(key):
                self.add([value])
            self.add(m.group("pw") for m in _URL_PASSWORD.finditer(value))

    def text(self, s: str) -> str:
        for v in sorted(self._values, key=len, reverse=True):
            if v in s:
                s = s.replace(v, MASK)
        s = _URL_PASSWORD.sub(lambda m: m.group("pre") + MASK, s)
        return _KV_PASSWORD.sub(lambda m: f"{m.group(1)}={MASK}", s)

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
