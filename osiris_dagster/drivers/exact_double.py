"""SQL that tells whether a DOUBLE holds a decimal number's text exactly (as far as a double can
say: its shortest text is numerically the same). Used where a column must become DOUBLE although
its values may carry more digits than a double keeps: a CSV column typed DOUBLE, and database
decimals wider than DuckDB's DECIMAL (MySQL DECIMAL(65,s) such as a SUM of BIGINT, PostgreSQL
numeric without precision). A value that a double would round is refused there, never changed.
"""

from __future__ import annotations

_MIN_NORMAL = "2.2250738585072014e-308"  # below it a double holds fewer than 15 digits


def double_holds(col: str, cast: str) -> str:
    """SQL: the double ``cast`` of the decimal text ``col`` is that number, as far as a double
    can say: its shortest text (what DuckDB prints) is numerically the text
    (``0.30000000000000004``, ``9007199254740992``, ``1e22``; not ``0.12345678901234567890`` or
    ``9007199254740993``, which a double rounds, nor ``1e-400``, which it makes 0).

    Cheap for the common case: a text of 15 characters or fewer has at most 15 significant
    digits, which a double in the normal range always gives back, so it passes on the first
    test. Only longer texts are compared, by their significant digits alone: both texts parse
    to the same non-zero double, so they cannot differ by a power of ten."""
    normal = f"abs({cast}) >= {_MIN_NORMAL}"  # below: subnormal or 0, fewer digits held
    return (f"CASE WHEN length({col}) <= 15 AND {normal} OR isinf({cast}) THEN true "
            f"ELSE {_significant(col)} = {_significant(f'CAST({cast} AS VARCHAR)')} END")


def _significant(text: str) -> str:
    """SQL: the significant digits of a decimal number's text, without sign, point, exponent,
    leading or trailing zeros (``-0.0120e5`` -> ``12``; ``''`` for zero)."""
    mantissa = f"split_part(split_part({text}, 'e', 1), 'E', 1)"
    return f"trim(replace({mantissa}, '.', ''), ' +-0')"
