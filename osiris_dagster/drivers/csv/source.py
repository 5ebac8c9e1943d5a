"""The bytes DuckDB reads for a CSV file: the user's file as it is, or a scratch copy of it,
decompressed (bz2, xz, zip: codecs DuckDB lacks) and transcoded to UTF-8 (utf-16 with either byte
order, which DuckDB's reader mis-reads; its BOM decides the order). Everything streams: memory
use does not grow with the file."""

from __future__ import annotations

import codecs
import gzip
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.csv.compression import (
    DECOMPRESS_ERRORS,
    Compression,
    open_decompressed,
)
from osiris_dagster.drivers.csv.scratch import Scratch

CHUNK_BYTES = 1 << 20


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


def encoding_error(origin: Path, encoding: str, line: int | None, reason: str) -> DriverError:
    where = f"line {line}" if line is not None else "the file"
    return DriverError(
        f"{origin}: {where} is not valid {encoding} ({reason}). Set the step's `encoding` option "
        "to the file's real encoding (utf-8, latin-1 or utf-16), or re-save the file as UTF-8."
    )


def prepare_source(origin: Path, compression: Compression, encoding: str,
                   scratch: Scratch) -> Source:
    """Give DuckDB something it reads natively: plain or gzip bytes in utf-8 or latin-1.

    bz2/xz/zip are stream-decompressed and utf-16 is stream-transcoded into one scratch file.
    ascii is read as utf-8 once no byte is past 127 (pandas refuses such a byte too); latin-1
    with a byte DuckDB's latin-1 reader refuses (0x80-0x9f) is transcoded to utf-8.
    """
    if encoding == "ascii":
        source = prepare_source(origin, compression, "utf-8", scratch)
        _require_ascii(source)
        return source
    if encoding == "utf-16" or compression not in ("none", "gzip"):
        source = _copy(origin, compression, encoding, scratch)
    else:
        source = Source(origin, origin, encoding, gzip=compression == "gzip")
    if encoding == "latin-1" and _has_c1_controls(source):
        return _copy(source.path, "gzip" if source.gzip else "none", "latin-1-to-utf-8",
                     scratch, origin)
    return source


def _copy(path: Path, compression: Compression, encoding: str, scratch: Scratch,
          origin: Path | None = None) -> Source:
    """A scratch copy of ``path``, decompressed, and transcoded to utf-8 from utf-16 or (as
    ``latin-1-to-utf-8``) latin-1."""
    origin = origin or path
    target = scratch.new_path()
    try:
        with open_decompressed(path, compression) as src, open(target, "wb") as dst:
            if encoding == "utf-16":
                _transcode_to_utf8(src, dst, origin)
            elif encoding == "latin-1-to-utf-8":
                _latin1_to_utf8(src, dst)
            else:
                shutil.copyfileobj(src, dst, CHUNK_BYTES)
    except DriverError:
        raise
    except DECOMPRESS_ERRORS as exc:
        raise DriverError(
            f"{origin}: cannot decompress as {compression}: {exc}. Check the `compression` "
            "option (infer uses the file extension)."
        ) from exc
    transcoded = encoding in ("utf-16", "latin-1-to-utf-8")
    return Source(target, origin, "utf-8" if transcoded else encoding)


_NOT_ASCII = re.compile(rb"[\x80-\xff]")
_C1_CONTROLS = re.compile(rb"[\x80-\x9f]")


def _first_match(source: Source, pattern: re.Pattern[bytes]) -> int | None:
    """The byte position of the first match of the one-byte ``pattern`` (a C regex scan,
    ~1 GB/s), or None."""
    position = 0
    with source.open() as fh:
        while chunk := fh.read(CHUNK_BYTES):
            found = pattern.search(chunk)
            if found is not None:
                return position + found.start()
            position += len(chunk)
    return None


def _has_c1_controls(source: Source) -> bool:
    """Whether the file holds a byte 0x80-0x9f: latin-1 maps each to a C1 control character
    (pandas reads them), DuckDB's latin-1 reader refuses the file ("not latin-1 encoded"); a
    Windows-1252 file labelled latin-1 (its euro sign, its curly quotes) has them."""
    return _first_match(source, _C1_CONTROLS) is not None


def _latin1_to_utf8(src: BinaryIO, dst: BinaryIO) -> None:
    """latin-1 -> utf-8, chunk by chunk: every byte is one character, so chunks split
    anywhere."""
    while chunk := src.read(CHUNK_BYTES):
        dst.write(chunk.decode("latin-1").encode("utf-8"))


def _require_ascii(source: Source) -> None:
    """Fail naming the line of the first byte past 127."""
    from osiris_dagster.drivers.csv.error_lines import locate_line  # (it imports this module)

    position = _first_match(source, _NOT_ASCII)
    if position is None:
        return
    with source.open() as fh:
        fh.seek(position)
        byte = fh.read(1)[0]
    raise encoding_error(source.origin, "ascii", locate_line(source, position)[0],
                         f"byte 0x{byte:02x} is past 127")


def _transcode_to_utf8(src: BinaryIO, dst: BinaryIO, origin: Path) -> None:
    """utf-16 (its BOM decides the byte order) -> utf-8, chunk by chunk. Without a BOM the
    file fails, as in pandas: read as UTF-16, a UTF-8 or latin-1 file turned into one line of
    CJK-looking characters and no rows, and the run succeeded."""
    chunk = src.read(CHUNK_BYTES)
    if chunk and not chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DriverError(
            f"{origin}: the file does not start with a UTF-16 byte order mark (BOM), so it is "
            "not read as `encoding: utf-16` (pandas refuses it too). If it is UTF-8 or latin-1, "
            "set `encoding` to that; a UTF-16 file without a BOM must be saved with one (or as "
            "UTF-8).")
    decoder = codecs.getincrementaldecoder("utf-16")(errors="strict")
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
