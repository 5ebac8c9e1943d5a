"""A MySQL/MariaDB result as a stream of Arrow record batches, read by connectorx.

connectorx is a maintained Rust reader (MySQL binary protocol, values decoded in Rust straight into
Arrow arrays). It runs in a child process (:mod:`osiris_dagster.drivers.mysql.arrow_child`, which
says why) that writes Arrow IPC into spool files as fast as connectorx decodes; the step's process
reads them batch by batch, so memory stays flat whatever the row count and however slowly the
step ingests (what it has not read yet waits on disk), and the read can be abandoned at any moment
(the child is ended, its MySQL connection closes without draining the rest of the result).

What connectorx does with each MySQL type was checked against the server (connectorx 0.4.6,
MariaDB 10.11); :func:`native_ok` lists the types it returns exactly. Elsewhere it is lossy or
fails: DECIMAL becomes ``decimal128(38, 10)`` by way of rust_decimal, whose 96-bit mantissa holds
every value rescaled to 10 decimals (a scale over 10 is silently cut; a value past
2^96 / 10^10, about 7.92e18, fails the read, so no column with more than 18 integer digits is
read by it), TIME outside 00:00-24:00 and zero dates panic, JSON is re-serialised, BIT comes
as bytes, GEOMETRY and a NULL literal are not implemented. The extractor casts such columns
in the SQL it sends, or reads the result with pymysql instead
(:mod:`osiris_dagster.drivers.mysql.extractor`).

No Dagster here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO
from urllib.parse import quote

import pyarrow as pa
from pymysql.constants import FIELD_TYPE

from osiris_dagster.core.masking import scrub
from osiris_dagster.drivers.mysql.arrow_child import ERROR_MARK, SPOOL_ERROR, segment_name
from osiris_dagster.drivers.mysql.connection import MySQLParams

CHILD = Path(__file__).with_name("arrow_child.py")
# run before the query on connectorx's connection: no writes, as the pymysql path's
# START TRANSACTION READ ONLY; a slow consumer must not make the server drop the connection
BEFORE = ["SET SESSION TRANSACTION READ ONLY", "SET SESSION net_write_timeout = 600"]

# connectorx decodes these exactly (integers of every width and sign, FLOAT, DOUBLE, YEAR,
# strings in any charset (the server converts them to utf8mb4), binary strings and BLOBs, and
# DATE/DATETIME/TIMESTAMP/TIME as long as the value exists in Arrow: a zero date or a TIME
# outside one day makes it fail, which the caller turns into a re-read with pymysql)
_NATIVE = {
    FIELD_TYPE.TINY, FIELD_TYPE.SHORT, FIELD_TYPE.INT24, FIELD_TYPE.LONG, FIELD_TYPE.LONGLONG,
    FIELD_TYPE.FLOAT, FIELD_TYPE.DOUBLE, FIELD_TYPE.YEAR, FIELD_TYPE.DATE, FIELD_TYPE.DATETIME,
    FIELD_TYPE.TIMESTAMP, FIELD_TYPE.TIME, FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING,
    FIELD_TYPE.STRING, FIELD_TYPE.ENUM, FIELD_TYPE.SET, FIELD_TYPE.TINY_BLOB,
    FIELD_TYPE.MEDIUM_BLOB, FIELD_TYPE.LONG_BLOB, FIELD_TYPE.BLOB,
}
DATES = {FIELD_TYPE.DATE, FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP, FIELD_TYPE.NEWDATE}
_CX_DECIMAL_SCALE = 10  # connectorx's fixed decimal128(38, 10)
_CX_DECIMAL_DIGITS = 28  # rust_decimal's 96-bit mantissa: every 28-digit number, not all of 29
SEGMENT_BYTES = 32 * 1024 * 1024  # a spool file's size before the child starts the next


def decimal_fits(precision: int, scale: int) -> bool:
    """Whether connectorx reads every value of DECIMAL(precision, scale) exactly. It rescales
    each value to 10 decimals in rust_decimal's 96-bit mantissa, so the integer digits plus 10
    must fit 28 digits: DECIMAL(28,10) and DECIMAL(18,0) do, DECIMAL(19,0) does not (its
    9999999999999999999 fails the read: "decimal scale is not equal to expected scale")."""
    return (scale <= _CX_DECIMAL_SCALE
            and precision - scale + _CX_DECIMAL_SCALE <= _CX_DECIMAL_DIGITS)


def native_ok(type_code: int, precision: int = 0, scale: int = 0) -> bool:
    """Whether connectorx returns this MySQL result type exactly (see the module doc)."""
    if type_code in (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL):
        return decimal_fits(precision, scale)
    return type_code in _NATIVE


class ArrowReadError(Exception):
    """connectorx failed. ``kind``: ``value`` (a value it cannot convert), ``type`` (a column type
    it does not know), ``connect`` (it could not connect or log in, where pymysql could),
    ``server`` (a MySQL error, ``code`` set), ``spool`` (writing the rows not yet ingested to
    disk failed) or ``other``. The message holds no secret."""

    def __init__(self, kind: str, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message


_SERVER_ERROR = re.compile(r"ERROR (\d+) \(\w{5}\): (.*?)(?: \}|\)\)|$)")


def classify(message: str) -> ArrowReadError:
    """connectorx's error text (already masked) -> an :class:`ArrowReadError`."""
    if ("Couldn't convert the value" in message or "Could not retrieve" in message
            or "decimal scale is not equal to expected scale" in message):
        # the last: a decimal its mantissa cannot hold (:func:`decimal_fits` keeps them away)
        return ArrowReadError("value", message)
    if "not implemented" in message or "unimplemented" in message.lower():
        return ArrowReadError("type", message)
    m = _SERVER_ERROR.search(message)
    if m:
        return ArrowReadError("server", m.group(2).strip(), int(m.group(1)))
    if "timed out waiting for connection" in message:
        return ArrowReadError("connect", message)
    return ArrowReadError("other", message)


def connection_url(params: MySQLParams) -> str:
    """connectorx's connection URL: every part percent-encoded, so any character may appear in
    a password (``@ : / % ? #`` ...). It is a secret as a whole: see :func:`url_secrets`."""
    host = f"[{params.host}]" if ":" in params.host else params.host
    auth = quote(params.user, safe="")
    if params.password:
        auth += ":" + quote(params.password, safe="")
    timeout = f"?tcp_connect_timeout_ms={params.connect_timeout * 1000}"
    return f"mysql://{auth}@{host}:{params.port}/{quote(params.database, safe='')}{timeout}"


def url_secrets(params: MySQLParams) -> list[str]:
    """What a message must never show: the password as given, as it is written in the URL, and
    the URL itself."""
    if not params.password:
        return []
    return [params.password, quote(params.password, safe=""), connection_url(params)]


class ArrowRead:
    """One connectorx read in a child process, spooled through files in a private directory
    under ``spool_dir``. Use as a context manager: on leaving, the child is ended if it still
    runs (its connection closes; nothing is drained) and the spool directory is removed."""

    def __init__(self, params: MySQLParams, sql: str, batch_size: int, spool_dir: Path,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        self._params = params
        self._sql = sql
        self._batch_size = batch_size
        self._spool_parent = Path(spool_dir)
        self._segment_bytes = segment_bytes
        self._spool: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._errors: IO[bytes] | None = None
        self._reader: pa.ipc.RecordBatchStreamReader | None = None
        self._stopped = False

    def __enter__(self) -> ArrowRead:
        self._spool_parent.mkdir(parents=True, exist_ok=True)
        self._spool = Path(tempfile.mkdtemp(prefix="mysql-read-", dir=self._spool_parent))
        self._errors = tempfile.TemporaryFile()  # a file, not a pipe: it can never fill up
        self._proc = subprocess.Popen(
            [sys.executable, "-I", str(CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._errors, env=_child_env())
        if self._stopped:  # stop() came from another thread before the child existed
            self.stop()
        request = {"url": connection_url(self._params), "sql": self._sql,
                   "batch_size": self._batch_size, "before": BEFORE,
                   "spool": str(self._spool), "segment_bytes": self._segment_bytes}
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write((json.dumps(request) + "\n").encode())
            self._proc.stdin.close()
            spool = SpoolReader(self._spool, self._proc.stdout.fileno(), lambda: self._stopped)
            self._reader = pa.ipc.open_stream(spool)
        except (OSError, pa.ArrowInvalid) as exc:  # the child failed before any schema
            error = self._failure() or ArrowReadError("other", str(exc))
            self.__exit__()
            raise error from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._errors is not None:
            self._errors.close()
            self._errors = None
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None

    @property
    def schema(self) -> pa.Schema:
        assert self._reader is not None
        return self._reader.schema

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The record batches; raises :class:`ArrowReadError` if the child failed on the way
        (a failed child may have ended its stream early: the exit status decides)."""
        assert self._reader is not None and self._proc is not None
        try:
            yield from self._reader
        except (OSError, pa.ArrowInvalid) as exc:
            self._proc.wait()
            raise self._failure() or ArrowReadError("other", str(exc)) from None
        if self._proc.wait() != 0:
            raise self._failure() or ArrowReadError(
                "other", f"connectorx stopped with exit status {self._proc.returncode}")

    def _failure(self) -> ArrowReadError | None:
        """The child's reported error (masked), if it reported one."""
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=30)
        if self._errors is None:
            return None
        self._errors.seek(0)
        text = self._errors.read().decode("utf-8", "replace")
        mark = text.rfind(ERROR_MARK)
        if mark < 0:
            return None
        try:
            report = json.loads(text[mark + len(ERROR_MARK):].splitlines()[0])
            message = str(report.get("message") or report.get("type"))
        except (ValueError, IndexError):
            report, message = {}, "connectorx failed"
        message = scrub(message, url_secrets(self._params))
        if report.get("type") == SPOOL_ERROR:
            return ArrowReadError("spool", message)
        return classify(message)

    def stop(self) -> None:
        """End the child if it still runs: its MySQL connection closes, nothing is drained.
        May be called from another thread (a step told to stop), also before the child
        started or while it has not answered yet."""
        self._stopped = True
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()
        proc.wait()


class SpoolReader:
    """The child's spool files read in order as one byte stream (a file object for pyarrow).

    A read at the end of the newest segment waits for the child's next notification byte on
    ``notify_fd``; the end of that pipe (the child ended) with nothing more to read ends the
    stream. Each segment is deleted once read and its successor exists."""

    def __init__(self, directory: Path, notify_fd: int, stopped: Callable[[], bool]) -> None:
        self._directory = directory
        self._notify_fd = notify_fd
        self._stopped = stopped
        self._index = 0
        self._segment: IO[bytes] | None = None
        self._child_ended = False
        self.closed = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        want = size if size >= 0 else 1 << 20
        out = bytearray()
        while len(out) < want:
            if self._stopped():
                raise OSError("the read was stopped")
            ended = self._child_ended  # before the read: then an empty read is the end
            successor = self._path(self._index + 1).exists()  # then this segment is whole
            chunk = self._read_segment(want - len(out))
            if chunk:
                out += chunk
                if size < 0:
                    break
            elif successor:
                self._next_segment()
            elif ended:
                break
            else:
                self._wait()
        return bytes(out)

    def _path(self, index: int) -> Path:
        return self._directory / segment_name(index)

    def _read_segment(self, size: int) -> bytes:
        if self._segment is None:
            try:
                self._segment = open(self._path(self._index), "rb")  # noqa: SIM115
            except FileNotFoundError:
                return b""  # the child has not created its first segment yet
        return self._segment.read(size)

    def _next_segment(self) -> None:
        if self._segment is not None:
            self._segment.close()
            self._segment = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(self._index))
        self._index += 1

    def _wait(self) -> None:
        """Until the child writes again (one byte per batch) or ends."""
        if not os.read(self._notify_fd, 65536):
            self._child_ended = True

    def close(self) -> None:
        if self._segment is not None:
            self._segment.close()
            self._segment = None
        self.closed = True


def _child_env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["RUST_BACKTRACE"] = "0"  # a panic is reported as one line, not a stack trace
    return env
