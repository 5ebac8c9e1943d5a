"""Cron expressions of `x-dagster.schedule`, judged by Dagster's own rule.

The verdict is Dagster's (`is_valid_cron_string`, what `ScheduleDefinition` checks), so what
`osiris-dagster validate` accepts is exactly what Dagster accepts: `L`, `1#2`, ranges, lists,
steps, names and the `@daily` style aliases pass; `0 0 31 2 *` (never fires) is refused. The
explanation of a refusal is ours, so the message says which field is wrong. Dagster is imported
only when a pipeline has a schedule.
"""

from __future__ import annotations

import re

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
    from dagster._utils.schedules import is_valid_cron_string  # only when a schedule exists

    if is_valid_cron_string(expression.strip()):
        return None
    return _explain(expression)


def cron_warning(expression: str) -> str | None:
    """A valid expression that fires differently than it reads (Dagster warns as well)."""
    from dagster._utils.schedules import has_out_of_range_cron_interval

    if not has_out_of_range_cron_interval(expression.strip()):
        return None
    return (f"cron '{expression}' has a step larger than its field's range (e.g. */90 "
            "minutes); Dagster normalises it, so it fires more often than it reads: use a "
            "smaller step")


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
