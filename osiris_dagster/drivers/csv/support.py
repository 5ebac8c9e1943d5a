"""File plumbing shared by the CSV drivers: scratch files, decompression, transcoding, and a
streaming CSV scanner that finds header rows and the first bad line of a file.

DuckDB does the heavy lifting (``read_csv`` / ``COPY``); this module covers what DuckDB cannot do
or does not report well: codecs it lacks (bz2, xz, zip, utf-16 with either byte order), finding
where the data starts (pandas ``skiprows`` / ``header`` semantics), and physical line numbers for
error messages (DuckDB counts records, not lines, and reports none when its sniffer fails).
Everything here streams: memory use does not grow with the file.
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import csv
import gzip
import lzma
import os
import re
import shutil
import uuid
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from osiris_dagster.core.atomic_files import remove_quietly
from osiris_dagster.core.errors import DriverError

CHUNK_BYTES = 1 << 20
MAX_LINE_BYTES = 32 << 20

# csv's default per-field limit (128 KiB) would reject legitimate wide text fields; raise it (never
# lower it) to the line limit this module enforces anyway. The setting is process-wide.
if csv.field_size_limit() < MAX_LINE_BYTES:
    csv.field_size_limit(MAX_LINE_BYTES)

PANDAS_NA_VALUES: tuple[str, ...] = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)

# A CSV file with no header and no data has no columns, but a DuckDB table needs one: the
# extractor then creates this single VARCHAR column with zero rows, and the writer recognises it
# and writes an empty file again (what Osiris/pandas writes for an empty DataFrame).
EMPTY_FILE_COLUMN = "_empty"

_UTF8_BOM = codecs.BOM_UTF8
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")

Compression = Literal["none", "gzip", "bz2", "zip", "xz"]
_SUFFIX_COMPRESSION: dict[str, Compression] = {
    ".gz": "gzip", ".bz2": "bz2", ".zip": "zip", ".xz": "xz",
}


# -- small helpers --------------------------------------------------------------------------------
def sort_columns(names: Sequence[str]) -> list[str]:
    """Osiris writes ``df[sorted(df.columns)]``; all-digit names (header: false) sort as numbers."""
    if names and all(n.isascii() and n.isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def duckdb_summary(exc: BaseException, limit: int = 400) -> str:
    """The useful head of a DuckDB error: its text up to the 'Possible fixes' / options dump."""
    lines: list[str] = []
    for line in str(exc).splitlines():
        stripped = line.strip()
        if not stripped:
            if lines:
                break
            continue
        if stripped.startswith(("Possible fix", "Possible Solution", "file =", "* ")):
            break
        if not stripped.startswith("Original Line:"):  # may be megabytes of row text
            lines.append(stripped)
    text = " ".join(lines) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def encoding_error(origin: Path, encoding: str, line: int | None, reason: str) -> DriverError:
    where = f"line {line}" if line is not None else "the file"
    return DriverError(
        f"{origin}: {where} is not valid {encoding} ({reason}). Set the step's `encoding` option "
        "to the file's real encoding (utf-8, latin-1 or utf-16), or re-save the file as UTF-8."
    )


class Scratch:
    """Scratch files for one driver call inside the session's tmp dir; all removed on exit."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory = directory
        self.prefix = re.sub(r"[^0-9A-Za-z_.-]", "_", prefix)
        self._paths: list[Path] = []

    def new_path(self, suffix: str = ".csv") -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.prefix}.{os.getpid()}.{uuid.uuid4().hex[:12]}{suffix}"
        self._paths.append(path)
        return path

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        for path in self._paths:
            remove_quietly(path)


# -- reading sources ------------------------------------------------------------------------------
def infer_compression(path: Path, setting: str) -> Compression:
    """pandas semantics: 'infer' looks at the file extension; anything else is taken as given."""
    if setting == "infer":
        return _SUFFIX_COMPRESSION.get(path.suffix.lower(), "none")
    if setting in ("none", "gzip", "bz2", "zip", "xz"):
        return setting  # type: ignore[return-value]
    raise DriverError(f"unsupported compression {setting!r}: use infer, gzip, bz2, zip or xz")


@dataclass(frozen=True)
class Source:
    """The bytes DuckDB reads: the user's file or a decompressed/transcoded scratch copy of it.

    ``encoding`` is ASCII-compatible (utf-8 or latin-1), so lines can be split on b"\\n"; a copy
    keeps the line structure of the original, so line numbers found here are the user's.
    """

    path: Path
    origin: Path
    encoding: str
    gzip: bool = False

    def open(self) -> BinaryIO:
        return gzip.open(self.path, "rb") if self.gzip else open(self.path, "rb")  # noqa: SIM115


@contextlib.contextmanager
def open_decompressed(path: Path, compression: Compression) -> Iterator[BinaryIO]:
    """A binary stream of the file's content; zip archives must hold exactly one file (pandas)."""
    if compression == "zip":
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                names = ", ".join(m.filename for m in members) or "none"
                raise DriverError(
                    f"{path}: a zip archive must contain exactly one CSV file, found "
                    f"{len(members)} ({names}). Extract the file you want and point `path` at it."
                )
            with archive.open(members[0]) as member:
                yield member
        return
    openers = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}
    opener = openers.get(compression)
    with (opener(path, "rb") if opener else open(path, "rb")) as fh:
        yield fh


_DECOMPRESS_ERRORS = (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile, zlib.error)


def prepare_source(origin: Path, compression: Compression, encoding: str,
                   scratch: Scratch) -> Source:
    """Give DuckDB something it reads natively: plain or gzip bytes in utf-8 or latin-1.

    bz2/xz/zip are stream-decompressed and utf-16 is stream-transcoded into one scratch file.
    """
    if encoding != "utf-16" and compression in ("none", "gzip"):
        return Source(origin, origin, encoding, gzip=compression == "gzip")
    target = scratch.new_path()
    try:
        with open_decompressed(origin, compression) as src, open(target, "wb") as dst:
            if encoding == "utf-16":
                _transcode_to_utf8(src, dst, origin)
            else:
                shutil.copyfileobj(src, dst, CHUNK_BYTES)
    except DriverError:
        raise
    except _DECOMPRESS_ERRORS as exc:
        raise DriverError(
            f"{origin}: cannot decompress as {compression}: {exc}. Check the `compression` "
            "option (infer uses the file extension)."
        ) from exc
    return Source(target, origin, "utf-8" if encoding == "utf-16" else encoding)


def _transcode_to_utf8(src: BinaryIO, dst: BinaryIO, origin: Path) -> None:
    """utf-16 (BOM decides the byte order, little-endian without one) -> utf-8, chunk by chunk."""
    chunk = src.read(CHUNK_BYTES)
    has_bom = chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    decoder = codecs.getincrementaldecoder("utf-16" if has_bom else "utf-16-le")(errors="strict")
    lines = 0
    while True:
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            raise encoding_error(origin, "utf-16", lines + 1, exc.reason) from exc
        lines += text.count("\n")
        dst.write(text.encode("utf-8"))
        if not chunk:
            return
        chunk = src.read(CHUNK_BYTES)


def copy_from_offset(source: Source, offset: int, target: Path) -> None:
    """Copy the (decompressed) bytes from ``offset`` on: the data part without its preamble."""
    with source.open() as src, open(target, "wb") as dst:
        src.seek(offset)
        shutil.copyfileobj(src, dst, CHUNK_BYTES)


# -- streaming CSV scanner ------------------------------------------------------------------------
RecordKind = Literal["data", "blank", "comment"]


@dataclass(frozen=True)
class Record:
    fields: list[str]
    first_line: int  # 1-based physical line where the record starts
    last_line: int
    end_offset: int  # byte offset just after the record
    kind: RecordKind


class CsvSyntaxError(DriverError):
    """The file is not valid CSV at a known line (unterminated quote, text after a quote...)."""


class _LineFeed:
    """Feeds csv.reader one decoded physical line at a time, counting lines and bytes.

    csv.reader pulls lines lazily, so after each record ``line``/``offset`` point just past it.
    Comment lines are replaced by an empty line (and counted) so quotes in them cannot confuse
    the parser; lone CRs (old Mac files) are split into lines like DuckDB does.
    """

    def __init__(self, fh: BinaryIO, source: Source, comment: str | None, line: int,
                 offset: int) -> None:
        self._fh = fh
        self._source = source
        self._comment = comment
        self._decoder = codecs.getincrementaldecoder(source.encoding)(errors="strict")
        self._pending: list[tuple[str, int]] = []  # decoded pieces with their byte lengths
        self._at_start = offset == 0
        self.line = line - 1
        self.offset = offset
        self.comments = 0

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if not self._pending:
            self._pending = self._read_pieces()
        text, size = self._pending.pop(0)
        self.line += 1
        self.offset += size
        if self._comment and text.lstrip(" \t").startswith(self._comment):
            self.comments += 1
            return "\n"
        return text

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


def iter_records(source: Source, delimiter: str, comment: str | None, *, offset: int = 0,
                 line: int = 1) -> Iterator[Record]:
    """Parse the source (from a record boundary) the way DuckDB's strict RFC-4180 reader does."""
    with source.open() as fh:
        if offset:
            fh.seek(offset)
        feed = _LineFeed(fh, source, comment, line, offset)
        reader = csv.reader(feed, delimiter=delimiter, quotechar='"', doublequote=True,
                            strict=True)
        while True:
            first, comments = feed.line + 1, feed.comments
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
            yield Record(fields, first, max(first, feed.line), feed.offset, kind)


def strip_comment(fields: list[str], comment: str | None) -> list[str]:
    """Drop an inline comment and the fields after it (DuckDB and pandas both do this)."""
    if not comment:
        return fields
    for i, value in enumerate(fields):
        pos = value.find(comment)
        if pos >= 0:
            return [*fields[:i], value[:pos]]
    return fields


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
    is then the N-th non-blank, non-comment record, and records before it are discarded.
    """
    with contextlib.closing(iter_records(source, delimiter, comment)) as records:
        return _find_layout(records, comment=comment, skip_rows=skip_rows, header=header,
                            skip_blank_lines=skip_blank_lines)


def _find_layout(records: Iterator[Record], *, comment: str | None, skip_rows: int,
                 header: bool | int, skip_blank_lines: bool) -> Layout | None:
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
            if rec is None:
                return None
            if rec.kind != "data":
                continue
            if seen == wanted:
                header_fields = strip_comment(rec.fields, comment)
            seen += 1
    first = None
    for rec in records:
        if rec.kind == "comment" or (rec.kind == "blank" and skip_blank_lines):
            taken.append(rec)
            continue
        first = rec
        break
    if header_fields is not None:
        width = len(header_fields)
    else:
        sample = first if first is not None and first.kind == "data" else next(
            (r for r in records if r.kind == "data"), None)
        if sample is None:
            return None
        width = len(strip_comment(sample.fields, comment))
    return Layout(
        header=header_fields,
        width=width,
        data_offset=taken[-1].end_offset if taken else 0,
        data_line=taken[-1].last_line + 1 if taken else 1,
        skipped=len(taken),
        simple_skip=all(r.kind == "data" and r.first_line == r.last_line for r in taken),
        has_data=first is not None,
    )


def data_records(source: Source, layout: Layout, delimiter: str,
                 comment: str | None) -> Iterator[Record]:
    """The records after the header, with their physical line numbers."""
    return iter_records(source, delimiter, comment, offset=layout.data_offset,
                        line=layout.data_line)


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


def rewrite_blank_lines(source: Source, layout: Layout, delimiter: str, comment: str | None,
                        target: Path, *, keep: bool) -> None:
    """Re-emit the data part with blank lines made explicit, where DuckDB differs from pandas.

    ``keep`` (``skip_blank_lines: false``): pandas makes a blank line an all-NULL row, DuckDB drops
    it (with several columns), so write a row of empty fields. Not ``keep``: in a one-column file
    DuckDB reads a blank line as a NULL row where pandas skips it, so leave it out.
    """
    with open(target, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, delimiter=delimiter, quotechar='"', doublequote=True,
                            lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        for rec in data_records(source, layout, delimiter, comment):
            if rec.kind == "data":
                writer.writerow(rec.fields)
            elif rec.kind == "blank" and keep:
                writer.writerow([""] * layout.width)


# -- writing --------------------------------------------------------------------------------------
def output_compression(path: Path) -> Compression:
    """pandas ``to_csv`` infers compression from the target's extension."""
    return _SUFFIX_COMPRESSION.get(path.suffix.lower(), "none")


@contextlib.contextmanager
def open_compressed_output(path: Path, compression: Compression,
                           member_name: str) -> Iterator[BinaryIO]:
    """A binary sink that compresses like pandas (a zip holds one member named like the file)."""
    if compression == "zip":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive, \
                archive.open(member_name, "w", force_zip64=True) as member:
            yield member
        return
    openers = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}
    opener = openers.get(compression)
    with (opener(path, "wb") if opener else open(path, "wb")) as fh:
        yield fh


class TranscodeError(Exception):
    """A character the target encoding cannot represent, at a line of the output."""

    def __init__(self, char: str, line: int) -> None:
        super().__init__(f"{char!r} at line {line}")
        self.char = char
        self.line = line


def transcode_utf8(src_path: Path, sink: BinaryIO, encoding: str) -> None:
    """Re-encode a UTF-8 file chunk by chunk (utf-16 gets one BOM, like Python/pandas write)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    encoder = codecs.getincrementalencoder(encoding)(errors="strict")
    lines = 0
    with open(src_path, "rb") as src:
        while True:
            chunk = src.read(CHUNK_BYTES)
            text = decoder.decode(chunk, final=not chunk)
            try:
                sink.write(encoder.encode(text, final=not chunk))
            except UnicodeEncodeError as exc:
                line = lines + exc.object[: exc.start].count("\n") + 1
                raise TranscodeError(exc.object[exc.start], line) from exc
            lines += text.count("\n")
            if not chunk:
                return
