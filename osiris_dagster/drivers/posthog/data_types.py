"""What ``posthog.extractor`` can read: events, persons, sessions and person_distinct_ids, each
with how it is queried, paged, keyed and flattened (:class:`Kind`).

* **Flattening** (as Osiris): events -> ``uuid, event, timestamp, distinct_id, person_id`` +
  ``properties_<key>``; persons -> ``id, created_at, is_identified`` +
  ``person_properties_<key>``; sessions and person_distinct_ids as returned. Nested values are
  JSON text. Timestamps stay text (as PostHog returns them): cast them downstream. A number in
  ``properties`` (JSON text) that Python's json would change (``1e400``, ``NaN``, more digits
  than a double holds) fails naming the row's key, the property and the number, as one in the
  answer itself does (:meth:`~osiris_dagster.drivers.http.client.HttpClient.decode_json`), and
  so does a property key written twice. The state does not advance past such a row, so the
  message says how to get past it: an event (PostHog never changes one) only by leaving its
  event type out with ``event_types``; a person by changing the property in PostHog.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.json_keys import RepeatedKeyError, loads_unique_keys
from osiris_dagster.drivers.json_numbers import first_changed_number
from osiris_dagster.drivers.staging.json_records import to_scalar

DATA_TYPES = ("events", "persons", "sessions", "person_distinct_ids")


def _event_way_out(row: Mapping[str, Any]) -> tuple[str, str]:
    """Where an event is (its name and time), and how to get past it."""
    return (f" (event {row.get('event')!r} at {row.get('timestamp')})",
            "every run reads this event again and fails here. PostHog cannot change a stored "
            "event: to go on without it, list the events to read in `event_types`, leaving out "
            f"{row.get('event')!r} (the incremental state of the other events is kept).")


def _person_way_out(row: Mapping[str, Any]) -> tuple[str, str]:
    """How to get past a person (whose properties PostHog can change)."""
    return ("", "every run reads this person again and fails here until the property changes "
                "in PostHog: `$set` it again (a number as text) or `$unset` it.")


WayOut = Callable[[Mapping[str, Any]], tuple[str, str]]


def _flatten_with_prefix(base: tuple[str, ...], prefix: str, way_out: WayOut
                         ) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    def flatten(row: Mapping[str, Any]) -> dict[str, Any]:
        out = {c: to_scalar(row.get(c)) for c in base}
        for key, value in row.items():
            if key in base or key == "properties":
                continue
            out[key] = to_scalar(value)
        props = row.get("properties")
        if isinstance(props, str):
            try:
                parsed = loads_unique_keys(props)
            except RepeatedKeyError as exc:
                raise _unkept(row, base[0], f"{exc.describe()}; only one of its values could "
                                            "be kept", way_out) from None
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                changed = first_changed_number(props, python_json=True)
                if changed is not None:
                    raise _unkept(row, base[0], changed.describe(), way_out)
                props = parsed
            else:
                out["properties"] = props
                props = None
        if isinstance(props, dict):
            for key, value in props.items():
                out[f"{prefix}{key}"] = to_scalar(value)
        return out
    return flatten


def _unkept(row: Mapping[str, Any], key: str, what: str, way_out: WayOut) -> DriverError:
    """The error for a row whose ``properties`` text holds ``what``, which cannot be kept."""
    where, next_step = way_out(row)
    return DriverError(
        f"posthog.extractor: the properties of the row with {key} {row.get(key)!r}{where} hold "
        f"{what}. A value from PostHog is stored exactly or the step fails, and {next_step}")


def _as_returned(row: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): to_scalar(v) for k, v in row.items()}


@dataclass(frozen=True)
class Kind:
    """How one data type is queried, paged, keyed and flattened."""

    table: str
    select: str
    order: str  # first seek column
    order_is_time: bool
    order_is_uuid: bool
    key: str  # second seek column and dedup key
    key_is_uuid: bool
    window: str | None  # time column for the window (None: no window)
    upper_bound: bool  # window ends at the run's start
    default_history: bool  # without state/initial_since: 30 days (else everything)
    incremental: bool
    base_columns: tuple[tuple[str, str], ...]
    flatten: Callable[[Mapping[str, Any]], dict[str, Any]]
    columns: tuple[str, ...] = ()  # expected response columns when `columns` is absent


_EVENT_BASE = ("uuid", "event", "timestamp", "distinct_id", "person_id")
_PERSON_BASE = ("id", "created_at", "is_identified")

KINDS: dict[str, Kind] = {
    "events": Kind(
        table="events", select="uuid, event, timestamp, distinct_id, person_id, properties",
        order="timestamp", order_is_time=True, order_is_uuid=False, key="uuid",
        key_is_uuid=True, window="timestamp", upper_bound=True, default_history=True,
        incremental=True, base_columns=tuple((c, "VARCHAR") for c in _EVENT_BASE),
        flatten=_flatten_with_prefix(_EVENT_BASE, "properties_", _event_way_out),
        columns=(*_EVENT_BASE, "properties")),
    "persons": Kind(
        table="persons", select="id, created_at, properties, is_identified",
        order="created_at", order_is_time=True, order_is_uuid=False, key="id",
        key_is_uuid=True, window="created_at", upper_bound=False, default_history=False,
        incremental=True,
        base_columns=(("id", "VARCHAR"), ("created_at", "VARCHAR"), ("is_identified", "BOOLEAN")),
        flatten=_flatten_with_prefix(_PERSON_BASE, "person_properties_", _person_way_out),
        columns=("id", "created_at", "properties", "is_identified")),
    "sessions": Kind(
        table="sessions", select="*", order="$start_timestamp", order_is_time=True,
        order_is_uuid=False, key="session_id", key_is_uuid=False, window="$start_timestamp",
        upper_bound=True, default_history=True, incremental=True, base_columns=(),
        flatten=_as_returned),
    "person_distinct_ids": Kind(
        table="person_distinct_ids", select="distinct_id, person_id", order="person_id",
        order_is_time=False, order_is_uuid=True, key="distinct_id", key_is_uuid=False,
        window=None, upper_bound=False, default_history=False, incremental=False,
        base_columns=(("distinct_id", "VARCHAR"), ("person_id", "VARCHAR")),
        flatten=_as_returned, columns=("distinct_id", "person_id")),
}
