"""graphql.extractor keeps what the API sent, or fails naming where: numbers Python's json would
change, keys that flattening would merge, and pages that lack what paging needs (which used to
end the run after page 1 without a word)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from werkzeug import Response

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.graphql import extractor as gq

from .conftest import FakeGraphQL, RunDriver
from .test_graphql import PAGED, config


def raw(text: str) -> Callable[[], Response]:
    """A canned answer with exactly this JSON text (numbers as the server wrote them)."""
    return lambda: Response(text, content_type="application/json")


def page(nodes: str, page_info: str = '{"hasNextPage": false, "endCursor": "c"}') -> str:
    """The JSON text of one page, ``nodes`` the text of the node objects."""
    edges = ", ".join(f'{{"node": {n}}}' for n in nodes.split(";"))
    return f'{{"data": {{"users": {{"edges": [{edges}], "pageInfo": {page_info}}}}}}}'


# -- numbers ---------------------------------------------------------------------------------------
CHANGED = {  # the text sent -> what Python's json (and so the table) would have made of it
    "1e400": "which would be read as inf",
    "-1e400": "which would be read as -inf",
    "NaN": "which is not a JSON number (JSON has no NaN or Infinity)",
    "-Infinity": "which is not a JSON number (JSON has no NaN or Infinity)",
    "0.12345678901234567890": "which would be read as 0.12345678901234568",
    "1.0000000000000001": "which would be read as 1.0",
    "1e-400": "which would be read as 0.0",
}


@pytest.mark.parametrize("number", CHANGED)
def test_a_number_the_table_would_not_keep_fails_naming_page_place_and_number(
        number: str, graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    graphql.script.append(raw(page(f'{{"id": 1, "v": 0.5}};{{"id": 2, "v": {number}}}')))
    with pytest.raises(DriverError) as err:
        run_driver(gq, config(graphql.endpoint))
    what = "" if number in ("NaN", "-Infinity") else "the number "
    assert str(err.value) == (
        f"GraphQL endpoint: page 1 from {graphql.endpoint} holds {what}{number} at "
        f"`data.users.edges[1].node.v`, {CHANGED[number]}. A value from the API is stored "
        "exactly or the step fails: have the API send it as text, or leave it out.")


def test_a_nested_number_and_a_later_page_are_named(graphql: FakeGraphQL,
                                                    run_driver: RunDriver) -> None:
    """Inside a list the number became the text `[Infinity]`: not even JSON."""
    more = '{"hasNextPage": true, "endCursor": "c1"}'
    graphql.script += [raw(page('{"id": 1, "v": [1]}', more)),
                       raw(page('{"id": 2, "v": [2, 1e400]}'))]
    with pytest.raises(DriverError, match=r"page 2 from .* holds the number 1e400 at "
                                          r"`data\.users\.edges\[0\]\.node\.v\[1\]`"):
        run_driver(gq, config(graphql.endpoint, **PAGED))
    assert len(graphql.requests) == 2


def test_numbers_are_kept_exactly(graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    """An integer a double would round makes a column with floats text (as a CSV column);
    without floats it stays BIGINT; doubles' own numbers pass however they are written."""
    graphql.script.append(raw(page(
        '{"mixed": 0.5, "ints": 1, "floats": 0.1, "deep": {"l": [0.30000000000000004, 1]}};'
        '{"mixed": 9007199254740993, "ints": 9007199254740993, "floats": 1E20, '
        '"deep": {"l": [5e-324, 18446744073709551617]}};'
        '{"mixed": -0.0, "ints": -9223372036854775808, "floats": 1.10, "deep": {"l": null}}')))
    ran = run_driver(gq, config(graphql.endpoint))
    assert ran.types == {"mixed": "VARCHAR", "ints": "BIGINT", "floats": "DOUBLE",
                         "deep.l": "VARCHAR"}
    assert ran.column("mixed") == ["0.5", "9007199254740993", "-0.0"]
    assert ran.column("ints") == [1, 9007199254740993, -9223372036854775808]
    assert ran.column("floats") == [0.1, 1e20, 1.1]
    assert [json.loads(v) if v else v for v in ran.column("deep.l")] == \
        [[0.30000000000000004, 1], [5e-324, 18446744073709551617], None]


# -- flattening ------------------------------------------------------------------------------------
def test_keys_flattening_would_merge_fail_naming_both(graphql: FakeGraphQL,
                                                      run_driver: RunDriver) -> None:
    node = '{"id": 1};{"id": 2, "a.b": "flat", "a": {"b": "nested"}}'
    graphql.script.append(raw(page(node)))
    with pytest.raises(DriverError) as err:
        run_driver(gq, config(graphql.endpoint))
    assert str(err.value) == (
        "graphql.extractor: page 1, record 2 at `data_path`: `['a.b']` and `a.b` would both be "
        "the column 'a.b' (`flatten_result` joins nested keys with '.'). Give one of them "
        "another name with a GraphQL alias, or set `flatten_result: false`.")
    graphql.script.append(raw(page(node)))  # unflattened, both are kept
    ran = run_driver(gq, config(graphql.endpoint, flatten_result=False))
    assert ran.dicts()[1] == {"id": 2, "a.b": "flat", "a": '{"b": "nested"}'}


# -- pagination ------------------------------------------------------------------------------------
NO_NEXT_CURSOR = {
    "null": ('{"hasNextPage": true, "endCursor": null}', "null"),
    "missing": ('{"hasNextPage": true}', "missing"),
    "empty": ('{"hasNextPage": true, "endCursor": ""}', '""'),
}


@pytest.mark.parametrize("case", NO_NEXT_CURSOR)
def test_a_next_page_without_a_cursor_fails(case: str, graphql: FakeGraphQL,
                                            run_driver: RunDriver) -> None:
    info, shown = NO_NEXT_CURSOR[case]
    graphql.script += [raw(page('{"id": 1}', info))] * 2
    with pytest.raises(DriverError) as err:
        run_driver(gq, config(graphql.endpoint, **PAGED))
    fields = "hasNextPage" if case == "missing" else "hasNextPage, endCursor"
    assert str(err.value) == (
        f"graphql.extractor: page 1: `hasNextPage` is true at data.users.pageInfo but "
        f"`endCursor` is {shown} there, so the next page cannot be asked for (its fields: "
        f"{fields}). Set `pagination_cursor_field` to the field holding the cursor, and ask "
        "for it in the query.")
    assert len(graphql.requests) == 1


@pytest.mark.parametrize(("info", "found"), [("null", "null"), ('"x"', '"x"')])
def test_no_page_info_object_fails_saying_what_was_there(
        info: str, found: str, graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    graphql.script.append(raw(page('{"id": 1}', info)))
    with pytest.raises(DriverError) as err:
        run_driver(gq, config(graphql.endpoint, **PAGED))
    assert str(err.value) == (
        f"graphql.extractor: page 1 has no page info at `pagination_path` "
        f"(data.users.pageInfo): found {found} there, so it cannot tell whether more pages "
        "follow. Set `pagination_path` to the object holding `hasNextPage` and `endCursor` "
        "(e.g. data.users.pageInfo) and ask for them in the query, or set "
        "`pagination_enabled: false`.")


@pytest.mark.parametrize(("info", "shown"), [('{"endCursor": "c"}', "no"),
                                             ('{"hasNextPage": "yes", "endCursor": "c"}',
                                              '"yes"')])
def test_page_info_without_a_boolean_has_next_fails(
        info: str, shown: str, graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    graphql.script.append(raw(page('{"id": 1}', info)))
    with pytest.raises(DriverError) as err:
        run_driver(gq, config(graphql.endpoint, **PAGED))
    fields = ", ".join(json.loads(info))
    assert str(err.value) == (
        f"graphql.extractor: page 1: the page info at data.users.pageInfo has {shown} "
        f"`hasNextPage`, not true or false (its fields: {fields}). Set "
        "`pagination_has_next_field` to the field saying whether more pages follow, and ask "
        "for it in the query.")


def test_the_last_page_ends_the_run(graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    """hasNextPage false ends it even without a cursor (a last page often has none)."""
    graphql.script += [raw(page('{"id": 1}', '{"hasNextPage": true, "endCursor": "c1"}')),
                       raw(page('{"id": 2}', '{"hasNextPage": false, "endCursor": null}'))]
    ran = run_driver(gq, config(graphql.endpoint, **PAGED))
    assert ran.column("id") == [1, 2]
    assert [r["body"]["variables"].get("after") for r in graphql.requests] == [None, "c1"]


# -- keys written twice, errors that are not a list ------------------------------------------------
def test_a_key_written_twice_fails_naming_it(graphql: FakeGraphQL, run_driver: RunDriver) -> None:
    """Python's json kept `"v": 2` of `{"v": 1, "v": 2}` and the step succeeded."""
    graphql.script.append(raw(page('{"id": 1, "v": 1, "v": 2}')))
    with pytest.raises(DriverError) as err:
        run_driver(gq, config(graphql.endpoint))
    assert str(err.value) == (
        f"GraphQL endpoint: page 1 from {graphql.endpoint} holds the key 'v' twice in the "
        "object at `data.users.edges[0].node`; only one of its values could be kept. A value "
        "from the API is stored exactly or the step fails: have the API send each key once.")


@pytest.mark.parametrize("errors", ['{"message": "rate limited"}', '"boom"'])
def test_errors_that_are_not_a_list_fail_the_step(errors: str, graphql: FakeGraphQL,
                                                  run_driver: RunDriver) -> None:
    """An `errors` object beside `data` was ignored: the step stored what `data` held."""
    body = page('{"id": 1}')
    graphql.script.append(raw(body[:-1] + f', "errors": {errors}}}'))
    with pytest.raises(DriverError, match=r"returned errors that are not a list: "
                                          r"(rate limited|boom)\."):
        run_driver(gq, config(graphql.endpoint))
