"""The options of a ``posthog.extractor`` step (:class:`Options`), from the step's config and
its ``@posthog`` connection, and the HTTP retry policy they tune.

* **Connection.** ``api_key`` and ``project_id`` come from the ``@posthog.<alias>`` connection
  (the default alias when the step names none). ``region`` (``us`` ->
  https://us.posthog.com, ``eu`` -> https://eu.posthog.com, ``self_hosted`` ->
  ``custom_base_url``) and ``custom_base_url`` come from the step if set there, else from the
  connection (Osiris ignores the step's values); with no ``region`` anywhere, a
  ``custom_base_url`` means self-hosted, else ``us``. Optional connection fields ``timeout``
  (seconds, default 30) and ``max_retries`` (default 5) tune the HTTP client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.http import client as hc
from osiris_dagster.drivers.posthog.data_types import DATA_TYPES, KINDS
from osiris_dagster.drivers.posthog.hogql import parse_time

BASE_URLS = {"us": "https://us.posthog.com", "eu": "https://eu.posthog.com"}
TIMEOUT = 30.0
RETRY_POLICY = hc.RetryPolicy(max_retries=5, base_delay=1.0, max_delay=16.0,
                              max_retry_after=120.0, retry_timeouts=False,
                              retry_connection_errors=True)


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


def retry_policy(max_retries: int) -> hc.RetryPolicy:
    """:data:`RETRY_POLICY` with the connection's ``max_retries``."""
    return RETRY_POLICY.with_retries(max_retries)
