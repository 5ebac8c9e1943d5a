"""What the Supabase drivers ask PostgreSQL's catalog: the columns of a table
(:func:`table_columns_sql`) and the base types behind type oids (:data:`PG_TYPES_SQL`)."""

from __future__ import annotations


def table_columns_sql(select_list: str) -> str:
    """A query for the live columns of the table ``%s.%s`` (schema, table) in their order;
    ``select_list`` picks what to read of each (``pg_attribute a``, ``pg_type t``)."""
    return f"""
SELECT {select_list}
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


PG_TYPES_SQL = """
SELECT t.oid, coalesce(b.typname, t.typname), coalesce(b.typcategory, t.typcategory),
       e.typname, format_type(t.oid, NULL)
FROM pg_type t
LEFT JOIN pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype
LEFT JOIN pg_type e ON e.oid = coalesce(b.typelem, t.typelem) AND
     coalesce(b.typcategory, t.typcategory) = 'A'
WHERE t.oid = ANY(%s)
"""
