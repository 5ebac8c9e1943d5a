"""The ``read_csv`` call the CSV extractor makes: every option explicit, every column text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from osiris_dagster.core.naming import quote_literal


@dataclass(frozen=True)
class Reader:
    """Everything ``read_csv`` needs; renders the table-function call.

    Columns are read as text (``dtype`` columns too, cast strictly later) with DuckDB's sniffer off:
    the dialect is explicit and types are decided by :mod:`types <.types>` from every value,
    because the sniffer types from a sample and DuckDB's casts silently round or reinterpret values.
    """

    path: Path
    encoding: str  # utf-8 or latin-1
    compression: str  # gzip or none
    delimiter: str
    comment: str | None
    skip: int
    names: tuple[str, ...]
    null_values: tuple[str, ...]
    parallel: bool = True
    max_line_size: int | None = None  # DuckDB's default (2 MiB) unless a longer row was found
    # where ``path`` starts in the source's bytes, so DuckDB's byte positions are the user's;
    # None for a rewritten copy, whose positions are not
    source_offset: int | None = 0

    def sql(self, extra: str = "") -> str:
        """The ``read_csv(...)`` call; ``extra`` appends options (the rejects probe's)."""
        columns = ", ".join(f"{quote_literal(n)}: 'VARCHAR'" for n in self.names)
        opts = [
            quote_literal(str(self.path)),
            "auto_detect=false", f"columns={{{columns}}}",
            f"delim={quote_literal(self.delimiter)}",
            "quote='\"'", "escape='\"'", "header=false", f"skip={self.skip}",
            "null_padding=true", "strict_mode=true", "allow_quoted_nulls=true",
            f"nullstr={_sql_list(self.null_values)}",
            f"comment={quote_literal(self.comment or '')}",
            f"encoding={quote_literal(self.encoding)}",
            f"compression={quote_literal(self.compression)}",
            f"parallel={'true' if self.parallel else 'false'}",
        ]
        if self.source_offset is None:  # a rewritten copy: its records all end with LF
            # (data_part.rewrite_blank_lines); DuckDB's own choice follows the file's first
            # line break, even one inside quotes
            opts.append("new_line='\\n'")
        if self.max_line_size:
            opts.append(f"max_line_size={self.max_line_size}")
        if extra:
            opts.append(extra)
        return f"read_csv({', '.join(opts)})"


def _sql_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(quote_literal(i) for i in items) + "]"
