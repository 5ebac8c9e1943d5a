"""Where in the user's file a read failed, for error messages: the physical line of a row that
is too wide, of a value, of a line that is too long or does not decode.

Where DuckDB rejected a record, its rejects table gives a byte position
(:mod:`~osiris_dagster.drivers.csv.rejects`): :func:`locate_line` turns it into the user's line
and :func:`record_at` re-reads just that record. DuckDB's own ``line`` is not used: it counts a
record with quoted line breaks as one line. The finders that scan the whole file remain for what
DuckDB cannot place: a value that fails a type check of ours (DuckDB read it as text, so nothing
was rejected; :func:`find_value_line`), and a read of a rewritten scratch copy, whose positions
are not the user's. All of this runs on the error path only.
"""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import Collection

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.csv.records import (
    MAX_LINE_BYTES,
    Layout,
    Record,
    data_records,
    iter_records,
)
from osiris_dagster.drivers.csv.source import CHUNK_BYTES, Source


def find_wide_record(source: Source, layout: Layout, delimiter: str, comment: str | None,
                     null_values: Collection[str] = ()) -> Record | None:
    """The first data record with more fields than the header (raises on a syntax error first),
    but for fields past the header that are all ``null_values``, which DuckDB's reader drops (a
    trailing delimiter): the record the read failed at."""
    nulls = frozenset(null_values)
    for rec in data_records(source, layout, delimiter, comment):
        if rec.kind == "data" and len(rec.fields) > layout.width and \
                not nulls.issuperset(rec.fields[layout.width:]):
            return rec
    return None


def find_value_line(source: Source, layout: Layout, delimiter: str, comment: str | None,
                    index: int, value: str) -> int | None:
    """Line of the first data record whose field ``index`` is ``value`` (for conversion errors);
    a field a short row lacks is ``''`` (as it is read with ``keep_default_na: false``)."""
    with contextlib.suppress(DriverError):
        for rec in data_records(source, layout, delimiter, comment):
            fields = rec.fields
            if rec.kind == "data" and (fields[index] if index < len(fields) else "") == value:
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


def locate_line(source: Source, position: int) -> tuple[int, int]:
    """The physical line holding byte ``position`` of the source, and the offset where that line
    starts: a byte count of the line breaks before it (LF, CRLF or a lone CR, like the record
    scanner), no CSV parsing."""
    line, start, offset = 1, 0, 0
    with source.open() as fh:
        while offset < position:
            chunk = fh.read(min(CHUNK_BYTES, position - offset))
            if not chunk:
                break
            if chunk.endswith(b"\r") and offset + len(chunk) < position:
                chunk += fh.read(1)  # a CRLF split between two reads is one line break
            line += chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
            last = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
            if last >= 0:
                start = offset + last + 1
            offset += len(chunk)
    return line, start


def record_at(source: Source, delimiter: str, comment: str | None,
              position: int) -> Record | None:
    """The record that starts on the line holding byte ``position`` (raises
    :class:`~osiris_dagster.drivers.csv.records.CsvSyntaxError` if it is not valid CSV)."""
    line, start = locate_line(source, position)
    with contextlib.closing(iter_records(source, delimiter, comment, offset=start,
                                         line=line)) as records:
        return next(records, None)


def undecodable_line_at(source: Source, position: int) -> tuple[int, str] | None:
    """The line holding byte ``position``, with the reason it does not decode; None if it does."""
    line, start = locate_line(source, position)
    with source.open() as fh:
        fh.seek(start)
        raw = fh.readline(MAX_LINE_BYTES)
    try:
        raw.decode(source.encoding)
    except UnicodeDecodeError as exc:
        return line, exc.reason
    return None
