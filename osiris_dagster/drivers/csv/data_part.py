"""The scratch copy of a CSV file's data part that DuckDB reads where reading the file itself
would differ from pandas: after a preamble DuckDB's ``skip`` cannot step over exactly (blank or
comment lines, quoted line breaks), or with blank lines (and lines of only spaces) changed where
DuckDB and pandas treat them differently. Either copy holds the file's own bytes otherwise."""

from __future__ import annotations

import codecs
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from osiris_dagster.core.errors import StepCancelled
from osiris_dagster.drivers.csv.records import (
    MAX_LINE_BYTES,
    Layout,
    Record,
    data_records,
    how_duckdb_reads,
)
from osiris_dagster.drivers.csv.source import CHUNK_BYTES, Source
from osiris_dagster.drivers.csv.unclosed_quote import VECTOR_SCAN_MIN_BYTES


def copy_from_offset(source: Source, offset: int, target: Path) -> None:
    """Copy the (decompressed) bytes from ``offset`` on: the data part without its preamble."""
    with source.open() as src, open(target, "wb") as dst:
        src.seek(offset)
        shutil.copyfileobj(src, dst, CHUNK_BYTES)


def may_have_blank_lines(source: Source, offset: int) -> bool:
    """Cheap byte scan before the slow Python rewrite: can the data part contain a blank line?
    A line break right after a line feed or a lone CR is one: a CR after a line feed starts an
    empty line whether a line feed follows it or not (a lone CR at the end of a CRLF file).
    (A quoted value with an empty line in it is a false positive, which only costs time.)"""
    with source.open() as fh:
        fh.seek(offset)
        tail = b"\n"  # the data starts at a line start: a leading newline is a blank line
        while chunk := fh.read(CHUNK_BYTES):
            window = tail + chunk
            if b"\n\n" in window or b"\n\r" in window or b"\r\r" in window:
                return True
            tail = window[-2:]
    return False


def may_have_spaced_comments(source: Source, offset: int, delimiter: str,
                             comment: str | None) -> bool:
    """Cheap byte scan: can the data part hold a field of spaces before the comment character
    (``1, #note``), a record DuckDB drops whole, or the comment character right after a
    closing quote (``"a"#x``: DuckDB reads ``a``, pandas ``a#x``; the copy's scanner refuses
    it, naming the line)? (Inside a quoted value it is a false positive, which only costs the
    rewrite's time.)"""
    if comment is None or " " in (delimiter, comment):
        return False
    mark = re.escape(comment.encode(source.encoding))
    return _some_line_matches(source, offset, re.compile(
        re.escape(delimiter.encode(source.encoding)) + b" +" + mark + b'|"' + mark))


def may_mix_line_ends(source: Source, offset: int) -> bool:
    """Cheap byte scan: does the data part hold more than one kind of line break (CRLF, a bare
    LF, a lone CR)? (One inside a quoted value counts, which only costs the rewrite's time.)"""
    return len(line_end_kinds(source, offset)) > 1


def mixes_in_lone_crs(source: Source, offset: int) -> bool:
    """Whether lone CRs sit beside CRLFs or bare LFs. DuckDB then reads some lines unlike
    pandas without an error (``2,c<CR> <CRLF>``: a row of NULLs where pandas skips a line of
    a space, or keeps the space): such a file is read from the copy. (A CRLF file with bare
    LFs in quoted values, as spreadsheets write multi-line cells, reads right and is not.)"""
    kinds = line_end_kinds(source, offset)
    return "cr" in kinds and len(kinds) > 1


def line_end_kinds(source: Source, offset: int) -> set[str]:
    """The kinds of line break in the data part ("crlf", "lf", "cr"); stops at the second.
    A chunk without a CR costs one memchr pass (~0.02 s per 100 MB), one with CRs three counts
    (~0.18 s per 100 MB)."""
    kinds: set[str] = set()
    with source.open() as fh:
        fh.seek(offset)
        last = b""
        while chunk := fh.read(CHUNK_BYTES):
            if last != b"\r" and b"\r" not in chunk:  # the common case
                if b"\n" in chunk:
                    kinds.add("lf")
            else:
                split = last == b"\r" and chunk.startswith(b"\n")  # a CRLF across two chunks
                pairs = chunk.count(b"\r\n") + split
                crs = chunk.count(b"\r") + (last == b"\r") - pairs - (chunk[-1:] == b"\r")
                kinds |= {kind for kind, n in (("crlf", pairs),
                                               ("lf", chunk.count(b"\n") - pairs),
                                               ("cr", crs)) if n > 0}
            if len(kinds) > 1:
                return kinds
            last = chunk[-1:]
    if last == b"\r":
        kinds.add("cr")  # the file ends with a lone CR
    return kinds


class SpacedQuotes(NamedTuple):
    """Spaces beside quotes that DuckDB reads unlike pandas (candidates of a byte scan)."""

    opening: bool  # a space at a field's start, then a quote (``1, "y"``): DuckDB opens a
    # value (``y``), pandas reads the text; also found inside quoted values: ask
    # :func:`~.unclosed_quote.spaced_opening_quote`, which follows quotes
    after_closing: bool  # a quote, spaces, then the field's end (``"y" ,``, ``"a" "b"``):
    # DuckDB drops the spaces (``y``, ``a b``) where pandas keeps the text; the copy's scanner
    # refuses it, naming the line


def spaced_quotes(source: Source, offset: int, delimiter: str,
                  comment: str | None) -> SpacedQuotes:
    """Scan the data part for :class:`SpacedQuotes`: a single-byte search skips quote-free
    chunks at memory speed, numpy finds space-quote and quote-space pairs in the others
    (bytes.find crawls through text full of spaces and quotes), Python looks at each pair."""
    if delimiter == " ":
        return SpacedQuotes(False, False)
    delim = delimiter.encode(source.encoding)
    bom = len(codecs.BOM_UTF8) if offset == 0 and source.encoding == "utf-8" else 0
    field_ends = (delim, b"\n", b"\r", b'"') + ((comment.encode(source.encoding),)
                                                if comment else ())
    # numpy for big files only: importing it (~75 ms) costs more than a small file's scan
    vectorised = source.path.stat().st_size >= VECTOR_SCAN_MIN_BYTES
    opening = after_closing = False
    for lines, end in _line_windows(source, offset):
        if lines.find(b'"', 0, end) < 0:
            continue
        if not opening:
            for at in _pairs(lines, end, b' "', vectorised):
                # one space at a field's start (after two, DuckDB reads text too)
                if at == 0 or lines[at - 1:at] in (b"\n", b"\r") or \
                        at == bom and lines.startswith(codecs.BOM_UTF8) or \
                        at >= len(delim) and lines[at - len(delim):at] == delim:
                    opening = True
                    break
        if not after_closing:
            for at in _pairs(lines, end, b'" ', vectorised):
                nxt = at + 1
                while nxt < end and lines[nxt] == 0x20:
                    nxt += 1
                if nxt >= end or lines.startswith(field_ends, nxt):
                    after_closing = True
                    break
        if opening and after_closing:
            break
    return SpacedQuotes(opening, after_closing)


def _pairs(lines: bytes, end: int, pair: bytes, vectorised: bool) -> Iterator[int]:
    """Where the two bytes ``pair`` start in ``lines[:end]``: by numpy in whole arrays, or by
    bytes.find (which crawls through text full of spaces and quotes, ~700 MB/s)."""
    if vectorised:
        import numpy as np

        data = np.frombuffer(lines, dtype=np.uint8, count=end)
        yield from np.flatnonzero((data[:-1] == pair[0]) & (data[1:] == pair[1])).tolist()
        return
    at = lines.find(pair, 0, end)
    while at >= 0:
        yield at
        at = lines.find(pair, at + 1, end)


def _line_windows(source: Source, offset: int) -> Iterator[tuple[bytes, int]]:
    """The data part in chunks of whole lines: (text, end), the text's first ``end`` bytes
    whole lines; the last piece of the file comes whole."""
    with source.open() as fh:
        fh.seek(offset)
        tail = b""  # the start of a line the last chunk did not end
        while chunk := fh.read(CHUNK_BYTES):
            window = tail + chunk
            whole = max(window.rfind(b"\n"), window.rfind(b"\r")) + 1
            yield window, whole
            tail = window[whole:]
            if len(tail) > MAX_LINE_BYTES:  # not a CSV line: the copy's scanner says so
                yield tail, len(tail)
                tail = b""
    yield tail, len(tail)


def _some_line_matches(source: Source, offset: int, found: re.Pattern[bytes]) -> bool:
    """Whether ``found``, which never spans a line break, matches in the data part."""
    return any(found.search(text, 0, end) for text, end in _line_windows(source, offset))


def rewrite_blank_lines(source: Source, layout: Layout, delimiter: str, comment: str | None,
                        target: Path, *, keep: bool,
                        stop: Callable[[], bool] | None = None) -> None:
    """Copy the data part with blank lines made explicit, where DuckDB differs from pandas.

    Each record is copied as the bytes it has in the file (its quoting, comments and spaces as
    written, in the source's encoding), so DuckDB reads every copied row as it reads the file
    itself; only the lines below change. ``keep`` (``skip_blank_lines: false``): pandas makes a
    blank line an all-NULL row, DuckDB drops it (with several columns), so write a row of empty
    fields; a line of only spaces and tabs stays (a row of that text, for both). Not ``keep``:
    in a one-column file DuckDB reads a blank line as a NULL row where pandas skips it, and a
    line of only spaces and tabs is a row for DuckDB, skipped by pandas: leave both out.
    Comment lines are left out too (DuckDB skips them). Every record ends with a line feed
    (:func:`_lf`).
    Where DuckDB reads a record unlike
    pandas (:func:`~.records.how_duckdb_reads`), the copy holds what pandas reads: a record
    with a field of spaces before the comment character (``1, #note``), which DuckDB would
    drop, up to that character; one with a field that starts with spaces and a quote
    (``1, "y"``), every field quoted as csv.reader read it (`` "y"`` with its quotes).

    ``stop()`` is asked every few thousand records: this pass is Python, which DuckDB's
    interrupt does not reach, so a step told to stop (a timeout, a terminate) ends here with
    :class:`~osiris_dagster.core.errors.StepCancelled` instead of copying the rest.
    """
    empty_row = (b'""' if layout.width == 1 else  # one empty field: quoted, not a blank line
                 delimiter.encode(source.encoding) * (layout.width - 1))
    with source.open() as raw, open(target, "wb") as out:
        raw.seek(layout.data_offset)
        position = layout.data_offset
        for count, rec in enumerate(data_records(source, layout, delimiter, comment)):
            if stop is not None and count % _STOP_EVERY == 0 and stop():
                raise StepCancelled(f"{source.origin}: told to stop while copying its records")
            text = raw.read(rec.end_offset - position)  # the record's own bytes, line end too
            position = rec.end_offset
            if rec.kind == "data" and (b' "' in text or comment is not None and
                                       comment.encode(source.encoding) in text):
                out.write(_lf(_as_pandas_reads(text, rec, source.encoding, delimiter, comment)))
            elif rec.kind == "data" or (rec.kind == "space" and keep):
                out.write(_lf(text))
            elif rec.kind == "blank" and keep:
                out.write(_lf(empty_row + text))  # text: the blank line's own line end


_STOP_EVERY = 4096  # records between two looks at whether the step was told to stop


def _lf(record: bytes) -> bytes:
    """The record ending with a line feed; DuckDB reads the copy with ``new_line`` set to it
    (:meth:`~.read_csv_call.Reader.sql`). Left to itself, DuckDB picks one kind of line break
    for a whole file from the first one it meets, quotes or not: a CRLF file whose first record
    holds a quoted bare LF, one mixing in bare LFs (a CRLF file whose inline comment ends at a
    bare LF, where DuckDB lost the next line's first character), or lone-CR records after a
    quoted CRLF failed or were misread. pandas ends a record at either; a line break inside a
    quoted value stays as it is."""
    body = record.rstrip(b"\r\n")
    return body + b"\n" if len(body) < len(record) else record


def _as_pandas_reads(record: bytes, rec: Record, encoding: str, delimiter: str,
                     comment: str | None) -> bytes:
    """The record as DuckDB reads it the way pandas does (see :func:`rewrite_blank_lines`),
    with its own line end."""
    text = record.decode(encoding).removeprefix("\ufeff")  # a BOM: DuckDB skips it too
    reading = how_duckdb_reads(text, delimiter, comment)
    ending = text[len(text.rstrip("\r\n")):]
    if reading.spaced_quote:
        quoted = ('"' + value.replace('"', '""') + '"' for value in rec.fields)
        return (delimiter.join(quoted) + ending).encode(encoding)
    if reading.comment_cut is not None:
        return (text[:reading.comment_cut] + ending).encode(encoding)
    return record  # as it is (a BOM with it)
