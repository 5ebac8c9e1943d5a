"""How a CSV file without columns travels through a session table.

A CSV file with no header and no data has no columns, but a DuckDB table needs one: the extractor
then creates the single VARCHAR column :data:`EMPTY_FILE_COLUMN` with zero rows, and the writer
recognises it and writes an empty file again (what Osiris/pandas writes for an empty DataFrame).
"""

from __future__ import annotations

EMPTY_FILE_COLUMN = "_empty"
