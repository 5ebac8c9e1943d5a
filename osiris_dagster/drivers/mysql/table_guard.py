"""What a non-transactional table (MyISAM, Aria) would refuse, checked on the staged rows first.

Such a table cannot roll back: a write that fails half-way keeps the rows before the failure,
and a replace (or ``truncate_before``) has already deleted the old ones. The staging table has
the target's column types, collations and CHECK constraints, so a value the target refuses
fails there; this module checks, on the staged rows and before the target is touched, the
rest of what the final ``INSERT ... SELECT`` would fail on:

* a NULL in a column the target declares NOT NULL (not an AUTO_INCREMENT column, which numbers
  a NULL, nor a TIMESTAMP, which the server may fill with the current time);
* a NOT NULL column without a default that the input does not have, when rows are inserted;
* two input rows with one value of a unique index (as the target compares them: its
  collation, a prefix index's first characters), and, for an append or an upsert, an input
  row whose value an existing row holds (for an upsert, a row with another key).

An index over an expression or a generated column, and for an upsert one over a column the
input leaves out, is compared with existing rows by the table itself: such a write can still
fail part-way (the step then says so and is not retried), as can a trigger that refuses a
row.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from osiris_dagster.drivers.identifiers import mysql_ident

_COLUMNS_SQL = (
    "SELECT COLUMN_NAME, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, DATA_TYPE FROM "
    "information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
    "ORDER BY ORDINAL_POSITION")
_UNIQUE_SQL = (
    "SELECT INDEX_NAME, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS WHERE "
    "TABLE_SCHEMA = %s AND TABLE_NAME = %s AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX")


class Refused(Exception):
    """The write would fail part-way: what it would fail on (a sentence)."""


@dataclass(frozen=True)
class _Column:
    name: str
    not_null: bool
    has_default: bool  # a default other than NULL, or one the server makes (AUTO_INCREMENT...)
    numbered: bool  # AUTO_INCREMENT, or generated: the input's NULL is not what is stored
    timestamp: bool  # a TIMESTAMP the server fills when given NULL (see _columns)
    auto_increment: bool = False
    volatile: bool = False  # a default computed per row (uuid(), rand()): no constant


@dataclass(frozen=True)
class _Part:
    column: str
    prefix: int | None  # a prefix index compares the first N characters (bytes for binary)


@dataclass(frozen=True)
class Write:
    """The write being checked: target and staging table (quoted), the input's columns, and
    which rows the final statements insert."""

    schema: str
    table: str
    qualified: str
    stage: str
    label: str
    columns: Sequence[str]
    mode: str  # append, replace, upsert
    truncate_before: bool
    keys: Sequence[str]  # upsert_keys


def refuse_partial_writes(cur: Any, write: Write) -> None:
    """Raise :class:`Refused` naming what the final statements into ``write``'s target would
    fail on; return when none of the checks finds anything."""
    cur.execute("SELECT @@explicit_defaults_for_timestamp, @@sql_mode")
    explicit, sql_mode = cur.fetchone() or (1, "")
    columns = _columns(cur, write, filled_timestamps=str(explicit) in ("0", "OFF"))
    by_lower = {c.name.lower(): c for c in columns}
    given = {c.lower(): c for c in write.columns}
    emptied = write.mode == "replace" or write.truncate_before
    _refuse_nulls(cur, write, [by_lower[c] for c in given if c in by_lower])
    # (also when an upsert only updates: MariaDB refuses its INSERT ... SELECT when preparing)
    _refuse_missing_required(write, [c for c in columns if c.name.lower() not in given])
    zero_numbers = "NO_AUTO_VALUE_ON_ZERO" not in str(sql_mode or "").upper()
    indexes = _unique_indexes(cur, write)
    with contextlib.ExitStack() as stack:
        staged_keys = stack.enter_context(staged_key_copy(cur, write.stage, write.keys)) \
            if write.mode == "upsert" and not emptied and indexes else None
        for name, parts in indexes.items():
            _refuse_repeated_values(cur, write, name, parts, by_lower, given, emptied,
                                    zero_numbers, staged_keys)


@contextlib.contextmanager
def staged_key_copy(cur: Any, stage: str, keys: Sequence[str]) -> Iterator[str]:
    """A temporary table of the staged rows' distinct ``keys`` (its quoted name), dropped on
    leaving: MySQL 8 refuses a temporary table read twice in one query ("Can't reopen
    table"), so a query comparing staged rows with other staged keys reads this copy."""
    copy = mysql_ident(f"_osiris_keys_{uuid.uuid4().hex[:12]}", "table")
    cur.execute(f"CREATE TEMPORARY TABLE {copy} AS SELECT DISTINCT "
                f"{', '.join(mysql_ident(k) for k in keys)} FROM {stage}")
    try:
        yield copy
    finally:
        cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {copy}")


def _columns(cur: Any, write: Write, filled_timestamps: bool) -> list[_Column]:
    """The target's columns. ``filled_timestamps``: explicit_defaults_for_timestamp is off,
    so the server fills a NOT NULL TIMESTAMP given NULL, or left out, with the current time
    (MariaDB before 10.10, MySQL 5.7)."""
    cur.execute(_COLUMNS_SQL, (write.schema, write.table))
    found = []
    for name, nullable, default, extra, data_type in cur.fetchall():
        extra = str(extra or "").lower()
        numbered = "auto_increment" in extra or "generated" in extra or "virtual" in extra or \
            "persistent" in extra or "stored" in extra
        # MariaDB spells "no default" as SQL NULL and DEFAULT NULL as the text 'NULL'
        has_default = default is not None and str(default).upper() != "NULL"
        volatile = has_default and "(" in str(default) and \
            not str(default).lower().startswith(("current_timestamp", "now("))
        found.append(_Column(str(name), str(nullable).upper() == "NO", has_default or numbered,
                             numbered, filled_timestamps and str(data_type).lower() ==
                             "timestamp", "auto_increment" in extra, volatile))
    return found


def _refuse_nulls(cur: Any, write: Write, columns: list[_Column]) -> None:
    required = [c for c in columns if c.not_null and not c.numbered and not c.timestamp]
    if not required:
        return
    counts = ", ".join(f"SUM({mysql_ident(c.name)} IS NULL)" for c in required)
    cur.execute(f"SELECT {counts} FROM {write.stage}")
    row = cur.fetchone() or ()
    for column, count in zip(required, row, strict=False):
        if count:
            rows = "1 input row holds" if count == 1 else f"{count} input rows hold"
            raise Refused(f"{rows} NULL in column '{column.name}', which {write.label} "
                          "declares NOT NULL")


def _refuse_missing_required(write: Write, missing: list[_Column]) -> None:
    for column in missing:
        if column.not_null and not column.has_default and not column.timestamp:
            raise Refused(f"the input has no column '{column.name}', which {write.label} "
                          "declares NOT NULL without a default")


def _unique_indexes(cur: Any, write: Write) -> dict[str, list[_Part | None]]:
    """Each unique index's parts; None for a part that is an expression (MySQL 8)."""
    cur.execute(_UNIQUE_SQL, (write.schema, write.table))
    indexes: dict[str, list[_Part | None]] = {}
    for index, column, sub_part in cur.fetchall():
        part = _Part(str(column), int(sub_part) if sub_part else None) if column else None
        indexes.setdefault(str(index), []).append(part)
    return indexes


def _refuse_repeated_values(cur: Any, write: Write, index: str, parts: list[_Part | None],
                            columns: dict[str, _Column], given: dict[str, str],
                            emptied: bool, zero_numbers: bool,
                            staged_keys: str | None = None) -> None:
    if any(p is None for p in parts):
        return  # an expression: left to the table
    compared: list[_Part] = []
    defaults: list[str] = []  # parts the input leaves to a constant default
    for part in parts:
        assert part is not None
        column = columns.get(part.column.lower())
        if part.column.lower() in given:
            compared.append(_Part(given[part.column.lower()], part.prefix))
            continue
        if column is None or column.numbered or not column.has_default or column.volatile:
            return  # NULL, a number or a value of its own in every inserted row
        # a constant default: the same in every inserted row, so the other parts decide
        defaults.append(column.name)
    if not compared:
        return
    values = [_value("s", p) for p in compared]
    present = " AND ".join(
        f"s.{mysql_ident(p.column)} IS NOT NULL" + (
            f" AND s.{mysql_ident(p.column)} <> 0" if zero_numbers and _auto(columns, p)
            else "")  # AUTO_INCREMENT numbers a 0 as it does a NULL
        for p in compared)
    if write.mode != "upsert" or emptied or not defaults:
        # (an upsert's updated row keeps its own value of a part the input leaves out)
        cur.execute(f"SELECT {', '.join(values)}, COUNT(*) FROM {write.stage} s WHERE {present} "
                    f"GROUP BY {', '.join(values)} HAVING COUNT(*) > 1 LIMIT 1")
        row = cur.fetchone()
        if row is not None:
            raise Refused(f"{row[-1]} input rows share the value {_shown(compared, row)} of the "
                          f"unique index {index} of {write.label}")
    if emptied or (defaults and write.mode == "upsert"):
        return  # an updated row keeps its own value of a part the input leaves out
    match = " AND ".join([f"{_value('t', p)} = {_value('s', p)}" for p in compared] +
                         [f"t.{mysql_ident(d)} = DEFAULT(t.{mysql_ident(d)})" for d in defaults])
    other = ""
    if write.mode == "upsert":
        if {p.column.lower() for p in compared} == {k.lower() for k in write.keys} and \
                not any(p.prefix for p in compared):
            return  # the upsert's own key: a match is the row it updates
        # a row the upsert updates takes the input's values: only the others keep theirs
        other = " AND NOT EXISTS (SELECT 1 FROM " + str(staged_keys) + " u WHERE " + \
            " AND ".join(f"u.{mysql_ident(k)} = t.{mysql_ident(k)}" for k in write.keys) + ")"
    cur.execute(f"SELECT {', '.join(values)} FROM {write.stage} s WHERE {present} AND EXISTS "
                f"(SELECT 1 FROM {write.qualified} t WHERE {match}{other}) LIMIT 1")
    row = cur.fetchone()
    if row is not None:
        whose = "another key" if write.mode == "upsert" else "it"
        raise Refused(f"an input row has the value {_shown(compared, row)} of the unique index "
                      f"{index}, which a row of {write.label} holds"
                      + (f" under {whose}" if write.mode == "upsert" else ""))


def _auto(columns: dict[str, _Column], part: _Part) -> bool:
    column = columns.get(part.column.lower())
    return column is not None and column.auto_increment


def _value(alias: str, part: _Part) -> str:
    column = f"{alias}.{mysql_ident(part.column)}"
    return f"LEFT({column}, {part.prefix})" if part.prefix else column


def _shown(parts: list[_Part], row: Sequence[Any]) -> str:
    return ", ".join(f"{p.column}({p.prefix})={v!r}" if p.prefix else f"{p.column}={v!r}"
                     for p, v in zip(parts, row, strict=False))

