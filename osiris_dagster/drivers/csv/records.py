"""Reading a CSV file record by record, and where its data starts.

A streaming scanner over the raw bytes of a :class:`~osiris_dagster.drivers.csv.source.Source`
that parses like DuckDB's strict RFC-4180 reader and knows each record's physical line numbers
(DuckDB counts records, not lines); and the layout pandas would see in the file: the header row
and the first data row after ``skip_rows``/``header: N`` (DuckDB's ``skip`` counts lines and has
no ``header: N``). Memory use does not grow with the file.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal, NamedTuple

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.csv.source import Source, encoding_error

MAX_LINE_BYTES = 32 << 20

# csv's default per-field limit (128 KiB) would reject legitimate wide text fields; raise it (never
# lower it) to the line limit this module enforces anyway. The setting is process-wide.
if csv.field_size_limit() < MAX_LINE_BYTES:
    csv.field_size_limit(MAX_LINE_BYTES)

_UTF8_BOM = codecs.BOM_UTF8
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")

# "space": one physical line of only spaces and tabs, none of them the delimiter and nothing
# quoted. pandas skips it like a blank line (a row of that text with ``skip_blank_lines: false``);
# DuckDB reads it as a row.
RecordKind = Literal["data", "blank", "comment", "space"]


@dataclass(frozen=True)
class Record:
    fields: list[str]
    first_line: int  # 1-based physical line where the record starts
    last_line: int
    end_offset: int  # byte offset just after the record
    kind: RecordKind
    # DuckDB reads the record's line unlike csv.reader (:func:`how_duckdb_reads`): a field of
    # spaces before the comment character (``1, #note``: dropped whole, its ``skip`` counts
    # no line) or a quote after one space (`` "x``: its ``skip`` goes on to the closing quote)
    duckdb_differs: bool = False
    line_end: str = ""  # the record's own line break ("\r\n", "\n", "\r"; "" at the end)


class CsvSyntaxError(DriverError):
    """The file is not valid CSV at a known line (unterminated quote, text after a quote...)."""


class _LineFeed:
    """Feeds csv.reader one decoded physical line at a time, counting lines and bytes.

    csv.reader pulls lines lazily, so after each record ``line``/``offset`` point just past it.
    Comment lines are replaced by an empty line (and counted) so quotes in them cannot confuse
    the parser; only the first line of a record can be one (``record_start``), the others
    continue a quoted value. An inline comment is cut off the line (a quote in it opens no
    value, as in DuckDB and pandas). Lone CRs (old Mac files) are split into lines like DuckDB
    does.
    """

    def __init__(self, fh: BinaryIO, source: Source, delimiter: str, comment: str | None,
                 line: int, offset: int) -> None:
        self._fh = fh
        self._source = source
        self._comment = comment
        self._decoder = codecs.getincrementaldecoder(source.encoding)(errors="strict")
        self._pending: list[tuple[str, int]] = []  # decoded pieces with their byte lengths
        self._at_start = offset == 0
        self.line = line - 1
        self.offset = offset
        self.comments = 0
        self.text = ""  # the last line fed, as decoded
        self.record_start = True  # the next line fed starts a record
        self._quoted = False  # the record's lines fed so far end inside a quoted value
        # the comment character, or a quote that opens a value (the first character of a
        # field, as csv.reader reads it: elsewhere a quote is text)
        self._opening_quote = re.compile(
            re.escape(comment) + f'|(?:^|(?<={re.escape(delimiter)}))"') if comment else None

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if not self._pending:
            self._pending = self._read_pieces()
        text, size = self._pending.pop(0)
        self.line += 1
        self.offset += size
        self.text = text
        record_start, self.record_start = self.record_start, False
        if record_start:
            self._quoted = False
        if not self._comment:
            return text
        # DuckDB's comment line: the comment character after spaces (not tabs) only
        if record_start and text.lstrip(" ").startswith(self._comment):
            self.comments += 1
            return "\n"
        cut, self._quoted = _comment_start(text, self._comment, self._quoted,
                                           self._opening_quote)
        return text if cut is None else text[:cut] + text[len(text.rstrip("\r\n")):]

    def _read_pieces(self) -> list[tuple[str, int]]:
        raw = self._fh.readline(MAX_LINE_BYTES)
        if not raw:
            raise StopIteration
        if len(raw) >= MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise DriverError(
                f"{self._source.origin}: line {self.line + 1} is longer than "
                f"{MAX_LINE_BYTES >> 20} MiB; check the `delimiter` and quoting of the file."
            )
        bom = 0
        if self._at_start:
            self._at_start = False
            if raw.startswith(_UTF8_BOM) and self._source.encoding == "utf-8":
                raw, bom = raw[len(_UTF8_BOM):], len(_UTF8_BOM)
        try:
            text = self._decoder.decode(raw)
        except UnicodeDecodeError as exc:
            raise encoding_error(self._source.origin, self._source.encoding, self.line + 1,
                                 exc.reason) from exc
        if "\r" not in text:
            return [(text, len(raw) + bom)]
        pieces = [p for p in _LONE_CR.split(text) if p]
        sizes = [len(p.encode(self._source.encoding)) for p in pieces]
        sizes[0] += bom + len(raw) - sum(sizes)  # bytes held back by the decoder, if any
        return list(zip(pieces, sizes, strict=True))


def _comment_start(line: str, comment: str, quoted: bool,
                   opening: re.Pattern[str]) -> tuple[int | None, bool]:
    """The index of the first comment character outside quotes in ``line`` (None if none),
    and whether the line ends inside a quoted value. ``quoted``: whether it starts inside one.
    ``opening`` finds the comment character or a quote that opens a value; in a quoted value a
    doubled quote is a quote, a single one closes it."""
    at = 0
    while True:
        if quoted:
            end = line.find('"', at)
            while end >= 0 and line.startswith('"', end + 1):  # "" inside the value
                end = line.find('"', end + 2)
            if end < 0:
                return None, True
            if line.startswith(comment, end + 1):  # '"a"#x': text after the closing quote,
                return None, False  # which csv.reader refuses (pandas reads 'a#x')
            quoted, at = False, end + 1
            continue
        found = opening.search(line, at)
        if found is None:
            return None, False
        if found.group() == comment:
            return found.start(), False
        quoted, at = True, found.end()


def iter_records(source: Source, delimiter: str, comment: str | None, *, offset: int = 0,
                 line: int = 1) -> Iterator[Record]:
    """Parse the source (from a record boundary) the way DuckDB's strict RFC-4180 reader does."""
    with source.open() as fh:
        if offset:
            fh.seek(offset)
        feed = _LineFeed(fh, source, delimiter, comment, line, offset)
        reader = csv.reader(feed, delimiter=delimiter, quotechar='"', doublequote=True,
                            strict=True)
        while True:
            first, comments = feed.line + 1, feed.comments
            feed.record_start = True
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise CsvSyntaxError(
                    f"{source.origin}: line {first}: invalid CSV ({exc}). Check quoting there, "
                    f"and the `delimiter` option (currently {delimiter!r})."
                ) from exc
            kind: RecordKind = "data"
            if not fields:
                kind = "comment" if feed.comments > comments else "blank"
            elif len(fields) == 1 and first == feed.line and _only_spaces(fields[0]) and \
                    feed.text.rstrip("\r\n") == fields[0]:
                kind = "space"
            differs = False
            if kind == "data" and first == feed.line and (  # quick tests: the loop is slow
                    ' "' in feed.text or bool(comment) and comment in feed.text):
                reading = how_duckdb_reads(feed.text, delimiter, comment)
                differs = reading.comment_cut is not None or reading.spaced_quote
            line_end = feed.text[len(feed.text.rstrip("\r\n")):]
            yield Record(fields, first, max(first, feed.line), feed.offset, kind, differs,
                         line_end)


class DuckDBReading(NamedTuple):
    """Where DuckDB reads a record's text unlike pandas (and csv.reader)."""

    comment_cut: int | None  # a field of spaces ends at the comment character (``1, #n``):
    # DuckDB drops the record whole; pandas reads the spaces and ends the line there
    spaced_quote: bool  # a field starts with a space and a quote (``1, "y"``): DuckDB reads
    # ``y``, pandas the text `` "y"``


def how_duckdb_reads(text: str, delimiter: str, comment: str | None) -> DuckDBReading:
    """Where DuckDB's reading of a record's ``text`` differs from pandas'. DuckDB opens a
    quoted value at a field's start, also after one space (csv.reader and pandas only at its
    very start; after two spaces DuckDB reads text too); the first comment character outside
    quotes ends the record."""
    quoted, first_field, field_start, spaces_only, spaced_quote = False, True, 0, True, False
    i = 0
    while i < len(text):
        char = text[i]
        if quoted:
            if char == '"':
                if text.startswith('"', i + 1):
                    i += 1
                else:
                    quoted = False
        elif char == comment:
            cut = None if first_field or not spaces_only else i
            return DuckDBReading(cut, spaced_quote)
        elif char == delimiter:
            first_field, field_start, spaces_only = False, i + 1, True
        elif char == '"' and (i == field_start or i == field_start + 1 and spaces_only):
            quoted, spaces_only = True, False  # DuckDB: at a field's start or after one space
            spaced_quote = spaced_quote or i > field_start
        elif char != " ":
            spaces_only = False
        i += 1
    return DuckDBReading(None, spaced_quote)


def _only_spaces(value: str) -> bool:
    return value != "" and value.strip(" \t") == ""


def is_skipped(rec: Record, skip_blank_lines: bool) -> bool:
    """Whether pandas leaves the record out of the rows (and out of the header search)."""
    return rec.kind == "comment" or (rec.kind in ("blank", "space") and skip_blank_lines)


@dataclass(frozen=True)
class Layout:
    """Where the data of a CSV file starts and how wide its rows may be."""

    header: list[str] | None  # raw header fields; None for header: false
    width: int
    data_offset: int  # byte offset of the first data record (after skip_rows and the header)
    data_line: int  # its physical line number
    skipped: int  # records before it
    simple_skip: bool  # every skipped record is one plain line, so DuckDB's `skip` lands there
    has_data: bool


def inspect_layout(source: Source, *, delimiter: str, comment: str | None, skip_rows: int,
                   header: bool | int, skip_blank_lines: bool) -> Layout | None:
    """Find the header and first data row like pandas does; None if the file has neither.

    pandas semantics: ``skip_rows`` drops records at the top (blank ones included); ``header: N``
    is then the N-th non-blank, non-comment record, and records before it are discarded. A
    ``header: N`` past the records left fails, as in pandas ("Passed header=N but only M lines
    in file"); none left at all is an empty file (pandas' EmptyDataError, which Osiris reads
    as an empty DataFrame), also when ``skip_rows`` skipped them all.
    """
    with contextlib.closing(iter_records(source, delimiter, comment)) as records:
        return _find_layout(records, skip_rows=skip_rows, header=header,
                            skip_blank_lines=skip_blank_lines, origin=str(source.origin))


def _find_layout(records: Iterator[Record], *, skip_rows: int, header: bool | int,
                 skip_blank_lines: bool, origin: str) -> Layout | None:
    taken: list[Record] = []

    def take() -> Record | None:
        rec = next(records, None)
        if rec is not None:
            taken.append(rec)
        return rec

    for _ in range(skip_rows):
        if take() is None:
            return None
    header_fields: list[str] | None = None
    if header is not False:
        wanted = 0 if header is True else int(header)
        seen = 0
        while header_fields is None:
            rec = take()
            if rec is None and seen:
                raise _header_past_end(origin, wanted, seen, skip_rows)
            if rec is None:
                return None
            if is_skipped(rec, skip_blank_lines) or rec.kind == "blank":
                continue
            if seen == wanted:
                header_fields = rec.fields
            seen += 1
    first = None
    for rec in records:
        if is_skipped(rec, skip_blank_lines):
            taken.append(rec)
            continue
        first = rec
        break
    ends = first.line_end if first is not None else (taken[0].line_end if taken else "")
    if header_fields is not None:
        width = len(header_fields)
    else:
        sample = first if first is not None and first.kind in ("data", "space") else next(
            (r for r in records if r.kind in ("data", "space")), None)
        if sample is None:
            return None
        width = len(sample.fields)
    return Layout(
        header=header_fields,
        width=width,
        data_offset=taken[-1].end_offset if taken else 0,
        data_line=taken[-1].last_line + 1 if taken else 1,
        skipped=len(taken),
        # DuckDB's skip counts lines as DuckDB reads them, with the line end of the file's
        # first line for all (a CRLF line before LF ones: its strict reader then finds no row)
        simple_skip=all(r.kind in ("data", "space") and r.first_line == r.last_line
                        and not r.duckdb_differs and r.line_end in (ends, "")
                        for r in taken),
        has_data=first is not None,
    )


def _header_past_end(origin: str, header: int, rows: int, skip_rows: int) -> DriverError:
    after = f" after the {skip_rows} `skip_rows`" if skip_rows else ""
    return DriverError(
        f"{origin}: `header: {header}` names row {header} (counting from 0), but the file has "
        f"only {rows} rows{after} (blank and comment lines not counted), so it has no header "
        "row and no data. Lower `header` (or `skip_rows`), or check that `path` names the "
        "file you meant.")


def data_records(source: Source, layout: Layout, delimiter: str,
                 comment: str | None) -> Iterator[Record]:
    """The records after the header, with their physical line numbers."""
    return iter_records(source, delimiter, comment, offset=layout.data_offset,
                        line=layout.data_line)
