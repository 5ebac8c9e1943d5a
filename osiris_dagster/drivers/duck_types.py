"""DuckDB type names as ``DESCRIBE`` prints them, read by the drivers that map them to another
database's types: nested or not, a list's element, a DECIMAL's precision and scale, and the widest
DECIMAL DuckDB holds."""

from __future__ import annotations

import re

MAX_DUCK_DECIMAL = 38

DECIMAL_TYPE = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")


def is_nested(duck_type: str) -> bool:
    t = duck_type.upper()
    return t.endswith("]") or t.startswith(("STRUCT", "MAP", "UNION"))


def list_element(duck_type: str) -> str | None:
    """``INTEGER[]`` -> ``INTEGER`` (one level; ``None`` for anything else)."""
    m = re.fullmatch(r"(.+)\[\d*\]", duck_type.strip())
    return m.group(1) if m else None
