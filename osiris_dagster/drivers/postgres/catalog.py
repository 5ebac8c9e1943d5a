"""What the Supabase drivers ask PostgreSQL's catalog: the columns of a table
(:func:`table_columns_sql`) and the base types behind type oids (:data:`PG_TYPES_SQL`)."""

from __future__ import annotations


def table_columns_sql(select_list: str) -> str:
    """A query for the live columns of the table ``%s.%s`` (schema, table) in their order;
    ``select_list`` picks what to read of each (``pg_attribute a``, ``pg_type t``, and for a
    column of a domain ``db.base``, the type under all its domains, and ``db.mod``, the
    modifier of the outermost domain that has one: NULL for other columns). A domain over a
    domain over numeric(10,2) is numeric(10,2): one level down is the inner domain."""
    return f"""
WITH RECURSIVE osiris_domains(oid, base, mod) AS (
    SELECT oid, typbasetype, typtypmod FROM pg_type WHERE typtype = 'd'
    UNION ALL
    SELECT d.oid, b.typbasetype, CASE WHEN d.mod >= 0 THEN d.mod ELSE b.typtypmod END
    FROM osiris_domains d JOIN pg_type b ON b.oid = d.base AND b.typtype = 'd'
), osiris_domain_bases AS (
    SELECT d.oid, d.base, d.mod FROM osiris_domains d
    JOIN pg_type b ON b.oid = d.base AND b.typtype <> 'd'
)
SELECT {select_list}
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN osiris_domain_bases db ON db.oid = a.atttypid
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
