"""Re-encoding the CSV writer's UTF-8 output (what DuckDB writes) into the step's `encoding`,
streaming, with the line of a character the target encoding cannot represent."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import BinaryIO

from osiris_dagster.drivers.csv.source import CHUNK_BYTES


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
