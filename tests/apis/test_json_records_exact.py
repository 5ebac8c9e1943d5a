"""API records reach the table exactly, or the step fails naming where: the staging of decoded
records (shared by graphql.extractor and posthog.extractor), the flattening, and PostHog's
answers and its `properties` JSON text."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.posthog import extractor as ph
from osiris_dagster.drivers.staging.json_records import JsonStager, flatten_record

from .conftest import FakePostHog, RunDriver, canned, iso

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
PH_CONFIG = {"data_type": "events", "initial_since": "2024-03-01T00:00:00Z", "page_size": 1000,
             "lookback_window_minutes": 15, "deduplication_enabled": True}


# -- staging ---------------------------------------------------------------------------------------
def test_an_integer_a_double_would_round_makes_a_float_column_text(tmp_path: Path) -> None:
    with JsonStager(tmp_path, "t") as st:
        st.add({"mixed": 0.5, "ints": 2**53 + 1, "fine": 0.5, "exact": 0.5})
        st.add({"mixed": 2**53 + 1, "ints": 1, "fine": 2**53, "exact": 2**60})
        assert st.column_types() == {"mixed": "VARCHAR", "ints": "BIGINT", "fine": "DOUBLE",
                                     "exact": "DOUBLE"}
        rows = duckdb.sql(st.select_sql()).fetchall()
    assert rows == [("0.5", 2**53 + 1, 0.5, 0.5),
                    ("9007199254740993", 1, float(2**53), float(2**60))]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_float_json_cannot_hold_fails_instead_of_becoming_null(tmp_path: Path,
                                                                 value: float) -> None:
    with JsonStager(tmp_path, "t") as st:
        st.add({"c": 1.5})
        with pytest.raises(DriverError, match=rf"column 'c' \(row 2\): {value!r} is not a "
                                              "number JSON can hold; it is not stored as NULL"):
            st.add({"c": value})


# -- flattening ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("record", "message"), [
    ({"a.b": "flat", "a": {"b": "nested"}},
     "`['a.b']` and `a.b` would both be the column 'a.b'"),
    ({"a": {"b": "nested"}, "a.b": "flat"},
     "`a.b` and `['a.b']` would both be the column 'a.b'"),
    ({"x": {"a.b": {"c": 1}, "a": {"b.c": 2}}},
     "`x['a.b'].c` and `x.a['b.c']` would both be the column 'x.a.b.c'"),
])
def test_keys_flattening_would_merge_are_both_named(record: dict[str, object],
                                                    message: str) -> None:
    with pytest.raises(ValueError) as err:  # KeyCollision
        flatten_record(record)
    assert str(err.value) == message


def test_flattening_without_a_collision_is_unchanged() -> None:
    assert flatten_record({"a.b": 1, "a": {"c": 2}, "d": {}}) == {"a.b": 1, "a.c": 2}


# -- PostHog ---------------------------------------------------------------------------------------
def _event(props: str) -> dict[str, object]:
    return {"uuid": "0000-0001", "event": "pageview", "timestamp": iso(T0),
            "distinct_id": "u1", "person_id": "p-1", "properties": props}


@pytest.mark.parametrize(("number", "read_as"), [
    ("1e400", "which would be read as inf"),
    ("NaN", "which is not a JSON number (JSON has no NaN or Infinity)"),
    ("0.12345678901234567890", "which would be read as 0.12345678901234568"),
])
def test_a_posthog_property_the_table_would_not_keep_fails_naming_the_row(
        number: str, read_as: str, posthog: FakePostHog, run_driver: RunDriver) -> None:
    posthog.add_events(_event(f'{{"$browser": "Firefox", "price": [1, {number}]}}'))
    with pytest.raises(DriverError) as err:
        run_driver(ph, PH_CONFIG, posthog.connection())
    what = "" if number == "NaN" else "the number "
    assert str(err.value).startswith(
        f"posthog.extractor: the properties of the row with uuid '0000-0001' (event 'pageview' "
        f"at {iso(T0)}) hold {what}{number} at `price[1]`, {read_as}. A value from PostHog is "
        "stored exactly or the step fails, and every run reads this event again")


def test_a_number_in_a_posthog_answer_fails_naming_page_and_place(
        posthog: FakePostHog, run_driver: RunDriver) -> None:
    columns = ["uuid", "event", "timestamp", "distinct_id", "person_id", "properties"]
    text = json.dumps({"columns": columns, "results": [
        ["0000-0001", "pageview", iso(T0), "u1", "p-1", "{}"]]})
    posthog.script.append(canned(200, raw=text.replace('"u1"', "1e-400")))
    with pytest.raises(DriverError) as err:
        run_driver(ph, PH_CONFIG, posthog.connection())
    assert str(err.value) == (
        f"PostHog: page 1 from {posthog.base_url}/api/projects/{posthog.project_id}/query/ "
        "holds the number 1e-400 at `results[0][3]`, which would be read as 0.0. A value from "
        "the API is stored exactly or the step fails: have the API send it as text, or leave "
        "it out.")


# -- keys written twice, integers past Python's limit ----------------------------------------------
def test_a_key_written_twice_in_a_posthog_answer_fails_naming_where(
        posthog: FakePostHog, run_driver: RunDriver) -> None:
    """Python's json kept the last value of `{"a": 1, "a": 2}` and dropped the first."""
    columns = ["uuid", "event", "timestamp", "distinct_id", "person_id", "properties"]
    text = json.dumps({"columns": columns, "results": [
        ["0000-0001", "pageview", iso(T0), "u1", "p-1", "{}"], [{"k": 1}]]})
    posthog.script.append(canned(200, raw=text.replace('{"k": 1}', '{"k": 1, "k": 2}')))
    with pytest.raises(DriverError) as err:
        run_driver(ph, PH_CONFIG, posthog.connection())
    assert str(err.value) == (
        f"PostHog: page 1 from {posthog.base_url}/api/projects/{posthog.project_id}/query/ "
        "holds the key 'k' twice in the object at `results[1][0]`; only one of its values "
        "could be kept. A value from the API is stored exactly or the step fails: have the API "
        "send each key once.")


def test_a_property_written_twice_fails_naming_the_row(posthog: FakePostHog,
                                                       run_driver: RunDriver) -> None:
    posthog.add_events(_event('{"$browser": "Firefox", "plan": {"tier": "a", "tier": "b"}}'))
    with pytest.raises(DriverError) as err:
        run_driver(ph, PH_CONFIG, posthog.connection())
    assert str(err.value).startswith(
        "posthog.extractor: the properties of the row with uuid '0000-0001' (event 'pageview' "
        f"at {iso(T0)}) hold the key 'tier' twice in the object at `plan`; only one of its "
        "values could be kept. A value from PostHog is stored exactly or the step fails, and "
        "every run reads this event again")


def test_an_integer_past_pythons_digit_limit_is_named_not_called_invalid_json(
        posthog: FakePostHog, run_driver: RunDriver) -> None:
    columns = ["uuid", "event", "timestamp", "distinct_id", "person_id", "properties"]
    text = json.dumps({"columns": columns, "results": [
        ["0000-0001", "pageview", iso(T0), "u1", "p-1", "{}"]]})
    posthog.script.append(canned(200, raw=text.replace('"u1"', "7" * 5000)))
    with pytest.raises(DriverError, match=r"page 1 from .* holds an integer of more than 4300 "
                                          r"digits, more than Python converts\."):
        run_driver(ph, PH_CONFIG, posthog.connection())
