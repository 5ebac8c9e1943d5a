"""DuckDB's memory_limit per step: sizes, out-of-memory errors, and raising the limit for a step
that needs more (tables with hundreds of columns do: DuckDB keeps buffers per column).

The default limit keeps memory flat for long, narrow data; a wide table can fail under it however
few rows it has (1,000 columns x 20,000 rows needs ~0.5 GB). A step that can simply run again
(it reads files or tables: CSV extract, SQL, CSV write) is retried with the limit doubled, up to
``OSIRIS_DUCKDB_MEMORY_LIMIT_MAX`` (:mod:`osiris_dagster.runtime.runner`); a step that streams its
source (databases,
APIs) starts with a limit sized for its width instead.
"""

from __future__ import annotations

import re

import duckdb

_UNITS = {"b": 1, "bytes": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_OOM_MARKERS = ("out of memory error", "failed to pin block", "could not allocate block",
                "failed to allocate data")
BYTES_PER_COLUMN = 10**6  # enough for one column's buffers while a table is built (measured)


def parse_size(text: str) -> int | None:
    """``224MB`` / ``1.5GiB`` / ``512kb`` -> bytes (DuckDB's units: MB = 1000^2, MiB = 1024^2);
    None when it is not a size DuckDB would take."""
    m = _SIZE.match(str(text))
    if not m:
        return None
    unit = (m.group(2) or "b").lower()
    if unit not in _UNITS:
        return None
    return int(float(m.group(1)) * _UNITS[unit])


def format_size(n: int) -> str:
    return f"{n / 10**9:.1f}GB" if n >= 10**9 else f"{round(n / 10**6)}MB"


def is_out_of_memory(exc: BaseException) -> bool:
    """DuckDB ran out of its memory_limit, here or anywhere down the exception's chain (drivers
    wrap DuckDB errors in their own)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, duckdb.OutOfMemoryException):
            return True
        text = str(current).lower()
        if any(m in text for m in _OOM_MARKERS):
            return True
        current = current.__cause__ or current.__context__
    return False


def next_limit(current: int, ceiling: int) -> int | None:
    """The limit to retry with (doubled, at most ``ceiling``); None when there is no room."""
    if current >= ceiling:
        return None
    return min(current * 2, ceiling)


def limit_for_width(current: int, ceiling: int, columns: int) -> int:
    """The limit a table of ``columns`` columns starts with when its build cannot be retried."""
    return max(current, min(ceiling, columns * BYTES_PER_COLUMN))
