"""Whether each value fits the existing MySQL column it is written to, exactly.

MySQL stores some values that do not fit their column without an error, even under
``STRICT_ALL_TABLES`` (at most a note): a number with more decimals than a DECIMAL column's scale
is rounded, a fraction written to an integer column is rounded, a DOUBLE written to a FLOAT column
loses digits, as does a BIGINT or a wide DECIMAL written to a DOUBLE column, a time written to a
DATETIME/TIMESTAMP/TIME column with fewer fractional-second digits loses them, a timestamp written
to a DATE column loses its time of day, and 1-99 written to a YEAR column becomes 2001-2069 or
1970-1999. ``mysql.writer`` checks every value against these rules in DuckDB before it writes
anything, and fails naming the column, the value and the target column instead. (What MySQL
refuses under strict mode, such as a value out of range or a string too long, fails the write
anyway.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from osiris_dagster.core.naming import quote_ident
from osiris_dagster.drivers.duck_types import DECIMAL_TYPE

_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
             "UINTEGER", "UBIGINT", "UHUGEINT"}
_WIDE_INTEGERS = {"INTEGER", "BIGINT", "HUGEINT", "UINTEGER", "UBIGINT", "UHUGEINT"}
_FLOATS = {"FLOAT", "DOUBLE"}
_TIMESTAMPS = {"TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "TIMESTAMP_MS",
               "TIMESTAMP_S"}
_MYSQL_INTEGERS = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint"}


@dataclass(frozen=True)
class TargetColumn:
    """An existing column as ``information_schema.COLUMNS`` describes it."""

    name: str
    data_type: str  # DATA_TYPE, lower case: decimal, int, float, datetime, ...
    column_type: str  # COLUMN_TYPE: decimal(10,2), int(10) unsigned, ...
    scale: int | None  # NUMERIC_SCALE
    fsp: int | None  # DATETIME_PRECISION


@dataclass(frozen=True)
class FitCheck:
    column: str  # the input column
    target: TargetColumn
    ok: str  # SQL over the value sent: true when MySQL keeps it exactly (NULL counts as true)
    change: str  # what MySQL would do to a value that fails it


TARGET_COLUMNS_SQL = (
    "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, NUMERIC_SCALE, DATETIME_PRECISION FROM "
    "information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
    "ORDER BY ORDINAL_POSITION")


def target_columns(rows: Sequence[Sequence[Any]]) -> dict[str, TargetColumn]:
    """The rows of :data:`TARGET_COLUMNS_SQL`, by lower-case name (MySQL's comparison)."""
    return {str(r[0]).lower(): TargetColumn(
        str(r[0]), str(r[1]).lower(), str(r[2]), None if r[3] is None else int(r[3]),
        None if r[4] is None else int(r[4])) for r in rows}


def fit_checks(values: Sequence[tuple[str, str, str]],
               targets: Mapping[str, TargetColumn]) -> list[FitCheck]:
    """The checks the columns need: ``values`` are (input column, its DuckDB type, the SQL of
    the value the writer sends); a column whose every value fits its target needs none."""
    checks = []
    for name, duck, value in values:
        target = targets.get(name.lower())
        found = _rule(duck.upper(), value, target) if target is not None else None
        if found is not None:
            checks.append(FitCheck(name, target, *found))
    return checks


def _rule(duck: str, v: str, t: TargetColumn) -> tuple[str, str] | None:
    """(SQL true when ``v`` fits, what MySQL does to one that does not) or None."""
    decimal = DECIMAL_TYPE.fullmatch(duck)
    numeric = duck in _INTEGERS or duck in _FLOATS or decimal is not None
    kind = t.data_type
    if kind == "decimal" and t.scale is not None and numeric and duck not in _INTEGERS:
        if decimal is not None and int(decimal.group(2)) <= t.scale:
            return None
        return f"{v} = round({v}, {t.scale})", f"rounded to {t.scale} decimals"
    if kind in _MYSQL_INTEGERS and (duck in _FLOATS or decimal is not None and
                                    int(decimal.group(2)) > 0):
        return f"{v} = trunc({v})", "rounded to an integer"
    if kind in ("float", "double") and t.scale is not None and numeric and \
            duck not in _INTEGERS:  # FLOAT(M,D) / DOUBLE(M,D): rounded to D decimals
        return f"{v} = round({v}, {t.scale})", f"rounded to {t.scale} decimals"
    if kind == "float" and (duck == "DOUBLE" or duck in _WIDE_INTEGERS or decimal is not None):
        # float32 must give the number back (0.1 does: it prints as 0.1; 16777217 does not)
        return (f"TRY_CAST(CAST(CAST({v} AS FLOAT) AS VARCHAR) AS DOUBLE) = CAST({v} AS DOUBLE)"
                + _exact_double(duck, v)), "as a 4-byte FLOAT, losing digits"
    if kind == "double" and (duck in {"BIGINT", "HUGEINT", "UBIGINT", "UHUGEINT"} or
                             decimal is not None):
        return f"TRY_CAST(CAST({v} AS DOUBLE) AS {duck}) = {v}", "as a DOUBLE, losing digits"
    if kind in ("datetime", "timestamp", "time") and (duck in _TIMESTAMPS or duck == "TIME") \
            and t.fsp is not None and t.fsp < 6:
        return (f"microsecond({v}) % {10 ** (6 - t.fsp)} = 0",
                f"with {t.fsp} fractional-second digits")
    if kind == "date" and duck in _TIMESTAMPS:
        return f"CAST({v} AS DATE) = {v}", "without its time of day"
    if kind == "year" and duck in _INTEGERS:
        return f"NOT ({v} BETWEEN 1 AND 99)", "as a year of 1970-2069 (two-digit years)"
    return None


def _exact_double(duck: str, v: str) -> str:
    """For a source wider than a double, also: the double is the value itself."""
    if duck in {"BIGINT", "HUGEINT", "UBIGINT", "UHUGEINT"} or DECIMAL_TYPE.fullmatch(duck):
        return f" AND TRY_CAST(CAST({v} AS DOUBLE) AS {duck}) = {v}"
    return ""


def first_misfit(con: duckdb.DuckDBPyConnection, relation: str, checks: Sequence[FitCheck]
                 ) -> tuple[FitCheck, Any] | None:
    """The first value (in the table's order) that fails its check, with that check; None when
    every value fits. One streaming scan that stops at the first misfit."""
    if not checks:
        return None
    oks = [f"coalesce({c.ok}, true)" for c in checks]
    cols = ", ".join(f"{quote_ident(c.column)}, {ok}" for c, ok in zip(checks, oks, strict=True))
    row = con.execute(f"SELECT {cols} FROM (SELECT * FROM {relation}) WHERE NOT "
                      f"({' AND '.join(oks)}) LIMIT 1").fetchone()
    if row is None:
        return None
    for i, check in enumerate(checks):
        if not row[2 * i + 1]:
            return check, row[2 * i]
    return None
