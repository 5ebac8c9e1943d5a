"""MySQL types and DuckDB types: a result column's type (code, flags, charset) as the DuckDB
column it becomes (:func:`mysql_column`), and a DuckDB column as the MySQL column
``mysql.writer`` creates (:func:`mysql_ddl_type`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pymysql.charset import charset_by_name
from pymysql.constants import FIELD_TYPE, FLAG

from osiris_dagster.drivers.duck_types import DECIMAL_TYPE, MAX_DUCK_DECIMAL, is_nested
from osiris_dagster.drivers.staging.columns import SourceColumn

# -- MySQL result types -> DuckDB -----------------------------------------------------------------

_BINARY_CHARSET = charset_by_name("binary").id  # charsetnr of binary strings and BLOBs

_MY_INTS = {  # type code -> (signed, unsigned)
    FIELD_TYPE.TINY: ("TINYINT", "UTINYINT"),
    FIELD_TYPE.SHORT: ("SMALLINT", "USMALLINT"),
    FIELD_TYPE.INT24: ("INTEGER", "UINTEGER"),
    FIELD_TYPE.LONG: ("INTEGER", "UINTEGER"),
    FIELD_TYPE.LONGLONG: ("BIGINT", "UBIGINT"),
}
_MY_TEXT_BLOBS = {FIELD_TYPE.TINY_BLOB: "TINYTEXT", FIELD_TYPE.MEDIUM_BLOB: "MEDIUMTEXT",
                  FIELD_TYPE.LONG_BLOB: "LONGTEXT", FIELD_TYPE.BLOB: "TEXT"}
_MY_STRINGS = {FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING, FIELD_TYPE.STRING, FIELD_TYPE.ENUM,
               FIELD_TYPE.SET, *_MY_TEXT_BLOBS}
_MY_NAMES = {  # the SQL names used in messages (FIELD_TYPE's own names, where they differ)
    FIELD_TYPE.NEWDECIMAL: "DECIMAL", FIELD_TYPE.SHORT: "SMALLINT", FIELD_TYPE.LONG: "INT",
    FIELD_TYPE.LONGLONG: "BIGINT", FIELD_TYPE.INT24: "MEDIUMINT", FIELD_TYPE.TINY: "TINYINT",
    FIELD_TYPE.NEWDATE: "DATE", FIELD_TYPE.VAR_STRING: "VARCHAR", FIELD_TYPE.STRING: "CHAR",
    FIELD_TYPE.TINY_BLOB: "TINYBLOB", FIELD_TYPE.MEDIUM_BLOB: "MEDIUMBLOB",
    FIELD_TYPE.LONG_BLOB: "LONGBLOB",
}
_NOT_FIXED_DEC = 31  # the decimals of a FLOAT/DOUBLE result printed without fixed decimals
_FIELD_TYPE_NAMES = {v: k for k, v in vars(FIELD_TYPE).items()
                     if k.isupper() and isinstance(v, int) and k not in ("CHAR", "INTERVAL")}


def mysql_type_name(code: int) -> str:
    """A result type code as SQL names it (``FIELD_TYPE.LONG`` -> ``INT``)."""
    return _MY_NAMES.get(code) or _FIELD_TYPE_NAMES.get(code, f"type {code}")

def _bit_to_int(value: Any) -> bytes:
    return str(int.from_bytes(value, "big")).encode() if isinstance(value, bytes | bytearray) \
        else str(value).encode()


def mysql_column(name: str, field_: Any, json_columns: Iterable[str] = ()) -> SourceColumn:
    """Map one pymysql result field (type code, flags, charset, length, scale) to DuckDB."""
    code = field_.type_code
    unsigned = bool(field_.flags & FLAG.UNSIGNED)
    binary = getattr(field_, "charsetnr", 0) == _BINARY_CHARSET
    label = mysql_type_name(code) + (" UNSIGNED" if unsigned and code in _MY_INTS else "")
    src = f"MySQL {label}"
    if code in _MY_INTS:
        signed, uns = _MY_INTS[code]
        return SourceColumn(name, uns if unsigned else signed, src)
    if code in (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL):
        precision, scale = mysql_decimal(field_)
        src = f"MySQL DECIMAL({precision},{scale})"
        if precision > MAX_DUCK_DECIMAL:  # e.g. any SUM() of a BIGINT: DECIMAL(65,0)
            return SourceColumn(name, "DOUBLE", src, kind="exact_double")
        return SourceColumn(name, f"DECIMAL({precision},{scale})", src)
    if code == FIELD_TYPE.FLOAT:
        return SourceColumn(name, "FLOAT", src)
    if code == FIELD_TYPE.DOUBLE:
        return SourceColumn(name, "DOUBLE", src)
    if code in (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE):
        return SourceColumn(name, "DATE", src, kind="date")
    if code in (FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP):
        return SourceColumn(name, "TIMESTAMP", src, kind="date")
    if code == FIELD_TYPE.TIME:
        return SourceColumn(name, "TIME", src)
    if code == FIELD_TYPE.YEAR:
        return SourceColumn(name, "SMALLINT", src)
    if code == FIELD_TYPE.BIT:
        return SourceColumn(name, "UBIGINT", src, convert=_bit_to_int)
    if code == FIELD_TYPE.JSON or name in set(json_columns):
        return SourceColumn(name, "JSON", "MySQL JSON")
    if code == FIELD_TYPE.GEOMETRY:
        return SourceColumn(name, "BLOB", src, kind="binary")
    if code in _MY_STRINGS:
        if binary:
            blob = {FIELD_TYPE.VARCHAR: "VARBINARY", FIELD_TYPE.VAR_STRING: "VARBINARY",
                    FIELD_TYPE.STRING: "BINARY"}
            return SourceColumn(name, "BLOB", f"MySQL {blob.get(code, mysql_type_name(code))}",
                                kind="binary")
        return SourceColumn(name, "VARCHAR",
                            f"MySQL {_MY_TEXT_BLOBS.get(code, mysql_type_name(code))}",
                            kind="text")
    if code == FIELD_TYPE.NULL:
        return SourceColumn(name, "VARCHAR", src, kind="text")
    # anything else arrives as text (or bytes): keep it verbatim
    return SourceColumn(name, "BLOB" if binary else "VARCHAR", src,
                        kind="binary" if binary else "text")


def text_rounds(field_: Any) -> bool:
    """Whether MySQL's text protocol (pymysql) prints this result column's values rounded: a
    FLOAT with 6 significant digits (16777216 as ``16777200``, 123456.7 as ``123457``), a DOUBLE
    with fixed decimals (DOUBLE(M,D), AVG() or ROUND() of one, ``d * 3``) with those decimals
    (DOUBLE(12,4)'s stored -9.999999999998899e-05 as ``-0.0001``). ``CAST(col AS DOUBLE)``
    prints each of them exactly: a FLOAT is a double exactly, and a DOUBLE without fixed
    decimals is printed as the shortest text that reads back as the same double."""
    code = field_.type_code
    if code == FIELD_TYPE.FLOAT:
        return True
    return code == FIELD_TYPE.DOUBLE and int(field_.scale or 0) < _NOT_FIXED_DEC


def mysql_decimal(field_: Any) -> tuple[int, int]:
    """(precision, scale) of a DECIMAL result field (its length counts the sign and point)."""
    scale = int(field_.scale or 0)
    unsigned = bool(field_.flags & FLAG.UNSIGNED)
    precision = int(field_.length or 0) - (1 if scale > 0 else 0) - (0 if unsigned else 1)
    return max(precision, scale, 1), scale


# -- DuckDB types -> MySQL DDL -------------------------------------------------------------------

_DUCK_TO_MYSQL = {
    "BOOLEAN": "TINYINT(1)", "TINYINT": "TINYINT", "SMALLINT": "SMALLINT", "INTEGER": "INT",
    "BIGINT": "BIGINT", "UTINYINT": "TINYINT UNSIGNED", "USMALLINT": "SMALLINT UNSIGNED",
    "UINTEGER": "INT UNSIGNED", "UBIGINT": "BIGINT UNSIGNED", "HUGEINT": "DECIMAL(39,0)",
    "UHUGEINT": "DECIMAL(39,0) UNSIGNED", "FLOAT": "FLOAT", "DOUBLE": "DOUBLE", "DATE": "DATE",
    "TIME": "TIME(6)", "TIMESTAMP": "DATETIME(6)", "TIMESTAMP_S": "DATETIME",
    "TIMESTAMP_MS": "DATETIME(3)", "TIMESTAMP_NS": "DATETIME(6)",
    "TIMESTAMP WITH TIME ZONE": "DATETIME(6)", "TIME WITH TIME ZONE": "VARCHAR(32)",
    "VARCHAR": "LONGTEXT", "BLOB": "LONGBLOB", "UUID": "CHAR(36)", "JSON": "JSON",
    "INTERVAL": "VARCHAR(64)", "BIT": "VARCHAR(255)",
}


def mysql_ddl_type(duck_type: str) -> str:
    t = duck_type.upper().strip()
    if m := DECIMAL_TYPE.fullmatch(t):
        return f"DECIMAL({m.group(1)},{m.group(2)})"
    if t.startswith("ENUM"):
        return "LONGTEXT"
    if is_nested(t):
        return "JSON"
    return _DUCK_TO_MYSQL.get(t, "LONGTEXT")
