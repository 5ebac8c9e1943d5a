"""What DuckDB's own CSV reader rejected, read from its rejects table after a read failed.

A failed ``read_csv`` reports the problem as text; read again with ``store_rejects``, DuckDB
records it as data instead (``reject_errors``): the error type and byte positions. That second
read runs on the error path only: with ``store_rejects`` DuckDB skips bad rows instead of failing,
so the read that makes the table never uses it (a row would go missing silently), and the happy
path costs nothing extra.

It is single-threaded (``parallel=false``): ``rejects_limit=1`` then keeps the *first* bad record
of the file, where parallel scanners could record a later one first. The single-threaded reader
records nothing for a quote left open at the end of the file (DuckDB 2.0.1 reads it as NULL; the
extractor looks for one before such a read, :mod:`unclosed_quote <.unclosed_quote>`); that, like
anything else not recorded, is left to the caller's own scan of the file.

Only the error type and byte positions are used. DuckDB's ``line`` counts a record whose quoted
value spans line breaks as one line (DuckDB 2.0.1: a wide row on physical line 3,000,004 after
one such record is reported on line 3,000,003), so the physical line is counted from the byte
position (:func:`~osiris_dagster.drivers.csv.error_lines.locate_line`); ``column_idx`` and the
"Found: N" of a too-wide row name the first extra field, not how many the row has (with
``rejects_limit=1``), so the record is re-read from its position for that, which also confirms
DuckDB and the record scanner agree about it before the message names it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import duckdb

from osiris_dagster.core.naming import quote_ident

TOO_MANY_COLUMNS = "TOO MANY COLUMNS"
UNQUOTED_VALUE = "UNQUOTED VALUE"  # an unterminated quote, or text after a closing quote
INVALID_ENCODING = "INVALID ENCODING"
LINE_TOO_LONG = "LINE SIZE OVER MAXIMUM"


@dataclass(frozen=True)
class Rejection:
    """The first record DuckDB rejected, with positions in the file it read."""

    error_type: str
    record_position: int  # DuckDB's line_byte_position: within the record's first line
    error_position: int  # DuckDB's byte_position: within the line of the offending byte


def first_rejection(con: duckdb.DuckDBPyConnection,
                    read_csv: Callable[[str], str]) -> Rejection | None:
    """Read again with the rejects table on; None when DuckDB records nothing (the failure was
    not about a record) or fails again (a state its reader cannot record, e.g. mixed line
    endings). ``read_csv`` renders the single-threaded ``read_csv(...)`` call given the extra
    options."""
    tag = uuid.uuid4().hex[:12]
    errors, scans = f"osiris_rejects_{tag}", f"osiris_reject_scans_{tag}"
    options = (f"store_rejects=true, rejects_table='{errors}', rejects_scan='{scans}', "
               "rejects_limit=1")
    try:
        # every column is read: DuckDB checks the encoding only of the columns a query uses
        con.execute(f"SELECT count(COLUMNS(*)) FROM {read_csv(options)}").fetchall()
        row = con.execute(
            f"SELECT error_type, line_byte_position, byte_position FROM {quote_ident(errors)} "
            "ORDER BY line_byte_position LIMIT 1").fetchone()
    except duckdb.Error:
        return None
    finally:
        for table in (errors, scans):
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DROP TABLE IF EXISTS temp.{quote_ident(table)}")
    if row is None:
        return None
    return Rejection(error_type=str(row[0]), record_position=int(row[1]),
                     error_position=int(row[2]))
