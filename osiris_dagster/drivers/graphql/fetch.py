"""The paging of one ``graphql.extractor`` run over HTTP: the client, the query POSTed page after
page, each answer checked for GraphQL errors and its records staged.

* **Pagination** (``pagination_enabled``): the cursor and has-next flag are read from
  ``pagination_path`` in the *same* response (Osiris posts every query twice); the cursor goes
  into ``variables[pagination_variable_name]`` for the next page; ``max_pages`` (0 = no limit)
  bounds the run. A cursor that does not advance is an error (it would loop forever), and so
  is a page without what paging needs, which would end the run early without a word: no
  object at ``pagination_path`` (the error names where the answer has the has-next field), no
  boolean has-next field in it, or a next page without a cursor.
* **Data.** ``data_path`` is a dotted path from the response root (``data``,
  ``data.users.edges[*].node``, ``$.data.items``); a list gives one row per element, several
  matches are concatenated. A path that reaches nothing (a key absent: a typo, a renamed field;
  an index past the end; a step into null or a scalar) fails naming what the answer has at the
  deepest place it matched, and so does an answer whose ``data`` is null or missing without
  ``errors`` (Osiris' jsonpath gave 0 rows, and a writer after it replaced its output with an
  empty one). A path present with an empty list, or that ends on a null field, gives no rows; a
  null record (``edges: [{node: null}]``, ``items: [null]``) is a row of NULLs, so the table
  has as many rows as the answer has records. ``flatten_result`` turns nested objects into
  dotted columns (``node.name``, as pandas' ``json_normalize``); lists are JSON-encoded text. With
  ``flatten_result: false`` each top-level key is a column and nested values are JSON text. A
  record that is not an object becomes a column ``value``. Two keys that would become one
  column (``a.b`` and ``a { b }``) fail naming both. A number is kept exactly or fails, and so
  does an object that writes a key twice
  (:meth:`~osiris_dagster.drivers.http.client.HttpClient.decode_json`).
* **Errors.** A body with a non-empty ``errors`` list (or an ``errors`` that is not a list and
  not null) fails the step with the GraphQL messages (not retried: a bad query stays bad).
  HTTP 429/5xx, timeouts and refused connections are
  retried ``max_retries`` times by the shared client (:mod:`osiris_dagster.drivers.http.client`,
  urllib3's ``Retry``):
  the first retry at once, then after 2, 4, 8... x ``retry_delay`` plus up to ``retry_delay`` of
  jitter (capped at 60 s; ``Retry-After`` honoured up to 120 s); a ``mutation`` document only
  after a 429 or a failure before it was sent (once it reached the server it may have been
  applied: never sent twice; see :mod:`osiris_dagster.drivers.graphql.document`).
  Other 4xx fail at once; 401/403 say which credentials to check. Messages name the host,
  never the token.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from osiris_dagster.core.errors import DriverError, OutcomeUnknownError
from osiris_dagster.drivers.base import StepContext
from osiris_dagster.drivers.graphql.document import is_mutation
from osiris_dagster.drivers.graphql.options import Options
from osiris_dagster.drivers.http import client as hc
from osiris_dagster.drivers.http.json_paths import PathMiss, find_path, format_path, rows_at
from osiris_dagster.drivers.staging.json_records import (
    JsonStager,
    KeyCollision,
    flatten_record,
    shallow_record,
    to_json_text,
)

MAX_RETRY_DELAY = 60.0


def graphql_client(ctx: StepContext, opts: Options, headers: Mapping[str, str], secrets: list[str]
                   ) -> hc.HttpClient:
    """The HTTP client of one run: the options' headers, retry policy and TLS check, and hints
    naming which credentials to check when the endpoint rejects them."""
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


def fetch_pages(ctx: StepContext, opts: Options, client: hc.HttpClient, stager: JsonStager
                ) -> int:
    """POST the query, page after page (each answer's cursor goes into the next page's
    variables), staging every page's records; the number of pages fetched."""
    host = hc.origin_of(opts.endpoint)
    pages = 0
    variables = dict(opts.variables)
    seen_cursors: set[str] = set()  # JSON texts of the cursors used so far
    mutation = is_mutation(opts.query)
    while True:
        body = client.request_json("POST", opts.endpoint,
                                   {"query": opts.query, "variables": variables},
                                   idempotent=not mutation)
        pages += 1
        try:
            _raise_graphql_errors(body, host, client)
            stager.add_many(_records(body, opts, pages))
        except DriverError as exc:
            if not mutation:
                raise
            raise OutcomeUnknownError(
                f"{exc} The server received the mutation and answered, so it may have taken "
                "effect: it is not sent again (a second attempt could apply it twice). Check "
                "the data on the service before running the step again.",
                reason="its answer could not be stored") from None
        ctx.progress(rows=stager.rows, message=f"page {pages}")
        if not opts.pagination_enabled:
            return pages
        cursor = _next_cursor(body, opts, pages)
        if cursor is None:
            return pages
        if opts.max_pages and pages >= opts.max_pages:
            ctx.log_event("graphql_max_pages_reached", max_pages=opts.max_pages)
            ctx.notice(f"stopped after max_pages ({opts.max_pages}) although the answer says "
                       "more pages follow: the table holds only the rows of these pages (raise "
                       "max_pages, or set it to 0 for no limit)")
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


def _records(body: dict[str, Any], opts: Options, page: int) -> Iterator[dict[str, Any]]:
    """The rows of one answer: the records at ``data_path``, flattened or not; a null record
    is a row of NULLs. An answer without ``data``, or a path that reaches nothing in it, fails
    (no rows would be stored without a word)."""
    lead = f"graphql.extractor: page {page} has no records"
    silent = "so the step would store no rows without a word."
    if body.get("data") is None:
        raise DriverError(
            f"{lead}: the answer's `data` is {'null' if 'data' in body else 'missing'} and it "
            "has no `errors` (a GraphQL server answers without data only with errors), "
            f"{silent} Check `endpoint`, and run the query there to see why it returns no data.")
    try:
        records = rows_at(body, opts.data_path)
    except PathMiss as miss:
        raise DriverError(
            f"{lead} at `data_path` ({opts.data_path}): the answer has {miss.describe()}, "
            f"{silent} Set `data_path` to where the answer holds the records, and ask for that "
            "field in the query.") from None
    except DriverError as exc:
        raise DriverError(f"graphql.extractor: `data_path`: {exc}") from None
    shape = flatten_record if opts.flatten else shallow_record
    for i, record in enumerate(records):
        if record is None:
            yield {}
            continue
        try:
            yield shape(record)
        except KeyCollision as exc:
            raise DriverError(
                f"graphql.extractor: page {page}, record {i + 1} at `data_path`: {exc} "
                "(`flatten_result` joins nested keys with '.'). Give one of them another name "
                "with a GraphQL alias, or set `flatten_result: false`.") from None


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
    if errors not in (None, []):  # not the list GraphQL specifies, but still errors
        raise client.error(f"GraphQL endpoint {host} returned errors that are not a list: "
                           f"{hc.graphql_messages([errors])}. Check the query and its "
                           "variables (and that `endpoint` is a GraphQL server).")


def _next_cursor(body: Any, opts: Options, pages: int) -> Any:
    """The cursor of the next page, or None when this was the last page. What paging needs
    and the page lacks fails (stopping would drop the pages after it without a word)."""
    path, has_next, cursor_field = opts.pagination_path, opts.has_next_field, opts.cursor_field
    lead = f"graphql.extractor: page {pages}"
    try:
        found = find_path(body, path)
    except DriverError as exc:
        raise DriverError(f"graphql.extractor: `pagination_path`: {exc}") from None
    info = found[0] if found else None
    if not isinstance(info, dict):
        seen = _shown(info) if found else "nothing"
        where = _path_of_key(body, has_next)
        fix = (f"The answer has `{has_next}` at {format_path(where)}: set `pagination_path: "
               f"{format_path(where)}`." if where is not None else
               f"Set `pagination_path` to the object holding `{has_next}` and `{cursor_field}` "
               "(e.g. data.users.pageInfo) and ask for them in the query, or set "
               "`pagination_enabled: false`.")
        raise DriverError(f"{lead} has no page info at `pagination_path` ({path}): found "
                          f"{seen} there, so it cannot tell whether more pages follow. {fix}")
    fields = ", ".join(map(str, info)) or "none"
    more = info.get(has_next)
    if not isinstance(more, bool):
        raise DriverError(
            f"{lead}: the page info at {path} has {_shown(more) if has_next in info else 'no'} "
            f"`{has_next}`, not true or false (its fields: {fields}). Set "
            "`pagination_has_next_field` to the field saying whether more pages follow, and "
            "ask for it in the query.")
    if not more:
        return None
    cursor = info.get(cursor_field)
    if cursor in (None, ""):
        raise DriverError(
            f"{lead}: `{has_next}` is true at {path} but `{cursor_field}` is "
            f"{_shown(cursor) if cursor_field in info else 'missing'} there, so the next page "
            f"cannot be asked for (its fields: {fields}). Set `pagination_cursor_field` to the "
            "field holding the cursor, and ask for it in the query.")
    return cursor  # sent back as it came (a string, or a number for offset-style APIs)


def _shown(value: Any) -> str:
    """A JSON value for a message: ``null``, ``"x"``, ``[1, 2]`` (at most 80 characters)."""
    text = to_json_text(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _path_of_key(node: Any, key: str, path: tuple[str | int, ...] = ()
                 ) -> tuple[str | int, ...] | None:
    """The first place (depth first) of an object holding ``key``, or None."""
    if isinstance(node, dict):
        if key in node:
            return path
        items: Iterable[tuple[str | int, Any]] = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return None
    for step, value in items:
        if (found := _path_of_key(value, key, (*path, step))) is not None:
            return found
    return None
