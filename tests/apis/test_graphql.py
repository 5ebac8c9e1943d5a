"""graphql.extractor against a local Relay-style GraphQL fake."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import dagster as dg
import duckdb
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from osiris_dagster.core.errors import DriverError, OutcomeUnknownError
from osiris_dagster.drivers.graphql import extractor as gq
from osiris_dagster.drivers.http import client as hc
from osiris_dagster.drivers.http.json_paths import find_path, rows_at
from osiris_dagster.drivers.staging.json_records import JsonStager, flatten_record

from ..helpers import defs_for, events, failure_description, materialisations, run_job, write
from .conftest import FakeGraphQL, RunDriver, canned, session_files_contain

TOKEN = "ghp_Secret-Token-0123456789"
USERS_QUERY = """
query Users($first: Int!, $after: String) {
  users(first: $first, after: $after) {
    edges { cursor node { id name address { city geo { lat } } tags } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


def user(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": i, "name": f"user {i}", "address": {"city": f"city {i}", "geo": {"lat": i / 2}},
            "tags": [f"t{i}"], **extra}


def config(endpoint: str, **kw: Any) -> dict[str, Any]:
    base = {"endpoint": endpoint, "query": USERS_QUERY, "variables": {"first": 3},
            "auth_type": "none", "auth_header_name": "X-API-Key", "timeout": 5,
            "max_retries": 3, "retry_delay": 0.01, "pagination_enabled": False,
            "pagination_path": "data.pageInfo", "pagination_cursor_field": "endCursor",
            "pagination_has_next_field": "hasNextPage", "pagination_variable_name": "after",
            "max_pages": 0, "data_path": "data.users.edges[*].node", "flatten_result": True,
            "validate_ssl": True}
    return {**base, **kw}


PAGED = {"pagination_enabled": True, "pagination_path": "data.users.pageInfo"}


def test_single_page_nested_flatten(graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    graphql.users = [user(1), user(2)]
    ran = run_driver(gq, config(graphql.endpoint))
    assert ran.columns == ["id", "name", "address.city", "address.geo.lat", "tags"]
    assert ran.rows[0] == (1, "user 1", "city 1", 0.5, '["t1"]')
    assert ran.types["id"] == "BIGINT" and ran.types["address.geo.lat"] == "DOUBLE"
    assert len(graphql.requests) == 1
    sent = graphql.requests[0]
    assert sent["body"] == {"query": USERS_QUERY, "variables": {"first": 3}}
    assert sent["headers"]["Content-Type"] == "application/json"
    assert "Authorization" not in sent["headers"]
    assert ran.metrics == {**ran.metrics, "rows_read": 2, "requests_made": 1, "pages_fetched": 1}


def test_flatten_false_and_default_data_path(graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    graphql.users = [user(1)]
    ran = run_driver(gq, config(graphql.endpoint, flatten_result=False))
    assert ran.columns == ["id", "name", "address", "tags"]
    assert json.loads(ran.rows[0][2]) == {"city": "city 1", "geo": {"lat": 0.5}}
    # data_path `data`: the whole `data` object is one row, flattened like json_normalize
    whole = run_driver(gq, config(graphql.endpoint, data_path="data"))
    assert whole.columns == ["users.totalCount", "users.edges", "users.pageInfo.hasNextPage",
                             "users.pageInfo.endCursor"]
    assert len(whole.rows) == 1


def test_cursor_pagination_reads_page_info_from_the_same_response(
        graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    graphql.users = [user(i) for i in range(7)]
    ran = run_driver(gq, config(graphql.endpoint, **PAGED))
    assert ran.column("id") == list(range(7))
    # 3 pages, 3 requests (Osiris posts every query twice)
    assert len(graphql.requests) == 3
    afters = [r["body"]["variables"].get("after") for r in graphql.requests]
    assert afters == [None, base64.b64encode(b"cursor:2").decode(),
                      base64.b64encode(b"cursor:5").decode()]
    assert ran.metrics["pages_fetched"] == 3 and ran.metrics["requests_made"] == 3
    assert [e["rows"] for e in ran.events if e["event"] == "progress"] == [3, 6, 7]


def test_max_pages(graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    graphql.users = [user(i) for i in range(7)]
    ran = run_driver(gq, config(graphql.endpoint, max_pages=2, **PAGED))
    assert ran.column("id") == list(range(6))
    assert len(graphql.requests) == 2
    assert any(e["event"] == "graphql_max_pages_reached" for e in ran.events)
    # rows the server still had: a notice (CLI `!`, Dagster warning), not only an event
    notices = [e["message"] for e in ran.events if e["event"] == "notice"]
    assert notices == ["stopped after max_pages (2) although the answer says more pages "
                       "follow: the table holds only the rows of these pages (raise max_pages, "
                       "or set it to 0 for no limit)"]


def test_columns_first_seen_on_a_later_page_are_kept(graphql: FakeGraphQL,
                                                     run_driver: RunDriver) -> None:
    graphql.users = [user(i) for i in range(6)] + [user(6, nickname="late", id="x7")]
    ran = run_driver(gq, config(graphql.endpoint, **PAGED))
    assert ran.column("nickname") == [None] * 6 + ["late"]
    assert ran.types["id"] == "VARCHAR"  # integers and a string: text
    assert ran.column("id")[-2:] == ["5", "x7"]


def test_keys_differing_only_in_case_are_renamed_and_logged(graphql: FakeGraphQL,
                                                            run_driver: RunDriver) -> None:
    graphql.users = [user(1, Name="Ada")]
    ran = run_driver(gq, config(graphql.endpoint))
    assert ran.column("name") == ["user 1"] and ran.column("Name.1") == ["Ada"]
    assert [e["renamed"] for e in ran.events if e["event"] == "columns_renamed"] == \
        [{"Name": "Name.1"}]


def test_cursor_that_does_not_advance_is_an_error(graphql: FakeGraphQL,
                                                  run_driver: RunDriver) -> None:
    page = {"data": {"users": {"edges": [{"node": {"id": 1}}],
                               "pageInfo": {"hasNextPage": True, "endCursor": "same"}}}}
    graphql.script += [canned(200, page)] * 3
    with pytest.raises(DriverError, match="returned cursor 'same' again"):
        run_driver(gq, config(graphql.endpoint, **PAGED))
    assert len(graphql.requests) == 2


def test_missing_page_info_fails_naming_where_the_answer_has_it(graphql: FakeGraphQL,
                                                                run_driver: RunDriver) -> None:
    """Stopping after the first page would drop the others without a word."""
    graphql.users = [user(i) for i in range(7)]
    with pytest.raises(DriverError) as err:
        run_driver(gq, config(graphql.endpoint, pagination_enabled=True))  # data.pageInfo
    assert str(err.value) == (
        "graphql.extractor: page 1 has no page info at `pagination_path` (data.pageInfo): "
        "found nothing there, so it cannot tell whether more pages follow. The answer has "
        "`hasNextPage` at data.users.pageInfo: set `pagination_path: data.users.pageInfo`.")
    assert len(graphql.requests) == 1


def test_empty_result_is_an_empty_table(graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    ran = run_driver(gq, config(graphql.endpoint))
    assert ran.columns == ["_empty"] and ran.rows == [] and ran.types["_empty"] == "VARCHAR"


# -- auth -----------------------------------------------------------------------------------------
BASIC = "Basic " + base64.b64encode(f"alice:{TOKEN}".encode()).decode()
AUTH_CASES = {
    "bearer": ({"auth_type": "bearer"}, ("Authorization", f"Bearer {TOKEN}")),
    "basic": ({"auth_type": "basic"}, ("Authorization", BASIC)),
    "api_key": ({"auth_type": "api_key", "auth_header_name": "X-Api-Token"},
                ("X-Api-Token", TOKEN)),
}


@pytest.mark.parametrize("case", sorted(AUTH_CASES))
def test_auth_from_connection(case: str, graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    step, expected = AUTH_CASES[case]
    graphql.expected_auth = expected
    graphql.users = [user(1)]
    conn = {"endpoint": graphql.endpoint, "auth_token": TOKEN, "auth_username": "alice",
            "headers": {"X-Tenant": "acme"}}
    cfg = config(graphql.endpoint, **step)
    del cfg["endpoint"]  # from the connection
    ran = run_driver(gq, cfg, conn)
    assert ran.column("id") == [1]
    assert graphql.requests[0]["headers"]["X-Tenant"] == "acme"


@pytest.mark.parametrize("case", sorted(AUTH_CASES))
def test_auth_from_env_references(case: str, graphql: FakeGraphQL, run_driver: RunDriver,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    step, expected = AUTH_CASES[case]
    monkeypatch.setenv("GQL_TOKEN", TOKEN)
    monkeypatch.setenv("GQL_USER", "alice")
    monkeypatch.setenv("GQL_TENANT", "acme")
    graphql.expected_auth = expected
    graphql.users = [user(1)]
    cfg = config(graphql.endpoint, auth_token="${GQL_TOKEN}", auth_username="${GQL_USER}",
                 headers={"X-Tenant": "${GQL_TENANT}"}, **step)
    ran = run_driver(gq, cfg)
    assert ran.column("id") == [1]
    assert graphql.requests[0]["headers"]["X-Tenant"] == "acme"


def test_a_redirect_to_another_origin_carries_no_connection_header(
        graphql: FakeGraphQL, run_driver: RunDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every header from the connection or from ${ENV} is a credential to the masker: none
    follows a 307 to another port (two local servers); the plain ones do."""
    other = HTTPServer(host="127.0.0.1", port=0)
    other.start()
    seen: list[dict[str, str]] = []

    def answer(request: Request) -> Response:
        seen.append(dict(request.headers))
        return Response(json.dumps({"data": {"users": {"edges": [{"node": {"id": 1}}]}}}),
                        content_type="application/json")

    other.expect_request("/graphql", method="POST").respond_with_handler(answer)
    graphql.script.append(canned(307, {}, {"Location": f"http://127.0.0.1:{other.port}/graphql"}))
    monkeypatch.setenv("GQL_TRACE", "trace-ENV-4242")
    conn = {"endpoint": graphql.endpoint, "auth_token": TOKEN,
            "headers": {"X-Session": "sess-CONN-VALUE-555"}}
    cfg = config(graphql.endpoint, auth_type="bearer", headers={"X-Trace": "${GQL_TRACE}"})
    del cfg["endpoint"]
    try:
        ran = run_driver(gq, cfg, conn)
    finally:
        other.stop()
    assert ran.column("id") == [1]
    sent = graphql.requests[0]["headers"]
    assert (sent["X-Session"], sent["X-Trace"]) == ("sess-CONN-VALUE-555", "trace-ENV-4242")
    (followed,) = seen
    assert followed["User-Agent"] == "osiris-dagster GraphQL extractor"
    leaked = [k for k, v in followed.items()
              if any(s in v for s in (TOKEN, "sess-CONN-VALUE-555", "trace-ENV-4242"))]
    assert leaked == [], followed


def test_unset_env_reference_is_named(graphql: FakeGraphQL, run_driver: RunDriver,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GQL_NOPE", raising=False)
    with pytest.raises(DriverError, match="'GQL_NOPE' .*'auth_token'"):
        run_driver(gq, config(graphql.endpoint, auth_type="bearer", auth_token="${GQL_NOPE}"))
    assert graphql.requests == []


def test_bearer_without_token(graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    with pytest.raises(DriverError, match="auth_type 'bearer' needs a token"):
        run_driver(gq, config(graphql.endpoint, auth_type="bearer"))


def test_401_names_host_and_not_the_token(graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    graphql.expected_auth = ("Authorization", "Bearer right")
    conn = {"auth_token": TOKEN}
    with pytest.raises(DriverError) as err:
        run_driver(gq, config(graphql.endpoint, auth_type="bearer"), conn)
    text = str(err.value)
    assert f"authentication failed at {graphql.endpoint.rsplit('/', 1)[0]} (HTTP 401" in text
    assert "Bad credentials" in text and "`auth_token` of the @graphql connection" in text
    assert TOKEN not in text
    assert len(graphql.requests) == 1


def test_a_secret_echoed_back_encoded_is_masked(graphql: FakeGraphQL,
                                               run_driver: RunDriver) -> None:
    """The server quotes the credentials it got: the Basic header (base64 of `alice:<token>`),
    the token URL-encoded and JSON-escaped. Each used to reach the step's error as sent."""
    token = 'Pw/with+odd "chars" 0123'
    sent = "Basic " + base64.b64encode(f"alice:{token}".encode()).decode()
    echo = f"got {sent}; token {quote(token, safe='')}, {quote_plus(token)}, {json.dumps(token)}"
    graphql.script.append(canned(401, {"message": echo}))
    with pytest.raises(DriverError) as err:
        run_driver(gq, config(graphql.endpoint, auth_type="basic"),
                   {"auth_token": token, "auth_username": "alice"})
    text = str(err.value)
    assert "got Basic " in text and "token ***MASKED***, ***MASKED***, " in text
    for shown in (sent[6:], quote(token, safe=""), quote_plus(token), json.dumps(token)[1:-1]):
        assert shown not in text, (shown, text)
    assert len(text) - len(text.replace("***MASKED***", "")) == 4 * len("***MASKED***")


def test_a_secret_across_the_cut_of_an_error_answer_is_masked(graphql: FakeGraphQL,
                                                              run_driver: RunDriver) -> None:
    """The answer was cut to 300 characters before masking: a token straddling the cut no longer
    matched, and its first characters showed (a review saw `...yyyyS3cr3tTok-`)."""
    token = "S3cr3tTok-9f8e7d6c"
    graphql.script.append(canned(401, {"detail": "y" * 290 + token}))
    with pytest.raises(DriverError) as err:
        run_driver(gq, config(graphql.endpoint, auth_type="bearer"), {"auth_token": token})
    text = str(err.value)
    assert "yyyy***MASK" in text and token[:6] not in text, text


def test_a_secret_across_the_cut_of_a_non_json_answer_is_masked(graphql: FakeGraphQL,
                                                                run_driver: RunDriver) -> None:
    """The start of a body that is not JSON was cut to 120 characters, then masked."""
    token = "S3cr3tTok-9f8e7d6c"
    graphql.script.append(canned(200, raw="<html><body>" + "x" * 99 + token))
    with pytest.raises(DriverError) as err:
        run_driver(gq, config(graphql.endpoint, auth_type="bearer"), {"auth_token": token})
    text = str(err.value)
    assert "is not valid JSON" in text and token[:6] not in text, text


@pytest.mark.parametrize("echo", [
    lambda t: t.replace("'", "''"),  # an SQL literal DuckDB repeats
    lambda t: repr(t)[1:-1],
    lambda t: json.dumps(t, ensure_ascii=False)[1:-1],
    lambda t: quote(t),  # urllib's default keeps '/'
    lambda t: re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(t, safe="")),
    lambda t: t.replace("\\", "\\\\").replace("'", "\\'"),
])
def test_a_secret_quoted_the_ways_sql_and_python_quote_it_is_masked(echo: Any) -> None:
    token = "Pä'ss\\w/o\"rd-42"
    from osiris_dagster.core.masking import Masker

    shown = echo(token)
    assert shown != token
    assert Masker([token]).text(f"error near {shown} here") == "error near ***MASKED*** here"


# -- failures -------------------------------------------------------------------------------------
def test_errors_in_body(graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    with pytest.raises(DriverError, match=r'returned errors: Cannot query field "nope"'):
        run_driver(gq, config(graphql.endpoint, query="{ nope }"))
    assert len(graphql.requests) == 1  # a bad query is not retried


def test_errors_with_path(graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    graphql.script.append(canned(200, {"data": None, "errors": [
        {"message": "boom", "path": ["users", 0, "name"]}]}))
    with pytest.raises(DriverError, match=r"boom \(at users.0.name\)"):
        run_driver(gq, config(graphql.endpoint))


def test_http_500_is_retried(graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    graphql.users = [user(1)]
    graphql.script += [canned(500, raw="oops"), canned(502, raw="bad gateway")]
    ran = run_driver(gq, config(graphql.endpoint))
    assert ran.column("id") == [1]
    assert ran.metrics["requests_made"] == 3
    assert len([e for e in ran.events if e["event"] == "http_retry"]) == 2


def test_a_mutation_that_failed_after_it_was_sent_is_not_sent_again(
        graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    """A 5xx or a read timeout after a mutation reached the server: it may have been applied."""
    mutation = "mutation Add($first: Int) { addUsers(n: $first) { id } }"
    graphql.script += [canned(500, raw="oops"), canned(200, {"data": {}})]
    with pytest.raises(OutcomeUnknownError) as err:
        run_driver(gq, config(graphql.endpoint, query=mutation, data_path="data.addUsers"))
    assert len(graphql.requests) == 1
    assert "HTTP 500" in str(err.value) and "may have taken effect" in str(err.value)
    graphql.script.clear()
    graphql.script += [canned(200, {"data": {}}, delay=0.8), canned(200, {"data": {}})]
    with pytest.raises(OutcomeUnknownError, match="no response within 0.25 s"):
        run_driver(gq, config(graphql.endpoint, query=mutation, timeout=0.25))
    assert len(graphql.requests) == 2
    graphql.script.clear()
    graphql.script += [canned(429, raw="slow down"), canned(200, {"data": {"addUsers": []}})]
    run_driver(gq, config(graphql.endpoint, query=mutation, data_path="data.addUsers"))
    assert len(graphql.requests) == 4  # a 429 was rejected unprocessed: sent again


def test_persistent_500_gives_up_after_max_retries(graphql: FakeGraphQL,
                                                   run_driver: RunDriver) -> None:
    graphql.script += [canned(500, raw="oops")] * 5
    with pytest.raises(DriverError, match=r"server error at .*HTTP 500.*2 attempts"):
        run_driver(gq, config(graphql.endpoint, max_retries=1))


def test_timeout(graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    graphql.script += [canned(200, {"data": {}}, delay=0.8)] * 2
    start = time.monotonic()
    with pytest.raises(DriverError) as err:
        run_driver(gq, config(graphql.endpoint, timeout=0.25, max_retries=1,
                              auth_type="bearer", auth_token="${GQL_TOKEN}"),
                   {"auth_token": TOKEN})
    text = str(err.value)
    assert "no response within 0.25 s from http://127.0.0.1" in text and "2 attempts" in text
    assert "raise `timeout`" in text and TOKEN not in text
    assert time.monotonic() - start < 2.5


def test_connection_refused(run_driver: RunDriver) -> None:
    with pytest.raises(DriverError, match=r"cannot connect to http://127.0.0.1:9 \(connection "
                                          r"refused; 1 attempt\)\. Check `endpoint`"):
        run_driver(gq, config("http://127.0.0.1:9/graphql?token=abc", max_retries=0))


def test_malformed_json(graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    graphql.script.append(canned(200, raw="<html>login</html>"))
    with pytest.raises(DriverError, match="is not valid JSON"):
        run_driver(gq, config(graphql.endpoint))


def test_error_body_echoing_the_token_is_redacted(graphql: FakeGraphQL,
                                                  run_driver: RunDriver) -> None:
    graphql.script.append(canned(400, {"errors": [{"message": f"bad header Bearer {TOKEN}"}]}))
    with pytest.raises(DriverError) as err:
        run_driver(gq, config(graphql.endpoint, auth_type="bearer"), {"auth_token": TOKEN})
    assert TOKEN not in str(err.value) and "bad header Bearer ***" in str(err.value)


# -- helpers --------------------------------------------------------------------------------------
def test_paths() -> None:
    doc = {"data": {"a": {"edges": [{"node": {"x": 1}}, {"node": {"x": 2}}]}, "l": [[1], [2]]}}
    assert find_path(doc, "data.a.edges[*].node") == [{"x": 1}, {"x": 2}]
    assert find_path(doc, "$.data.a.edges.node.x") == [1, 2]  # name steps map over lists
    assert find_path(doc, "data.a.edges[-1].node") == [{"x": 2}]
    assert rows_at(doc, "data.l[*]") == [1, 2]  # list matches are concatenated
    with pytest.raises(DriverError, match=r"data.missing matches nothing: the document has no "
                                          r"`missing` at data \(its keys there: a, l\)"):
        rows_at(doc, "data.missing")  # gave [] (0 rows, exit 0)
    assert find_path(doc, "$") == [doc]
    assert find_path({"a.b": 1}, "['a.b']") == [1]


def test_flatten_record() -> None:
    assert flatten_record({"a": {"b": {"c": 1}, "e": {}}, "l": [1, {"x": 2}], "n": None}) == \
        {"a.b.c": 1, "l": '[1, {"x": 2}]', "n": None}
    assert flatten_record("scalar") == {"value": "scalar"}


def test_stager_schema_evolution_and_case_collisions(tmp_path: Path) -> None:
    with JsonStager(tmp_path, "t") as st:
        st.add({"a": 1, "Name": "x"})
        st.add({"a": 2.5, "name": "y", "b": True, "big": 2**70})
        st.add({"b": None, "c": None})
        assert st.column_types() == {"a": "DOUBLE", "Name.1": "VARCHAR", "name": "VARCHAR",
                                     "b": "BOOLEAN", "big": "VARCHAR", "c": "VARCHAR"}
        rows = duckdb.sql(st.select_sql()).fetchall()
        assert rows == [(1.0, "x", None, None, None, None),
                        (2.5, None, "y", True, str(2**70), None),
                        (None, None, None, None, None, None)]
        assert st.renamed == {"Name": "Name.1"}  # the lowercase key keeps its name
    assert not st.path.exists()


def test_retry_after_parsing() -> None:
    assert hc.parse_retry_after("3") == 3.0
    assert hc.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert hc.parse_retry_after("soon") is None


# -- end to end through Dagster -------------------------------------------------------------------
def _pipeline(step_auth: str, connection: str) -> str:
    return f"""\
oml_version: "0.1.0"
name: graphql-demo
steps:
  - id: users
    component: graphql.extractor
    mode: read
    config:
{connection}      query: |
        query Users($first: Int!, $after: String) {{
          users(first: $first, after: $after) {{
            edges {{ node {{ id name address {{ city }} }} }}
            pageInfo {{ hasNextPage endCursor }}
          }}
        }}
      variables: {{first: 2}}
{step_auth}      pagination_enabled: true
      pagination_path: data.users.pageInfo
      data_path: "data.users.edges[*].node"
      retry_delay: 0.1
  - id: cities
    component: duckdb.processor
    mode: transform
    needs: [users]
    config:
      query: 'SELECT "address.city" AS city, count(*) AS n FROM input_df GROUP BY 1 ORDER BY 1'
"""


@pytest.mark.parametrize("source", ["connection", "env"])
def test_end_to_end_through_dagster(source: str, graphql: FakeGraphQL, workdir: Path,
                                    tmp_path: Path, instance: dg.DagsterInstance,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GQL_TOKEN", TOKEN)
    graphql.expected_auth = ("Authorization", f"Bearer {TOKEN}")
    graphql.users = [user(i) | {"address": {"city": "Oslo" if i % 2 else "Rome"}}
                     for i in range(5)]
    if source == "connection":
        conns = write(workdir / "osiris_connections.yaml", f"""\
version: 1
connections:
  graphql:
    api:
      endpoint: {graphql.endpoint}
      auth_token: ${{GQL_TOKEN}}
""")
        text = _pipeline("      auth_type: bearer\n",
                         '      connection: "@graphql.api"\n')
    else:
        conns = None
        text = _pipeline("      auth_type: bearer\n      auth_token: ${GQL_TOKEN}\n",
                         f"      endpoint: {graphql.endpoint}\n")
    p = write(workdir / "graphql.yaml", text)
    sessions = tmp_path / "s"
    result = run_job(defs_for(p, sessions, conns), "graphql_demo", instance)
    assert result.success, failure_description(result)
    mats = materialisations(result)
    assert mats["graphql-demo/users"]["dagster/row_count"].value == 5
    db = sessions / result.run_id / "pipeline_data.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT city, n FROM cities").fetchall() == [("Oslo", 2), ("Rome", 3)]
    assert len(graphql.requests) == 3
    assert session_files_contain(sessions, TOKEN) == []


def test_end_to_end_error_is_masked(graphql: FakeGraphQL, workdir: Path, tmp_path: Path,
                                    instance: dg.DagsterInstance,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GQL_TOKEN", TOKEN)
    graphql.script.append(canned(403, {"errors": [{"message": f"token {TOKEN} revoked"}]}))
    text = _pipeline("      auth_type: bearer\n      auth_token: ${GQL_TOKEN}\n",
                     f"      endpoint: {graphql.endpoint}\n")
    p = write(workdir / "graphql.yaml", text)
    sessions = tmp_path / "s"
    result = run_job(defs_for(p, sessions), "graphql_demo", instance)
    assert not result.success
    message = failure_description(result)
    assert "authentication failed at http://127.0.0.1" in message and "revoked" in message
    assert TOKEN not in message
    assert session_files_contain(sessions, TOKEN) == []


def test_token_without_auth_type_is_explained(graphql: FakeGraphQL,
                                              run_driver: RunDriver) -> None:
    graphql.expected_auth = ("Authorization", f"Bearer {TOKEN}")
    with pytest.raises(DriverError, match="a token is configured but auth_type is 'none'"):
        run_driver(gq, config(graphql.endpoint), {"auth_token": TOKEN})


def test_progress_per_page_reaches_dagsters_event_log_at_most_once_per_heartbeat(
        graphql: FakeGraphQL, workdir: Path, tmp_path: Path,
        instance: dg.DagsterInstance) -> None:
    """Each progress line in Dagster's log is an event written to the instance; a paginated
    extractor reports one per page. Dagster's log gets the first and then one per heartbeat
    interval (10 s); the session's events keep every page's line."""
    graphql.users = [user(i) for i in range(24)]  # 12 pages of 2, fetched in well under 10 s
    text = _pipeline("", f"      endpoint: {graphql.endpoint}\n      auth_type: none\n")
    p = write(workdir / "graphql.yaml", text)
    sessions = tmp_path / "s"
    result = run_job(defs_for(p, sessions), "graphql_demo", instance)
    assert result.success, failure_description(result)
    assert len(graphql.requests) == 12
    logged = [r.user_message for r in instance.all_logs(result.run_id)
              if "progress:" in (r.user_message or "")]
    assert len(logged) == 1 and "step 'users' progress:" in logged[0], logged
    session_events = [e for e in events(sessions / result.run_id) if e.get("event") == "progress"]
    assert len(session_events) >= 12


# -- a mutation applies once ----------------------------------------------------------------
_MUTATION = "mutation Add($first: Int) { addUsers(n: $first) { id } }"


@pytest.mark.parametrize("answer", [
    {"data": {"addUsers": [{"id": 1}]}, "errors": [{"message": "partly failed"}]},
    {"data": {"addUser": [{"id": 1}]}},  # a data_path that reaches nothing
])
def test_a_mutation_whose_answer_cannot_be_stored_is_an_unknown_outcome(
        graphql: FakeGraphQL, run_driver: RunDriver, answer: dict[str, Any]) -> None:
    """The server applied the mutation and answered; the step failed on the answer with an
    ordinary, retryable error, so the step's retry policy and run retries sent it again."""
    graphql.script.append(canned(200, answer))
    with pytest.raises(OutcomeUnknownError, match="may have taken effect") as err:
        run_driver(gq, config(graphql.endpoint, query=_MUTATION, data_path="data.addUsers"))
    assert "not sent again" in str(err.value) and len(graphql.requests) == 1


def _mutation_pipeline(endpoint: str, data_path: str) -> str:
    return f"""\
oml_version: "0.1.0"
name: graphql-demo
x-dagster:
  retry: {{max_retries: 2}}
steps:
  - id: add
    component: graphql.extractor
    mode: read
    config:
      endpoint: {endpoint}
      query: "{_MUTATION}"
      data_path: {data_path}
      retry_delay: 0.1
"""


def test_a_pipeline_retry_does_not_send_a_mutation_again(
        graphql: FakeGraphQL, workdir: Path, tmp_path: Path,
        instance: dg.DagsterInstance) -> None:
    from osiris_dagster.dagster_layer.assets import retry_policy
    from osiris_dagster.oml.validate import validate_pipeline

    p = write(workdir / "graphql.yaml", _mutation_pipeline(graphql.endpoint, "data.addUsers"))
    pipeline = validate_pipeline(p).pipeline
    assert pipeline is not None and retry_policy(pipeline, "add") is None
    graphql.script.append(canned(200, {"data": {"addUser": []}}))  # a typo'd data_path
    result = run_job(defs_for(p, tmp_path / "s"), "graphql_demo", instance)
    assert not result.success and len(graphql.requests) == 1
    assert "may have taken effect" in failure_description(result)


def test_a_run_retry_of_all_steps_becomes_from_failure_once_a_mutation_applied(
        graphql: FakeGraphQL, workdir: Path, tmp_path: Path,
        instance: dg.DagsterInstance) -> None:
    """A run with dagster/retry_strategy ALL_STEPS failing after its append writer or mutation
    succeeded was retried from the start: the rows were appended (the mutation applied) once
    per retry."""
    from dagster._core.storage.tags import RETRY_STRATEGY_TAG

    p = write(workdir / "graphql.yaml", _mutation_pipeline(graphql.endpoint, "data.addUsers"))
    graphql.script.append(canned(200, {"data": {"addUsers": [{"id": 7}]}}))
    defs = defs_for(p, tmp_path / "s")
    result = defs.resolve_job_def("graphql_demo").execute_in_process(
        instance=instance, tags={RETRY_STRATEGY_TAG: "ALL_STEPS", "dagster/max_retries": "2"})
    assert result.success, failure_description(result)
    assert instance.get_run_by_id(result.run_id).tags[RETRY_STRATEGY_TAG] == "FROM_FAILURE"
    assert any("re-executes from its failed steps" in r.user_message
               for r in instance.all_logs(result.run_id))


def test_a_run_with_two_mutations_is_retagged_and_warned_of_once(
        graphql: FakeGraphQL, workdir: Path, tmp_path: Path,
        instance: dg.DagsterInstance) -> None:
    """The check read the run's tags as they were at its start, so every step that applied
    once retagged the run and warned again."""
    from dagster._core.storage.tags import RETRY_STRATEGY_TAG

    text = _mutation_pipeline(graphql.endpoint, "data.addUsers")
    second = text.split("steps:\n", 1)[1].replace("- id: add\n", "- id: add_again\n")
    p = write(workdir / "graphql.yaml", text + second)
    graphql.script.extend([canned(200, {"data": {"addUsers": [{"id": 7}]}}),
                           canned(200, {"data": {"addUsers": [{"id": 8}]}})])
    defs = defs_for(p, tmp_path / "s")
    result = defs.resolve_job_def("graphql_demo").execute_in_process(
        instance=instance, tags={RETRY_STRATEGY_TAG: "ALL_STEPS", "dagster/max_retries": "2"})
    assert result.success, failure_description(result)
    assert len(graphql.requests) == 2
    assert instance.get_run_by_id(result.run_id).tags[RETRY_STRATEGY_TAG] == "FROM_FAILURE"
    warned = [r for r in instance.all_logs(result.run_id)
              if "re-executes from its failed steps" in r.user_message]
    assert len(warned) == 1
