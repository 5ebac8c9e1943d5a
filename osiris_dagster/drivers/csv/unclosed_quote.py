"""A quote left open at the end of a CSV file: found before DuckDB's single-threaded reader can turn
it into NULL.

The extractor reads a file whose quoted values hold line breaks with ``parallel=false`` (DuckDB's
parallel reader cannot pad short rows then). DuckDB 2.0.1's single-threaded reader (strict mode on)
reads a quote that is still open at the end of the file as NULL, or drops the row when the quote
starts it, if the open value lies in its last buffer (all of a file of a few MB): no error, nothing
in the rejects table, and the NULL looks like any other. The parallel reader, which does raise, is
the one that cannot be used here, and a second full read to compare row counts would cost as much
as the read itself. So the file is scanned here, once, before that read.

Why the whole data part and not just its tail: whether a byte is inside a quoted value depends on
every quote before it (a quoted value may hold line breaks, delimiters and lines that look like
records), so no point near the end is known to be a record boundary without scanning up to it.
The scan keeps only the quote state, and Python code runs once per chunk, never per record or
per quote: first a vectorised count of the quotes that proves most files closed
(:func:`_closes_by_toggling`), else a regular expression that steps over whole quoted values and
quote-free text (:func:`_scan`). Its rules are those of DuckDB's strict reader: a ``"`` opens a
value only at the start of a field or after one space there, ``""`` inside it is a quote, a
``"`` after the closing quote and spaces opens the value again (``"a" "b"`` is ``a b``), a ``"``
elsewhere in an unquoted field is text, and outside quotes the comment character comments out
the rest of the line.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import NamedTuple

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.csv.error_lines import locate_line
from osiris_dagster.drivers.csv.source import Source

SCAN_CHUNK_BYTES = 8 << 20
# Files smaller than this (on disk) go straight to the exact scan: it takes a few milliseconds
# there, less than importing numpy for the vectorised count (~75 ms, paid by every run).
VECTOR_SCAN_MIN_BYTES = 1 << 20
_VALUE_TEXT = rb'(?:[^"]++|"")*+'  # text inside a quoted value, up to its closing quote
_QUOTED_VALUE = b'"' + _VALUE_TEXT + b'"'
_INSIDE = re.compile(_VALUE_TEXT)  # the rest of a quoted value, up to its closing quote
# after a closing quote: each value a quote after it and spaces opens again and closes
_REOPENED = re.compile(rb"(?: *+" + _QUOTED_VALUE + rb")*+")
_SPACES = re.compile(rb" *+")
_QUOTE, _LF, _CR, _SPACE = 0x22, 0x0A, 0x0D, 0x20


@lru_cache(maxsize=16)
def _outside(delimiter: bytes, comment: bytes | None) -> re.Pattern[bytes]:
    """Text outside quoted values: as far as it goes, it stops only at a quote that opens a value
    not closed in the text scanned."""
    d = re.escape(delimiter)
    # where a quote opens a value: at a field start, or after one space there (DuckDB's rule:
    # ' "a"' is the value a, '  "a"' and '\t"a"' are text)
    starts = [rb"(?<=" + d + rb")", rb"(?<=" + d + rb" )", rb"(?<=\n)", rb"(?<=\n )", rb"(?<=\r)",
              rb"(?<=\r )", rb"\A", rb"(?<=\A )"]
    not_start = b"".join(b"(?<!" + a[4:] for a in starts if a.startswith(b"(?<="))
    start, quoted = rb"(?:" + rb"|".join(starts) + rb")", _QUOTED_VALUE
    stops = b'"' + (re.escape(comment) if comment else b"")
    parts = [
        rb"[^" + stops + rb"]++",
        start + quoted + rb'(?![ "])',  # a quoted value (the quickest test first)
        # one opened again by each quote after its closing quote and spaces, and not once more by
        # one the text scanned does not close
        start + quoted + rb"(?: *+" + quoted + rb')*+(?! *+")',
        not_start + rb'(?<=[\s\S])"',  # a quote inside an unquoted field: text
    ]
    if comment:
        parts.append(re.escape(comment) + rb"[^\r\n]*+")
    return re.compile(rb"(?:" + rb"|".join(parts) + rb")*+")


def find_unclosed_quote(source: Source, offset: int, delimiter: str,
                        comment: str | None) -> int | None:
    """Byte position (in the source) of the quote that opens a value the file never closes,
    scanning from ``offset`` (a record boundary: where the data starts); None if every quoted
    value is closed. Text after a closing quote (``"a"b``) does not end the scan: DuckDB's read
    fails on it where its record ends, but a value opened before that and never closed keeps the
    record open, and DuckDB's single-threaded reader then loses it without an error."""
    sep = delimiter.encode(source.encoding)
    if comment is None and len(sep) == 1 and \
            source.path.stat().st_size >= VECTOR_SCAN_MIN_BYTES and \
            _closes_by_toggling(source, offset, sep[0]):
        return None
    return _scan(source, offset, sep, comment.encode(source.encoding) if comment else None)


def _chunks(source: Source, offset: int) -> Iterator[tuple[int, bytes]]:
    """The data part from ``offset`` in pieces of about :data:`SCAN_CHUNK_BYTES`, each with its
    position and cut after a line break, so each starts at a field start or inside a value."""
    with source.open() as fh:
        fh.seek(offset)
        start, carry = offset, b""
        if offset == 0 and source.encoding == "utf-8":
            carry = fh.read(len(codecs.BOM_UTF8))
            if carry == codecs.BOM_UTF8:  # DuckDB skips it: the first field starts after it
                start, carry = len(carry), b""
        while data := fh.read(SCAN_CHUNK_BYTES):
            text = carry + data
            cut = max(text.rfind(b"\n"), text.rfind(b"\r")) + 1
            if cut:
                yield start, text[:cut]
                start, carry = start + cut, text[cut:]
            else:
                carry = text
        if carry:
            yield start, carry


def _closes_by_toggling(source: Source, offset: int, sep: int) -> bool:
    """True when reading every quote as a toggle (open, close, open...) ends outside quotes and
    agrees with DuckDB's rules all along; False when that cannot tell (then :func:`_scan` does).
    The quickest test, vectorised (:func:`_toggled_openers`)."""
    inside = False
    for chunk in _toggled_openers(source, offset, sep):
        if chunk is None:
            return False
        inside = chunk.inside
    return not inside


def spaced_opening_quote(source: Source, offset: int, delimiter: str,
                         comment: str | None) -> bool | None:
    """Whether DuckDB opens a quoted value after one space at a field's start anywhere in the
    data part (`` "y"``: DuckDB reads ``y``, pandas and csv.reader the text `` "y"``); None
    when the quote toggling of :func:`_toggled_openers` cannot tell (a quote inside an
    unquoted field comes first, a comment may hold quotes, or the toggles end inside a value),
    and for a file under :data:`VECTOR_SCAN_MIN_BYTES` (importing numpy costs more than the
    copy that decides then)."""
    sep = delimiter.encode(source.encoding)
    if len(sep) != 1 or comment is not None or \
            source.path.stat().st_size < VECTOR_SCAN_MIN_BYTES:
        return None
    inside = False
    for chunk in _toggled_openers(source, offset, sep[0]):
        if chunk is None:
            return None
        if chunk.spaced:
            return True
        inside = chunk.inside
    return None if inside else False


class _ToggledChunk(NamedTuple):
    spaced: bool  # an opening quote after one space at a field's start (DuckDB's rule)
    inside: bool  # the chunk ends inside a quoted value


def _toggled_openers(source: Source, offset: int, sep: int) -> Iterator[_ToggledChunk | None]:
    """Each chunk of the data part read with every quote as a toggle (open, close, open...);
    None, and no more chunks, at the first quote where that disagrees with DuckDB's rules.

    Vectorised: it counts quotes and checks the byte before each one the toggles make an
    opening quote, so Python runs once per chunk whatever the number of quoted values. It
    agrees with DuckDB's state machine up to the first quote the two read differently, which
    can only be a quote inside an unquoted field (DuckDB: text; toggles: an opening quote with
    no field start, or one space after it, before it): that check fails there. ``""`` inside
    a value toggles twice, and the opening toggle then has a quote before it: it passes."""
    import numpy as np

    inside = False
    for _, chunk in _chunks(source, offset):
        data = np.frombuffer(chunk, dtype=np.uint8)
        quotes = np.flatnonzero(data == _QUOTE)
        openers = quotes[1::2] if inside else quotes[::2]
        openers = openers[openers > 0]  # one at 0 follows a line break or starts the data
        before = data[openers - 1]
        other = (before != sep) & (before != _LF) & (before != _CR) & (before != _QUOTE)
        spaced = other & (before == _SPACE)  # one space at a field start: DuckDB's rule
        if (other & ~spaced).any():
            yield None
            return
        at = openers[spaced]
        two = data[np.maximum(at - 2, 0)]
        if not ((at == 1) | (two == sep) | (two == _LF) | (two == _CR)).all():
            yield None  # '  "a"' or 'x "a"': text to DuckDB, an opener to the toggles
            return
        inside ^= bool(len(quotes) % 2)
        yield _ToggledChunk(bool(len(at)), inside)


def _scan(source: Source, offset: int, sep: bytes, comment: bytes | None) -> int | None:
    """The exact scan behind :func:`find_unclosed_quote` (DuckDB's rules, comments included)."""
    outside = _outside(sep, comment)
    inside, opened = False, 0
    for start, chunk in _chunks(source, offset):
        pos = 0
        while pos < len(chunk):
            if inside:
                pos = _INSIDE.match(chunk, pos).end()
                if pos == len(chunk):
                    break
                # after the closing quote and any spaces a quote opens the value again (DuckDB
                # reads '"a" "b"' as 'a b'): those closed in this chunk at once, then one it
                # does not close is followed from inside; anything else is outside the value
                pos = _REOPENED.match(chunk, pos + 1).end()
                after = _SPACES.match(chunk, pos).end()
                inside = after < len(chunk) and chunk[after] == _QUOTE
                if inside:
                    opened, pos = start + after, after + 1
            else:
                pos = outside.match(chunk, pos).end()
                if pos == len(chunk):
                    break
                # a quote opening a value that the chunk does not close, at first or once a
                # quote after its closing quote opens it again: followed from inside
                inside, opened, pos = True, start + pos, pos + 1
    return opened if inside else None


def unclosed_quote_error(source: Source, position: int) -> DriverError:
    """The step's error for the quote at byte ``position``: the user's file and physical line."""
    line = locate_line(source, position)[0]
    return DriverError(
        f"{source.origin}: line {line}: a quoted value starts here and its closing quote never "
        "comes (the file ends inside it). Add the closing \" where the value ends; a \" that is "
        "part of a value must be doubled (\"\"). The quote character is always \" (the "
        "extractor has no quoting option)."
    )
