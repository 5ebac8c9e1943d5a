"""The foreign keys that point at a table.

A replace that deletes every row of its target fires each referencing key's ``ON DELETE``
rule: CASCADE deleted the referencing rows, SET NULL cleared their references and RESTRICT
refused the write, even for keys the input brings back. ``mysql.writer`` reads them here to
replace such a table by its key instead (see ``_Writer._keys_to_keep``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_REFERENCES_SQL = (
    "SELECT k.CONSTRAINT_SCHEMA, k.CONSTRAINT_NAME, k.TABLE_SCHEMA, k.TABLE_NAME, "
    "k.COLUMN_NAME, k.REFERENCED_COLUMN_NAME, r.DELETE_RULE "
    "FROM information_schema.KEY_COLUMN_USAGE k "
    "LEFT JOIN information_schema.REFERENTIAL_CONSTRAINTS r ON r.CONSTRAINT_SCHEMA = "
    "k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND r.TABLE_NAME = "
    "k.TABLE_NAME WHERE k.REFERENCED_TABLE_SCHEMA = %s AND k.REFERENCED_TABLE_NAME = %s "
    "ORDER BY k.CONSTRAINT_SCHEMA, k.CONSTRAINT_NAME, k.ORDINAL_POSITION")


@dataclass(frozen=True)
class Reference:
    """A foreign key of ``schema.table`` onto the target's columns ``referenced``."""

    schema: str
    table: str
    name: str
    columns: tuple[str, ...]  # the referencing table's
    referenced: tuple[str, ...]
    on_delete: str  # CASCADE, SET NULL, RESTRICT, NO ACTION, SET DEFAULT

    @property
    def changes_rows(self) -> bool:
        """Whether deleting a referenced row deletes or changes the referencing rows."""
        return self.on_delete.upper() in ("CASCADE", "SET NULL", "SET DEFAULT")

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.table} ({self.name})"


def references_to(cur: Any, schema: str, table: str) -> list[Reference]:
    """The foreign keys of any table (this one included) that reference ``schema.table``, as
    far as the user can see them (information_schema lists the tables it has rights on)."""
    cur.execute(_REFERENCES_SQL, (schema, table))
    found: dict[tuple[str, str], tuple[str, str, list[str], list[str], str]] = {}
    for c_schema, c_name, t_schema, t_name, column, referenced, rule in cur.fetchall():
        entry = found.setdefault((str(c_schema), str(c_name)),
                                 (str(t_schema), str(t_name), [], [], str(rule or "")))
        entry[2].append(str(column))
        entry[3].append(str(referenced))
    return [Reference(t_schema, t_name, name, tuple(columns), tuple(referenced), rule)
            for (_, name), (t_schema, t_name, columns, referenced, rule) in found.items()]
