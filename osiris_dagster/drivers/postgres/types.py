"""PostgreSQL types and DuckDB types: what a column's type (:class:`PgType`, from the catalog or
PostgREST's API description) becomes in DuckDB and how the server renders it as text
(:func:`pg_duck_type`, :func:`pg_select_expression`), and a DuckDB column as the PostgreSQL column
``supabase.writer`` creates (:func:`pg_ddl_type`)."""

from __future__ import annotations

from dataclasses import dataclass

from osiris_dagster.drivers.duck_types import (
    DECIMAL_TYPE,
    MAX_DUCK_DECIMAL,
    is_nested,
    list_element,
)

# -- PostgreSQL types -> DuckDB -------------------------------------------------------------------

_PG_SCALARS = {
    "bool": "BOOLEAN", "int2": "SMALLINT", "int4": "INTEGER", "int8": "BIGINT",
    "float4": "FLOAT", "float8": "DOUBLE", "oid": "UINTEGER", "date": "DATE",
    "timestamp": "TIMESTAMP", "timestamptz": "TIMESTAMPTZ", "time": "TIME",
    "timetz": "TIMETZ", "interval": "INTERVAL", "uuid": "UUID", "json": "JSON",
    "jsonb": "JSON", "text": "VARCHAR", "varchar": "VARCHAR", "bpchar": "VARCHAR",
    "name": "VARCHAR", "citext": "VARCHAR", "char": "VARCHAR", "xml": "VARCHAR",
}


@dataclass(frozen=True)
class PgType:
    """What pg_type says about a column's type (domains resolved to their base type)."""

    name: str  # typname of the (base) type
    category: str  # typcategory: A array, E enum, N numeric, ...
    element: str | None = None  # arrays: element typname
    dims: int = 1
    precision: int | None = None  # numeric(p,s)
    scale: int | None = None
    display: str = ""  # format_type() text for messages


def pg_duck_type(t: PgType) -> tuple[str, str]:
    """(DuckDB type, kind) for a PostgreSQL type; kind as in :class:`SourceColumn`."""
    if t.category == "A" and t.element:
        inner = _typed_element(t)
        if inner is None:
            return "JSON", "cast"
        return f"{inner}[]", "json_cast"
    if t.name == "bytea":
        return "BLOB", "hex"
    if t.category == "E":
        return "VARCHAR", "text"
    scalar = _pg_scalar_duck(t.name, t.precision, t.scale)
    if scalar is None:
        return "VARCHAR", "text"
    if t.name == "numeric" and scalar == "DOUBLE":  # a value the double would round fails
        return scalar, "exact_double"
    if t.name in ("date", "timestamp", "timestamptz"):  # '... BC': DuckDB's cast drops the era
        return scalar, "era"
    if t.name == "interval":  # '-1 days +02:00:00': DuckDB's cast refuses a '+'
        return scalar, "interval"
    return scalar, ("text" if scalar == "VARCHAR" else "cast")


def pg_element_kind(t: PgType) -> str:
    """How each element of an array that becomes a DuckDB LIST is read (a kind as in
    :class:`SourceColumn`): checked like the same type outside an array."""
    if t.category != "A" or not t.element:
        return "cast"
    return pg_duck_type(_element_type(t))[1]


def _element_type(t: PgType) -> PgType:
    """An array's element type (numeric(p,s)[]: its elements are numeric(p,s))."""
    numeric = t.element == "numeric"
    return PgType(str(t.element), "N" if numeric else "", precision=t.precision if numeric
                  else None, scale=t.scale if numeric else None)


def _typed_element(t: PgType) -> str | None:
    """The DuckDB type of the elements of a one-dimensional array that becomes a LIST; None for
    an array that stays JSON (nested, of JSON or bytes, of a type kept as text)."""
    element = _element_type(t)
    inner = _pg_scalar_duck(element.name, element.precision, element.scale)
    if inner is None or inner in ("JSON", "BLOB") or t.dims != 1:
        return None
    return inner


def numeric_typmod(typmod: int) -> tuple[int, int]:
    """(precision, scale) of a numeric(p,s) typmod. The scale is 11 bits with a sign since
    PostgreSQL 15, which allows numeric(5,-2) (hundreds) and numeric(3,5) (below 0.001)."""
    precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0x7FF
    return precision, scale - 0x800 if scale & 0x400 else scale


def _pg_scalar_duck(name: str, precision: int | None, scale: int | None) -> str | None:
    if name == "numeric":
        if precision is None:
            return "DOUBLE"
        scale = scale or 0
        # the DECIMAL that holds every value: numeric(5,-2) holds 7-digit integers,
        # numeric(3,5) five decimals
        width, places = (precision - scale, 0) if scale < 0 else (max(precision, scale), scale)
        return "DOUBLE" if width > MAX_DUCK_DECIMAL else f"DECIMAL({width},{places})"
    if name == "money":  # -92233720368547758.08 to 92233720368547758.07: 19 digits
        return "DECIMAL(19,2)"
    return _PG_SCALARS.get(name)


def pg_select_expression(column_sql: str, t: PgType) -> str:
    """Server-side text rendering of a column (arrays as JSON so they parse into DuckDB lists:
    a LIST's elements as their exact text, each read like a value of that type)."""
    if t.category == "A":
        # char(n)[]: JSON strings keep the padding that ::text[] would cut
        if t.element and _typed_element(t) is not None and t.element != "bpchar":
            numeric = "::numeric[]" if t.element == "money" else ""  # money: like one value
            as_json = f"array_to_json({column_sql}{numeric}::text[])::text"
        else:
            as_json = f"array_to_json({column_sql})::text"
        # an index that does not start at 1 ('[0:2]={7,8,9}'): JSON and a DuckDB LIST have no
        # bounds, so a[1] would silently become 7 instead of 8; PostgreSQL's own text keeps
        # them, and no JSON or LIST cast reads it: the step fails naming the value
        return (f"CASE WHEN array_dims({column_sql}) !~ '^(\\[1:[0-9]+\\])+$' "
                f"THEN {column_sql}::text ELSE {as_json} END")
    if t.name == "money":
        return f"{column_sql}::numeric::text"
    if t.name == "bpchar" or (t.category != "E" and _pg_scalar_duck(t.name, None, None) is None
                              and t.name != "bytea"):
        # char(n): its padding, which ::text cuts ('a  ' -> 'a'); types we keep as text (inet,
        # ranges, geometry, ...): their output function's form (inet::text adds the netmask)
        return f"CASE WHEN {column_sql} IS NULL THEN NULL ELSE concat({column_sql}) END"
    return f"{column_sql}::text"


# -- DuckDB types -> PostgreSQL DDL --------------------------------------------------------------

_DUCK_TO_PG = {
    "BOOLEAN": "boolean", "TINYINT": "smallint", "SMALLINT": "smallint", "INTEGER": "integer",
    "BIGINT": "bigint", "UTINYINT": "smallint", "USMALLINT": "integer", "UINTEGER": "bigint",
    "UBIGINT": "numeric(20,0)", "HUGEINT": "numeric(39,0)", "UHUGEINT": "numeric(39,0)",
    "FLOAT": "real", "DOUBLE": "double precision", "DATE": "date", "TIME": "time",
    "TIMESTAMP": "timestamp", "TIMESTAMP_S": "timestamp(0)", "TIMESTAMP_MS": "timestamp(3)",
    "TIMESTAMP_NS": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "TIME WITH TIME ZONE": "timetz", "VARCHAR": "text", "BLOB": "bytea", "UUID": "uuid",
    "JSON": "jsonb", "INTERVAL": "interval", "BIT": "varbit",
}


def pg_ddl_type(duck_type: str) -> str:
    t = duck_type.strip()
    up = t.upper()
    if m := DECIMAL_TYPE.fullmatch(up):
        return f"numeric({m.group(1)},{m.group(2)})"
    if up.startswith("ENUM"):
        return "text"
    element = list_element(t)
    if element is not None and not is_nested(element):
        inner = pg_ddl_type(element)
        if inner not in ("jsonb", "bytea"):
            return f"{inner}[]"
    if is_nested(up):
        return "jsonb"
    return _DUCK_TO_PG.get(up, "text")
