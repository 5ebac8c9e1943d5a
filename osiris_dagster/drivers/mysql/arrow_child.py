"""The child process of :mod:`osiris_dagster.drivers.mysql.arrow`: runs one connectorx
``arrow_stream`` read and writes
the record batches to stdout as an Arrow IPC stream.

Why a process of its own: connectorx holds the GIL while it waits for the next batch (and for up
to 30 s while a connection attempt fails), so in the step's process a slow query would freeze
every other thread, Dagster's termination handling and the step's time limit included. Here the
parent only reads a pipe (without the GIL), and stopping the read is ending this process, which
closes the MySQL connection at once instead of draining the rest of the result.

Run by file path (``python -I arrow_child.py``), not as part of the package, so it imports
only pyarrow and connectorx (the package would import Dagster). The request (connection URL with
the password, SQL, batch size, statements to run first) arrives as one JSON line on stdin, never
on the command line or in the environment. A failure is reported as the last stderr line:
``ERROR_MARK`` followed by JSON ``{"type": ..., "message": ...}``; the parent masks secrets.
"""

from __future__ import annotations

import json
import sys

ERROR_MARK = "\x1eosiris-cx-error:"


def main() -> int:
    try:
        request = json.loads(sys.stdin.readline())
        import connectorx as cx
        import pyarrow as pa

        reader = cx.read_sql(request["url"], request["sql"], return_type="arrow_stream",
                             batch_size=int(request["batch_size"]),
                             pre_execution_query=request.get("before") or None)
        sink = pa.output_stream(sys.stdout.buffer)
        with pa.ipc.new_stream(sink, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
        sink.flush()
    except BrokenPipeError:
        return 0  # the parent stopped reading (a `limit` reached, or the step was stopped)
    except BaseException as exc:  # noqa: BLE001 - connectorx raises a BaseException on panics
        sys.stderr.write("\n" + ERROR_MARK + json.dumps(
            {"type": type(exc).__name__, "message": str(exc)}) + "\n")
        sys.stderr.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
