"""graphql.extractor's `data_path` reaches the records or the step fails saying what the answer
has there: a path that matched nothing (a typo, a renamed field) or an answer without `data`
gave 0 rows and exit 0, and a csv_writer after it replaced its file with an empty one. A null
record is a row of NULLs (it was dropped, so the table had fewer rows than the answer)."""

from __future__ import annotations

from typing import Any

import pytest

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.graphql import extractor as gq
from osiris_dagster.drivers.http import json_paths

from .conftest import FakeGraphQL, RunDriver, canned
from .test_graphql import PAGED, config

ITEMS = {"data": {"items": [{"id": 1}, {"id": 2}]}}
FIX = ("so the step would store no rows without a word. Set `data_path` to where the answer "
       "holds the records, and ask for that field in the query.")


def _fails(graphql: FakeGraphQL, run_driver: RunDriver, body: Any, data_path: str,
           **kw: Any) -> str:
    graphql.script.append(canned(200, body))
    with pytest.raises(DriverError) as err:
        run_driver(gq, config(graphql.endpoint, data_path=data_path, **kw))
    return str(err.value)


def test_a_data_path_that_matches_nothing_fails_naming_what_the_answer_has(
        graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    assert _fails(graphql, run_driver, ITEMS, "data.itemz") == (
        "graphql.extractor: page 1 has no records at `data_path` (data.itemz): the answer has "
        f"no `itemz` at data (its keys there: items), {FIX}")


@pytest.mark.parametrize(("body", "path", "has"), [
    ({"data": {"user": None}}, "data.user.posts", "null at data.user, not an object with "
                                                  "`posts`"),
    ({"data": {"user": "x"}}, "data.user.posts[*]", '"x" at data.user, not an object with '
                                                    "`posts`"),
    ({"data": {"e": [{"node": {"id": 1}}, {"cursor": "c"}]}}, "data.e[*].node",
     "no `node` at data.e[1] (its keys there: cursor)"),
    ({"data": {"e": [{"node": {"id": 1}}, {}]}}, "data.e.node",
     "no `node` at data.e[1] (an empty object)"),
    ({"data": {"items": []}}, "data.items[0]", "a list of 0 at data.items, with no [0]"),
    ({"data": {"n": 5}}, "data.n[*]", "5 at data.n, not a list or an object"),
    ({"data": {"items": None}}, "data.items[*].id", "null at data.items, not a list or an "
                                                    "object"),
    ({"dta": {}}, "dta.items", "no `items` at dta (an empty object)"),
])
def test_every_way_a_path_can_miss_is_named(body: dict[str, Any], path: str, has: str,
                                            graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    body = {"data": {}, **body}
    assert _fails(graphql, run_driver, body, path) == (
        f"graphql.extractor: page 1 has no records at `data_path` ({path}): the answer has "
        f"{has}, {FIX}")


@pytest.mark.parametrize("body", [{"data": None}, {}])
@pytest.mark.parametrize("path", ["data", "data.items"])
def test_an_answer_without_data_or_errors_fails(body: dict[str, Any], path: str,
                                                graphql: FakeGraphQL,
                                                run_driver: RunDriver) -> None:
    what = "null" if body else "missing"
    assert _fails(graphql, run_driver, body, path) == (
        f"graphql.extractor: page 1 has no records: the answer's `data` is {what} and it has "
        "no `errors` (a GraphQL server answers without data only with errors), so the step "
        "would store no rows without a word. Check `endpoint`, and run the query there to "
        "see why it returns no data.")


def test_a_later_page_that_misses_is_named(graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    first = {"data": {"users": {"edges": [{"node": {"id": 1}}],
                                "pageInfo": {"hasNextPage": True, "endCursor": "c1"}}}}
    renamed = {"data": {"users": {"nodes": [{"id": 2}],
                                  "pageInfo": {"hasNextPage": False, "endCursor": None}}}}
    graphql.script += [canned(200, first), canned(200, renamed)]
    with pytest.raises(DriverError) as err:
        run_driver(gq, config(graphql.endpoint, **PAGED))
    assert str(err.value).startswith(
        "graphql.extractor: page 2 has no records at `data_path` (data.users.edges[*].node): "
        "the answer has no `edges` at data.users (its keys there: nodes, pageInfo), ")


@pytest.mark.parametrize("body", [{"data": {"items": []}}, {"data": {"items": None}},
                                  {"data": {"items": None}, "errors": []},
                                  {"data": {"e": []}}])
def test_a_path_present_and_empty_or_null_gives_no_rows(body: dict[str, Any],
                                                        graphql: FakeGraphQL,
                                                        run_driver: RunDriver) -> None:
    """The field is there and the API says it holds nothing: no rows, no failure."""
    graphql.script.append(canned(200, body))
    path = "data.e[*].node" if "e" in body["data"] else "data.items"
    ran = run_driver(gq, config(graphql.endpoint, data_path=path))
    assert ran.rows == [] and ran.result.rows_read == 0


def test_a_null_record_is_a_row_of_nulls(graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    """`edges: [{node: null}]`: the node was dropped, so the table had a row less than the
    answer. A null record is a row whose columns are all NULL."""
    graphql.script.append(canned(200, {"data": {"users": {"edges": [
        {"node": {"id": 1, "name": "a"}}, {"node": None}, {"node": {"id": 3, "name": "c"}}]}}}))
    ran = run_driver(gq, config(graphql.endpoint))
    assert ran.columns == ["id", "name"]
    assert ran.rows == [(1, "a"), (None, None), (3, "c")]
    assert ran.result.rows_read == 3


@pytest.mark.parametrize("path", ["data.items", "data.items[*]"])
def test_only_null_records_are_as_many_rows(path: str, graphql: FakeGraphQL,
                                            run_driver: RunDriver) -> None:
    graphql.script.append(canned(200, {"data": {"items": [None, None]}}))
    ran = run_driver(gq, config(graphql.endpoint, data_path=path, flatten_result=False))
    assert ran.columns == ["_empty"] and ran.rows == [(None,), (None,)]
    assert ran.result.rows_read == 2


def test_rows_at_keeps_null_records_and_raises_on_a_miss() -> None:
    doc = {"data": {"a": [{"n": {"x": 1}}, {"n": None}], "l": [[1, None], [2]], "z": None}}
    assert json_paths.rows_at(doc, "data.a[*].n") == [{"x": 1}, None]
    assert json_paths.rows_at(doc, "data.l[*]") == [1, None, 2]
    assert json_paths.rows_at(doc, "data.z") == [] and json_paths.rows_at(doc, "data.z[*]") == []
    with pytest.raises(json_paths.PathMiss) as err:
        json_paths.rows_at(doc, "data.a[*].n.x")
    assert (err.value.place, err.value.found, err.value.step) == (("data", "a", 1, "n"), None,
                                                                  "x")
