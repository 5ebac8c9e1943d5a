"""A small cron-expression check (5 fields, ranges, steps, names) for line-accurate validation.

Dagster re-validates at definition time; this exists so `osiris-dagster validate` reports a bad
schedule with its line without importing Dagster.
"""

from __future__ import annotations

import re

ALIASES = {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"}
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = (
    {},
    {},
    {},
    {m: i + 1 for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug",
                                      "sep", "oct", "nov", "dec"])},
    {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
)
_ITEM = re.compile(r"^(?P<base>\*|[A-Za-z0-9]+(-[A-Za-z0-9]+)?)(/(?P<step>\d+))?$")


def cron_problem(expression: str) -> str | None:
    """None when valid, else what is wrong."""
    expr = expression.strip()
    if expr in ALIASES:
        return None
    fields = expr.split()
    if len(fields) != 5:
        return (f"cron '{expression}' must have 5 fields (minute hour day-of-month month "
                f"day-of-week), it has {len(fields)}")
    labels = ("minute", "hour", "day-of-month", "month", "day-of-week")
    for field, (lo, hi), names, label in zip(fields, _RANGES, _NAMES, labels, strict=True):
        for item in field.split(","):
            m = _ITEM.match(item)
            if not m:
                return f"cron '{expression}': bad {label} field '{field}'"
            if m.group("step") is not None and int(m.group("step")) == 0:
                return f"cron '{expression}': step 0 in {label} field '{field}'"
            base = m.group("base")
            if base == "*":
                continue
            parts = base.split("-")
            values = []
            for part in parts:
                value = names.get(part.lower()) if not part.isdigit() else int(part)
                if value is None or not lo <= value <= hi:
                    return (f"cron '{expression}': {label} value '{part}' is outside "
                            f"{lo}-{hi}")
                values.append(value)
            if len(values) == 2 and values[0] > values[1]:
                return f"cron '{expression}': {label} range '{base}' is reversed"
    return None
