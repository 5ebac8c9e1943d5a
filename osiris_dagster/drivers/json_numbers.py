"""JSON numbers that DuckDB's JSON reader would not keep.

DuckDB reads a JSON number as a 64-bit integer or a double (a number past both ranges as its
text, which a DOUBLE column then rounds). A decimal with more digits than a double holds
(``0.12345678901234567890``), an integer past 64 bits that no double holds, or ``-0`` (an
integer to the reader, so ``0``: PostgreSQL prints a float ``-0`` so) would reach the table
changed, without an error. :func:`first_changed_number` finds the first such number of a JSON
text, so a reader can fail naming it. A number a double holds exactly (``0.1``,
``0.30000000000000004``, ``1e20``) passes: DuckDB may print it shorter (``1.10`` as ``1.1``),
but it is the same number.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


@dataclass(frozen=True)
class ChangedNumber:
    text: str  # the number as the JSON text writes it
    read_as: str  # what DuckDB would make of it
    path: tuple[int | str, ...]  # where it is: array indexes and object keys from the top


def first_changed_number(document: str) -> ChangedNumber | None:
    """The first number of the JSON ``document`` that DuckDB would read as another number, or
    None. The document must be valid JSON (a reader parses it anyway)."""
    found: list[tuple[str, str]] = []

    def on_float(text: str) -> float:
        # at most 15 characters without an exponent: at most 15 digits between 1e-14 and
        # 1e15, which a double holds
        maybe = len(text) > 15 or "e" in text or "E" in text
        if maybe and not found and (read_as := _float_read_as(text)) is not None:
            found.append((text, read_as))
        return 0.0

    def on_int(text: str) -> int:
        maybe = len(text) > 18 or text == "-0"  # 18 digits: within 64 bits
        if maybe and not found and (read_as := _int_read_as(text)) is not None:
            found.append((text, read_as))
        return 0

    json.loads(document, parse_float=on_float, parse_int=on_int)
    if not found:
        return None
    text, read_as = found[0]
    tree = json.loads(document, parse_float=_Number, parse_int=_Number)
    return ChangedNumber(text, read_as, _path_to(tree, text) or ())


def _float_read_as(text: str) -> str | None:
    value = float(text)
    if math.isinf(value):
        return "infinity"
    if Decimal(text) == Decimal(value):  # the double is the number itself (0.5, 1e20)
        return None
    if value != 0 and Decimal(repr(value)) == Decimal(text):  # 0.1: the double's own text
        return None
    return repr(value)


def _int_read_as(text: str) -> str | None:
    if text == "-0":
        return "0"
    value = int(text)
    if _INT64_MIN <= value <= _UINT64_MAX:
        return None
    as_double = float(value)  # a DOUBLE column: exact where the double is the integer
    return None if not math.isinf(as_double) and int(as_double) == value else repr(as_double)


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
