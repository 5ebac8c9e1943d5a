"""OSIRIS_EXECUTOR=celery runs steps on real Celery workers, with RabbitMQ and with Redis.

Two `dagster-celery` workers (one step at a time each) on the machine's broker, the Dagster
instance in PostgreSQL, and a toy job of two independent ops run with `dagster job execute`
as a user would: the ops must run at the same time in the two workers' processes. Each test
has its own queue, so messages left by an earlier run cannot reach it. Needs the lake
virtualenv (dagster-celery, dagster-postgres) and fails loudly without a broker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from osiris_dagster.dagster_layer.executors import executor_from_env
from tests.test_executors_env import resolved_config

from .celery_workers import celery_workers
from .dagster_home import postgres_dagster_home

BROKERS = {
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
    "redis": "redis://127.0.0.1:6379/11",  # a database number no other test uses
}
TOY_JOBS = Path(__file__).with_name("toy_jobs.py")
DAGSTER = Path(sys.executable).parent / "dagster"


@pytest.fixture
def dagster_home(tmp_path: Path) -> Iterator[Path]:
    with postgres_dagster_home(tmp_path / "dagster_home") as home:
        yield home


def test_celery_setting_configures_dagster_celery() -> None:
    lake = {"OSIRIS_SESSION_STORE": "ducklake", "OSIRIS_EXECUTOR": "celery",
            "OSIRIS_CELERY_BROKER": BROKERS["redis"]}
    executor = executor_from_env(lake)
    assert executor.name == "celery"
    config = resolved_config(executor)
    assert config["broker"] == BROKERS["redis"]
    assert config["backend"] == "rpc://"
    assert config["config_source"] == {"task_default_queue": "dagster"}

    executor = executor_from_env({**lake, "OSIRIS_CELERY_BACKEND": "redis://127.0.0.1:6379/12",
                                  "OSIRIS_CELERY_QUEUE": "osiris"})
    config = resolved_config(executor)
    assert config["backend"] == "redis://127.0.0.1:6379/12"
    assert config["config_source"] == {"task_default_queue": "osiris"}


@pytest.mark.parametrize("broker", sorted(BROKERS))
def test_two_ops_run_at_once_in_two_celery_workers(broker: str, tmp_path: Path,
                                                     dagster_home: Path) -> None:
    url = BROKERS[broker]
    queue = f"osiris-test-{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_")}
    env.update({"DAGSTER_HOME": str(dagster_home), "OSIRIS_SESSION_STORE": "ducklake",
                "OSIRIS_EXECUTOR": "celery", "OSIRIS_CELERY_BROKER": url,
                "OSIRIS_CELERY_QUEUE": queue})
    out = tmp_path / "out"
    out.mkdir()
    run_config = tmp_path / "run.yaml"
    run_config.write_text(json.dumps(
        {"ops": {op: {"config": {"out_dir": str(out)}} for op in ("left", "right")}}))

    with celery_workers(url, env, tmp_path / "workers", queue=queue,
                        remove_queue=True) as workers:
        started = time.monotonic()
        run = subprocess.run([str(DAGSTER), "job", "execute", "-f", str(TOY_JOBS),
                              "-j", "two_branches", "-c", str(run_config)],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        seconds = time.monotonic() - started
        logs = workers.log_tail()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + logs
    assert f'to queue "{queue}"' in run.stdout + run.stderr

    left, right = (json.loads((out / f"{op}.json").read_text()) for op in ("left", "right"))
    assert left["pid"] != right["pid"]
    assert sorted([left["pgid"], right["pgid"]]) == sorted(workers.pgids), (left, right)
    assert max(left["start"], right["start"]) < min(left["end"], right["end"])  # overlap

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        (record,) = instance.get_runs()
        assert record.status == dg.DagsterRunStatus.SUCCESS
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    print(f"{broker}: run of two parallel steps took {seconds:.1f} s (CLI start included)")


@pytest.mark.parametrize("url", ["amqp://guest:guest@127.0.0.1:1//", "redis://127.0.0.1:1/11"])
def test_workers_refuse_to_start_without_a_broker(url: str, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=f"Celery broker {url} is unreachable"), \
            celery_workers(url, {"DAGSTER_HOME": str(tmp_path)}, tmp_path / "workers"):
        pass
    assert not (tmp_path / "workers").exists()  # nothing was started
