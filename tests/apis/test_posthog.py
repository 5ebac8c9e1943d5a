"""posthog.extractor against a local fake of PostHog's HogQL query API."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from osiris_dagster.core.errors import DriverError
from osiris_dagster.dagster_layer.io_manager import OsirisIOManager
from osiris_dagster.drivers.posthog import extractor as ph
from osiris_dagster.drivers.posthog.options import Options
from osiris_dagster.drivers.posthog.state import STATE_FILE, RecentKeys, SeenKeys

from ..helpers import defs_for, failure_description, materialisations, metrics, run_job, write
from .conftest import FakePostHog, RunDriver, canned, iso, session_files_contain

T0 = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
SINCE = "2024-03-01T00:00:00Z"


def event(i: int, at: datetime, name: str = "pageview", **props: Any) -> dict[str, Any]:
    return {"uuid": f"0000-{i:04d}", "event": name, "timestamp": iso(at),
            "distinct_id": f"user{i % 3}", "person_id": f"p-{i % 3}",
            "properties": json.dumps({"$browser": "Firefox", **props})}


def config(**kw: Any) -> dict[str, Any]:
    base = {"data_type": "events", "initial_since": SINCE, "page_size": 1000,
            "lookback_window_minutes": 15, "deduplication_enabled": True}
    return {**base, **kw}


# -- data types and flattening ------------------------------------------------------------------
def test_events_are_flattened_and_typed(posthog: FakePostHog, run_driver: RunDriver) -> None:
    posthog.add_events(
        event(1, T0, n=1, nested={"a": [1, 2]}),
        event(2, T0 + timedelta(seconds=1), name="click", n=2.5, flag=True),
    )
    ran = run_driver(ph, config(), posthog.connection())
    assert ran.columns[:5] == ["uuid", "event", "timestamp", "distinct_id", "person_id"]
    rows = ran.dicts()
    assert [r["uuid"] for r in rows] == ["0000-0001", "0000-0002"]
    assert rows[0]["properties_$browser"] == "Firefox"
    assert json.loads(rows[0]["properties_nested"]) == {"a": [1, 2]}  # nested -> JSON text
    assert ran.types["properties_n"] == "DOUBLE"  # 1 and 2.5
    assert ran.types["properties_flag"] == "BOOLEAN"
    assert rows[0]["properties_flag"] is None
    assert ran.types["timestamp"] == "VARCHAR"
    assert ran.result.rows_read == ran.result.rows_written == 2
    assert ran.metrics["rows_read"] == 2 and ran.metrics["pages_fetched"] == 1
    assert ran.metrics["requests_made"] == 1
    query = posthog.queries[0]
    assert query.startswith("SELECT uuid, event, timestamp, distinct_id, person_id, properties "
                            "FROM events WHERE timestamp >= toDateTime64('2024-03-01 "
                            "00:00:00.000000', 6, 'UTC') AND timestamp < toDateTime64(")
    assert query.endswith("ORDER BY timestamp ASC, uuid ASC LIMIT 1000")
    assert posthog.requests[0]["auth"] == f"Bearer {posthog.api_key}"


def test_event_types_filter_is_escaped(posthog: FakePostHog, run_driver: RunDriver) -> None:
    posthog.add_events(event(1, T0, name="it's"), event(2, T0, name="other"),
                       event(3, T0, name="$pageview"))
    ran = run_driver(ph, config(event_types=["it's", "$pageview"]), posthog.connection())
    assert sorted(ran.column("event")) == ["$pageview", "it's"]
    assert "event IN ('it\\'s', '$pageview')" in posthog.queries[0]


def test_persons_flattening(posthog: FakePostHog, run_driver: RunDriver) -> None:
    posthog.tables["persons"] = [
        {"id": "b-2", "created_at": iso(T0 + timedelta(hours=1)), "is_identified": False,
         "properties": {"email": "b@x.io", "plan": {"tier": "pro"}}},
        {"id": "a-1", "created_at": iso(T0), "is_identified": True,
         "properties": json.dumps({"email": "a@x.io"})},
    ]
    posthog.columns["persons"] = ["id", "created_at", "properties", "is_identified"]
    ran = run_driver(ph, config(data_type="persons", initial_since=None), posthog.connection())
    assert ran.columns == ["id", "created_at", "is_identified", "person_properties_email",
                           "person_properties_plan"]
    assert ran.rows[0][:3] == ("a-1", iso(T0), True)
    assert json.loads(ran.rows[1][4]) == {"tier": "pro"}
    # persons have no time window unless there is state or initial_since
    assert posthog.queries[0] == ("SELECT id, created_at, properties, is_identified FROM persons "
                                  "ORDER BY created_at ASC, id ASC LIMIT 1000")


def test_sessions_pass_through(posthog: FakePostHog, run_driver: RunDriver) -> None:
    posthog.columns["sessions"] = ["session_id", "$start_timestamp", "$end_timestamp",
                                   "$urls", "$pageview_count"]
    posthog.tables["sessions"] = [
        {"session_id": "s-2", "$start_timestamp": iso(T0 + timedelta(minutes=5)),
         "$end_timestamp": iso(T0 + timedelta(minutes=9)), "$urls": ["/a", "/b"],
         "$pageview_count": 2},
        {"session_id": "s-1", "$start_timestamp": iso(T0),
         "$end_timestamp": iso(T0 + timedelta(minutes=1)), "$urls": [], "$pageview_count": 1},
    ]
    ran = run_driver(ph, config(data_type="sessions"), posthog.connection())
    assert ran.columns == posthog.columns["sessions"]
    assert ran.column("session_id") == ["s-1", "s-2"]
    assert ran.column("$urls") == ["[]", '["/a", "/b"]']
    assert ran.types["$pageview_count"] == "BIGINT"
    assert "FROM sessions WHERE $start_timestamp >= " in posthog.queries[0]
    assert "ORDER BY $start_timestamp ASC, session_id ASC" in posthog.queries[0]


def test_person_distinct_ids_seek_pages_without_offset(posthog: FakePostHog,
                                                       run_driver: RunDriver) -> None:
    posthog.columns["person_distinct_ids"] = ["distinct_id", "person_id"]
    posthog.tables["person_distinct_ids"] = [
        {"distinct_id": f"d{i}", "person_id": f"p{i // 2}"} for i in range(5)]
    ran = run_driver(ph, config(data_type="person_distinct_ids", page_size=2),
                     posthog.connection())
    assert ran.column("distinct_id") == ["d0", "d1", "d2", "d3", "d4"]
    assert len(posthog.queries) == 3 and "OFFSET" not in " ".join(posthog.queries)
    assert "(person_id > toUUID('p0') OR (person_id = toUUID('p0') AND distinct_id > 'd1'))" \
        in posthog.queries[1]
    assert not (ran.result.extra_metadata.get("rows_deduplicated"))


def test_empty_result_keeps_the_fixed_columns(posthog: FakePostHog,
                                              run_driver: RunDriver) -> None:
    ran = run_driver(ph, config(), posthog.connection())
    assert ran.rows == []
    assert ran.columns == ["uuid", "event", "timestamp", "distinct_id", "person_id"]


# -- pagination ---------------------------------------------------------------------------------
def test_seek_pagination_keeps_columns_first_seen_on_later_pages(
        posthog: FakePostHog, run_driver: RunDriver, sessions_dir: Path) -> None:
    # 5 events in the same second with microsecond differences: truncating the seek timestamp
    # to seconds (as Osiris does) would re-read them forever
    posthog.add_events(*[event(i, T0 + timedelta(microseconds=i)) for i in range(5)],
                       event(5, T0 + timedelta(seconds=2), late_prop="only here"))
    ran = run_driver(ph, config(page_size=2), posthog.connection())
    assert ran.column("uuid") == [f"0000-{i:04d}" for i in range(6)]
    assert ran.column("properties_late_prop") == [None] * 5 + ["only here"]
    assert len(posthog.queries) == 4  # 3 full pages, then an empty one
    assert "timestamp > toDateTime64('2024-03-01 12:00:00.123457', 6, 'UTC') OR (timestamp = " \
           "toDateTime64('2024-03-01 12:00:00.123457', 6, 'UTC') AND uuid > " \
           "toUUID('0000-0001'))" in posthog.queries[1]
    assert ran.metrics["pages_fetched"] == 4
    assert not list((sessions_dir / "s1" / "tmp").glob("*.ndjson"))  # staging file removed


def test_next_links_are_followed(posthog: FakePostHog, run_driver: RunDriver) -> None:
    posthog.next_chunk = 2
    posthog.add_events(*[event(i, T0 + timedelta(seconds=i)) for i in range(5)])
    ran = run_driver(ph, config(page_size=4), posthog.connection())
    assert ran.column("uuid") == [f"0000-{i:04d}" for i in range(5)]
    methods = [r["method"] for r in posthog.requests]
    # query (2 rows + next) -> next (2 rows) -> full page of 4: seek query (1 row)
    assert methods == ["POST", "GET", "POST"]
    assert all(r["auth"] == f"Bearer {posthog.api_key}" for r in posthog.requests)


def test_next_link_to_another_host_is_refused(posthog: FakePostHog,
                                              run_driver: RunDriver) -> None:
    posthog.script.append(canned(200, {"results": [], "columns": ["uuid"],
                                       "next": "https://evil.example.com/steal"}))
    with pytest.raises(DriverError, match="refusing to send the API key"):
        run_driver(ph, config(), posthog.connection())


# -- failures -----------------------------------------------------------------------------------
def test_429_with_retry_after_then_success(posthog: FakePostHog, run_driver: RunDriver) -> None:
    posthog.add_events(event(1, T0))
    posthog.script.append(canned(429, {"detail": "Rate limit exceeded"}, {"Retry-After": "1"}))
    ran = run_driver(ph, config(), posthog.connection())
    assert ran.column("uuid") == ["0000-0001"]
    gap = posthog.requests[1]["at"] - posthog.requests[0]["at"]
    assert gap >= 0.95  # Retry-After honoured although the backoff is 10 ms
    assert ran.metrics["requests_made"] == 2
    retry = [e for e in ran.events if e["event"] == "http_retry"]
    assert retry and retry[0]["reason"].startswith("HTTP 429")


def test_500_then_success(posthog: FakePostHog, run_driver: RunDriver) -> None:
    posthog.add_events(event(1, T0))
    posthog.script += [canned(500), canned(503)]
    ran = run_driver(ph, config(), posthog.connection())
    assert ran.rows and len(posthog.requests) == 3


def test_persistent_500_fails_after_bounded_retries(posthog: FakePostHog,
                                                    run_driver: RunDriver) -> None:
    posthog.script += [canned(500)] * 10
    with pytest.raises(DriverError) as err:
        run_driver(ph, config(), posthog.connection(max_retries=2))
    text = str(err.value)
    assert "server error at " + posthog.base_url in text and "3 attempts" in text
    assert len(posthog.requests) == 3
    assert posthog.api_key not in text


def test_a_key_across_the_cut_of_a_query_error_is_masked(posthog: FakePostHog,
                                                         run_driver: RunDriver) -> None:
    """The answer's `error` was cut to 300 characters before masking: a key across the cut
    showed its first characters."""
    posthog.script.append(canned(200, {"results": [], "error": "y" * 290 + posthog.api_key}))
    with pytest.raises(DriverError) as err:
        run_driver(ph, config(), posthog.connection())
    text = str(err.value)
    assert "the query failed at" in text and "yyyy***MASK" in text
    assert posthog.api_key[:6] not in text, text


def test_401_is_an_auth_error_naming_host_and_project(posthog: FakePostHog,
                                                      run_driver: RunDriver) -> None:
    conn = posthog.connection(api_key="phx_Wrong-Key-987654")
    with pytest.raises(DriverError) as err:
        run_driver(ph, config(), conn)
    text = str(err.value)
    assert "authentication failed at " + posthog.base_url in text
    assert "HTTP 401" in text and "project 4242" in text and "api_key" in text
    assert "phx_Wrong-Key-987654" not in text
    assert len(posthog.requests) == 1  # not retried


def test_timeout_is_a_clear_error(posthog: FakePostHog, run_driver: RunDriver) -> None:
    posthog.script.append(canned(200, {"results": []}, delay=1.0))
    start = time.monotonic()
    with pytest.raises(DriverError) as err:
        run_driver(ph, config(), posthog.connection(timeout=0.3))
    assert time.monotonic() - start < 1.0  # timeouts are not retried
    assert f"no response within 0.3 s from {posthog.base_url}" in str(err.value)
    assert posthog.api_key not in str(err.value)


def test_malformed_json(posthog: FakePostHog, run_driver: RunDriver) -> None:
    posthog.script.append(canned(200, raw="<html>Welcome to nginx</html>"))
    with pytest.raises(DriverError, match=r"is not valid JSON .*<html>Welcome"):
        run_driver(ph, config(), posthog.connection())


def test_hogql_error_detail_is_reported(posthog: FakePostHog, run_driver: RunDriver) -> None:
    posthog.script.append(canned(400, {"type": "validation_error", "code": "query_error",
                                       "detail": "Unable to resolve field: nope"}))
    with pytest.raises(DriverError, match="HTTP 400.*Unable to resolve field: nope"):
        run_driver(ph, config(), posthog.connection())


def test_connection_refused_names_the_host(run_driver: RunDriver) -> None:
    conn = {"api_key": "phx_key-abcdef", "project_id": "1", "region": "self_hosted",
            "custom_base_url": "http://127.0.0.1:9", "max_retries": 0}
    with pytest.raises(DriverError, match=r"cannot connect to http://127.0.0.1:9 "
                                          r"\(connection refused"):
        run_driver(ph, config(), conn)


def test_region_and_missing_settings() -> None:
    conn = {"api_key": "k" * 10, "project_id": 7}
    assert Options.from_config(config(), conn).base_url == "https://us.posthog.com"
    assert Options.from_config(config(), {**conn, "region": "eu"}).base_url == \
        "https://eu.posthog.com"
    opts = Options.from_config(config(region="self_hosted", custom_base_url="http://h:1/"),
                                  {**conn, "region": "eu"})
    assert opts.query_url == "http://h:1/api/projects/7/query/"  # the step wins
    with pytest.raises(DriverError, match="needs `custom_base_url`"):
        Options.from_config(config(region="self_hosted"), conn)
    with pytest.raises(DriverError, match="no `api_key`"):
        Options.from_config(config(), {"project_id": 1})


# -- incremental state --------------------------------------------------------------------------
def test_second_run_continues_from_the_high_water_mark(
        posthog: FakePostHog, run_driver: RunDriver, sessions_dir: Path) -> None:
    posthog.add_events(*[event(i, T0 + timedelta(minutes=i)) for i in range(5)])  # 12:00..12:04
    first = run_driver(ph, config(page_size=2), posthog.connection())
    assert len(first.rows) == 5
    state_file = sessions_dir / ".state" / "p" / "api" / STATE_FILE
    state = json.loads(state_file.read_text())
    events_state = state["data_types"]["events"]
    assert events_state["last_time"] == (T0 + timedelta(minutes=4)).isoformat()
    assert events_state["last_key"] == "0000-0004"
    assert events_state["recent_keys"] == [f"0000-{i:04d}" for i in range(5)]
    assert state["scope"] == {"base_url": posthog.base_url, "project_id": "4242"}
    assert posthog.api_key not in state_file.read_text()

    # new events, and one that arrived late with a timestamp inside the lookback window
    posthog.add_events(event(10, T0 + timedelta(minutes=3, seconds=30), name="late"),
                       event(11, T0 + timedelta(minutes=6)), event(12, T0 + timedelta(minutes=7)))
    posthog.queries.clear()
    second = run_driver(ph, config(page_size=2), posthog.connection())
    assert second.column("uuid") == ["0000-0010", "0000-0011", "0000-0012"]
    since = (T0 + timedelta(minutes=4) - timedelta(minutes=15)).strftime("%Y-%m-%d %H:%M:%S.%f")
    assert f"timestamp >= toDateTime64('{since}', 6, 'UTC')" in posthog.queries[0]
    assert second.metrics["rows_deduplicated"] == 5  # the overlap, dropped by uuid
    assert second.result.rows_read == 8 and second.result.rows_written == 3
    assert any(e["event"] == "posthog_resume" for e in second.events)

    third = run_driver(ph, config(page_size=2), posthog.connection())
    assert third.rows == []
    state = json.loads(state_file.read_text())
    assert state["data_types"]["events"]["last_key"] == "0000-0012"


def test_state_is_not_written_when_the_step_fails(
        posthog: FakePostHog, run_driver: RunDriver, sessions_dir: Path) -> None:
    posthog.add_events(*[event(i, T0 + timedelta(seconds=i)) for i in range(3)])
    posthog.script += [canned(200, {"results": [[f"x{i}", "e", iso(T0), "d", "p", "{}"]
                                                for i in range(2)],
                                    "columns": ["uuid", "event", "timestamp", "distinct_id",
                                                "person_id", "properties"]})]
    posthog.script += [canned(500)] * 10
    with pytest.raises(DriverError):
        run_driver(ph, config(page_size=2), posthog.connection(max_retries=1))
    assert not (sessions_dir / ".state" / "p" / "api" / STATE_FILE).exists()


def test_state_of_other_event_types_or_project_is_ignored(
        posthog: FakePostHog, run_driver: RunDriver) -> None:
    posthog.add_events(event(1, T0, name="a"), event(2, T0 + timedelta(hours=1), name="b"))
    run_driver(ph, config(event_types=["b"]), posthog.connection())
    again = run_driver(ph, config(event_types=["a", "b"]), posthog.connection())
    assert again.column("uuid") == ["0000-0001", "0000-0002"]  # not resumed after 13:00
    assert any(e["event"] == "posthog_state_ignored" for e in again.events)


def test_dedup_disabled_keeps_a_uuid_the_data_repeats(posthog: FakePostHog,
                                                      run_driver: RunDriver) -> None:
    """Off, a uuid met twice in the data is kept (it used to mean: deliver the last run's
    overlap again; that is never done now, see test_posthog_reruns)."""
    posthog.add_events(event(1, T0), event(1, T0 + timedelta(minutes=1)))
    ran = run_driver(ph, config(deduplication_enabled=False), posthog.connection())
    assert ran.column("uuid") == ["0000-0001", "0000-0001"]
    assert ran.metrics["rows_deduplicated"] == 0


def test_recent_keys_cover_the_window_and_saved_keys_are_never_evicted() -> None:
    """The keys of the window's rows are all kept (a bounded list dropped the oldest, which the
    next run then delivered again), and the saved keys are not evicted by this run's: a
    bounded FIFO of both had every evicted saved key evict the next one to be checked."""
    recent = RecentKeys(timedelta(minutes=1))
    for i in range(5):
        recent.add(T0 + timedelta(seconds=i), f"k{i}")
    assert recent.keys() == ["k0", "k1", "k2", "k3", "k4"]
    recent.add(T0 + timedelta(minutes=5), "k9")
    assert recent.keys() == ["k9"]
    seen = SeenKeys(2, ["a", "b", "c"])
    for key in ("x", "y", "z"):
        seen.add(key)
    assert all(k in seen for k in ("a", "b", "c", "y", "z")) and "x" not in seen


def test_a_window_of_more_rows_than_the_page_keys_is_not_delivered_again(
        posthog: FakePostHog, run_driver: RunDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    """More rows in the lookback window than the run keeps of its own keys: the second run
    delivered the whole window again (rows_deduplicated 0)."""
    monkeypatch.setattr("osiris_dagster.drivers.posthog.extractor.REPEATED_PAGE_KEYS", 3)
    posthog.add_events(*[event(i, T0 + timedelta(seconds=i)) for i in range(12)])
    first = run_driver(ph, config(page_size=5), posthog.connection())
    assert len(first.rows) == 12
    again = run_driver(ph, config(page_size=5), posthog.connection())
    assert again.rows == [] and again.metrics["rows_deduplicated"] == 12


def test_a_longer_lookback_does_not_deliver_rows_whose_keys_were_not_kept(
        posthog: FakePostHog, run_driver: RunDriver, sessions_dir: Path) -> None:
    """The lookback made longer than the last run's: rows before the old window were
    delivered, but their keys were not kept, so they came again as new rows. The window now
    starts where the kept keys start, and widens run by run."""
    posthog.add_events(*[event(i, T0 + timedelta(minutes=10 * i)) for i in range(7)])  # 1 hour
    first = run_driver(ph, config(lookback_window_minutes=15), posthog.connection())
    assert len(first.rows) == 7
    posthog.queries.clear()
    again = run_driver(ph, config(lookback_window_minutes=120), posthog.connection())
    assert again.rows == []
    since = (T0 + timedelta(minutes=45)).strftime("%Y-%m-%d %H:%M:%S.%f")
    assert f"timestamp >= toDateTime64('{since}', 6, 'UTC')" in posthog.queries[0]
    posthog.add_events(event(20, T0 + timedelta(minutes=70)))
    third = run_driver(ph, config(lookback_window_minutes=120), posthog.connection())
    assert third.column("uuid") == ["0000-0020"]


def test_a_state_file_that_is_not_json_fails_the_step(
        posthog: FakePostHog, run_driver: RunDriver, sessions_dir: Path) -> None:
    """A cut or edited state file was read as no state: the run delivered the whole history
    again (30 days by default), and the file was overwritten."""
    posthog.add_events(*[event(i, T0 + timedelta(seconds=i)) for i in range(3)])
    run_driver(ph, config(), posthog.connection())
    state_file = sessions_dir / ".state" / "p" / "api" / STATE_FILE
    state_file.write_text(state_file.read_text()[:40])
    with pytest.raises(DriverError, match=r"posthog_state.json is not JSON .*delete it to start "
                                          r"over"):
        run_driver(ph, config(), posthog.connection())
    state_file.unlink()
    assert len(run_driver(ph, config(), posthog.connection()).rows) == 3


# -- end to end through Dagster -----------------------------------------------------------------
PIPELINE = """\
oml_version: "0.1.0"
name: posthog-demo
steps:
  - id: events
    component: posthog.extractor
    mode: read
    config:
      data_type: events
      initial_since: "2024-03-01T00:00:00Z"
      page_size: 100
      event_types: [pageview, click]
  - id: by-browser
    component: duckdb.processor
    mode: transform
    needs: [events]
    config:
      query: >
        SELECT "properties_$browser" AS browser, count(*) AS n
        FROM input_df GROUP BY 1 ORDER BY 1
"""


def test_end_to_end_through_dagster(posthog: FakePostHog, workdir: Path, tmp_path: Path,
                                    instance: dg.DagsterInstance,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTHOG_KEY", posthog.api_key)
    posthog.add_events(*[event(i, T0 + timedelta(seconds=i), name="click" if i % 2 else
                               "pageview", **({"$browser": "Chrome"} if i % 3 == 0 else {}))
                         for i in range(250)], event(999, T0, name="ignored"))
    conns = write(workdir / "osiris_connections.yaml", f"""\
version: 1
connections:
  posthog:
    main:
      default: true
      api_key: ${{POSTHOG_KEY}}
      project_id: "4242"
      region: self_hosted
      custom_base_url: {posthog.base_url}
""")
    p = write(workdir / "posthog.yaml", PIPELINE)
    sessions = tmp_path / "s"
    result = run_job(defs_for(p, sessions, conns), "posthog_demo", instance)
    assert result.success, failure_description(result)
    mats = materialisations(result)
    assert mats["posthog-demo/events"]["dagster/row_count"].value == 250
    session_dir = sessions / result.run_id
    with duckdb.connect(str(session_dir / "pipeline_data.duckdb"), read_only=True) as con:
        rows = con.execute('SELECT browser, n FROM by_browser').fetchall()
    assert rows == [("Chrome", 84), ("Firefox", 166)]
    assert len(posthog.queries) == 3  # 100 + 100 + 50
    names = {m["metric"] for m in metrics(session_dir)}
    assert {"rows_read", "requests_made", "pages_fetched"} <= names
    assert session_files_contain(sessions, posthog.api_key) == []

    # a second materialisation only brings what is new
    posthog.add_events(event(1000, T0 + timedelta(hours=1), name="click"))
    again = run_job(defs_for(p, sessions, conns), "posthog_demo", instance)
    assert again.success, failure_description(again)
    assert materialisations(again)["posthog-demo/events"]["dagster/row_count"].value == 1
    assert session_files_contain(sessions, posthog.api_key) == []


def test_end_to_end_auth_failure_is_masked(posthog: FakePostHog, workdir: Path,
                                           tmp_path: Path, instance: dg.DagsterInstance,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "phx_Totally-Wrong-Key-0001"
    monkeypatch.setenv("POSTHOG_KEY", wrong)
    conns = write(workdir / "osiris_connections.yaml", f"""\
version: 1
connections:
  posthog:
    main:
      default: true
      api_key: ${{POSTHOG_KEY}}
      project_id: "4242"
      custom_base_url: {posthog.base_url}
""")
    p = write(workdir / "posthog.yaml", PIPELINE)
    sessions = tmp_path / "s"
    result = run_job(defs_for(p, sessions, conns), "posthog_demo", instance)
    assert not result.success
    text = failure_description(result)
    assert "authentication failed at " + posthog.base_url in text and "4242" in text
    assert wrong not in text
    assert session_files_contain(sessions, wrong) == []


def test_retry_after_beyond_the_bound_fails_at_once(posthog: FakePostHog,
                                                    run_driver: RunDriver) -> None:
    posthog.script.append(canned(429, {"detail": "slow down"}, {"Retry-After": "3600"}))
    start = time.monotonic()
    with pytest.raises(DriverError, match=r"asks to wait 3600 s \(Retry-After\)"):
        run_driver(ph, config(), posthog.connection())
    assert time.monotonic() - start < 1 and len(posthog.requests) == 1


# -- state advances only once the step's output is accepted (issue 12, item 4) ------------------
STATE_PIPELINE = """\
oml_version: "0.1.0"
name: posthog-state
x-dagster:
  steps:
    events:
      deps: []
{extra}
steps:
  - id: events
    component: posthog.extractor
    mode: read
    config:
      data_type: events
      initial_since: "2024-03-01T00:00:00Z"
      page_size: 100
"""

# how the step fails after the driver extracted the rows (x-dagster.steps.events settings)
FAILURES = {
    "schema_strict": "      schema: strict",  # the new rows add a column
    "blocking_check": "      checks: {row_count: {max: 2}, blocking: true}",  # 3 new rows
    "io_manager": "",  # the IO manager fails while handling the output
}


class _FailingIOManager(OsirisIOManager):
    """The real IO manager, failing after it handled the output (as a full disk or a lost
    instance database would): the step fails after its table was built."""

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        super().handle_output(context, obj)
        raise OSError("injected: the output could not be recorded")


def _state_defs(workdir: Path, sessions: Path, conns: Path, extra: str = "",
                io_fails: bool = False) -> dg.Definitions:
    p = write(workdir / "posthog_state.yaml", STATE_PIPELINE.format(extra=extra))
    defs = defs_for(p, sessions, conns)
    if not io_fails:
        return defs
    return dg.Definitions(assets=defs.assets, jobs=defs.jobs, executor=defs.executor,
                          resources={**(defs.resources or {}), "osiris_io_manager":
                                     _FailingIOManager(sessions_dir=str(sessions))})


def _posthog_connections(workdir: Path, posthog: FakePostHog) -> Path:
    return write(workdir / "osiris_connections.yaml", f"""\
version: 1
connections:
  posthog:
    main:
      default: true
      api_key: ${{POSTHOG_KEY}}
      project_id: "{posthog.project_id}"
      region: self_hosted
      custom_base_url: {posthog.base_url}
""")


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_state_advances_only_after_the_output_is_accepted(
        failure: str, posthog: FakePostHog, workdir: Path, tmp_path: Path,
        instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTHOG_KEY", posthog.api_key)
    conns = _posthog_connections(workdir, posthog)
    sessions = tmp_path / "s"
    state = sessions / ".state" / "posthog_state" / "events" / STATE_FILE
    posthog.add_events(*[event(i, T0 + timedelta(seconds=i)) for i in range(4)])
    first = run_job(_state_defs(workdir, sessions, conns), "posthog_state", instance)
    assert first.success, failure_description(first)
    saved = state.read_text()
    assert json.loads(saved)["data_types"]["events"]["last_key"] == "0000-0003"

    # three new events (with a property not seen before); the step fails after reading them
    posthog.add_events(*[event(i, T0 + timedelta(minutes=5, seconds=i), **{"$new": "x"})
                         for i in range(10, 13)])
    posthog.queries.clear()
    failed = run_job(_state_defs(workdir, sessions, conns, FAILURES[failure],
                                 io_fails=failure == "io_manager"), "posthog_state", instance)
    assert not failed.success
    assert posthog.queries, "the failing run extracted the new rows"
    assert state.read_text() == saved  # the high-water mark did not move

    # the next (good) run reads the rows that never landed, then the state advances
    again = run_job(_state_defs(workdir, sessions, conns), "posthog_state", instance)
    assert again.success, failure_description(again)
    mats = materialisations(again)["posthog-state/events"]
    assert mats["dagster/row_count"].value == 3
    assert json.loads(state.read_text())["data_types"]["events"]["last_key"] == "0000-0012"


def test_driver_returns_the_state_and_never_writes_it(
        posthog: FakePostHog, run_driver: RunDriver, sessions_dir: Path) -> None:
    posthog.add_events(*[event(i, T0 + timedelta(seconds=i)) for i in range(3)])
    ran = run_driver(ph, config(), posthog.connection(), commit_state=False)
    pending = ran.result.pending_state
    state_file = sessions_dir / ".state" / "p" / "api" / STATE_FILE
    assert pending is not None and pending.path == state_file
    assert pending.document["data_types"]["events"]["last_key"] == "0000-0002"
    assert not state_file.exists()  # only the runtime saves it, once the output is accepted
