"""A toy job of two independent ops, loaded by file path both by `dagster job execute` and by
the Celery workers (a code pointer to this file travels with each step's task).

Each op writes where and when it ran (pid, process group, start/end) to `out_dir`, and waits
until the other op has started: the run can only succeed if the two ops ran at the same time,
so in two processes. The executor comes from the OSIRIS_* environment, which the workers share.
"""

# No `from __future__ import annotations`: Dagster reads the ops' config annotation at import.
import json
import os
import time
from pathlib import Path

import dagster as dg

from osiris_dagster.dagster_layer.executors import executor_from_env

OTHER = {"left": "right", "right": "left"}


class Record(dg.Config):
    out_dir: str
    wait_seconds: float = 60.0  # for the other op to start; a bound, not a pause


def _record(name: str, config: Record) -> None:
    out = Path(config.out_dir)
    started = time.time()
    (out / f"{name}.started").write_text(str(started))
    deadline = started + config.wait_seconds
    while not (out / f"{OTHER[name]}.started").exists():
        if time.time() > deadline:
            raise RuntimeError(f"op '{OTHER[name]}' did not start within {config.wait_seconds} s "
                               f"of '{name}': the two ops did not run at the same time")
        time.sleep(0.05)
    record = {"pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0),
              "start": started, "end": time.time()}
    (out / f"{name}.json").write_text(json.dumps(record))


@dg.op
def left(config: Record) -> None:
    _record("left", config)


@dg.op
def right(config: Record) -> None:
    _record("right", config)


@dg.op
def noop() -> None:
    """A step that does nothing: what it costs is the executor's overhead per step."""


@dg.job(executor_def=executor_from_env())
def two_branches() -> None:
    left()
    right()


@dg.op(ins={"after": dg.In(dg.Nothing)})
def noop_after() -> None:
    """A step that waits for the one before: a chain shows the cost of each step in turn."""


@dg.job(executor_def=executor_from_env())
def one_noop() -> None:
    noop()


@dg.job(executor_def=executor_from_env())
def four_in_a_row() -> None:
    noop_after.alias("fourth")(noop_after.alias("third")(noop_after.alias("second")(noop())))


defs = dg.Definitions(jobs=[two_branches, one_noop, four_in_a_row])
