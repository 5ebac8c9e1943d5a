"""The compression codecs of CSV files, both ways, with pandas' rules: which codec a file uses
(inferred from its extension) and streams that decompress a source or compress a target."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal

from osiris_dagster.core.errors import DriverError

Compression = Literal["none", "gzip", "bz2", "zip", "xz", "zstd"]
_SUFFIX_COMPRESSION: dict[str, Compression] = {
    ".gz": "gzip", ".bz2": "bz2", ".zip": "zip", ".xz": "xz", ".zst": "zstd",
}
_STREAM_OPENERS = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}  # zip: one member
# what a corrupt or mislabelled compressed file raises while it is read
DECOMPRESS_ERRORS = (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile, zlib.error)


def infer_compression(path: Path, setting: str) -> Compression:
    """pandas semantics: 'infer' looks at the file extension; anything else is taken as given."""
    if setting == "infer":
        found = _SUFFIX_COMPRESSION.get(path.suffix.lower(), "none")
        if found == "zstd":  # pandas reads it (with the zstandard package); Python alone cannot
            raise DriverError(f"{path}: a Zstandard (.zst) file cannot be read here; decompress "
                              "it first (`zstd -d`), or compress it with gzip, bz2, xz or zip")
        return found
    if setting in ("none", "gzip", "bz2", "zip", "xz"):
        return setting  # type: ignore[return-value]
    raise DriverError(f"unsupported compression {setting!r}: use infer, gzip, bz2, zip or xz")


def output_compression(path: Path) -> Compression:
    """pandas ``to_csv`` infers compression from the target's extension (``.zst`` too: DuckDB
    writes it, in UTF-8 only)."""
    return _SUFFIX_COMPRESSION.get(path.suffix.lower(), "none")


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
    opener = _STREAM_OPENERS.get(compression)
    with (opener(path, "rb") if opener else open(path, "rb")) as fh:
        yield fh


@contextlib.contextmanager
def open_compressed_output(path: Path, compression: Compression,
                           member_name: str) -> Iterator[BinaryIO]:
    """A binary sink that compresses like pandas (a zip holds one member named like the file)."""
    if compression == "zip":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive, \
                archive.open(member_name, "w", force_zip64=True) as member:
            yield member
        return
    opener = _STREAM_OPENERS.get(compression)
    with (opener(path, "wb") if opener else open(path, "wb")) as fh:
        yield fh
