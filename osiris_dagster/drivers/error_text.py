"""The text of a client library's exception, short enough for a step's error message."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s text (up to three lines joined when it has several), or
    its class name when it has none."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[0] if len(lines) == 1 else " ".join(ln.strip() for ln in lines[:3])
