"""The scratch copy of a CSV file's data part that DuckDB reads where reading the file itself
would differ from pandas: after a preamble DuckDB's ``skip`` cannot step over exactly (blank or
comment lines, quoted line breaks), or with blank lines (and lines of only spaces) changed where
DuckDB and pandas treat them differently. Either copy holds the file's own bytes otherwise."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from osiris_dagster.drivers.csv.records import (
    MAX_LINE_BYTES,
    Layout,
    Record,
    data_records,
    how_duckdb_reads,
)
from osiris_dagster.drivers.csv.source import CHUNK_BYTES, Source


def copy_from_offset(source: Source, offset: int, target: Path) -> None:
    """Copy the (decompressed) bytes from ``offset`` on: the data part without its preamble."""
    with source.open() as src, open(target, "wb") as dst:
        src.seek(offset)
        shutil.copyfileobj(src, dst, CHUNK_BYTES)


def may_have_blank_lines(source: Source, offset: int) -> bool:
    """Cheap byte scan before the slow Python rewrite: can the data part contain a blank line?
    (A quoted value with an empty line in it is a false positive, which only costs time.)"""
    with source.open() as fh:
        fh.seek(offset)
        tail = b"\n"  # the data starts at a line start: a leading newline is a blank line
        while chunk := fh.read(CHUNK_BYTES):
            window = tail + chunk
            if b"\n\n" in window or b"\n\r\n" in window or b"\r\r" in window:
                return True
            tail = window[-2:]
    return False


def may_have_spaced_comments(source: Source, offset: int, delimiter: str,
                             comment: str | None) -> bool:
    """Cheap byte scan: can the data part hold a field of spaces before the comment character
    (``1, #note``), a record DuckDB drops whole? (Inside a quoted value it is a false
    positive, which only costs the rewrite's time.)"""
    if comment is None or " " in (delimiter, comment):
        return False
    return _some_line_matches(source, offset, re.compile(
        re.escape(delimiter.encode(source.encoding)) + b" +" +
        re.escape(comment.encode(source.encoding))))


def may_mix_line_ends(source: Source, offset: int) -> bool:
    """Cheap byte scan: does the data part hold CRLF and bare LF line ends both? (A bare LF
    inside a quoted value counts, which only costs the rewrite's time.)"""
    crlf = bare = False
    with source.open() as fh:
        fh.seek(offset)
        last = b""
        while chunk := fh.read(CHUNK_BYTES):
            pairs = chunk.count(b"\r\n") + (last == b"\r" and chunk.startswith(b"\n"))
            crlf = crlf or pairs > 0
            bare = bare or chunk.count(b"\n") > pairs
            if crlf and bare:
                return True
            last = chunk[-1:]
    return False


def may_have_spaced_quotes(source: Source, offset: int, delimiter: str) -> bool:
    """Cheap byte scan: can the data part hold a field that starts with a space and a quote
    (``1, "y"``), which DuckDB reads as the quoted value (``y``) and pandas as its text
    (`` "y"``)? Also true for such text inside a quoted value (``"He said, ""hi"" twice"``):
    the caller then asks :func:`~.unclosed_quote.spaced_opening_quote`, which follows quotes."""
    if delimiter == " ":
        return False
    delim = delimiter.encode(source.encoding)

    def found(lines: bytes, end: int) -> bool:
        if lines.find(b'"', 0, end) < 0:  # a single byte is found at memory speed
            return False
        # where a space comes before a quote, vectorised: bytes.find(b' "') crawls through text
        # full of spaces and quotes (~700 MB/s), numpy compares whole chunks
        import numpy as np

        data = np.frombuffer(lines, dtype=np.uint8, count=end)
        for at in np.flatnonzero((data[:-1] == 0x20) & (data[1:] == 0x22)).tolist():
            # one space at a field's start (after two, DuckDB reads text too)
            if at == 0 or lines[at - 1:at] in (b"\n", b"\r") or \
                    at >= len(delim) and lines[at - len(delim):at] == delim:
                return True
        return False

    return _some_line_matches(source, offset, found)


def _some_line_matches(source: Source, offset: int,
                       found: re.Pattern[bytes] | Callable[[bytes, int], bool]) -> bool:
    """Whether ``found`` (a pattern, or a test of a text's first ``end`` bytes) matches in the
    data part, in text that never spans a line break."""
    test = found if callable(found) else lambda text, end: found.search(text, 0, end) is not None
    with source.open() as fh:
        fh.seek(offset)
        tail = b""  # the start of a line the last chunk did not end
        while chunk := fh.read(CHUNK_BYTES):
            window = tail + chunk
            whole = max(window.rfind(b"\n"), window.rfind(b"\r")) + 1
            if test(window, whole):
                return True
            tail = window[whole:]
            if len(tail) > MAX_LINE_BYTES:  # not a CSV line: the copy's scanner says so
                return True
    return test(tail, len(tail))


def rewrite_blank_lines(source: Source, layout: Layout, delimiter: str, comment: str | None,
                        target: Path, *, keep: bool) -> None:
    """Copy the data part with blank lines made explicit, where DuckDB differs from pandas.

    Each record is copied as the bytes it has in the file (its quoting, comments and spaces as
    written, in the source's encoding), so DuckDB reads every copied row as it reads the file
    itself; only the lines below change. ``keep`` (``skip_blank_lines: false``): pandas makes a
    blank line an all-NULL row, DuckDB drops it (with several columns), so write a row of empty
    fields; a line of only spaces and tabs stays (a row of that text, for both). Not ``keep``:
    in a one-column file DuckDB reads a blank line as a NULL row where pandas skips it, and a
    line of only spaces and tabs is a row for DuckDB, skipped by pandas: leave both out.
    Comment lines are left out too (DuckDB skips them). Every line end is LF (see :func:`_lf`).
    Where DuckDB reads a record unlike
    pandas (:func:`~.records.how_duckdb_reads`), the copy holds what pandas reads: a record
    with a field of spaces before the comment character (``1, #note``), which DuckDB would
    drop, up to that character; one with a field that starts with spaces and a quote
    (``1, "y"``), every field quoted as csv.reader read it (`` "y"`` with its quotes).
    """
    empty_row = (b'""' if layout.width == 1 else  # one empty field: quoted, not a blank line
                 delimiter.encode(source.encoding) * (layout.width - 1))
    with source.open() as raw, open(target, "wb") as out:
        raw.seek(layout.data_offset)
        position = layout.data_offset
        for rec in data_records(source, layout, delimiter, comment):
            text = raw.read(rec.end_offset - position)  # the record's own bytes, line end too
            position = rec.end_offset
            if rec.kind == "data" and (b' "' in text or comment is not None and
                                       comment.encode(source.encoding) in text):
                out.write(_lf(_as_pandas_reads(text, rec, source.encoding, delimiter, comment)))
            elif rec.kind == "data" or (rec.kind == "space" and keep):
                out.write(_lf(text))
            elif rec.kind == "blank" and keep:
                out.write(empty_row + _lf(text))  # text: the blank line's own line end


def _lf(record: bytes) -> bytes:
    """The record with LF as its line end: a file mixing CRLF and LF line ends (a CRLF file
    whose inline comment ends at a bare LF) made DuckDB drop the next line's first character.
    pandas ends a record at either; a line break inside a quoted value stays as it is."""
    body = record.rstrip(b"\r\n")
    return body + b"\n" if len(body) < len(record) else record


def _as_pandas_reads(record: bytes, rec: Record, encoding: str, delimiter: str,
                     comment: str | None) -> bytes:
    """The record as DuckDB reads it the way pandas does (see :func:`rewrite_blank_lines`),
    with its own line end."""
    text = record.decode(encoding)
    reading = how_duckdb_reads(text, delimiter, comment)
    ending = text[len(text.rstrip("\r\n")):]
    if reading.spaced_quote:
        quoted = ('"' + value.replace('"', '""') + '"' for value in rec.fields)
        return (delimiter.join(quoted) + ending).encode(encoding)
    if reading.comment_cut is not None:
        return (text[:reading.comment_cut] + ending).encode(encoding)
    return record
