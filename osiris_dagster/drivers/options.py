"""A step's options as the database drivers read them: each check fails with a message naming the
option and what it must be. Connection settings first, step config second
(:func:`connection_setting`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from osiris_dagster.core.errors import DriverError


def required_text(config: Mapping[str, Any], key: str, component: str, purpose: str) -> str:
    """A non-empty string option (``table``), else "<component> needs `key`: <purpose>"."""
    value = config.get(key)
    if not isinstance(value, str) or not value:
        raise DriverError(f"{component} needs `{key}`: {purpose}")
    return value


def name_list(value: Any, option: str) -> list[str] | None:
    """A list of column names from config (a YAML list, or a comma-separated string)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) and v for v in value):
        raise DriverError(f"`{option}` must be a list of column names, got {value!r}")
    if len({v.lower() for v in value}) != len(value):
        raise DriverError(f"`{option}` names a column twice: {list(value)}")
    return list(value)


def positive_int(config: Mapping[str, Any], key: str, default: int | None,
                 minimum: int = 1) -> int | None:
    value = config.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DriverError(f"`{key}` must be an integer >= {minimum}, got {value!r}")
    return value


def positive_seconds(config: Mapping[str, Any], key: str, default: float,
                     component: str) -> float:
    """A duration option in seconds (``timeout``): a number above zero."""
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise DriverError(f"{component}: `{key}` must be a positive number of seconds")
    return float(value)


def connection_setting(connection: Mapping[str, Any], config: Mapping[str, Any],
                       *keys: str) -> Any:
    """The connection's value wins; the step config only fills in what the connection lacks."""
    for source in (connection, config):
        for key in keys:
            value = source.get(key)
            if value not in (None, ""):
                return value
    return None
