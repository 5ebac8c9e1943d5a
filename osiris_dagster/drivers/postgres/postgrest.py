"""The REST channel of ``supabase.writer`` and ``supabase.extractor``: PostgREST over the shared
:class:`~osiris_dagster.drivers.http.client.HttpClient` (urllib3's ``Retry``; one client for
every HTTP API).

What PostgREST adds to the client: the ``apikey`` + ``Authorization: Bearer`` headers, which
requests may be repeated (:func:`is_idempotent`), the schema headers (:func:`profile_headers`),
``in.(...)`` quoting (:func:`quote_in_value`) and advice for PostgREST's error statuses.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import requests

from osiris_dagster.drivers.base import StepContext
from osiris_dagster.drivers.http import client as hc
from osiris_dagster.drivers.postgres.connection import RestParams

BASE_DELAY = 0.25  # urllib3 backoff_factor: retries after 0, 0.5, 1, 2 ... s (+ jitter)
MAX_DELAY = 60.0  # longest backoff between two attempts
MAX_RETRY_AFTER = 60.0  # a longer Retry-After fails the step instead of waiting

STATUS_HINTS = {
    400: "check the column names and values against the table",
    403: "that the key may use this table (row level security or grants)",
    404: "check `table` and `schema` (the schema must be exposed by the API)",
    409: "a primary key / unique value conflicts (use write_mode upsert or replace)",
    413: "the request is larger than the server takes: lower the step's `batch_size`",
}


def is_idempotent(method: str, params: Any, headers: Mapping[str, str] | None) -> bool:
    """Whether sending this PostgREST request twice leaves the same result as sending it once:
    reads; a DELETE with a filter (the same rows are gone either way); a POST that resolves
    conflicts on named keys (``Prefer: resolution=merge-duplicates`` / ``ignore-duplicates``
    with ``on_conflict``: an upsert). A plain POST (append) is not: it inserts its rows again."""
    method = method.upper()
    if method in ("GET", "HEAD", "OPTIONS"):
        return True
    if method == "DELETE":
        return bool(params)
    if method != "POST":
        return False
    prefer = {p.strip() for p in str(dict(headers or {}).get("Prefer", "")).split(",")}
    keyed = bool(dict(params or {}).get("on_conflict"))
    return keyed and bool(prefer & {"resolution=merge-duplicates",
                                    "resolution=ignore-duplicates"})


def profile_headers(schema: str, write: bool) -> dict[str, str]:
    """PostgREST's schema selection for a non-public ``schema``."""
    if schema == "public":
        return {}
    return {"Content-Profile" if write else "Accept-Profile": schema}


def quote_in_value(value: str) -> str:
    """A value in PostgREST's ``in.(...)`` list: double-quoted, ``"`` and ``\\`` escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class PostgrestClient:
    """PostgREST requests for one step: auth headers, retries only where they cannot write
    twice, messages naming the component, the step and what was being done."""

    def __init__(self, ctx: StepContext, rest: RestParams, *, component: str,
                 timeout: float, retries: int) -> None:
        self.rest = rest
        self.http = hc.HttpClient(
            service=f"{component} step '{ctx.step_id}' (Supabase REST API)",
            headers={"apikey": rest.key, "Authorization": f"Bearer {rest.key}"},
            timeout=timeout,
            policy=hc.RetryPolicy(max_retries=max(0, retries), base_delay=BASE_DELAY,
                                  max_delay=MAX_DELAY, max_retry_after=MAX_RETRY_AFTER),
            secrets=rest.secrets,
            auth_hint="the key (service_role_key / anon_key / key) of the @supabase connection",
            check_hint="`url`/`project_id` of the @supabase connection",
            status_hints=STATUS_HINTS, rate_hint="lower the request rate (batch_size)",
            on_retry=lambda info: ctx.log_event("http_retry", **info))

    def request(self, method: str, url: str, *, what: str, params: Any = None,
                data: bytes | None = None, headers: Mapping[str, str] | None = None,
                allow_statuses: Collection[int] = ()) -> requests.Response:
        """Send one request; repeated only when that cannot apply it twice
        (:func:`is_idempotent`; 429 and failures before sending always). A non-idempotent
        request that reached the server and then failed raises
        :class:`~osiris_dagster.core.errors.OutcomeUnknownError`: it may have been carried out."""
        return self.http.request(method, url, what=what, params=params, data=data,
                                 headers=headers, allow_statuses=allow_statuses,
                                 idempotent=is_idempotent(method, params, headers))

    def close(self) -> None:
        self.http.close()
