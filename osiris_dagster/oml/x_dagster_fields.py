"""Checks of the x-dagster fields that appear at more than one level (the pipeline, a step, a
schedule or sensor): unknown keys, owners, tags, timeout_seconds, retry, time zones."""

from __future__ import annotations

import re
from types import MappingProxyType

from osiris_dagster.oml.diagnostics import Collector
from osiris_dagster.oml.model import RetrySettings
from osiris_dagster.oml.yaml_lines import LineDict

RETRY_KEYS = {"max_retries", "delay_seconds", "backoff", "jitter"}
_TAG_KEY_OK = re.compile(r"^([A-Za-z0-9_.-]{1,63}/)?[A-Za-z0-9_.-]{1,63}$")
_TAG_VALUE_OK = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")
_OWNER_OK = re.compile(r"^(team:[A-Za-z0-9_-]+|[^@\s]+@[^@\s]+\.[^@\s]+)$")


def unknown_keys(body: LineDict, allowed: set[str], label: str, out: Collector,
                 step: str | None = None) -> None:
    for key in body:
        if key not in allowed:
            out.error(body.line_of(key), f"unknown key '{label}.{key}' (known: "
                                         f"{', '.join(sorted(allowed))})", step)


def owners(block: LineDict, label: str, out: Collector, step: str | None = None
           ) -> tuple[str, ...]:
    owners = block.get("owners")
    if owners is None:
        return ()
    if not isinstance(owners, list) or not all(isinstance(o, str) for o in owners):
        out.error(block.line_of("owners"), f"{label} must be a list of strings", step)
        return ()
    good = []
    for o in owners:
        if _OWNER_OK.match(o):
            good.append(o)
        else:
            out.error(block.line_of("owners"), f"{label}: owner {o!r} must be an email address "
                                               "or 'team:<name>'", step)
    return tuple(good)


def tags(block: LineDict, label: str, out: Collector, step: str | None = None
         ) -> MappingProxyType:
    tags = block.get("tags")
    if tags is None:
        return MappingProxyType({})
    if not isinstance(tags, dict):
        out.error(block.line_of("tags"), f"{label} must be a mapping of key -> value", step)
        return MappingProxyType({})
    good: dict[str, str] = {}
    for k, v in tags.items():
        value = "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        line = tags.line_of(k) if isinstance(tags, LineDict) else block.line_of("tags")
        if not _TAG_KEY_OK.match(str(k)):
            out.error(line, f"{label}: tag key {k!r} may use letters, digits, '_', '.', '-' "
                            "(and one '/' prefix), at most 63 characters", step)
        elif not _TAG_VALUE_OK.match(value):
            out.error(line, f"{label}: tag value {value!r} may use letters, digits, '_', '.', "
                            "'-', at most 63 characters", step)
        else:
            good[str(k)] = value
    return MappingProxyType(good)


def timeout(block: LineDict, label: str, out: Collector, step: str | None = None
            ) -> float | None:
    value = block.get("timeout_seconds")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        out.error(block.line_of("timeout_seconds"), f"{label}.timeout_seconds must be a "
                                                    f"positive number, got {value!r}", step)
        return None
    return float(value)


def retry(block: LineDict, label: str, out: Collector, step: str | None = None
          ) -> RetrySettings | None:
    body = block.get("retry")
    if body is None:
        return None
    if not isinstance(body, LineDict):
        out.error(block.line_of("retry"), f"{label}.retry must be a mapping (max_retries, "
                                          "delay_seconds, backoff, jitter)", step)
        return None
    unknown_keys(body, RETRY_KEYS, f"{label}.retry", out, step)
    ok = True
    retries = body.get("max_retries", 1)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        out.error(body.line_of("max_retries"), f"{label}.retry.max_retries must be an integer "
                                               ">= 0", step)
        ok = False
    delay = body.get("delay_seconds", 0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
        out.error(body.line_of("delay_seconds"), f"{label}.retry.delay_seconds must be a "
                                                 "number >= 0", step)
        ok = False
    backoff, jitter = body.get("backoff"), body.get("jitter")
    if backoff is not None and backoff not in ("exponential", "linear"):
        out.error(body.line_of("backoff"), f"{label}.retry.backoff must be 'exponential' or "
                                           "'linear'", step)
        ok = False
    if jitter is not None and jitter not in ("full", "plus_minus"):
        out.error(body.line_of("jitter"), f"{label}.retry.jitter must be 'full' or "
                                          "'plus_minus'", step)
        ok = False
    return RetrySettings(retries, float(delay), backoff, jitter) if ok else None


def valid_timezone(name: object) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(name, str) or not name.strip():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
