"""posthog.extractor from one run to the next: a property it cannot keep says how to get past
it (every run reads it again), and `deduplication_enabled: false` does not deliver the last
run's rows again."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.posthog import extractor as ph

from .conftest import FakePostHog, RunDriver, iso
from .test_posthog import T0, config, event

PRICE = '{"$browser": "Firefox", "price": 0.12345678901234567890}'


def test_an_event_it_cannot_keep_says_how_to_get_past_it(posthog: FakePostHog,
                                                         run_driver: RunDriver) -> None:
    """The message ended at "...stored exactly or the step fails.": every later run failed
    the same way and the user could not change what PostHog sends."""
    bad = {**event(1, T0, name="purchase"), "properties": PRICE}
    posthog.add_events(bad, event(2, T0 + timedelta(minutes=1)))
    for _ in range(2):  # the state does not advance: the next run meets it again
        with pytest.raises(DriverError) as err:
            run_driver(ph, config(), posthog.connection())
        assert str(err.value) == (
            f"posthog.extractor: the properties of the row with uuid '0000-0001' (event "
            f"'purchase' at {iso(T0)}) hold the number 0.12345678901234567890 at `price`, "
            "which would be read as 0.12345678901234568. A value from PostHog is stored "
            "exactly or the step fails, and every run reads this event again and fails here. "
            "PostHog cannot change a stored event: to go on without it, list the events to "
            "read in `event_types`, leaving out 'purchase' (the incremental state of the other "
            "events is kept).")
    ran = run_driver(ph, config(event_types=["pageview"]), posthog.connection())
    assert ran.column("uuid") == ["0000-0002"]


def test_a_person_it_cannot_keep_says_how_to_get_past_it(posthog: FakePostHog,
                                                         run_driver: RunDriver) -> None:
    posthog.tables["persons"] = [{"id": "p-1", "created_at": iso(T0), "is_identified": True,
                                  "properties": PRICE}]
    posthog.columns["persons"] = ["id", "created_at", "properties", "is_identified"]
    with pytest.raises(DriverError) as err:
        run_driver(ph, config(data_type="persons"), posthog.connection())
    assert str(err.value) == (
        "posthog.extractor: the properties of the row with id 'p-1' hold the number "
        "0.12345678901234567890 at `price`, which would be read as 0.12345678901234568. A "
        "value from PostHog is stored exactly or the step fails, and every run reads this "
        "person again and fails here until the property changes in PostHog: `$set` it again "
        "(a number as text) or `$unset` it.")


def test_a_property_written_twice_says_how_to_get_past_it(posthog: FakePostHog,
                                                           run_driver: RunDriver) -> None:
    posthog.add_events({**event(1, T0), "properties": '{"tier": "a", "tier": "b"}'})
    with pytest.raises(DriverError) as err:
        run_driver(ph, config(), posthog.connection())
    assert str(err.value).startswith(
        "posthog.extractor: the properties of the row with uuid '0000-0001' (event 'pageview' "
        f"at {iso(T0)}) hold the key 'tier' twice in the object at `$`; only one of its "
        "values could be kept. A value from PostHog is stored exactly or the step fails, and "
        "every run reads this event again and fails here. PostHog cannot change")


def test_dedup_disabled_does_not_deliver_the_last_runs_rows_again(
        posthog: FakePostHog, run_driver: RunDriver) -> None:
    """A second run with no new event delivered the whole lookback window again (30 rows into
    an append target). Osiris' option drops repeated uuids within the data; the rows at or
    before the high-water mark it never reads again (its seek starts after the mark)."""
    posthog.add_events(*[event(i, T0 + timedelta(seconds=10 * i)) for i in range(30)])
    off = config(deduplication_enabled=False)
    assert len(run_driver(ph, off, posthog.connection()).rows) == 30
    again = run_driver(ph, off, posthog.connection())
    assert again.rows == [] and again.metrics["rows_deduplicated"] == 30
    # a late event inside the window is delivered; a uuid the data repeats is kept (only off)
    late = event(40, T0 + timedelta(minutes=1), name="late")
    posthog.add_events(late, {**late, "properties": json.dumps({"copy": 2})})
    third = run_driver(ph, off, posthog.connection())
    assert third.column("uuid") == ["0000-0040", "0000-0040"]
    assert run_driver(ph, config(), posthog.connection()).rows == []


def test_leaving_an_event_type_out_keeps_the_state_of_the_others(
        posthog: FakePostHog, run_driver: RunDriver) -> None:
    """The way out the error gives (leave the event type out) used to start the state over:
    the next run delivered every earlier row again, and an append writer wrote them twice,
    with no word in the CLI. Narrowing keeps the state; widening starts over with a notice."""
    posthog.add_events(event(1, T0), event(2, T0 + timedelta(minutes=1), name="click"))
    first = run_driver(ph, config(), posthog.connection())
    assert first.column("uuid") == ["0000-0001", "0000-0002"]
    posthog.add_events({**event(3, T0 + timedelta(minutes=2), name="purchase"),
                        "properties": PRICE}, event(4, T0 + timedelta(minutes=3)))
    with pytest.raises(DriverError, match="the incremental state of the other events is kept"):
        run_driver(ph, config(), posthog.connection())
    narrowed = run_driver(ph, config(event_types=["pageview", "click"]), posthog.connection())
    assert narrowed.column("uuid") == ["0000-0004"]
    assert not any(e["event"] in ("notice", "posthog_state_ignored") for e in narrowed.events)
    posthog.add_events(event(5, T0 + timedelta(minutes=4), name="signup"))
    widened = run_driver(ph, config(event_types=["pageview", "click", "signup"]),
                         posthog.connection())
    assert widened.column("uuid") == ["0000-0001", "0000-0002", "0000-0004", "0000-0005"]
    (notice,) = [e["message"] for e in widened.events if e["event"] == "notice"]
    assert "`event_types` now reads events it did not (signup)" in notice
    assert "delivered again" in notice
