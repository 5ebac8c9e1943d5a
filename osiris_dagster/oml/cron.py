"""Cron expressions of `x-dagster.schedule`, judged by Dagster's own rule.

The verdict is Dagster's (`is_valid_cron_string`, what `ScheduleDefinition` checks), so what
`osiris-dagster validate` accepts is exactly what Dagster accepts: `L`, `1#2`, ranges, lists,
steps, names and the `@daily` style aliases pass; `0 0 31 2 *` (never fires) is refused. The
explanation of a refusal is ours, so the message says which field is wrong.

Dagster's rule is its vendored croniter plus two checks of its own (exactly 5 fields, no 30th or
31st of February; and, for the warning, a step larger than the field's upper bound). When Dagster
is not imported yet (`osiris-dagster validate`), that croniter is loaded on its own
(:mod:`osiris_dagster.oml.dagster_croniter`) and the two checks are restated here, so validating
a scheduled pipeline costs milliseconds, not Dagster's import; `tests/test_automation.py` holds
the restated verdict to Dagster's own over many expressions. When Dagster is already loaded (the
Dagster layer, `run`), or its croniter cannot be loaded alone, Dagster's functions answer.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from osiris_dagster.oml.dagster_croniter import vendored_croniter

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_LABELS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_NAMES = (
    {},
    {},
    {},
    {m: i + 1 for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug",
                                      "sep", "oct", "nov", "dec"])},
    {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
)
_ITEM = re.compile(r"^(?P<base>\*|[A-Za-z0-9]+(-[A-Za-z0-9]+)?)(/(?P<step>\d+))?$")
_FORMS = ("5 fields: minute hour day-of-month month day-of-week, e.g. '0 6 * * *'; ranges, "
          "lists, steps, names, L and n#k are allowed, as are @hourly, @daily, @weekly, "
          "@monthly, @yearly")


def cron_problem(expression: str) -> str | None:
    """None when Dagster accepts the expression for a schedule, else what is wrong."""
    if _dagster_accepts(expression.strip()):
        return None
    return _explain(expression)


def cron_warning(expression: str) -> str | None:
    """A valid expression that fires differently than it reads (Dagster warns as well)."""
    if not _step_beyond_range(expression.strip()):
        return None
    return (f"cron '{expression}' has a step larger than its field's range (e.g. */90 "
            "minutes); Dagster normalises it, so it fires more often than it reads: use a "
            "smaller step")


def _croniter_alone() -> Any | None:
    """Dagster's vendored croniter loaded on its own; None when Dagster is already imported
    (its own functions are then free) or the files cannot be loaded alone."""
    if "dagster" in sys.modules:
        return None
    return vendored_croniter()


def _dagster_accepts(expression: str) -> bool:
    """Dagster's `is_valid_cron_string`: croniter parses it, it expands to exactly 5 fields,
    and it is not the 30th or 31st of February alone."""
    croniter = _croniter_alone()
    if croniter is None:
        from dagster._utils.schedules import is_valid_cron_string

        return bool(is_valid_cron_string(expression))
    if not croniter.is_valid(expression):
        return False
    fields = croniter.expand(expression)[0]
    if len(fields) != 5:
        return False
    february = len(fields[3]) == 1 and fields[3][0] == 2
    return not (february and len(fields[2]) == 1 and fields[2][0] in (30, 31))


# Dagster's bounds per position for the step check (a 6th position: seconds)
_STEP_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7), (0, 59))
_LOW_HIGH_STEP = re.compile(r"^([^-]+)-([^-/]+)(/(\d+))?$")
_DIGITS = re.compile(r"^\d+$")


def _step_beyond_range(expression: str) -> bool:
    """Dagster's `has_out_of_range_cron_interval` for one valid expression: some `a-b/s`,
    `*/s` (as lowest-highest/s) or `a/s` (as a-highest/s) item has s > b. Like Dagster's, any
    error while looking (e.g. more fields than it has bounds for) means no warning."""
    if _croniter_alone() is None:
        from dagster._utils.schedules import has_out_of_range_cron_interval

        return bool(has_out_of_range_cron_interval(expression))
    try:
        return any(_item_step_beyond(item, position)
                   for position, field in enumerate(expression.lower().split())
                   for item in reversed(field.split(",")))
    except Exception:  # noqa: BLE001 - Dagster swallows every error here too
        return False


def _item_step_beyond(item: str, position: int) -> bool:
    low_bound, high_bound = _STEP_BOUNDS[position]
    match = _LOW_HIGH_STEP.search(re.sub(r"^\*(/.+)$", rf"{low_bound}-{high_bound}\1", item))
    if not match:
        match = _LOW_HIGH_STEP.search(re.sub(r"^(.+)/(.+)$", rf"\1-{high_bound}/\2", item))
    if not match:
        return False
    low, high, step = match.group(1), match.group(2), match.group(4) or "1"
    if position == 2 and high == "l":
        high = "31"
    if not _DIGITS.search(low) or not _DIGITS.search(high):
        return False
    return int(step) > int(high)


def _explain(expression: str) -> str:
    fields = expression.split()
    if len(fields) != 5:
        return (f"cron '{expression}' must have 5 fields (minute hour day-of-month month "
                f"day-of-week), it has {len(fields)}")
    if fields[2] in ("30", "31") and fields[3].lower() in ("2", "feb"):
        return (f"cron '{expression}' never fires: February has no day {fields[2]} "
                "(Dagster refuses such a schedule)")
    for field, bounds, names, label in zip(fields, _RANGES, _NAMES, _LABELS, strict=True):
        problem = _field_problem(expression, field, bounds, names, label)
        if problem:
            return problem
    return f"cron '{expression}' is not a schedule Dagster accepts ({_FORMS})"


def _field_problem(expression: str, field: str, bounds: tuple[int, int],
                   names: dict[str, int], label: str) -> str | None:
    """What is wrong with one field, for the forms this explainer knows (L and # are left to
    the generic message)."""
    lo, hi = bounds
    for item in field.split(","):
        if "L" in item.upper() or "#" in item:
            continue
        m = _ITEM.match(item)
        if not m:
            return f"cron '{expression}': bad {label} field '{field}'"
        if m.group("step") is not None and int(m.group("step")) == 0:
            return f"cron '{expression}': step 0 in {label} field '{field}'"
        base = m.group("base")
        if base == "*":
            continue
        values = []
        for part in base.split("-"):
            value = names.get(part.lower()) if not part.isdigit() else int(part)
            if value is None or not lo <= value <= hi:
                return f"cron '{expression}': {label} value '{part}' is outside {lo}-{hi}"
            values.append(value)
        if len(values) == 2 and values[0] > values[1]:
            return f"cron '{expression}': {label} range '{base}' is reversed"
    return None
