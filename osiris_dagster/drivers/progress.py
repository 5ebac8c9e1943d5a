"""Row-count progress of a long read or write, reported through the step context without flooding
it (at most once a second)."""

from __future__ import annotations

import time

from osiris_dagster.drivers.base import StepContext


class Progress:
    """``ctx.progress`` at most every ``every`` seconds (always for the first batch)."""

    def __init__(self, ctx: StepContext, every: float = 1.0) -> None:
        self._ctx = ctx
        self._every = every
        self._last: float | None = None  # the first batch is always reported
        self.rows = 0

    def add(self, n: int) -> None:
        self.rows += n
        self._ctx.rows_so_far = self.rows  # a heartbeat between two reports says this count
        now = time.monotonic()
        if self._last is None or now - self._last >= self._every:
            self._last = now
            self._ctx.progress(rows=self.rows)

    def done(self) -> None:
        self._ctx.progress(rows=self.rows, message="all rows read")
