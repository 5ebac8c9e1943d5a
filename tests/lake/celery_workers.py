"""Real Celery workers for tests: `dagster-celery worker start`, each in its own process group.

`dagster-celery worker start -A dagster_celery.app -y <yaml> -q <queue>` is dagster-celery's
documented way: it writes the yaml's broker/backend into a `dagster_celery_config` module under
$DAGSTER_HOME/dagster_celery/config/ and runs `celery -A dagster_celery.app worker` with that on
PYTHONPATH. So each worker is a group of three processes (the wrapper, Celery's main process and
its pool child, where the steps run); stopping the group stops all three. The workers find a
job's code through the code pointer that travels with each task (a file path, or a module on
their sys.path), so they need no `-i`; they need osiris_dagster installed and DAGSTER_HOME set.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from celery import Celery
from kombu import Connection, Exchange, Queue

BIN = Path(sys.executable).parent  # `dagster-celery` and the `celery` it spawns live here


@dataclass
class Workers:
    """What a test may check: worker names (as Celery reports them, before '@host') and the
    process group of each worker (any process running a step carries it as os.getpgid(0))."""

    names: list[str]
    pgids: list[int]
    logs: list[Path]
    processes: list[subprocess.Popen[bytes]] = field(repr=False)

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {log.name}:\n{log.read_text(errors='replace')[-chars:]}"
                         for log in self.logs if log.exists())


def check_broker(broker: str, timeout: float = 5.0) -> None:
    """Raise at once, naming the URL, when the broker does not answer (a worker would otherwise
    retry forever and the test would only see a timeout)."""
    try:
        with Connection(broker, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:
        raise RuntimeError(f"Celery broker {broker} is unreachable: {exc!r}") from exc


def delete_queue(broker: str, queue: str) -> None:
    """Remove a test's queue and what the broker keeps for it: on RabbitMQ the queue and its
    exchange (Celery names the exchange of a `-q` queue after it); on Redis the binding table,
    which kombu removes only for a binding it knows, hence the declaration first."""
    with Connection(broker, connect_timeout=5) as conn:
        channel = conn.default_channel
        if conn.transport.driver_type == "redis":
            bound = Queue(queue, Exchange(queue, "direct"), routing_key=queue)(channel)
            bound.declare()
            bound.delete()
        else:
            channel.queue_delete(queue)
            channel.exchange_delete(queue)


def worker_yaml(path: Path, broker: str, backend: str) -> Path:
    """The `-y` file: the execution config block a job's celery executor gets, plus what the
    README tells users to give their workers: a worker busy with one step must not reserve the
    next one while another worker is idle (seen on Redis: a ready step waited two minutes
    behind a step that was blocked)."""
    config: dict[str, object] = {"broker": broker, "backend": backend,
                                 "config_source": no_prefetch_settings(broker)}
    path.write_text(yaml.safe_dump({"execution": {"config": config}}))
    return path


def no_prefetch_settings(broker: str) -> dict[str, object]:
    """Celery acknowledges a task when it starts, so a one-step-at-a-time worker would take
    another from the broker while busy. Redis: Celery 5.7's worker_disable_prefetch. RabbitMQ:
    acknowledge at the end, one message in flight (RabbitMQ redelivers an unacknowledged step
    only when its worker's connection dies)."""
    if broker.startswith(("redis://", "rediss://")):
        return {"worker_disable_prefetch": True}
    return {"task_acks_late": True, "worker_prefetch_multiplier": 1}


@contextlib.contextmanager
def celery_workers(broker: str, env: Mapping[str, str], workdir: Path, *, count: int = 2,
                   queue: str = "dagster", backend: str = "rpc://", concurrency: int = 1,
                   ready_timeout: float = 60.0, remove_queue: bool = False
                   ) -> Iterator[Workers]:
    """Start `count` workers on `broker` listening on `queue`, with `env` (which must hold
    DAGSTER_HOME), logs and config in `workdir`; yield once every worker answers a ping; stop
    them all on the way out, and with `remove_queue` delete the queue from the broker (a test's
    own queue: RabbitMQ would keep it). `concurrency=1` makes each worker one step at a time,
    so two steps at once means two workers."""
    assert env.get("DAGSTER_HOME"), "the workers need DAGSTER_HOME (dagster-celery writes there)"
    check_broker(broker)
    workdir.mkdir(parents=True, exist_ok=True)
    config = worker_yaml(workdir / f"celery-{queue}.yaml", broker, backend)
    full_env = {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', os.environ['PATH'])}"}
    token = uuid.uuid4().hex[:8]
    workers = Workers(names=[f"osiris-{token}-{i}" for i in range(count)], pgids=[], logs=[],
                      processes=[])
    try:
        for name in workers.names:
            log = workdir / f"{name}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                     "-y", str(config), "-q", queue, "-n", name, "--",
                     f"--concurrency={concurrency}", "--without-gossip", "--without-mingle"],
                    cwd=workdir, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True)
            workers.processes.append(proc)
            workers.pgids.append(proc.pid)  # a new session: its leader's pid is the group id
            workers.logs.append(log)
        _wait_ready(workers, broker, ready_timeout)
        yield workers
    finally:
        _stop(workers)
        if remove_queue:
            delete_queue(broker, queue)


def _wait_ready(workers: Workers, broker: str, timeout: float) -> None:
    """Until every worker answers a broadcast ping (it consumes from the broker by then)."""
    app = Celery("osiris-test-ping", broker=broker)
    deadline = time.monotonic() + timeout
    try:
        while True:
            dead = [p.args for p in workers.processes if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a Celery worker exited while starting: {dead}\n"
                                   f"{workers.log_tail()}")
            replies = app.control.ping(timeout=1.0) or []
            answered = {node.split("@", 1)[0] for reply in replies for node in reply}
            if answered.issuperset(workers.names):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Celery workers not ready after {timeout} s (answered: "
                                   f"{sorted(answered)})\n{workers.log_tail()}")
    finally:
        app.close()


def _stop(workers: Workers, grace: float = 20.0) -> None:
    """SIGTERM each group (Celery's warm shutdown), SIGKILL what is left after `grace`."""
    for pgid in workers.pgids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in workers.processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))  # reap our own child
    for pgid in workers.pgids:
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _group_alive(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
    for proc in workers.processes:
        proc.wait(timeout=10)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
