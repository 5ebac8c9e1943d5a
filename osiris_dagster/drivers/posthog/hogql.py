"""The HogQL text of ``posthog.extractor``'s queries: literals, the seek query of one page,
and the timestamps it is built from.

* **Keyset ("seek") pagination** as in Osiris: ``ORDER BY <time>, <key> LIMIT page_size`` and the
  next page starts after the last row (events: ``timestamp, uuid``; persons: ``created_at, id``;
  sessions: ``$start_timestamp, session_id``; person_distinct_ids: ``person_id, distinct_id``
  instead of Osiris' OFFSET paging). Unlike Osiris, the seek timestamp keeps its microseconds
  (truncating to seconds re-reads rows and can loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.posthog.data_types import Kind

_ESCAPES = {"\b": "\\b", "\f": "\\f", "\r": "\\r", "\n": "\\n", "\t": "\\t", "\0": "\\0",
            "\a": "\\a", "\v": "\\v", "\\": "\\\\", "'": "\\'"}


def hogql_string(value: str) -> str:
    """A HogQL string literal (PostHog's own escaping: backslash escapes)."""
    return "'" + "".join(_ESCAPES.get(c, c) for c in value) + "'"


def hogql_datetime(value: datetime) -> str:
    """A HogQL DateTime64 literal with microseconds in UTC (as PostHog renders datetimes)."""
    text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return f"toDateTime64({hogql_string(text)}, 6, 'UTC')"


def parse_time(value: Any, what: str) -> datetime:
    """An ISO-8601 timestamp (``Z`` or offset; naive means UTC) as an aware UTC datetime."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str) and value.strip():
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise DriverError(f"posthog.extractor: {what} {value!r} is not an ISO-8601 "
                              "timestamp (e.g. 2024-01-31T00:00:00Z)") from None
    else:
        raise DriverError(f"posthog.extractor: {what} is missing or not a timestamp: {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


@dataclass(frozen=True)
class Cursor:
    order: Any
    key: Any


def build_query(kind: Kind, *, since: datetime | None, until: datetime,
                event_types: Sequence[str], cursor: Cursor | None, page_size: int) -> str:
    where: list[str] = []
    if kind.window and since is not None:
        where.append(f"{kind.window} >= {hogql_datetime(since)}")
    if kind.window and kind.upper_bound:
        where.append(f"{kind.window} < {hogql_datetime(until)}")
    if event_types and kind.table == "events":
        where.append(f"event IN ({', '.join(hogql_string(e) for e in event_types)})")
    if cursor is not None:
        order = _literal(cursor.order, time=kind.order_is_time, is_uuid=kind.order_is_uuid,
                         what=kind.order)
        key = _literal(cursor.key, time=False, is_uuid=kind.key_is_uuid, what=kind.key)
        where.append(f"({kind.order} > {order} OR ({kind.order} = {order} AND "
                     f"{kind.key} > {key}))")
    sql = f"SELECT {kind.select} FROM {kind.table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return f"{sql} ORDER BY {kind.order} ASC, {kind.key} ASC LIMIT {int(page_size)}"


def _literal(value: Any, *, time: bool, is_uuid: bool, what: str) -> str:
    if time:
        return hogql_datetime(parse_time(value, f"the {what} of the last row"))
    if isinstance(value, bool) or value is None:
        raise DriverError(f"posthog.extractor: cannot continue after a row whose {what} is "
                          f"{value!r}")
    if isinstance(value, int | float):
        return str(value)
    text = hogql_string(str(value))
    return f"toUUID({text})" if is_uuid else text
