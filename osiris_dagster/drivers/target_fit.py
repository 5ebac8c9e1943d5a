"""Whether each value fits the existing database column it is written to, exactly.

MySQL and PostgreSQL store some values that do not fit their column without an error (MySQL even
under ``STRICT_ALL_TABLES``, at most a note): a number with more decimals than a DECIMAL/numeric
column's scale is rounded, a DOUBLE written to a FLOAT/real column loses digits, as does a BIGINT or
a wide DECIMAL written to a DOUBLE column, a time written to a timestamp or time column with fewer
fractional-second digits loses them (PostgreSQL rounds: ``2024-12-31 23:59:59.9`` into
``timestamp(0)`` becomes the next year), an interval written to a PostgreSQL interval column with
fields or fewer fractional-second digits loses what they drop (``interval day``, ``interval(0)``),
and a timestamp written to a DATE column loses its time of day; a text longer than a CHAR(n) or
VARCHAR(n) column by spaces is cut to the length (MySQL with a note); PostgreSQL does all this to
each element written into an array column; in MySQL also a fraction written to an integer column
is rounded and 1-99 written to a YEAR column becomes 2001-2069 or 1970-1999.
``mysql.writer`` and ``supabase.writer`` (SQL channel) check every value against these rules in
DuckDB before they write anything, and fail naming the column, the value and the target column
instead. (What the database refuses, such as a value out
of range or a string too long, fails the write anyway.)

A text (VARCHAR) written to a date, time, timestamp or interval column is read by the database's
own parser (PostgreSQL's DateStyle, ``infinity``, ``epoch``, zone names; MySQL's relaxed forms), and
it changes the same values: ``'2024-12-31 23:59:59.9'`` into ``timestamp(0)`` is the next year,
``'2024-01-01 23:30:00'`` into a date loses its time of day. DuckDB judges the ISO forms
(``2024-01-01``, ``2024-01-01[ T]10:00[:00[.5]]``, ``10:00[:00[.5]]``, with a ``Z``/``+02:00``
offset for a PostgreSQL column with time zone), which every DateStyle and sql_mode reads alike;
every other distinct text is judged by the database itself (:mod:`.text_times`), in the write's
session before anything is written. A text with more than 6 fractional-second digits is always
changed (both keep microseconds).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from osiris_dagster.core.errors import DriverError
from osiris_dagster.core.naming import quote_ident
from osiris_dagster.drivers.duck_types import DECIMAL_TYPE, is_nested, list_element

_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
             "UINTEGER", "UBIGINT", "UHUGEINT"}
_WIDE_INTEGERS = {"INTEGER", "BIGINT", "HUGEINT", "UINTEGER", "UBIGINT", "UHUGEINT"}
_FLOATS = {"FLOAT", "DOUBLE"}
_TIMESTAMPS = {"TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "TIMESTAMP_MS",
               "TIMESTAMP_S"}
_TIMES = {"TIME", "TIME WITH TIME ZONE"}
_BEYOND_DOUBLE = {"BIGINT", "HUGEINT", "UBIGINT", "UHUGEINT"}  # integers a double may round
_MYSQL_TEXT_DIGITS = 65  # MySQL reads at most this many digits of a number's text exactly
_DECIMAL_TEXT = r"\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*"


@dataclass(frozen=True)
class TargetColumn:
    """An existing column: its name, what kind of values it holds (decimal, integer, float,
    double, datetime, time, date, year, char with a length, array; other for the rest), its
    type as the database spells it, its scale (decimal, MySQL FLOAT(M,D)), its fractional-second
    digits, its length in characters and an array's element column."""

    name: str
    kind: str
    column_type: str
    scale: int | None = None
    fsp: int | None = None
    database: str = "postgresql"  # or mysql: how the writer sends values, how they are read
    length: int | None = None  # a CHAR(n)/VARCHAR(n) column's characters
    element: TargetColumn | None = None  # a PostgreSQL array column's element


@dataclass(frozen=True)
class FitCheck:
    column: str  # the input column
    target: TargetColumn
    value: str  # SQL of the value sent
    ok: str  # SQL, for a non-NULL value: true when the database keeps it exactly
    change: str  # what the database would do to a value that fails it


@dataclass(frozen=True)
class ServerCheck:
    """Texts written to a temporal column that DuckDB does not judge (see the module's
    docstring): the distinct ones for which ``pending`` is true go to the database."""

    column: str  # the input column
    target: TargetColumn
    value: str  # SQL of the text sent
    pending: str  # SQL over the text as `osiris_text`: true when the database must judge it


# (target, distinct texts) -> (the first text the database would store changed, how) or None
ServerJudge = Callable[[TargetColumn, list[str]], "tuple[str, str] | None"]


# (the last three for mysql.writer's staging table: its columns like the target's)
MYSQL_COLUMNS_SQL = (
    "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, NUMERIC_SCALE, DATETIME_PRECISION, "
    "CHARACTER_SET_NAME, COLLATION_NAME, EXTRA FROM information_schema.COLUMNS WHERE "
    "TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION")
_MYSQL_KINDS = {"decimal": "decimal", "tinyint": "integer", "smallint": "integer",
                "mediumint": "integer", "int": "integer", "integer": "integer",
                "bigint": "integer", "float": "float", "double": "double",
                "datetime": "datetime", "timestamp": "datetime", "time": "time", "date": "date",
                "year": "year"}


def mysql_target_columns(rows: Sequence[Sequence[Any]]) -> dict[str, TargetColumn]:
    """The rows of :data:`MYSQL_COLUMNS_SQL`, by lower-case name (MySQL's comparison)."""
    return {str(r[0]).lower(): TargetColumn(
        str(r[0]), _MYSQL_KINDS.get(str(r[1]).lower(), "other"), str(r[2]),
        None if r[3] is None else int(r[3]), None if r[4] is None else int(r[4]), "mysql",
        length=_char_length(_MYSQL_CHARS.fullmatch(str(r[2]).lower())))
        for r in rows}


_MYSQL_CHARS = re.compile(r"(?:var)?char\((\d+)\)(?: binary)?")
_PG_CHARS = re.compile(r"character(?: varying)?\((\d+)\)")


def _char_length(match: re.Match[str] | None) -> int | None:
    return int(match.group(1)) if match else None


_PG_NUMERIC = re.compile(r"numeric\(\d+,(-?\d+)\)")  # a negative scale rounds to tens
_PG_TIMES = re.compile(r"(timestamp|time)(?:\((\d)\))? with(?:out)? time zone")
_PG_INTERVAL = re.compile(r"interval(?: (?:year|month|day|hour|minute|second) to)?"
                          r"(?: (year|month|day|hour|minute|second))?(?:\((\d)\))?")
# an interval column's smallest field -> SQL over months {m}, days {d}, microseconds {u} that is
# true when PostgreSQL keeps the value whole (it drops what is below the field: '1 year 2 mons'
# into `interval year` is '1 year')
_INTERVAL_FIELDS = {"year": "{m} % 12 = 0 AND {d} = 0 AND {u} = 0",
                    "month": "{d} = 0 AND {u} = 0", "day": "{u} = 0",
                    "hour": "{u} % 3600000000 = 0", "minute": "{u} % 60000000 = 0"}


def pg_target_column(name: str, formatted: str) -> TargetColumn:
    """A PostgreSQL column from ``format_type()`` (``numeric(10,2)``, ``timestamp(0) without
    time zone``, ``interval day``, ``numeric(10,2)[]``, ...). Integer columns need no check:
    PostgreSQL refuses a fraction there. ``money`` holds 2 decimals (lc_monetary C, which the
    connection sets) and rounds the rest."""
    if formatted.endswith("[]"):  # every dimension: PostgreSQL does not enforce them
        return TargetColumn(name, "array", formatted,
                            element=pg_target_column(name, formatted.rstrip("[]")))
    chars = _PG_CHARS.fullmatch(formatted)
    if chars:
        return TargetColumn(name, "other", formatted, length=_char_length(chars))
    numeric = _PG_NUMERIC.fullmatch(formatted)
    if numeric:
        return TargetColumn(name, "decimal", formatted, scale=int(numeric.group(1)))
    if formatted == "money":
        return TargetColumn(name, "decimal", formatted, scale=2)
    interval = _PG_INTERVAL.fullmatch(formatted)
    if interval:
        digits = interval.group(2)
        return TargetColumn(name, "interval", formatted, fsp=int(digits) if digits else 6)
    times = _PG_TIMES.fullmatch(formatted)
    if times:
        kind = "datetime" if times.group(1) == "timestamp" else "time"
        return TargetColumn(name, kind, formatted,
                            fsp=int(times.group(2)) if times.group(2) else 6)
    kind = {"real": "float", "double precision": "double", "date": "date"}.get(formatted)
    return TargetColumn(name, kind or "other", formatted)


def fit_checks(values: Sequence[tuple[str, str, str]],
               targets: Mapping[str, TargetColumn]) -> list[FitCheck]:
    """The checks the columns need: ``values`` are (input column, its DuckDB type, the SQL of
    the value the writer sends), ``targets`` the target column of each input column; a column
    whose every value fits its target needs none."""
    checks = []
    for name, duck, value in values:  # one check per rule: a misfit names its own change
        target = targets.get(name)
        for ok, change in (_rules(duck.upper(), value, target) if target is not None else []):
            checks.append(FitCheck(name, target, value, ok, change))
    return checks


def _rule(duck: str, v: str, t: TargetColumn) -> tuple[str, str] | None:
    """(SQL true when the non-NULL value ``v`` fits, what the database does to one that does
    not) or None. A check that cannot tell (NULL) counts as a misfit."""
    rules = _rules(duck, v, t)
    if not rules:
        return None
    return " AND ".join(ok for ok, _ in rules), "; or ".join(dict.fromkeys(c for _, c in rules))


def _rules(duck: str, v: str, t: TargetColumn) -> list[tuple[str, str]]:
    """Each (SQL true when the non-NULL value ``v`` fits, what the database does to one that
    does not) that a value of ``duck`` written to ``t`` must pass; none when it always fits."""
    decimal = DECIMAL_TYPE.fullmatch(duck)
    src_scale = int(decimal.group(2)) if decimal else 0
    fractional = duck in _FLOATS or src_scale > 0  # a source that may hold a fraction
    kind = t.kind
    if kind == "array":
        found = _array_rule(duck, v, t)
        return [found] if found is not None else []
    rules: list[tuple[str, str]] = []
    if duck == "BIT" and _reads_bits_as_a_number(t):
        return [("false", _BITS_AS_DIGITS.format(column=quote_ident(t.name)))]
    if duck == "VARCHAR" and t.database == "mysql" and t.column_type.lower().startswith("bit"):
        # a PostgreSQL bit(n) arrives as its digits: MySQL stores a text's bytes, not bits
        name = quote_ident(t.name)
        return [("false", "as the bytes of its characters ('101' as 0x313031), not as bits; "
                          f"CAST(CAST({name} AS BIT) AS UBIGINT) upstream sends the bits' "
                          "number, which MySQL stores as those bits")]
    if t.length is not None and duck == "VARCHAR":
        # both cut a longer text to the length without an error when what is cut is spaces
        # (MySQL even in strict mode, with a note); a text that is longer otherwise fails there
        rules.append((f"(length({v}) <= {t.length} OR length(rtrim({v}, ' ')) > {t.length})",
                      f"cut to {t.length} characters (the spaces past the column's length are "
                      "dropped)"))
    if kind in ("decimal", "float", "double") and t.scale is not None:
        # judged on the value's text (what the database receives; DuckDB prints DECIMAL and
        # DOUBLE exactly, a double as its shortest text): its decimals must fit the scale
        text = v if duck == "VARCHAR" else f"CAST({v} AS VARCHAR)"
        needs = (duck in _FLOATS or duck == "VARCHAR" or
                 decimal is not None and src_scale > t.scale or
                 duck in _INTEGERS | {"BOOLEAN"} and t.scale < 0)
        if needs:
            nan = f"isnan({v}) OR " if duck in _FLOATS else ""
            digits = _MYSQL_TEXT_DIGITS if t.database == "mysql" else None
            rules.append((f"({nan}{_fits_scale(text, t.scale, digits)})",
                          f"rounded to {t.scale} decimals"))
    if kind == "integer" and fractional:
        rules.append((f"{v} = trunc({v})", "rounded to an integer"))
    if kind == "integer" and duck == "VARCHAR":  # MySQL rounds '1.5' into 2 without a word
        digits = _MYSQL_TEXT_DIGITS if t.database == "mysql" else None
        rules.append((_fits_scale(v, 0, digits), "rounded to an integer"))
    if kind == "float" and (duck == "DOUBLE" or duck in _WIDE_INTEGERS or decimal is not None):
        # float32 must give the number back (0.1 does: it prints as 0.1; 16777217 does not)
        wide = duck in _BEYOND_DOUBLE or decimal is not None  # the double must be v, too
        rules.append((f"TRY_CAST(CAST(TRY_CAST({v} AS FLOAT) AS VARCHAR) AS DOUBLE) = "
                      f"CAST({v} AS DOUBLE)" + (f" AND {_double_exact(duck, v)}" if wide else ""),
                      "as a 4-byte FLOAT, losing digits"))
    if kind == "double" and (duck in _BEYOND_DOUBLE or decimal is not None):
        rules.append((_double_exact(duck, v), "as a DOUBLE, losing digits"))
    if kind in ("datetime", "time") and (duck in _TIMESTAMPS or duck in _TIMES):
        fsp = 6 if t.fsp is None else t.fsp  # PostgreSQL's default; MySQL always says
        digits = f"with {fsp} fractional-second digits"
        held = {"TIMESTAMP_NS": 9, "TIMESTAMP_MS": 3, "TIMESTAMP_S": 0}.get(duck, 6)
        endless = f"isinf({v}) OR " if duck in _TIMESTAMPS else ""  # infinity has no seconds
        if held > fsp and duck == "TIMESTAMP_NS":  # nanoseconds: no database column keeps them
            rules.append((f"({endless}nanosecond({v}) % {10 ** (9 - fsp)} = 0)", digits))
        elif held > fsp:  # DuckDB reads a TIMESTAMP_MS's parts through nanoseconds (1677-2262)
            micro = f"CAST({v} AS TIMESTAMP)" if duck == "TIMESTAMP_MS" else v
            rules.append((f"({endless}microsecond({micro}) % {10 ** (6 - fsp)} = 0)", digits))
    if kind == "interval" and (duck == "INTERVAL" or duck == "TIME"):
        # a TIME is the interval since midnight there ('12:34:56' into `interval day` is 0)
        rule = _interval_rule(v if duck == "INTERVAL" else f"to_microseconds(epoch_us({v}))", t)
        if rule is not None:
            rules.append(rule)
    elif kind == "interval" and (duck in _INTEGERS or fractional):
        # a number is read as seconds, rounded to microseconds, then cut to the column's
        # fields or digits: only a plain interval column is checked for it
        if _interval_rule(v, t) is None:
            text = f"CAST({v} AS VARCHAR)"
            rules.append((f"({_fits_scale(text, 6)})", "as seconds rounded to microseconds"))
        else:
            rules.append(("false", "as seconds cut to the column's fields or digits (write "
                          "INTERVAL values into it)"))
    if kind == "time" and duck == "INTERVAL" and (t.fsp if t.fsp is not None else 6) < 6:
        fsp = t.fsp or 0
        rules.append((f"(datepart('microseconds', {v}) % {10 ** (6 - fsp)} = 0)",
                      f"with {fsp} fractional-second digits"))
    if kind == "time" and duck in _TIMESTAMPS:
        rules.append(("false", "without its date"))
    if kind == "date" and duck in _TIMESTAMPS:
        rules.append((f"CAST({v} AS DATE) = {v}", "without its time of day"))
    if duck == "VARCHAR" and kind in ("datetime", "time", "date", "interval"):
        rules.extend(_text_time_rules(v, t))
    if kind == "year" and duck == "VARCHAR":  # a number in text becomes a year the same way
        number = f"TRY_CAST({v} AS DOUBLE)"
        rules.append((f"({number} = trunc({number}) AND NOT ({number} >= 1 AND {number} < 100))",
                      "as another year (1-99 become 1970-2069; fractions are rounded)"))
    if kind == "year" and (duck in _INTEGERS or fractional):
        whole = f"{v} = trunc({v}) AND " if fractional else ""
        rules.append((f"({whole}NOT ({v} >= 1 AND {v} < 100))",
                      "as another year (1-99 become 1970-2069; fractions are rounded)"))
    return rules


_ISO_DATE = r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"  # (Feb 30 is refused there)
_ISO_CLOCK = r"([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d+)?)?"
_ISO_ZONE = r"(Z|[+-]\d\d(:?\d\d)?)"
_ISO_MIDNIGHT = r"([ T]00:00(:00(\.0+)?)?)?"
EXTRA_DIGITS = r"\.\d{6}\d*[1-9]"  # past microseconds, which both databases round or cut


_PG_NUMBERS = ("smallint", "integer", "bigint", "numeric", "real", "double precision", "money")
_BITS_AS_DIGITS = ("as the number or bytes its digits spell ('0101' as 101, not 5; "
                   "CAST({column} AS INTEGER) upstream gives the bits' number, "
                   "CAST({column} AS VARCHAR) the digits)")


def _reads_bits_as_a_number(t: TargetColumn) -> bool:
    """Whether the column reads a BIT value's text (its digits) as a number or as bytes."""
    column_type = t.column_type.lower()
    if t.database == "mysql":
        return t.kind in ("integer", "decimal", "float", "double", "year") or \
            column_type.startswith("bit")
    return t.kind in ("decimal", "float", "double") or column_type.startswith(_PG_NUMBERS)


def _iso_forms(v: str, t: TargetColumn) -> tuple[str, str, str]:
    """SQL true when the text ``v`` is an ISO date (and time), an ISO time of day, an ISO date
    and time: forms every DateStyle and sql_mode reads alike (a zone only for a PostgreSQL
    column with time zone)."""
    zone = f"{_ISO_ZONE}?" if t.database == "postgresql" and "with time zone" in \
        t.column_type else ""
    return (f"regexp_full_match({v}, '{_ISO_DATE}([ T]{_ISO_CLOCK})?{zone}')",
            f"regexp_full_match({v}, '{_ISO_CLOCK}{zone}')",
            f"regexp_full_match({v}, '{_ISO_DATE}[ T]{_ISO_CLOCK}{zone}')")


def _interval_cut(t: TargetColumn) -> str | None:
    """What a PostgreSQL interval column with fields or fewer digits drops; None: nothing."""
    found = _interval_rule("x", t)
    return None if found is None else found[1]


def _text_time_rules(v: str, t: TargetColumn) -> list[tuple[str, str]]:
    """The rules DuckDB judges for a text written to a temporal column: its ISO forms (see
    :func:`server_check`), for any text the digits past microseconds, and for a MySQL column
    a UTC offset after a time of day (MySQL drops it)."""
    date, clock, dated = _iso_forms(v, t)
    if t.database == "mysql":  # an offset after a time of day: MySQL drops it or misreads it
        offset = (f"NOT regexp_matches({v}, '\\d:\\d\\d(:\\d\\d(\\.\\d+)?)?\\s*"
                  f"(Z|[+-]\\d\\d(:?\\d\\d)?)\\s*$')")
        rules = _text_time_rules_plain(v, t, date, clock, dated)
        return [*rules, (offset, "without its time zone or UTC offset, so as another instant")]
    return _text_time_rules_plain(v, t, date, clock, dated)


def _text_time_rules_plain(v: str, t: TargetColumn, date: str, clock: str, dated: str
                           ) -> list[tuple[str, str]]:
    """The digits and date rules of :func:`_text_time_rules`."""
    fsp = 6 if t.fsp is None else t.fsp
    digits = f"with {fsp} fractional-second digits"
    fits = f"NOT regexp_matches({v}, '\\.\\d{{{fsp}}}\\d*[1-9]')"  # no more digits than fsp
    short = f"NOT regexp_matches({v}, '{EXTRA_DIGITS}')"  # both keep at most microseconds
    # (the test that passes a usual value first: ISO text with digits that fit)
    if t.kind == "datetime":
        return [(f"({fits} OR NOT {date} AND {short})", digits)]
    if t.kind == "date":
        return [(f"(regexp_full_match({v}, '{_ISO_DATE}{_ISO_MIDNIGHT}') OR NOT {date} AND "
                 f"{short})", "without its time of day")]
    if t.kind == "time":
        return [(f"({fits} OR NOT {clock} AND {short})", digits),
                (f"NOT {dated}", "without its date")]
    return [(short, digits)]  # an interval column (one with fields or digits: the server too)


def server_check(name: str, duck: str, v: str, t: TargetColumn) -> ServerCheck | None:
    """The texts of one input column the database must judge: those written to a temporal
    column that are not in a form DuckDB judges (an interval column with fields or digits:
    every text)."""
    if duck.upper() != "VARCHAR" or t.kind not in ("datetime", "time", "date", "interval"):
        return None
    if t.kind == "interval":
        if t.database != "postgresql" or _interval_cut(t) is None:
            return None
        return ServerCheck(name, t, v, "true")
    date, clock, dated = _iso_forms("osiris_text", t)
    judged = f"{clock} OR {dated}" if t.kind == "time" else date
    return ServerCheck(name, t, v, f"NOT coalesce({judged}, false)")


def text_change(t: TargetColumn, what: str) -> str:
    """How the database changes a text the server judged: ``digits`` (fractional seconds or,
    for an interval column, what its fields and digits drop), ``date`` (a time column: the
    date)."""
    if t.kind == "interval":
        return _interval_cut(t) or "with 6 fractional-second digits"
    if what == "date":
        return "without its date"
    if what == "zone":
        return "without its time zone or UTC offset, so as another instant"
    if what == "zero":
        return "as a date with month or day 0 (how it reads the text)"
    if t.kind == "date":
        return "without its time of day"
    return f"with {6 if t.fsp is None else t.fsp} fractional-second digits"


def _array_rule(duck: str, v: str, t: TargetColumn) -> tuple[str, str] | None:
    """A one-dimensional list written to a PostgreSQL array column: every element must fit the
    element column (``{1.239}`` into ``numeric(10,2)[]`` is ``{1.24}``)."""
    element = list_element(duck)
    if element is None or is_nested(element) or t.element is None:
        return None
    found = _rule(element.upper(), "osiris_element", t.element)
    if found is None:
        return None
    ok, change = found
    return (f"len(list_filter({v}, lambda osiris_element: NOT (osiris_element IS NULL OR "
            f"coalesce({ok}, false)))) = 0", f"{change}, in an element of the array")


def _interval_rule(v: str, t: TargetColumn) -> tuple[str, str] | None:
    """(SQL, change) for an INTERVAL written to a PostgreSQL interval column with fields
    (``interval day``) or fewer fractional-second digits (``interval(0)``); None when the
    column keeps every interval."""
    match = _PG_INTERVAL.fullmatch(t.column_type)
    field = match.group(1) if match else None
    parts = {"m": f"(datepart('year', {v}) * 12 + datepart('month', {v}))",
             "d": f"datepart('day', {v})",
             "u": f"(datepart('hour', {v}) * 3600000000 + datepart('minute', {v}) * 60000000 "
                  f"+ datepart('microseconds', {v}))"}
    if field in _INTERVAL_FIELDS:
        return (f"({_INTERVAL_FIELDS[field].format(**parts)})",
                f"without what is below its {field}s")
    fsp = 6 if t.fsp is None else t.fsp
    if fsp >= 6:
        return None
    return (f"({parts['u']} % {10 ** (6 - fsp)} = 0)", f"with {fsp} fractional-second digits")


def _fits_scale(text: str, scale: int, max_digits: int | None = None) -> str:
    """SQL: the number written as ``text`` (plain or with an exponent, spaces around) has at
    most ``scale`` decimals (a negative scale: ends in that many zeros); zero always fits.
    ``max_digits``: a text with more digits is refused (MySQL drops the digits past about 65
    of a long text before it applies the exponent)."""
    whole = f"regexp_extract({text}, '^\\s*[+-]?([0-9]*)', 1)"
    fraction = f"rtrim(regexp_extract({text}, '\\.([0-9]*)', 1), '0')"
    exponent = (f"CASE WHEN regexp_matches({text}, '[eE]') THEN TRY_CAST(regexp_extract("
                f"{text}, '[eE]([+-]?[0-9]+)', 1) AS INTEGER) ELSE 0 END")  # NULL: too large
    decimals = (f"CASE WHEN {fraction} <> '' THEN length({fraction}) ELSE "
                f"length(rtrim({whole}, '0')) - length({whole}) END")
    length = "" if max_digits is None else (
        f" AND length(regexp_replace(regexp_extract({text}, '^[^eE]*'), '[^0-9]', '', 'g')) "
        f"<= {max_digits}")
    return (f"regexp_full_match({text}, '{_DECIMAL_TEXT}'){length} AND "
            f"(regexp_full_match({whole} || {fraction}, '0*') OR "
            f"{decimals} - {exponent} <= {scale})")


def _double_exact(duck: str, v: str) -> str:
    """SQL: the double nearest to the integer or decimal ``v`` is ``v`` itself. Integers
    convert exactly both ways; a DECIMAL goes through text, which DuckDB parses and prints
    exactly (its DECIMAL <-> DOUBLE casts compute in floating point and may be one digit
    off)."""
    if duck in _BEYOND_DOUBLE:
        return f"TRY_CAST(CAST({v} AS DOUBLE) AS {duck}) = {v}"
    double = f"TRY_CAST(CAST({v} AS VARCHAR) AS DOUBLE)"
    decimal = DECIMAL_TYPE.fullmatch(duck)
    if decimal is not None and decimal.group(2) == "0":  # integral: back through HUGEINT, exact
        return f"TRY_CAST(TRY_CAST({double} AS HUGEINT) AS {duck}) = {v}"
    return f"TRY_CAST(CAST({double} AS VARCHAR) AS {duck}) = {v}"


def first_misfit(con: duckdb.DuckDBPyConnection, relation: str, checks: Sequence[FitCheck]
                 ) -> tuple[FitCheck, str] | None:
    """The first value (in the table's order) that fails its check, as DuckDB prints it (a
    Python value would show a nanosecond timestamp cut to microseconds, infinity as year
    9999), with that check; None when every value fits. One streaming scan that stops at the
    first misfit."""
    if not checks:
        return None
    oks = [f"({c.value} IS NULL OR coalesce({c.ok}, false))" for c in checks]
    cols = ", ".join(f"CAST({quote_ident(c.column)} AS VARCHAR), {ok}"
                     for c, ok in zip(checks, oks, strict=True))
    row = con.execute(f"SELECT {cols} FROM (SELECT * FROM {relation}) WHERE NOT "
                      f"({' AND '.join(oks)}) LIMIT 1").fetchone()
    if row is None:
        return None
    for i, check in enumerate(checks):
        if not row[2 * i + 1]:
            return check, row[2 * i]
    return None


def check_values_fit(con: duckdb.DuckDBPyConnection, relation: str,
                     values: Sequence[tuple[str, str, str]],
                     targets: Mapping[str, TargetColumn], *, who: str, table: str,
                     database: str, alter: str, created: bool = False,
                     server: ServerJudge | None = None) -> None:
    """Raise a DriverError naming the first value of ``relation`` that its target column
    would change (see :func:`fit_checks`); ``who`` starts the message (component and step),
    ``alter`` shows how to widen a column (``{column}`` is replaced by the quoted name).
    ``created``: the writer has just created the table (its caller removes it again), so the
    advice is to create it beforehand, not to widen it. ``server``: judges the texts written
    to temporal columns that DuckDB does not (:func:`server_check`), in chunks of distinct
    values."""
    misfit = first_misfit(con, relation, fit_checks(values, targets))
    if misfit is not None:
        check, value = misfit
        raise _misfit_error(check.target, check.column, value, check.change, who=who,
                            table=table, database=database, alter=alter, created=created)
    if server is None:
        return
    for name, duck, value in values:
        target = targets.get(name)
        pending = server_check(name, duck, value, target) if target is not None else None
        if pending is None:
            continue
        found = _first_server_misfit(con, relation, pending, server)
        if found is not None:
            raise _misfit_error(target, name, found[0], found[1], who=who, table=table,
                                database=database, alter=alter, created=created)


_SERVER_CHUNK = 10_000  # distinct texts sent to the database at a time


def _first_server_misfit(con: duckdb.DuckDBPyConnection, relation: str, check: ServerCheck,
                         server: ServerJudge) -> tuple[str, str] | None:
    """The first text (in their order) of ``check``'s distinct pending texts that the database
    would store changed, with how; one scan, stopped at the first chunk holding one."""
    result = con.execute(f"SELECT DISTINCT osiris_text FROM (SELECT {check.value} AS "
                         f"osiris_text FROM (SELECT * FROM {relation})) WHERE osiris_text IS "
                         f"NOT NULL AND {check.pending} ORDER BY osiris_text")
    while True:
        chunk = [str(r[0]) for r in result.fetchmany(_SERVER_CHUNK)]
        if not chunk:
            return None
        found = server(check.target, chunk)
        if found is not None:
            return found


def _misfit_error(t: TargetColumn, column: str, value: str, change: str, *, who: str,
                  table: str, database: str, alter: str, created: bool) -> DriverError:
    if created:
        where = f"the column {t.name!r} ({t.column_type}) this writer created in {table}"
        advice = ("Nothing was written, and the table it created is gone again. Create the "
                  "table beforehand with a column that holds the value")
    else:
        where = f"column {t.name!r} ({t.column_type}) of {table}"
        advice = ("Nothing was written. Widen the target column "
                  f"({alter.format(column=t.name)})")
    return DriverError(
        f"{who}: column '{column}' holds {value!r}, which {where} cannot hold exactly: "
        f"{database} would store it {change}, without an error. {advice}, or round or "
        "cast the value in an upstream step if the change is wanted.")
