"""A MySQL/MariaDB result as a stream of Arrow record batches, read by connectorx.

connectorx is a maintained Rust reader (MySQL binary protocol, values decoded in Rust straight into
Arrow arrays). It runs in a child process (:mod:`osiris_dagster.drivers.mysql.arrow_child`, which
says why) that writes Arrow IPC to a pipe; the step's process reads that pipe batch by batch, so
memory stays flat whatever the row count and the read can be abandoned at any moment (the child is
ended, its MySQL connection closes without draining the rest of the result).

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
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import quote

import pyarrow as pa
from pymysql.constants import FIELD_TYPE

from osiris_dagster.core.masking import scrub
from osiris_dagster.drivers.mysql.arrow_child import ERROR_MARK
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
    ``server`` (a MySQL error, ``code`` set) or ``other``. The message holds no secret."""

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
    """One connectorx read in a child process. Use as a context manager: on leaving, the child
    is ended if it still runs (its connection closes; nothing is drained)."""

    def __init__(self, params: MySQLParams, sql: str, batch_size: int) -> None:
        self._params = params
        self._sql = sql
        self._batch_size = batch_size
        self._proc: subprocess.Popen[bytes] | None = None
        self._errors: IO[bytes] | None = None
        self._reader: pa.ipc.RecordBatchStreamReader | None = None
        self._stopped = False

    def __enter__(self) -> ArrowRead:
        self._errors = tempfile.TemporaryFile()  # a file, not a pipe: it can never fill up
        self._proc = subprocess.Popen(
            [sys.executable, "-I", str(CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._errors, env=_child_env())
        if self._stopped:  # stop() came from another thread before the child existed
            self.stop()
        request = {"url": connection_url(self._params), "sql": self._sql,
                   "batch_size": self._batch_size, "before": BEFORE}
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write((json.dumps(request) + "\n").encode())
            self._proc.stdin.close()
            self._reader = pa.ipc.open_stream(self._proc.stdout)
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
            message = "connectorx failed"
        return classify(scrub(message, url_secrets(self._params)))

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


def _child_env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["RUST_BACKTRACE"] = "0"  # a panic is reported as one line, not a stack trace
    return env
