"""The scratch copy of a CSV file's data part that DuckDB reads where reading the file itself
would differ from pandas: after a preamble DuckDB's ``skip`` cannot step over exactly (blank or
comment lines, quoted line breaks), or with blank lines rewritten where DuckDB and pandas treat
them differently."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from osiris_dagster.drivers.csv.records import Layout, data_records
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


def rewrite_blank_lines(source: Source, layout: Layout, delimiter: str, comment: str | None,
                        target: Path, *, keep: bool) -> None:
    """Re-emit the data part with blank lines made explicit, where DuckDB differs from pandas.

    ``keep`` (``skip_blank_lines: false``): pandas makes a blank line an all-NULL row, DuckDB drops
    it (with several columns), so write a row of empty fields. Not ``keep``: in a one-column file
    DuckDB reads a blank line as a NULL row where pandas skips it, so leave it out; and a line of
    only spaces and tabs, which DuckDB reads as a row and pandas skips, too.
    """
    with open(target, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, delimiter=delimiter, quotechar='"', doublequote=True,
                            lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        for rec in data_records(source, layout, delimiter, comment):
            if rec.kind == "data" or (rec.kind == "space" and keep):
                writer.writerow(rec.fields)
            elif rec.kind == "blank" and keep:
                writer.writerow([""] * layout.width)
