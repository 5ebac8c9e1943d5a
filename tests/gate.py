"""A local GraphQL endpoint that answers only when the test opens it.

A pipeline step (`graphql.extractor`) that calls it is provably still running until `open()`:
tests use it to act *during* a run (append to a file the run has read, clean sessions while the
run is going) on a condition instead of a sleep."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = json.dumps({"data": {"items": [{"ok": 1}]}}).encode()
MAX_HOLD_SECONDS = 300  # the extractor's own maximum timeout: never hang a test forever


class Gate:
    def __init__(self) -> None:
        self.hit = threading.Event()  # a step has called (and is waiting)
        self.opened = threading.Event()
        self.calls = 0
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                gate.calls += 1
                gate.hit.set()
                gate.opened.wait(MAX_HOLD_SECONDS)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(ANSWER)))
                self.end_headers()
                self.wfile.write(ANSWER)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/graphql"

    def open(self) -> None:
        self.opened.set()

    def close(self) -> None:
        self.opened.set()
        self.server.shutdown()
        self.server.server_close()


def gate_step(step_id: str, url: str, needs: list[str]) -> str:
    """OML for a step that waits at the gate (indented as an item of `steps:`)."""
    return (f"  - id: {step_id}\n    component: graphql.extractor\n    mode: read\n"
            f"    needs: [{', '.join(needs)}]\n"
            f"    config: {{endpoint: \"{url}\", query: \"{{ items {{ ok }} }}\", "
            f"data_path: data.items, timeout: 300, max_retries: 0}}\n")
