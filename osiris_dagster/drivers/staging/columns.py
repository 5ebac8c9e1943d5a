"""How one column of a database result becomes a DuckDB value: the column's description
(:class:`SourceColumn`) and the cast DuckDB runs on it (:func:`select_expression`). A value the
cast cannot take fails the query with a marked error; :func:`value_problem` reads the column and
the value back from its text, so the step's error can name them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from osiris_dagster.core.naming import quote_ident, quote_literal
from osiris_dagster.drivers.exact_double import double_holds


@dataclass(frozen=True)
class SourceColumn:
    """One column of a database result: how its text becomes a DuckDB value.

    ``kind``: ``text`` (VARCHAR as is), ``binary`` (bytes -> BLOB as is), ``cast`` (text cast to
    ``duck_type``), ``json_cast`` (a JSON array -> a LIST, each element read as ``element``
    says), ``hex`` (PostgreSQL bytea
    text ``\\x..`` -> BLOB), ``date`` (a cast that may meet MySQL zero dates), ``exact_double``
    (decimal text wider than DuckDB's DECIMAL -> DOUBLE, a value the double would round fails),
    ``era`` (PostgreSQL date/timestamp text, ``0100-01-01 10:00:00 BC`` for a year BC: DuckDB's
    TIMESTAMP cast ignores the suffix and would make it AD, so it is moved where DuckDB reads
    it, ``0100-01-01 (BC) 10:00:00``), ``interval`` (PostgreSQL interval text, whose fields
    may be signed ``+``: ``-1 days +02:00:00``, which DuckDB's cast refuses).
    """

    name: str
    duck_type: str
    source_type: str
    kind: str = "cast"
    convert: Callable[[Any], Any] | None = None  # Python-side fix-up before Arrow (rare types)
    element: str = "cast"  # json_cast: the kind each element is read with

    @property
    def arrow_type(self) -> pa.DataType:
        return pa.binary() if self.kind == "binary" else pa.string()


_VALUE_ERROR = "osiris-value-error"
_SEP = "\x1f"
_ZERO_DATE = r"^(0000-00-00|[0-9]{4}-00-|[0-9]{4}-[0-9]{2}-00)"
_BC = r"^([0-9]+-[0-9]+-[0-9]+)[ T]?(.*) BC$"  # PostgreSQL's date [time] BC (REST: a T)


def select_expression(col: SourceColumn, src: str, zero_dates_null: bool = False,
                      arrow_type: pa.DataType | None = None) -> str:
    """The DuckDB expression that turns source column ``src`` into the output value. ``src``
    holds text by default; with ``arrow_type`` it may also hold UTF-8 bytes (decoded) or typed
    values (cast; a value the cast cannot take fails naming the column, as text does)."""
    ref = quote_ident(src)
    out = quote_ident(col.name)
    typed = arrow_type is not None and not _is_text(arrow_type) and not _is_bytes(arrow_type)
    if col.kind == "binary":
        text = arrow_type is not None and _is_text(arrow_type)
        return f"encode({ref}) AS {out}" if text else f"{ref} AS {out}"
    if arrow_type is not None and _is_bytes(arrow_type):
        ref = f"decode({ref})"
    if col.kind == "text" or col.duck_type == "VARCHAR":
        return f"{ref}::VARCHAR AS {out}" if typed else f"{ref} AS {out}"
    if typed:
        marker = quote_literal(_VALUE_ERROR + _SEP + col.name + _SEP)
        fail = f"error({marker} || left({ref}::VARCHAR, 200))"
        return (f"CASE WHEN {ref} IS NULL THEN NULL ELSE coalesce(TRY_CAST({ref} AS "
                f"{col.duck_type}), {fail}) END AS {out}")
    if col.kind == "json_cast":
        value = _list_value(col, ref)
    else:
        value = _value(col.kind, ref, col.duck_type)
    marker = quote_literal(_VALUE_ERROR + _SEP + col.name + _SEP)
    fail = f"error({marker} || left({ref}, 200))"
    null_if = f"{ref} IS NULL"
    if col.kind == "date" and zero_dates_null:
        null_if += f" OR regexp_matches({ref}, {quote_literal(_ZERO_DATE)})"
    return f"CASE WHEN {null_if} THEN NULL ELSE coalesce({value}, {fail}) END AS {out}"


def _value(kind: str, ref: str, duck_type: str) -> str:
    """SQL: the text ``ref`` as a ``duck_type`` value of ``kind``; NULL where it is not one
    exactly (the caller fails such a value)."""
    if kind == "hex":
        return f"from_hex(substr({ref}, 3))"
    if kind == "exact_double":  # a wide decimal: a value a double would round fails
        cast = f"TRY_CAST({ref} AS DOUBLE)"
        # one past a double's range is cast to infinity: only 'Infinity' may be one
        finite = f"(isfinite({cast}) OR regexp_matches({ref}, '(?i)inf'))"
        return (f"CASE WHEN isnan({cast}) OR {finite} AND {double_holds(ref, cast)} "
                f"THEN {cast} END")
    if kind == "era":
        dated = rf"rtrim(regexp_replace({ref}, '{_BC}', '\1 (BC) \2'))"
        return (f"TRY_CAST(CASE WHEN ends_with({ref}, ' BC') THEN {dated} ELSE {ref} END "
                f"AS {duck_type})")
    if kind == "interval":  # PostgreSQL signs a field '+' where the signs are mixed
        return f"TRY_CAST(replace({ref}, '+', '') AS {duck_type})"
    return f"TRY_CAST({ref} AS {duck_type})"


def _list_value(col: SourceColumn, ref: str) -> str:
    """SQL: a JSON array as a LIST, each element read from its text like a value of the
    element type (:func:`_value`); NULL when any element is not one exactly. A plain cast of
    the array would make such an element NULL, or round or reinterpret it, without an error."""
    element = "__osiris_element"
    texts = f"TRY_CAST(TRY_CAST({ref} AS JSON) AS VARCHAR[])"
    each = _value(col.element, element, col.duck_type.removesuffix("[]"))
    typed = f"CAST(list_transform({texts}, lambda {element}: {each}) AS {col.duck_type})"
    nulls = f"lambda {element}: {element} IS NULL"
    # an array or object element (a 2-D array in a 1-D column) is not an element's text
    flat = f"NOT list_has_any(json_type(TRY_CAST({ref} AS JSON), '$[*]'), ['ARRAY', 'OBJECT'])"
    return (f"CASE WHEN {flat} AND len(list_filter({typed}, {nulls})) = "
            f"len(list_filter({texts}, {nulls})) THEN {typed} END")


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_bytes(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)


class ValueProblem(Exception):
    def __init__(self, column: str, value: str) -> None:
        super().__init__(column, value)
        self.column = column
        self.value = value


def value_problem(exc: BaseException) -> ValueProblem | None:
    """The column/value of a failed cast raised by :func:`select_expression`, if that was it."""
    text = str(exc)
    i = text.find(_VALUE_ERROR + _SEP)
    if i < 0:
        return None
    rest = text[i + len(_VALUE_ERROR) + 1:]
    column, _, value = rest.partition(_SEP)
    return ValueProblem(column, value.splitlines()[0] if value else value)


def is_zero_date(value: str) -> bool:
    return bool(re.match(_ZERO_DATE, value))
