"""The one pairing of benchmark runs: the values of two contenders measured in the same round
(their runs are next to each other in time), then the median over rounds with its range. Every
report (``run``, ``startup``, ``databases``) takes its paired ratios and differences here."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

Match = Callable[[Any], bool]


def run_of(contender: str, case: str, rows: int) -> Match:
    """Matches the runs of one contender, case and input size."""
    return lambda r: (r.contender, r.case, r.rows) == (contender, case, rows)


def pairs(runs: list[Any], num: Match, den: Match, attr: str = "wall_s",
          attr_den: str | None = None) -> list[tuple[Any, Any]]:
    """(num's ``attr``, den's ``attr_den`` or ``attr``) of each round in which a run of each
    succeeded, in round order."""
    a = {r.round: getattr(r, attr) for r in runs if r.ok and num(r)}
    b = {r.round: getattr(r, attr_den or attr) for r in runs if r.ok and den(r)}
    return [(a[k], b[k]) for k in sorted(a.keys() & b.keys())]


def spread(values: list[float]) -> dict[str, float] | None:
    """Median, min, max and count; None for no values."""
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def ratio(runs: list[Any], num: Match, den: Match, attr: str = "wall_s",
          attr_den: str | None = None) -> dict[str, float] | None:
    """num / den per round (rounds where either value is missing or 0 left out), then
    :func:`spread`."""
    return spread([a / b for a, b in pairs(runs, num, den, attr, attr_den) if a and b])


def difference(runs: list[Any], num: Match, den: Match, attr: str = "wall_s"
               ) -> dict[str, float] | None:
    """num - den per round, then :func:`spread`."""
    return spread([a - b for a, b in pairs(runs, num, den, attr)])
