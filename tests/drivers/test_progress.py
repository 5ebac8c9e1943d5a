"""A step's progress as a heartbeat reports it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from osiris_dagster.drivers.progress import Progress


def test_a_heartbeat_between_two_reports_sees_every_row_read() -> None:
    """Reports go out at most once a second; a burst of batches right after one, then a slow
    source (a query sleeping on the server) left the heartbeat saying '10000 rows so far' for
    the whole wait while 190000 had been read."""
    reported: list[int | None] = []
    ctx: Any = SimpleNamespace(rows_so_far=None,
                               progress=lambda rows=None, message=None: reported.append(rows))
    progress = Progress(ctx, every=3600)
    for _ in range(19):
        progress.add(10_000)
    assert reported == [10_000]  # the first batch only: the rest came within the second
    assert ctx.rows_so_far == 190_000
