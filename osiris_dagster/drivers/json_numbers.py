"""JSON numbers that DuckDB's JSON reader would not keep.

DuckDB reads a JSON number within a double's range as a 64-bit integer or a double, and keeps
one past both (an integer past 64 bits, ``1e400``) as its text. A decimal with more digits than
a double holds (``0.12345678901234567890``), one a double makes 0 (``1e-400``), or ``-0`` (an
integer to the reader, so ``0``: PostgreSQL prints a float ``-0`` so) would reach the table
changed, without an error. :func:`first_changed_number` finds the first such number of a JSON
text, so a reader can fail naming it. A number a double holds exactly (``0.1``,
``0.30000000000000004``, ``1e20``) passes: DuckDB may print it shorter (``1.10`` as ``1.1``),
but it is the same number. (A column typed DOUBLE checks its values again when cast:
``exact_double`` in :mod:`osiris_dagster.drivers.staging.columns`.)

``python_json=True`` checks a text for Python's :mod:`json` instead (the HTTP API extractors
decode their answers with it): there a number past a double's range becomes infinite
(``1e400``), and ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON but which Python
takes, are changed numbers too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from osiris_dagster.drivers.http.json_paths import format_path

_CONSTANTS = ("NaN", "Infinity", "-Infinity")


@dataclass(frozen=True)
class ChangedNumber:
    text: str  # the number as the JSON text writes it
    read_as: str  # what the reader (DuckDB, or Python's json) would make of it
    path: tuple[int | str, ...]  # where it is: array indexes and object keys from the top

    def describe(self) -> str:
        """``the number 1e400 at `data.items[0].score`, which would be read as inf``."""
        where = f"`{format_path(self.path)}`"
        if self.text in _CONSTANTS:
            return f"{self.text} at {where}, which is not a JSON number (JSON has no NaN or " \
                   "Infinity)"
        return f"the number {self.text} at {where}, which would be read as {self.read_as}"


def first_changed_number(document: str | bytes, *, python_json: bool = False
                         ) -> ChangedNumber | None:
    """The first number of the JSON ``document`` that DuckDB (with ``python_json``: Python's
    :mod:`json`) would read as another number, or None. The document must be valid JSON (a
    reader parses it anyway)."""
    found: list[tuple[str, str]] = []

    def on_float(text: str) -> float:
        # at most 15 characters without an exponent: at most 15 digits between 1e-14 and
        # 1e15, which a double holds
        maybe = len(text) > 15 or "e" in text or "E" in text
        if maybe and not found and (read_as := _float_read_as(text, python_json)) is not None:
            found.append((text, read_as))
        return 0.0

    def on_constant(text: str) -> float:  # NaN, Infinity, -Infinity: not JSON
        if python_json and not found:
            found.append((text, repr(float(text))))
        return 0.0

    def on_int(text: str) -> int:
        if text == "-0" and not found:  # any other integer is kept (as its text past 64 bits)
            found.append((text, "0"))
        return 0

    json.loads(document, parse_float=on_float, parse_int=on_int, parse_constant=on_constant)
    if not found:
        return None
    text, read_as = found[0]
    tree = json.loads(document, parse_float=_Number, parse_int=_Number, parse_constant=_Number)
    return ChangedNumber(text, read_as, _path_to(tree, text) or ())


def _float_read_as(text: str, python_json: bool) -> str | None:
    value = float(text)
    if math.isinf(value):  # past a double's range: DuckDB keeps the text, Python's json not
        return repr(value) if python_json else None
    if repr(value) == text:  # the double's own shortest text (most APIs print that)
        return None
    if Decimal(text) == Decimal(value):  # the double is the number itself (0.5, 1e20)
        return None
    if value != 0 and Decimal(repr(value)) == Decimal(text):  # 0.1: the double's own text
        return None
    return repr(value)


class _Number(str):
    """A number kept as its text, to find it again by that text."""


def _path_to(node: Any, text: str) -> tuple[int | str, ...] | None:
    """The first path (depth first, in document order) to the number written ``text``."""
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(node, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, _Number):
            if item == text:
                return path
        elif isinstance(item, dict):
            stack.extend((v, (*path, k)) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(item))))
    return None
