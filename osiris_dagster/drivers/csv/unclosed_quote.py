"""A quote left open at the end of a CSV file: found before DuckDB's single-threaded reader can
turn it into NULL.

The extractor reads a file whose quoted values hold line breaks with ``parallel=false`` (DuckDB's
parallel reader cannot pad short rows then). DuckDB 2.0.1's single-threaded reader, strict mode
or not, reads a quote that is still open at the end of the file as NULL (or drops the row) when
the open value lies in its last buffer: no error, nothing in the rejects table, and the NULL
looks like any other. The parallel reader, which does raise, is the one that cannot be used here,
and a second full read to compare row counts would cost as much as the read itself. So the file
is scanned here, once, before that read.

Why the whole data part and not just its tail: whether a byte is inside a quoted value depends on
every quote before it (a quoted value may hold line breaks, delimiters and lines that look like
records), so no point near the end is known to be a record boundary without scanning up to it.
The scan keeps only the quote state, at C speed: a regular expression steps over whole quoted
values and quote-free text, so Python code runs once per chunk, not per record or per quote.
Its rules are DuckDB's strict RFC 4180 ones: a ``"`` opens a value only at the start of a field,
``""`` inside it is a quote, a ``"`` inside an unquoted field is text, and outside quotes the
comment character comments out the rest of the line.
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.csv.error_lines import locate_line
from osiris_dagster.drivers.csv.source import Source

SCAN_CHUNK_BYTES = 8 << 20
_INSIDE = re.compile(rb'(?:[^"]++|"")*+')  # the rest of a quoted value, up to its closing quote


@lru_cache(maxsize=16)
def _outside(delimiter: bytes, comment: bytes | None) -> re.Pattern[bytes]:
    """Text outside quoted values: as far as it goes, it stops only at a quote that opens a value
    not closed in the text scanned."""
    d = re.escape(delimiter)
    field_start = rb"(?:(?<=" + d + rb")|(?<=\n)|(?<=\r)|\A)"
    stops = b'"' + (re.escape(comment) if comment else b"")
    parts = [
        rb"[^" + stops + rb"]++",
        field_start + rb'"(?:[^"]++|"")*+"',  # a whole quoted value
        rb"(?<!" + d + rb")(?<!\n)(?<!\r)(?<=[\s\S])" + rb'"',  # a quote inside an unquoted field
    ]
    if comment:
        parts.append(re.escape(comment) + rb"[^\r\n]*+")
    return re.compile(rb"(?:" + rb"|".join(parts) + rb")*+")


def find_unclosed_quote(source: Source, offset: int, delimiter: str,
                        comment: str | None) -> int | None:
    """Byte position (in the source) of the quote that opens a value the file never closes,
    scanning from ``offset`` (a record boundary: where the data starts); None if every quoted
    value is closed."""
    outside = _outside(delimiter.encode(source.encoding),
                       comment.encode(source.encoding) if comment else None)
    inside, opened = False, 0
    with source.open() as fh:
        fh.seek(offset)
        start, carry = offset, b""
        if offset == 0 and source.encoding == "utf-8":
            carry = fh.read(len(codecs.BOM_UTF8))
            if carry == codecs.BOM_UTF8:  # DuckDB skips it: the first field starts after it
                start, carry = len(carry), b""
        while True:
            data = fh.read(SCAN_CHUNK_BYTES)
            text = carry + data
            # cut after the last line break, so a chunk starts at a field start or inside a value
            cut = max(text.rfind(b"\n"), text.rfind(b"\r")) + 1 if data else len(text)
            if data and cut == 0:
                carry = text
                continue
            chunk, carry = text[:cut], text[cut:]
            pos = 0
            while pos < len(chunk):
                if inside:
                    pos = _INSIDE.match(chunk, pos).end()
                    if pos == len(chunk):
                        break
                    inside, pos = False, pos + 1  # the closing quote
                else:
                    pos = outside.match(chunk, pos).end()
                    if pos < len(chunk):  # a quote opening a value that this chunk does not close
                        inside, opened, pos = True, start + pos, pos + 1
            start += len(chunk)
            if not data:
                return opened if inside else None


def unclosed_quote_error(source: Source, position: int) -> DriverError:
    line = locate_line(source, position)[0]
    return DriverError(
        f"{source.origin}: line {line}: a quoted value starts here and its closing quote never "
        "comes (the file ends inside it). Add the closing \" where the value ends; a \" that is "
        "part of a value must be doubled (\"\"). The extractor always reads \" as the quote "
        "character, so this has no option to change."
    )
