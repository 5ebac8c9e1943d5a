"""The vectorised decoder of MySQL text-protocol row packets (osiris_dagster.drivers.mysql_wire).

The payloads are built here byte by byte, following the protocol's length-encoded strings; the
same code is exercised against the real server in tests/databases/test_mysql_wire.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from osiris_dagster.drivers.mysql_wire import decode_columns


def lenenc(value: bytes | None) -> bytes:
    """One field as the server sends it."""
    if value is None:
        return b"\xfb"
    n = len(value)
    if n < 251:
        head = bytes([n])
    elif n < 1 << 16:
        head = b"\xfc" + n.to_bytes(2, "little")
    elif n < 1 << 24:
        head = b"\xfd" + n.to_bytes(3, "little")
    else:
        head = b"\xfe" + n.to_bytes(8, "little")
    return head + value


def packets(rows: list[list[bytes | None]], prefix: bytes = b"",
            suffix: bytes = b"") -> tuple[bytes, np.ndarray, np.ndarray]:
    """Rows as consecutive packets (4-byte headers between the payloads), plus where each
    payload starts and ends."""
    out = bytearray(prefix)
    starts, ends = [], []
    for seq, row in enumerate(rows):
        payload = b"".join(lenenc(v) for v in row)
        out += len(payload).to_bytes(3, "little") + bytes([seq % 256])
        starts.append(len(out))
        out += payload
        ends.append(len(out))
    out += suffix
    return bytes(out), np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)


def decoded(rows: list[list[bytes | None]], **kw: bytes) -> list[list[bytes | None]]:
    data, starts, ends = packets(rows, **kw)
    width = len(rows[0])
    columns = decode_columns(data, starts, ends, width)
    assert all(str(c.type) == "binary_view" for c in columns)
    return [list(r) for r in zip(*(c.to_pylist() for c in columns), strict=True)]


def test_every_length_encoding_and_null_round_trips() -> None:
    values = [b"", b"a", b"x" * 12, b"y" * 13, b"z" * 250, b"w" * 251, b"v" * 65535,
              b"u" * 65536, b"t" * 70000, "é😀 unicode".encode(), None]
    rows = [[v, str(i).encode(), None if i % 3 else b"k"] for i, v in enumerate(values)]
    assert decoded(rows) == rows


def test_an_eight_byte_length_field_is_read() -> None:
    """A row over 16 MiB arrives split into packets; the reader joins them and decodes the
    joined payload on its own."""
    big = b"b" * (1 << 24)  # the 0xFE (8-byte) length form
    payload = lenenc(b"1") + lenenc(big) + lenenc(None)
    columns = decode_columns(payload, np.array([0]), np.array([len(payload)]), 3)
    assert [c.to_pylist() for c in columns] == [[b"1"], [big], [None]]


def test_values_at_the_very_end_of_the_buffer_and_tiny_buffers() -> None:
    rows = [[b"abc", b"de"], [b"0123456789", b"f"]]
    assert decoded(rows) == rows  # the last values sit within 12 bytes of the end
    assert decoded([[b"q"]]) == [[b"q"]]  # a whole buffer shorter than one inline view
    assert decoded(rows, prefix=b"\x00" * 7, suffix=b"\x05\x00\x00\x09") == rows


def test_all_nulls_and_all_empty_columns() -> None:
    rows = [[None, b""], [None, b""], [None, b""]]
    data, starts, ends = packets(rows)
    nulls, empties = decode_columns(data, starts, ends, 2)
    assert nulls.null_count == 3 and nulls.to_pylist() == [None] * 3
    assert empties.null_count == 0 and empties.to_pylist() == [b""] * 3


def test_no_rows_gives_empty_columns() -> None:
    columns = decode_columns(b"", np.array([], dtype=np.int64), np.array([], dtype=np.int64), 3)
    assert [len(c) for c in columns] == [0, 0, 0]


@pytest.mark.parametrize(("payload", "width", "message"), [
    (lenenc(b"abc"), 2, "ends before its last field"),
    (lenenc(b"abc") + lenenc(b"d"), 1, "more fields than the result has columns"),
    (b"\x05ab", 1, "runs past the end of its row packet"),
    (b"\xfc\x10", 1, "runs past the end|shorter than its fields say"),
    (b"\xff\x00", 1, "starts with 0xFF"),
])
def test_malformed_payloads_are_rejected(payload: bytes, width: int, message: str) -> None:
    data = len(payload).to_bytes(3, "little") + b"\x00" + payload
    with pytest.raises(ValueError, match=message):
        decode_columns(data, np.array([4]), np.array([len(data)]), width)
