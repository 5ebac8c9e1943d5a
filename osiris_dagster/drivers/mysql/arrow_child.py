"""The child process of :mod:`osiris_dagster.drivers.mysql.arrow`: runs one connectorx
``arrow_stream`` read and writes the record batches as an Arrow IPC stream into spool files.

Why a process of its own: connectorx holds the GIL while it waits for the next batch (and for up
to 30 s while a connection attempt fails), so in the step's process a slow query would freeze
every other thread, Dagster's termination handling and the step's time limit included. Here the
parent only reads files and a pipe (without the GIL), and stopping the read is ending this
process, which closes the MySQL connection at once instead of draining the rest of the result.

Why spool files and not a pipe: connectorx decodes rows on a thread of its own into an unbounded
queue, whatever the reader of the batches does. When the step ingests slower than MySQL sends
(one core, a busy machine), batches that wait in a pipe pile up in this process's memory: 600 MB
for 10M narrow rows. They are written to disk instead, as fast as they come, in segments of
``segment_bytes`` named ``part-000000``, ``part-000001``, ... in the parent's spool directory. A
segment is complete once the next one exists; the parent deletes each one it has read, so while
it keeps up only a segment or two are on disk. After each batch one byte goes to stdout (never
blocking: a full pipe already tells the parent to look again); stdout closes when this process
ends.

Run by file path (``python -I arrow_child.py``), not as part of the package, so it imports
only pyarrow and connectorx (the package would import Dagster). The request (connection URL with
the password, SQL, batch size, statements to run first, spool directory and segment size)
arrives as one JSON line on stdin, never on the command line or in the environment. A failure is
reported as the last stderr line: ``ERROR_MARK`` followed by JSON ``{"type": ..., "message":
...}``; the parent masks secrets.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any

ERROR_MARK = "\x1eosiris-cx-error:"


SPOOL_ERROR = "SpoolError"  # the type reported when writing a spool file failed


class SpoolError(OSError):
    """Writing the spool failed (a full disk, a quota): not connectorx's or MySQL's doing."""


def segment_name(index: int) -> str:
    return f"part-{index:06d}"


class SegmentSink:
    """A write-only file object over numbered segment files: a segment past ``limit`` bytes is
    closed and the next one created (only then: its existence says the previous is whole)."""

    def __init__(self, directory: str, limit: int) -> None:
        self._directory = directory
        self._limit = limit
        self._index = 0
        self._size = 0
        self._fd = self._create(0)
        self.closed = False
        self.failed: SpoolError | None = None

    def _create(self, index: int) -> int:
        return os.open(os.path.join(self._directory, segment_name(index)),
                       os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def write(self, data: Any) -> int:
        if self.failed is not None:
            raise self.failed  # the first failure, not what writing on after it gives
        try:
            return self._write(memoryview(data).cast("B"))
        except OSError as exc:
            self.failed = SpoolError(exc.errno,
                                     f"writing {self._directory}: {exc.strerror or exc}")
            raise self.failed from None

    def _write(self, view: memoryview) -> int:
        if self._size >= self._limit:
            os.close(self._fd)
            self._fd = -1
            self._index += 1
            self._fd = self._create(self._index)
            self._size = 0
        written = 0
        while written < len(view):
            written += os.write(self._fd, view[written:])
        self._size += written
        return written

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            if self._fd >= 0:
                os.close(self._fd)
            self.closed = True


def notify() -> None:
    """One byte on stdout: a batch was written. A full pipe is skipped, not waited for."""
    with contextlib.suppress(BlockingIOError):
        os.write(1, b"\n")


def main() -> int:
    try:
        request = json.loads(sys.stdin.readline())
        import connectorx as cx
        import pyarrow as pa

        os.set_blocking(1, False)
        reader = cx.read_sql(request["url"], request["sql"], return_type="arrow_stream",
                             batch_size=int(request["batch_size"]),
                             pre_execution_query=request.get("before") or None)
        sink = SegmentSink(request["spool"], int(request["segment_bytes"]))
        with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), reader.schema) as writer:
            notify()  # the schema is there
            for batch in reader:
                writer.write_batch(batch)
                notify()
        sink.close()
    except BrokenPipeError:
        return 0  # the parent stopped reading (a `limit` reached, or the step was stopped)
    except BaseException as exc:  # noqa: BLE001 - connectorx raises a BaseException on panics
        kind = SPOOL_ERROR if isinstance(exc, SpoolError) or SPOOL_ERROR in str(exc) \
            else type(exc).__name__  # (pyarrow may hand back the sink's error wrapped)
        sys.stderr.write("\n" + ERROR_MARK + json.dumps(
            {"type": kind, "message": str(exc)}) + "\n")
        sys.stderr.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
