"""How a CSV file without columns travels through a session table.

A CSV file with no header and no data has no columns, but a DuckDB table needs one: the extractor
then creates the single VARCHAR column :data:`EMPTY_FILE_COLUMN` with zero rows, and the writer
recognises exactly that shape (:data:`EMPTY_FILE_COLUMN_TYPED`, no rows) and writes an empty file
again (what Osiris/pandas writes for an empty DataFrame: an empty line with a header, nothing
without). The API extractors give an empty result the same shape, so it is written the same way.

The marker is the table's shape only, so a SQL result of that very shape (one VARCHAR column
named ``_empty``, no rows) is written as an empty file too, where Osiris writes the header line
``_empty``; any other type, name or column count is written as pandas writes it. Only the step
that makes the table could tell the two apart (e.g. with a DuckDB column comment, which survives
the session's ``ATTACH``), and the extractors do not mark it.
"""

from __future__ import annotations

EMPTY_FILE_COLUMN = "_empty"
EMPTY_FILE_COLUMN_TYPED = (EMPTY_FILE_COLUMN, "VARCHAR")  # (name, DuckDB type)
