"""Which type a CSV column gets: the first candidate type that *every* value takes faithfully.

DuckDB's own casts are lenient (``'19.99'`` -> BIGINT 20, ``'00501'`` -> 501, ``'0x1F'`` -> 31,
``'yes'`` -> true, ``'2024-03-05 17:45'`` -> DATE 2024-03-05, an offset dropped by a TIMESTAMP
cast, ``'1e999'`` -> inf), and its sniffer types a column from a sample. Here a type is chosen only
when each value survives it: reading it back gives the same number, truth value, date or instant.
The rules are SQL predicates over the text of a value, so the same rules type a sample, check
every value while a table is written, and tell which wider types an offending value fits (a file
typed from its first rows and then widened value by value gets exactly the types a whole-file
detection would give).

What each type accepts (anything else makes the column the next candidate, at last VARCHAR):

* BOOLEAN: ``True``/``TRUE``/``true``/``False``/``FALSE``/``false`` (pandas' spellings);
* BIGINT: canonical integers that fit 64 bits (no sign ``+``, leading zero, ``_`` or hex): the
  value printed back is the text itself, but for spaces around it;
* DOUBLE: decimal numbers (``1.50``, ``.5``, ``1e3``, ``+5``, ``-0``, ``-inf``; spaces around
  them allowed) without leading zeros in the integer part, finite unless spelled ``inf`` or
  ``infinity``, that a double holds: at most 15 significant digits, or the double's shortest
  text is the same number (``0.30000000000000004`` is, ``0.12345678901234567890`` or
  ``9007199254740993`` is not: a double would round them); never rounded to 0. An integer
  written without point or exponent that BIGINT cannot hold (``10000000000000000000``,
  ``100000000000000000000``) is not taken either, though a double may hold its number: the
  column stays text, so its values are written back as read (pandas keeps such a column as
  integers, uint64 or Python ints, and writes them back as read; a DOUBLE column wrote
  ``1e+20``, and ``1.0`` for every ``1`` beside it). A ``dtype`` of ``float64``/``DOUBLE``
  still takes it (``declared``): the user asked for a double;
* DATE: ``YYYY-MM-DD`` that prints back the same (a real calendar day);
* TIMESTAMP: a DATE of years 0001-9999, or ``YYYY-MM-DD[ T]HH:MM[:SS[.ffffff]]`` without an
  offset, on a real calendar day, hours 00-23, minutes and seconds 00-59 (``24:00`` would become
  the next day);
* TIMESTAMPTZ: the same with an offset under a day (``Z``, ``+02``, ``+0200``, ``+02:00``,
  hours 00-23, minutes 00-59: DuckDB reads ``+12:99`` as +13:39). A column mixing
  values with and without an offset is not one instant type: it stays text (or, when
  ``parse_dates`` names it, is an error).

A ``dtype`` column must hold each value exactly in its declared type (:func:`faithful` takes any
DuckDB type): the types above by the same rules; the other integer types (``TINYINT`` ...
``UHUGEINT``) like BIGINT (in range, printed back as written); ``DECIMAL(p,s)`` a plain decimal
number (no exponent, no leading zero) with at most ``s`` fractional digits once trailing zeros are
dropped, that fits ``p`` digits (never rounded); ``FLOAT`` a DOUBLE value that float32 gives back
as the same number; any other type a value whose cast prints back as the text itself.
"""

from __future__ import annotations

import re

from osiris_dagster.core.naming import quote_literal
from osiris_dagster.drivers.exact_double import double_holds

BOOLEAN, BIGINT, DOUBLE, VARCHAR = "BOOLEAN", "BIGINT", "DOUBLE", "VARCHAR"
DATE, TIMESTAMP, TIMESTAMPTZ = "DATE", "TIMESTAMP", "TIMESTAMPTZ"

NO_DATES = (BOOLEAN, BIGINT, DOUBLE, VARCHAR)  # candidates, narrowest first; VARCHAR fits all
WITH_DATES = (BOOLEAN, BIGINT, DOUBLE, DATE, TIMESTAMP, TIMESTAMPTZ, VARCHAR)
ONLY_DATES = (DATE, TIMESTAMP, TIMESTAMPTZ)  # a `parse_dates` column must be one of these

PANDAS_BOOLEANS = ("True", "TRUE", "true", "False", "FALSE", "false")
_NUMBER = (r" *[+-]?(((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"
           r"|(?i:inf|infinity)) *")
# A timestamp's parts must be what the cast keeps: DuckDB's cast takes year 0000 as 1 BC, hour 24
# as the next day, and any two digits of an offset (``+12:99`` as +13:39, ``+99`` as 99 hours).
_YEAR = r"(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_DAY = _YEAR + r"-[0-9]{2}-[0-9]{2}"
_CLOCK = r"[ T]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
_OFFSET = r"(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)"  # under a day, as ISO 8601 and Python
_NAIVE = f"{_DAY}({_CLOCK})?"
_AWARE = f"{_DAY}{_CLOCK}{_OFFSET}"
_WIDE_INTEGER = r" *[+-]?[0-9]{19,} *"  # as many digits as BIGINT's limits, or more
_PLAIN_DECIMAL = r" *[+-]?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+) *"
_DECIMAL_TYPE = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")
INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", BIGINT, "HUGEINT",
            "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT")
_ALIASES = {"TIMESTAMP WITH TIME ZONE": TIMESTAMPTZ}  # DuckDB's typeof() name -> ours

# error() text raised by the typed read when a value does not fit its column's planned type
MISMATCH_MARKER = "osiris_csv_type_mismatch"
_MISMATCH = re.compile(MISMATCH_MARKER + r":(\d+):,?((?:[A-Z]+,?)*)")


def faithful(kind: str, col: str, cast: str | None = None, declared: bool = False) -> str:
    """SQL: the non-NULL text value ``col`` (a quoted identifier) is exactly a ``kind``.

    ``kind`` is one of the candidate types or any DuckDB type a ``dtype`` names (as ``typeof``
    spells it); ``declared``: a ``dtype`` names it (DOUBLE then takes an integer past BIGINT
    that a double holds). ``cast`` is SQL for ``TRY_CAST(col AS kind)`` computed once by the
    caller (the typed read projects it in an inner query and reuses it as the result: a cast
    per value, not two)."""
    kind = _ALIASES.get(kind, kind)
    cast = cast or f"TRY_CAST({col} AS {kind})"
    if kind == BOOLEAN:
        return f"{col} IN ({', '.join(quote_literal(b) for b in PANDAS_BOOLEANS)})"
    if kind in INTEGERS:  # spaces around the number are rare: trim only when it differs
        printed = f"CAST({cast} AS VARCHAR)"
        return _any(f"{printed} = {col}", f"{printed} = trim({col})")
    if kind == DOUBLE:
        finite = _any(f"isfinite({cast})", f"regexp_matches({col}, '(?i)inf')")
        rules = [f"regexp_full_match({col}, '{_NUMBER}')", finite, double_holds(col, cast)]
        if not declared:
            rules.append(f"NOT {_past_bigint(col)}")
        return _all(*rules)
    if kind == DATE:
        return f"coalesce(CAST({cast} AS VARCHAR) = {col}, false)"
    if kind == TIMESTAMP:
        return f"(regexp_full_match({col}, '{_NAIVE}') AND {cast} IS NOT NULL)"
    if kind == TIMESTAMPTZ:
        return f"(regexp_full_match({col}, '{_AWARE}') AND {cast} IS NOT NULL)"
    if kind == VARCHAR:
        return "true"
    return _declared_only(kind, col, cast)


def gated_cast(kind: str, col: str) -> str | None:
    """SQL: ``TRY_CAST(col AS kind)`` for the values that may fit ``kind``, NULL for the rest;
    None where :func:`faithful` needs no cast (BOOLEAN, VARCHAR). Passed to :func:`faithful` as
    its ``cast``, it gives the same verdicts: the gate is a cheap test that every value the rule
    accepts passes. It spares the casts that would fail, which cost DuckDB several times a cast
    that succeeds (an error message per value), so a text column is not cast to every candidate
    type value by value when a sample is typed."""
    kind = _ALIASES.get(kind, kind)
    if kind in (BOOLEAN, VARCHAR):
        return None
    numeric = kind in _NUMERIC_KINDS or _DECIMAL_TYPE.fullmatch(kind)
    gate = _NUMBER_START if numeric else _CAST_GATES.get(kind)
    if gate is None:
        return f"TRY_CAST({col} AS {kind})"
    return f"CASE WHEN regexp_matches({col}, '{gate}') THEN TRY_CAST({col} AS {kind}) END"


# Where a value of each kind starts, as the rule's pattern or DuckDB's printing allows: numbers
# as _NUMBER (and _PLAIN_DECIMAL) start; dates as DuckDB prints a DATE (also ``0001-01-01 (BC)``
# and ``infinity``); timestamps as _NAIVE and _AWARE start.
_NUMBER_START = r"^ *[+-]?[0-9.iI]"
_NUMERIC_KINDS = (*INTEGERS, DOUBLE, "FLOAT")
_CAST_GATES = {DATE: r"^([0-9]{4,}-|-?infinity$)", TIMESTAMP: r"^[0-9]{4}-",
               TIMESTAMPTZ: r"^[0-9]{4}-"}


def _past_bigint(col: str) -> str:
    """SQL: ``col`` is an integer (digits, no point or exponent) that BIGINT cannot hold; one
    needs at least 19 digits, so shorter text is passed at the first test."""
    return _all(f"length({col}) >= 19", f"regexp_full_match({col}, '{_WIDE_INTEGER}')",
                f"TRY_CAST(trim({col}) AS BIGINT) IS NULL")


def _all(*conditions: str) -> str:
    """SQL: every condition holds (NULL counts as false), each evaluated only for the values the
    ones before it passed. DuckDB evaluates both sides of AND and OR for every value and only
    the branch a CASE takes, so the cheap test goes first and spares the costly ones (measured:
    ``benchmarks.csv_types``)."""
    expr = "true"
    for condition in reversed(conditions):
        expr = f"CASE WHEN {condition} THEN {expr} ELSE false END"
    return expr


def _any(first: str, second: str) -> str:
    """SQL: ``first`` or ``second`` holds (NULL counts as false); ``second`` is evaluated only
    for the values ``first`` does not pass (see :func:`_all`)."""
    return f"CASE WHEN {first} THEN true ELSE coalesce({second}, false) END"


def _declared_only(kind: str, col: str, cast: str) -> str:
    """:func:`faithful` for types only a ``dtype`` gives: never rounded, never reinterpreted."""
    decimal = _DECIMAL_TYPE.fullmatch(kind)
    if decimal:
        scale = int(decimal.group(2))
        fraction = f"length(rtrim(regexp_extract({col}, '\\.([0-9]*)', 1), '0'))"
        return (f"coalesce(regexp_full_match({col}, '{_PLAIN_DECIMAL}') AND {fraction} <= "
                f"{scale} AND {cast} IS NOT NULL, false)")
    if kind == "FLOAT":
        same = f"TRY_CAST(CAST({cast} AS VARCHAR) AS DOUBLE) = TRY_CAST({col} AS DOUBLE)"
        return f"({faithful(DOUBLE, col, declared=True)} AND coalesce({same}, false))"
    return f"coalesce(CAST({cast} AS VARCHAR) = {col}, false)"


def typed(kind: str | None, col: str, index: int, wider: tuple[str, ...],
          empty: str = VARCHAR, cast: str | None = None, declared: bool = False) -> str:
    """SQL: ``col`` as ``kind`` (``cast``, ``declared``: see :func:`faithful`); a value that
    does not fit raises error() with :data:`MISMATCH_MARKER`, the column's ``index`` and which
    of the ``wider`` types that value fits (see :func:`parse_mismatch`). ``kind`` None (no
    value seen yet) gives an all-NULL column of type ``empty`` and fails on the first value."""
    if kind == VARCHAR:
        return col
    fitting = ", ".join(f"CASE WHEN {faithful(k, col)} THEN '{k}' END" for k in wider)
    mismatch = f"error(concat_ws(',', '{MISMATCH_MARKER}:{index}:'{', ' if fitting else ''}" \
               f"{fitting}))"
    if kind is None:
        return f"CASE WHEN {col} IS NULL THEN CAST(NULL AS {empty}) ELSE {mismatch} END"
    value = cast or f"CAST({col} AS {kind})"
    return (f"CASE WHEN {col} IS NULL OR {faithful(kind, col, cast, declared)} THEN {value} "
            f"ELSE {mismatch} END")


def parse_mismatch(text: str) -> tuple[int, frozenset[str]] | None:
    """From a DuckDB error raised by :func:`typed`: the column index and the types the
    offending value fits; None for any other error."""
    match = _MISMATCH.search(text)
    if match is None:
        return None
    return int(match.group(1)), frozenset(k for k in match.group(2).split(",") if k)
