"""MySQL text-protocol result rows -> Arrow binary columns, without a Python call per value.

pymysql reads one packet per row through several Python calls and decodes every field on its
own; for a million rows that is most of an extract's time. :class:`RowPacketReader` instead
reads the socket in large blocks, splits the block into row packets in one tight loop (packet
header: 3-byte length, 1-byte sequence number), and then decodes each column for a whole batch
with NumPy: a row's fields are length-encoded strings (``< 0xFB``: one-byte length, ``0xFB``:
NULL, ``0xFC``/``0xFD``/``0xFE``: 2/3/8-byte length), so the field positions of column *k+1*
follow from those of column *k* for all rows at once. Each column becomes one Arrow
``binary_view`` array pointing into the block that was read (the value bytes, not copied);
DuckDB decodes and casts them while it builds the table.

What pymysql would otherwise handle is kept: packet sequence numbers are checked, an error
packet in mid-stream raises pymysql's own exception, rows over 16 MB (split into several
packets) are joined, the final EOF packet is handed to pymysql's result (warnings, more
results), and bytes read past it are given back to the connection, so the connection stays
usable (``commit``, a next result set).

No Dagster here: this module only knows pymysql's connection and result objects.
"""

from __future__ import annotations

import errno
import struct
from typing import Any, NoReturn

import numpy as np
import pyarrow as pa

_MAX_PACKET = 0xFFFFFF  # a payload of exactly this size continues in the next packet
_READ_SIZE = 1 << 20
_NULL = 0xFB
_INLINE_MAX = 12  # Arrow binary_view keeps values up to 12 bytes inside the view
_VIEW = 16  # bytes per binary_view entry
_KEEP = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype="<u8")  # the k low bytes
_MAX_BATCH_BYTES = 1 << 30  # view offsets are int32: a batch's buffer stays below 2 GB
_HEADER = struct.Struct("<I").unpack_from  # payload length (3 bytes) | sequence number << 24


class _Prefixed:
    """A read-only file that first serves ``prefix``, then reads from ``inner`` (gives back the
    bytes read past the end of a result, so pymysql finds them where it expects them)."""

    def __init__(self, prefix: bytes, inner: Any) -> None:
        self._prefix = prefix
        self._inner = inner

    def read(self, n: int = -1) -> bytes:
        if not self._prefix:
            return self._inner.read(n)
        if n < 0:
            out, self._prefix = self._prefix, b""
            return out + self._inner.read()
        out, self._prefix = self._prefix[:n], self._prefix[n:]
        if len(out) < n:
            out += self._inner.read(n - len(out))
        return out

    def read1(self, n: int = -1) -> bytes:
        if not self._prefix:
            return self._inner.read1(n)
        return self.read(min(n, len(self._prefix)) if n >= 0 else len(self._prefix))

    def close(self) -> None:
        self._inner.close()


def decode_columns(data: bytes | bytearray, starts: np.ndarray, ends: np.ndarray,
                   width: int) -> list[pa.Array]:
    """The ``width`` length-encoded fields of each row payload ``data[starts[i]:ends[i]]``, as
    one ``binary_view`` array per column (NULL where the field is 0xFB) that refers to
    ``data``: keep ``data`` unchanged while the arrays live."""
    n = len(starts)
    buf = np.frombuffer(data, dtype=np.uint8)
    pos = np.asarray(starts, dtype=np.int64)
    end = np.asarray(ends, dtype=np.int64)
    columns = []
    try:
        for _ in range(width):
            if (pos >= end).any():
                raise ValueError("a row packet ends before its last field")
            lead = buf[pos].astype(np.int64)
            length = lead.copy()
            header = np.ones(n, dtype=np.int64)
            null = lead == _NULL
            length[null] = 0
            if (lead == 0xFF).any():
                raise ValueError("a field starts with 0xFF, which is no length")
            wide = lead > _NULL
            if wide.any():
                _wide_lengths(buf, pos, lead, wide, length, header)
            begin = pos + header
            pos = begin + length
            if (pos > end).any():
                raise ValueError("a field runs past the end of its row packet")
            columns.append(_view_array(data, buf, begin, length, null))
        if (pos != end).any():
            raise ValueError("a row packet holds more fields than the result has columns")
    except IndexError:
        raise ValueError("a row packet is shorter than its fields say") from None
    return columns


def _wide_lengths(buf: np.ndarray, pos: np.ndarray, lead: np.ndarray, wide: np.ndarray,
                  length: np.ndarray, header: np.ndarray) -> None:
    """Fields with a 2-, 3- or 8-byte length (0xFC, 0xFD, 0xFE): read those lengths."""
    for code, size in ((0xFC, 2), (0xFD, 3), (0xFE, 8)):
        rows = np.nonzero(wide & (lead == code))[0]
        if not rows.size:
            continue
        value = np.zeros(rows.size, dtype=np.int64)
        for k in range(size):
            value |= buf[pos[rows] + 1 + k].astype(np.int64) << (8 * k)
        length[rows] = value
        header[rows] = 1 + size


def _view_array(data: bytes | bytearray, buf: np.ndarray, begin: np.ndarray,
                length: np.ndarray, null: np.ndarray) -> pa.Array:
    """A ``binary_view`` array over ``data`` itself: 16 bytes per value (length, then the value
    inline when it has at most 12 bytes, else its first 4 bytes, buffer 0 and its offset in
    ``data``), so the cost grows with the number of values, not with their size, and the value
    bytes are not copied."""
    n = len(begin)
    size = len(buf)
    views = np.empty((n, 2), dtype="<u8")
    if size >= _VIEW:
        # the 16 bytes that end 12 bytes into each value, as two unaligned 8-byte loads: bytes
        # 4..15 are the value's first 12 bytes (the 4 before it become the length)
        first = np.minimum(np.maximum(begin - 4, 0), size - _VIEW)
        eight = np.ndarray((size - 7,), dtype="<u8", buffer=buf, strides=(1,))
        views[:, 0] = eight[first]
        views[:, 1] = eight[first + 8]
        edge = np.nonzero(first != begin - 4)[0]  # values at the very start or end of `data`
    else:
        edge = np.arange(n)
    raw = views.view(np.uint8).reshape(n, _VIEW)
    for i in edge:
        raw[i] = _view_bytes(buf, int(begin[i]))
    # keep only the value's own bytes: word 0 holds 4 length bytes + value bytes 0..3, word 1
    # value bytes 4..11
    views[:, 0] &= _KEEP[np.minimum(length, 4) + 4]
    views[:, 1] &= _KEEP[np.minimum(np.maximum(length - 4, 0), 8)]
    words = views.view("<u4")  # (n, 4): length, prefix/inline, buffer index, offset
    words[:, 0] = length
    long = np.nonzero(length > _INLINE_MAX)[0]
    if long.size:
        words[long, 2] = 0
        words[long, 3] = begin[long]
    nulls = int(null.sum())
    validity = pa.py_buffer(np.packbits(~null, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(pa.binary_view(), n,
                                 [validity, pa.py_buffer(views), pa.py_buffer(data)],
                                 null_count=nulls)


def _view_bytes(buf: np.ndarray, begin: int) -> np.ndarray:
    """The 16 view bytes of one value whose window runs off either end of the buffer."""
    out = np.zeros(_VIEW, dtype=np.uint8)
    part = buf[begin:begin + _INLINE_MAX]
    out[4:4 + len(part)] = part
    return out


class RowPacketReader:
    """Batches of rows of an unbuffered pymysql result (``cursor._result`` of an ``SSCursor``
    right after ``execute``), as lists of ``binary_view`` arrays, one per column."""

    def __init__(self, result: Any, width: int) -> None:
        self.result = result
        self.conn = result.connection
        self.width = width
        self._data = bytearray()  # bytes read from the socket and not yet parsed

    def fetch(self, n: int) -> list[pa.Array] | None:
        """Up to ``n`` rows (fewer when a row over 16 MB or the end comes first); None at the
        end of the result."""
        if not self.result.unbuffered_active:
            return None
        conn = self.conn
        seq = conn._next_seq_id
        data = self._data
        pos = 0
        size = len(data)
        starts: list[int] = []
        keep = starts.append
        header = _HEADER
        finished = False
        while len(starts) < n and pos < _MAX_BATCH_BYTES:
            body = pos + 4
            if body > size or body + ((word := header(data, pos)[0]) & _MAX_PACKET) > size:
                data += self._read()
                size = len(data)
                continue
            end = body + (word & _MAX_PACKET)
            if word >> 24 != seq:
                self._sequence_error(word >> 24, seq)
            if end == body:
                self._protocol_error("an empty row packet")
            if end - body == _MAX_PACKET or data[body] >= 0xFE:
                # not a plain row: a row over 16 MB, the end of the result, or an error
                if end - body == _MAX_PACKET:
                    if starts:
                        break
                    conn._next_seq_id = seq
                    return self._large_row(bytes(data[pos:]))
                if data[body] == 0xFF or end - body < 9:
                    seq = (seq + 1) & 255
                    conn._next_seq_id = seq
                    self._end(bytes(data[body:end]), bytes(data[end:]))
                    finished = True
                    break
            keep(body)
            seq = (seq + 1) & 255
            pos = end
        conn._next_seq_id = seq
        row_starts = np.asarray(starts, dtype=np.int64)
        row_ends = np.empty_like(row_starts)
        if len(starts):
            row_ends[:-1] = row_starts[1:] - 4  # packets follow each other: header, payload
            row_ends[-1] = pos
        try:
            columns = decode_columns(data, row_starts, row_ends, self.width)
        except ValueError as exc:
            self._protocol_error(str(exc))
        if not finished:
            self._data = bytearray(data[pos:])  # a fresh buffer: the arrays keep `data` alive
        return columns if starts or not finished else None

    def _read(self) -> bytes:
        conn = self.conn
        if getattr(conn, "_current_timeout", None) != conn._read_timeout:
            conn._sock.settimeout(conn._read_timeout)  # as pymysql's own reads do
            if hasattr(conn, "_current_timeout"):  # pymysql >= 1.2 remembers it
                conn._current_timeout = conn._read_timeout
        from pymysql import err
        from pymysql.constants import CR

        while True:
            try:
                chunk = conn._rfile.read1(_READ_SIZE)
                break
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                self._abort()
                raise err.OperationalError(
                    CR.CR_SERVER_LOST, f"Lost connection to MySQL server during query ({exc})"
                ) from None
        if not chunk:
            self._abort()
            raise err.OperationalError(CR.CR_SERVER_LOST,
                                       "Lost connection to MySQL server during query")
        return chunk

    def _large_row(self, unread: bytes) -> list[pa.Array]:
        """One row sent as several packets (payload >= 16 MB), starting at ``unread``: joined
        by pymysql's packet reader (which checks the sequence), then decoded alone."""
        self._give_back(unread)
        packet = self.conn._read_packet()
        payload = packet.get_all_data()
        try:
            return decode_columns(payload, np.array([0]), np.array([len(payload)]), self.width)
        except ValueError as exc:
            self._protocol_error(str(exc))

    def _end(self, payload: bytes, unread: bytes) -> None:
        """The EOF packet (or an error packet) that ends the result: to pymysql, and the bytes
        after it back to the connection."""
        from pymysql.protocol import MysqlPacket

        self._give_back(unread)
        result = self.result
        packet = MysqlPacket(payload, self.conn.encoding)
        result.unbuffered_active = False
        if packet.is_error_packet():
            packet.raise_for_error()
        result._check_packet_is_eof(packet)
        result.connection = None
        result.rows = None

    def _give_back(self, unread: bytes) -> None:
        """Return unread bytes to the connection's file (pymysql reads on from there)."""
        self._data = bytearray()
        if unread:
            inner = self.conn._rfile
            if isinstance(inner, _Prefixed) and not inner._prefix:
                inner = inner._inner
            self.conn._rfile = _Prefixed(unread, inner)

    def _abort(self) -> None:
        """The result cannot be read on: the connection is closed (never drained)."""
        self.result.unbuffered_active = False
        self.conn._force_close()

    def _sequence_error(self, got: int, expected: int) -> NoReturn:
        from pymysql import err
        from pymysql.constants import CR

        self._abort()
        if got == 0:  # MariaDB sends its shutdown error with sequence number 0
            raise err.OperationalError(CR.CR_SERVER_LOST,
                                       "Lost connection to MySQL server during query")
        raise err.InternalError(f"Packet sequence number wrong - got {got} expected {expected}")

    def _protocol_error(self, what: str) -> NoReturn:
        from pymysql import err

        self._abort()
        raise err.InternalError(f"Malformed row packet from the server: {what}")
