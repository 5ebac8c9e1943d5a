"""Where in the user's file a read failed, for error messages: the physical line of a row that
is too wide, of a value, of a line that is too long or does not decode.

DuckDB's errors cannot give these: it counts records rather than lines, it reads a scratch copy
or the data part after the header (so its positions are not the user's), and it reports no
position at all for some failures. These finders re-scan the file, on the error path only.
"""

from __future__ import annotations

import codecs
import contextlib

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.csv.records import (
    MAX_LINE_BYTES,
    Layout,
    Record,
    data_records,
    strip_comment,
)
from osiris_dagster.drivers.csv.source import CHUNK_BYTES, Source


def find_wide_record(source: Source, layout: Layout, delimiter: str,
                     comment: str | None) -> Record | None:
    """The first data record with more fields than the header (raises on a syntax error first)."""
    for rec in data_records(source, layout, delimiter, comment):
        if rec.kind == "data" and len(strip_comment(rec.fields, comment)) > layout.width:
            return rec
    return None


def find_value_line(source: Source, layout: Layout, delimiter: str, comment: str | None,
                    index: int, value: str) -> int | None:
    """Line of the first data record whose field ``index`` is ``value`` (for conversion errors)."""
    with contextlib.suppress(DriverError):
        for rec in data_records(source, layout, delimiter, comment):
            fields = strip_comment(rec.fields, comment)
            if rec.kind == "data" and index < len(fields) and fields[index] == value:
                return rec.first_line
    return None


def find_long_line(source: Source, limit: int) -> int | None:
    """First physical line longer than ``limit`` bytes (DuckDB's max_line_size)."""
    with source.open() as fh:
        line, length = 1, 0
        while piece := fh.readline(CHUNK_BYTES):
            length += len(piece)
            if length > limit:
                return line
            if piece.endswith(b"\n"):
                line, length = line + 1, 0
    return None


def find_undecodable_line(source: Source) -> tuple[int, str] | None:
    """First physical line that does not decode in the source's encoding, with the reason."""
    decoder = codecs.getincrementaldecoder(source.encoding)(errors="strict")
    with source.open() as fh:
        line = 0
        while raw := fh.readline(MAX_LINE_BYTES):
            line += 1
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as exc:
                return line, exc.reason
    return None
