"""``graphql.extractor``: POST a GraphQL query (page after page) -> the step's table.

What it does, and where it differs from Osiris' driver:

* **Endpoint and credentials.** ``endpoint`` from the step, else from the ``@graphql.<alias>``
  connection named by the step (``connection`` is optional for this family). The token comes
  from the connection's ``auth_token`` (and ``auth_username`` for basic auth), or from the step's
  ``auth_token`` / ``auth_username`` / ``headers`` written as ``${ENV_VAR}`` references, which
  are substituted here from the environment (plus ``.env`` of the working directory) at run time;
  a literal secret cannot be in a pipeline (validation rejects it). Connection ``headers`` are
  sent first, the step's ``headers`` override them. ``auth_type`` / ``auth_header_name`` may also
  come from the connection when the step leaves them at their defaults. Osiris ignores the
  connection and its compiler strips the step's token, so authenticated GraphQL never worked
  there.
* **Auth.** ``bearer`` -> ``Authorization: Bearer <token>``; ``basic`` -> HTTP basic with
  ``auth_username`` and the token as password; ``api_key`` -> ``<auth_header_name>: <token>``.
* **Pagination** (``pagination_enabled``): the cursor and has-next flag are read from
  ``pagination_path`` in the *same* response (Osiris posts every query twice); the cursor goes
  into ``variables[pagination_variable_name]`` for the next page; ``max_pages`` (0 = no limit)
  bounds the run. A cursor that does not advance is an error (it would loop forever).
* **Data.** ``data_path`` is a dotted path from the response root (``data``,
  ``data.users.edges[*].node``, ``$.data.items``); a list gives one row per element, several
  matches are concatenated, no match gives no rows. ``flatten_result`` turns nested objects into
  dotted columns (``node.name``, as pandas' ``json_normalize``); lists are JSON-encoded text. With
  ``flatten_result: false`` each top-level key is a column and nested values are JSON text. A
  record that is not an object becomes a column ``value``.
* **Errors.** A body with a non-empty ``errors`` list fails the step with the GraphQL messages
  (not retried: a bad query stays bad). HTTP 429/5xx, timeouts and refused connections are
  retried ``max_retries`` times by the shared client (:mod:`osiris_dagster.drivers.http.client`,
  urllib3's ``Retry``):
  the first retry at once, then after 2, 4, 8... x ``retry_delay`` plus up to ``retry_delay`` of
  jitter (capped at 60 s; ``Retry-After`` honoured up to 120 s); a ``mutation`` document only
  after a 429 or a failure before it was sent (once it reached the server it may have been
  applied: never sent twice).
  Other 4xx fail at once; 401/403 say which credentials to check. Messages name the host,
  never the token.
* **Storage.** Each page is appended to a staging NDJSON file as it arrives (memory stays flat);
  the table is built from it at the end with the union of all columns
  (:class:`~osiris_dagster.drivers.staging.json_records.JsonStager`). No rows and no columns ->
  a table with one VARCHAR column ``_empty`` and zero rows.
* Metrics: ``rows_read``, ``requests_made`` (every HTTP attempt, retries included),
  ``pages_fetched``; ``ctx.progress(rows=...)`` after each page.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from osiris_dagster.core.environment import environment, substitute_env
from osiris_dagster.core.errors import DriverError
from osiris_dagster.core.masking import is_secret_header
from osiris_dagster.drivers.base import DriverResult, StepContext, UpstreamTable
from osiris_dagster.drivers.http import client as hc
from osiris_dagster.drivers.http.json_paths import first_at, rows_at
from osiris_dagster.drivers.staging.json_records import (
    JsonStager,
    flatten_record,
    shallow_record,
    to_json_text,
)

USER_AGENT = "osiris-dagster GraphQL extractor"
MAX_RETRY_DELAY = 60.0
_AUTH_TYPES = ("none", "bearer", "basic", "api_key")


@dataclass(frozen=True)
class Options:
    endpoint: str
    query: str
    variables: dict[str, Any]
    headers: dict[str, str]
    auth_type: str
    auth_header_name: str
    token: str | None
    username: str | None
    timeout: float
    max_retries: int
    retry_delay: float
    pagination_enabled: bool
    pagination_path: str
    cursor_field: str
    has_next_field: str
    variable_name: str
    max_pages: int
    data_path: str
    flatten: bool
    validate_ssl: bool
    token_source: str  # what to check when the server rejects the credentials
    secret_headers: tuple[str, ...] = ()  # header values that are credentials

    @classmethod
    def from_config(cls, config: Mapping[str, Any], connection: Mapping[str, Any] | None
                    ) -> Options:
        conn = dict(connection or {})
        env = environment()
        endpoint = _endpoint(config, conn)
        query = str(config.get("query") or "")
        if not query.strip():
            raise DriverError("graphql.extractor: `query` is empty; give the GraphQL query")
        variables = config.get("variables") or {}
        if not isinstance(variables, Mapping):
            raise DriverError("graphql.extractor: `variables` must be a mapping of name -> value")
        auth_type = _step_unless_default("auth_type", "none", config, conn)
        if auth_type not in _AUTH_TYPES:
            raise DriverError(f"graphql.extractor: unknown auth_type {auth_type!r} (use one of "
                              f"{', '.join(_AUTH_TYPES)})")
        header_name = _step_unless_default("auth_header_name", "X-API-Key", config, conn)
        token = _credential("auth_token", config, conn, env)
        if conn.get("auth_token") not in (None, ""):
            source = "`auth_token` of the @graphql connection"
        else:
            source = "the environment variable in the step's `auth_token`"
        username = _credential("auth_username", config, conn, env)
        _check_credentials(auth_type, token, username)
        headers, secret_headers = _extra_headers(config, conn, env)
        return cls(
            endpoint=endpoint, query=query, variables=dict(variables), headers=headers,
            auth_type=auth_type, auth_header_name=header_name, token=token, username=username,
            timeout=float(config.get("timeout") or 30),
            max_retries=int(config.get("max_retries") if config.get("max_retries") is not None
                            else 3),
            retry_delay=float(config.get("retry_delay") or 1.0),
            pagination_enabled=bool(config.get("pagination_enabled", False)),
            pagination_path=str(config.get("pagination_path") or "data.pageInfo"),
            cursor_field=str(config.get("pagination_cursor_field") or "endCursor"),
            has_next_field=str(config.get("pagination_has_next_field") or "hasNextPage"),
            variable_name=str(config.get("pagination_variable_name") or "after"),
            max_pages=int(config.get("max_pages") or 0),
            data_path=str(config.get("data_path") or "data"),
            flatten=bool(config.get("flatten_result", True)),
            validate_ssl=bool(config.get("validate_ssl", True)),
            token_source=source, secret_headers=tuple(secret_headers),
        )

    def request_headers(self) -> tuple[dict[str, str], list[str]]:
        """Headers to send and the credentials among them (registered with the session's
        masker; error texts additionally blank out every custom header value)."""
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": USER_AGENT}
        secrets: list[str] = []
        if self.auth_type == "bearer":
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.auth_type == "basic":
            pair = base64.b64encode(f"{self.username}:{self.token}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {pair}"
            secrets += [pair, str(self.username)]
        elif self.auth_type == "api_key":
            headers[self.auth_header_name] = str(self.token)
        if self.token:
            secrets.append(self.token)
        headers.update(self.headers)
        secrets += list(self.secret_headers)
        return headers, secrets


# -- options --------------------------------------------------------------------------------------
def _endpoint(config: Mapping[str, Any], conn: Mapping[str, Any]) -> str:
    """The step's ``endpoint``, else the connection's; an http(s) URL."""
    endpoint = str(config.get("endpoint") or conn.get("endpoint") or "").strip()
    if not endpoint:
        raise DriverError("graphql.extractor: no `endpoint`: set it in the step or in the "
                          "@graphql connection")
    if urlsplit(endpoint).scheme not in ("http", "https"):
        raise DriverError(f"graphql.extractor: `endpoint` must be an http(s) URL, got "
                          f"{hc.display_url(endpoint)!r}")
    return endpoint


def _step_unless_default(option: str, default: str, config: Mapping[str, Any],
                         conn: Mapping[str, Any]) -> str:
    """The step's ``option``; the connection's when the step leaves it at its default."""
    value = str(config.get(option) or default)
    if value == default and conn.get(option):
        value = str(conn[option])
    return value


def _credential(option: str, config: Mapping[str, Any], conn: Mapping[str, Any],
                env: Mapping[str, str]) -> str | None:
    """``auth_token`` / ``auth_username``: the connection's value, else the step's ``${ENV_VAR}``
    reference resolved, else None."""
    if conn.get(option) not in (None, ""):
        return str(conn[option])
    raw = config.get(option)
    return _env(str(raw), option, env) if raw not in (None, "") else None


def _check_credentials(auth_type: str, token: str | None, username: str | None) -> None:
    if auth_type in ("bearer", "api_key", "basic") and not token:
        raise DriverError(f"graphql.extractor: auth_type '{auth_type}' needs a token: set "
                          "`auth_token` in the @graphql connection, or `auth_token: "
                          "${ENV_VAR}` in the step")
    if auth_type == "basic" and not username:
        raise DriverError("graphql.extractor: auth_type 'basic' needs `auth_username` (in "
                          "the @graphql connection or as ${ENV_VAR} in the step)")


def _extra_headers(config: Mapping[str, Any], conn: Mapping[str, Any], env: Mapping[str, str]
                   ) -> tuple[dict[str, str], list[str]]:
    """The connection's ``headers``, then the step's (``${ENV_VAR}`` resolved) over them; and the
    values among them that are credentials."""
    headers: dict[str, str] = {}
    secret_headers: list[str] = []
    for origin, raw_headers in (("connection", conn.get("headers")),
                                ("step", config.get("headers"))):
        if raw_headers in (None, ""):
            continue
        if not isinstance(raw_headers, Mapping):
            raise DriverError(f"graphql.extractor: `headers` of the {origin} must be a "
                              "mapping of header name -> value")
        for name, raw_value in raw_headers.items():
            if raw_value is None:
                continue
            value = str(raw_value)
            if origin == "step":
                value = _env(value, f"headers.{name}", env)
            headers[str(name)] = value
            # a credential: from the connection, from ${ENV}, or under a secret-ish name
            if origin == "connection" or "${" in str(raw_value) or \
                    is_secret_header(str(name)):
                secret_headers.append(value)
    return headers, secret_headers


def _env(value: str, option: str, env: Mapping[str, str]) -> str:
    """A step option's ``${VAR}`` references resolved (the one substituter, driver errors)."""
    return substitute_env(value, env, option, "of the graphql.extractor step", DriverError)


def run(ctx: StepContext, config: Mapping[str, Any], inputs: Sequence[UpstreamTable]
        ) -> DriverResult:
    opts = Options.from_config(config, ctx.connection)
    headers, secrets = opts.request_headers()
    hc.register_secrets(ctx, secrets)
    client = _client(ctx, opts, headers, secrets)
    stager = JsonStager(ctx.tmp_dir, f"graphql-{ctx.step_id}")
    try:
        pages = _fetch_pages(ctx, opts, client, stager)
        rows = stager.create_output(ctx)
    finally:
        stager.close()
        client.close()
    ctx.log_metric("rows_read", rows)
    ctx.log_metric("requests_made", client.requests_made)
    ctx.log_metric("pages_fetched", pages)
    return DriverResult(table=ctx.output_table, rows_read=rows, rows_written=rows,
                        extra_metadata={"pages_fetched": pages,
                                        "requests_made": client.requests_made})


def _client(ctx: StepContext, opts: Options, headers: Mapping[str, str], secrets: list[str]
            ) -> hc.HttpClient:
    host = hc.origin_of(opts.endpoint)
    return hc.HttpClient(
        service="GraphQL endpoint", headers=headers, timeout=opts.timeout,
        policy=hc.RetryPolicy(max_retries=opts.max_retries, base_delay=opts.retry_delay,
                              max_delay=max(MAX_RETRY_DELAY, opts.retry_delay),
                              max_retry_after=max(120.0, opts.retry_delay)),
        verify=opts.validate_ssl, secrets=[*secrets, *opts.headers.values()],
        auth_hint=_auth_hint(opts, host),
        check_hint=f"`endpoint` ({hc.display_url(opts.endpoint)})",
        on_retry=lambda info: ctx.log_event("http_retry", **info),
    )


def _fetch_pages(ctx: StepContext, opts: Options, client: hc.HttpClient, stager: JsonStager
                 ) -> int:
    """POST the query, page after page (each answer's cursor goes into the next page's
    variables), staging every page's records; the number of pages fetched."""
    host = hc.origin_of(opts.endpoint)
    pages = 0
    variables = dict(opts.variables)
    seen_cursors: set[str] = set()  # JSON texts of the cursors used so far
    while True:
        body = client.request_json("POST", opts.endpoint,
                                   {"query": opts.query, "variables": variables},
                                   idempotent=not is_mutation(opts.query))
        _raise_graphql_errors(body, host, client)
        stager.add_many(_records(body, opts))
        pages += 1
        ctx.progress(rows=stager.rows, message=f"page {pages}")
        if not opts.pagination_enabled:
            return pages
        cursor = _next_cursor(body, opts, ctx, pages)
        if cursor is None:
            return pages
        if opts.max_pages and pages >= opts.max_pages:
            ctx.log_event("graphql_max_pages_reached", max_pages=opts.max_pages)
            return pages
        key = to_json_text(cursor)
        if key in seen_cursors:
            raise DriverError(
                f"graphql.extractor: {host} returned cursor {cursor!r} again on page "
                f"{pages}; the pagination would never end. Check that the query uses "
                f"${opts.variable_name} as its cursor argument and that "
                f"`pagination_path` ({opts.pagination_path}) points at this list's pageInfo.")
        seen_cursors.add(key)
        variables[opts.variable_name] = cursor


def _records(body: Any, opts: Options) -> Iterator[dict[str, Any]]:
    """The rows of one answer: the records at ``data_path``, flattened or not."""
    try:
        records = rows_at(body, opts.data_path)
    except DriverError as exc:
        raise DriverError(f"graphql.extractor: `data_path`: {exc}") from None
    shape = flatten_record if opts.flatten else shallow_record
    return (shape(r) for r in records)


_GQL_NOISE = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*')
_GQL_TOKEN = re.compile(r"[{}]|[_A-Za-z][_0-9A-Za-z]*")


def is_mutation(document: str) -> bool:
    """Whether the GraphQL document defines a mutation (at the top level, outside strings and
    comments). A query is a read and may be repeated; a mutation that reached the server and
    then failed may have been applied, so it is never sent twice."""
    depth = 0
    for token in _GQL_TOKEN.findall(_GQL_NOISE.sub(" ", document)):
        if token == "{":
            depth += 1
        elif token == "}":
            depth = max(0, depth - 1)
        elif depth == 0 and token == "mutation":
            return True
    return False


def _auth_hint(opts: Options, host: str) -> str:
    if opts.auth_type != "none":
        return (f"{opts.token_source} (auth_type '{opts.auth_type}') and that it may run this "
                f"query on {host}")
    if opts.token:
        return ("`auth_type`: a token is configured but auth_type is 'none', so none was sent "
                "(use bearer, basic or api_key)")
    return f"whether {host} needs credentials: set `auth_type` and a token"


def _raise_graphql_errors(body: Any, host: str, client: hc.HttpClient) -> None:
    if not isinstance(body, dict):
        raise client.error(f"GraphQL endpoint {host} answered with a JSON "
                           f"{type(body).__name__}, not an object with `data`; check `endpoint`")
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        raise client.error(f"GraphQL endpoint {host} returned errors: "
                           f"{hc.graphql_messages(errors)}. Check the query and its variables.")


def _next_cursor(body: Any, opts: Options, ctx: StepContext, pages: int) -> Any:
    """The cursor of the next page, or None when this was the last page."""
    try:
        info = first_at(body, opts.pagination_path)
    except DriverError as exc:
        raise DriverError(f"graphql.extractor: `pagination_path`: {exc}") from None
    if not isinstance(info, dict):
        ctx.log_event("graphql_page_info_missing", path=opts.pagination_path, page=pages)
        return None
    if not info.get(opts.has_next_field):
        return None
    cursor = info.get(opts.cursor_field)
    if cursor in (None, ""):
        ctx.log_event("graphql_cursor_missing", field=opts.cursor_field, page=pages)
        return None
    return cursor  # sent back as it came (a string, or a number for offset-style APIs)
