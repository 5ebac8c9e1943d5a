"""Small helpers shared by the Dagster-level tests."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg

from osiris_dagster import build_definitions


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def defs_for(pipeline: Path, sessions: Path, connections: Path | None = None) -> dg.Definitions:
    return build_definitions([pipeline], sessions_dir=str(sessions),
                             connections_file=str(connections) if connections else None)


def run_job(defs: dg.Definitions, job_name: str, instance: dg.DagsterInstance,
            selection: list[dg.AssetKey] | None = None, params: dict[str, Any] | None = None,
            profile: str | None = None, res_key: str | None = None
            ) -> dg.ExecuteInProcessResult:
    run_config: dict[str, Any] = {}
    cfg: dict[str, Any] = {}
    if params:
        cfg["params"] = params
    if profile:
        cfg["profile"] = profile
    if cfg:
        run_config["resources"] = {res_key or f"osiris_params__{job_name}": {"config": cfg}}
    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, asset_selection=selection, run_config=run_config,
        raise_on_error=False)


def table_rows(value: dg.TableMetadataValue) -> list[dict[str, Any]]:
    """The records of a table metadata value (a preview, a check sample) as dicts."""
    return [dict(r.data) for r in value.records]


def table_columns(value: dg.TableMetadataValue) -> list[tuple[str, str]]:
    return [(c.name, c.type) for c in value.schema.columns]


def materialisations(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """asset key (user string) -> metadata of its materialisation in this run."""
    out = {}
    for ev in result.get_asset_materialization_events():
        mat = ev.event_specific_data.materialization
        out[mat.asset_key.to_user_string()] = dict(mat.metadata)
    return out


def events(session_dir: Path) -> list[dict[str, Any]]:
    path = session_dir / "logs" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def metrics(session_dir: Path) -> list[dict[str, Any]]:
    path = session_dir / "logs" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def failure_description(result: dg.ExecuteInProcessResult) -> str:
    for ev in result.all_events:
        if ev.is_step_failure and ev.step_failure_data is not None:
            data = ev.step_failure_data.user_failure_data
            if data is not None and data.description:
                return data.description
            return ev.step_failure_data.error.to_string()
    return ""


def gone_pid() -> int:
    """The id of a process that has exited (what a process killed mid-write leaves in the names
    of its temporary files)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def lock_is_held(tmp: Path) -> bool:
    """Whether some open file holds the flock of the temporary file ``tmp``'s lock file
    (atomic_files.owned_temporary); one of this process counts too: a flock belongs to an
    open file, not to a process."""
    import fcntl

    from osiris_dagster.core.atomic_files import LOCK_SUFFIX

    lock = Path(f"{tmp}{LOCK_SUFFIX}")
    if not lock.exists():
        return False
    with open(lock, "r+b") as fh:  # read-write: NFS's flock needs it
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def as_another_user(action: Any) -> bool:
    """Whether ``action()`` returns true when run as user and group 65534 (nobody), in a
    forked child of this process (a Python of its own could not read this one's library as
    that user). Needs root."""
    import os

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            code = 0 if action() else 2
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1] == 0



def init_home(home: Path) -> None:
    """What the README's "One Dagster home" block does: `osiris-dagster init-home` with
    ``DAGSTER_HOME=home``, in a process of its own."""
    import os
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "osiris_dagster.cli", "init-home"], check=True,
                   env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True)


JsonAnswer = Callable[[str, Mapping[str, str]], tuple[int, Any]]


@contextlib.contextmanager
def json_endpoint(answer: JsonAnswer) -> Iterator[str]:
    """A local HTTP server answering each POST with ``answer(path, headers)`` -> (status,
    JSON body); yields its base URL (``http://127.0.0.1:PORT``)."""
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, body = answer(self.path, self.headers)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
