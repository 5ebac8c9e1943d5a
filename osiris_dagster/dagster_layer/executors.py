"""Which Dagster executor runs a pipeline's steps, chosen from the environment.

A DuckDB session file has one writer, so the `duckdb` store keeps every step in one process. The
`ducklake` store lets steps of one session write from many processes or machines, so there the
steps run in parallel: Dagster's multiprocess executor by default, or Celery workers (through
`dagster-celery`) when `OSIRIS_EXECUTOR=celery`. We build no scheduler of our own.

Settings:
- `OSIRIS_SESSION_STORE`: `duckdb` (default) or `ducklake`.
- `OSIRIS_EXECUTOR`: `in_process`, `multiprocess` or `celery`; unset, `multiprocess` for the
  ducklake store (`in_process` when its catalog is a DuckDB file, which one process at a time
  can open) and `in_process` for duckdb.
- `OSIRIS_MAX_CONCURRENT`: steps at once under the multiprocess executor (default: CPU count).
- `OSIRIS_MULTIPROCESS_START_METHOD`: how the multiprocess executor starts a step's process:
  `forkserver` (the default where the platform has it) or `spawn` (Dagster's own default).
  Under `spawn` every step's process imports Dagster and its instance storage anew (~1 s per
  step); a fork server imports them once per run and forks each step's process from it, and
  the processes it forks die with it (`core/fork_server.py`). Its children get the environment
  the run's process had when its first step started: a long-lived Python process that changes
  `os.environ` between `execute_job` calls should use `spawn`. Run config (`execution: config:
  start_method: ...`, `max_concurrent: ...`) wins over both.
- `OSIRIS_CELERY_BROKER` (required for celery: `amqp://` RabbitMQ or `redis://`),
  `OSIRIS_CELERY_BACKEND` (default `rpc://`: results come back as messages through the broker,
  which works with both brokers and is dagster-celery's own default), `OSIRIS_CELERY_QUEUE`
  (default `dagster`, the queue `dagster-celery worker start` listens on without `-q`).
The workers import the definitions too (each step's task carries a code pointer), so they need
the same OSIRIS_* settings, and their `-y` file the same broker and backend.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

import dagster as dg

from osiris_dagster.core.errors import OsirisError
from osiris_dagster.core.settings import SESSION_STORES

EXECUTORS = ("in_process", "multiprocess", "celery")
DEFAULT_EXECUTOR = {"duckdb": "in_process", "ducklake": "multiprocess"}
START_METHODS = ("forkserver", "spawn")
# What a fork server imports once per run, so that each step's process starts with it imported:
# Dagster (its own default preload) and the storage modules a step's process imports to open the
# instance (SQLite's, or dagster-postgres' where installed: a missing one is skipped), plus
# fork_server, which makes the processes the server forks die with it. Nothing that imports
# DuckDB (DuckDB 1.5 starts a thread when imported, and a forked child has a thread's memory
# but not the thread) and nothing that starts a thread or opens a file or connection when
# imported (tests/test_executors_env.py checks), so forking after them is safe.
FORKSERVER_PRELOAD = ("dagster._core.executor.multiprocess", "dagster",
                      "dagster._core.instance.factory", "dagster._core.execution.api",
                      "dagster._core.storage.sqlite_storage", "dagster_postgres",
                      "osiris_dagster.core.fork_server")
DEFAULT_CELERY_QUEUE = "dagster"  # dagster-celery's own default, on both sides
DEFAULT_CELERY_BACKEND = "rpc://"  # dagster-celery's default; checked with RabbitMQ and Redis
CELERY_INSTALL_HINT = "pip install 'osiris-dagster[celery]'"


class ExecutorSettingError(OsirisError):
    """An OSIRIS_* executor setting is unknown, missing, or does not fit the session store."""


def executor_from_env(environ: Mapping[str, str] | None = None,
                      session_store: str | None = None,
                      ducklake_catalog: str | None = None) -> dg.ExecutorDefinition:
    """The executor the settings ask for (see the module docstring), or ExecutorSettingError
    naming the setting to change. Reads os.environ when `environ` is None; ``session_store``
    and ``ducklake_catalog`` (given to build_definitions or the component) win over
    OSIRIS_SESSION_STORE and OSIRIS_DUCKLAKE_CATALOG."""
    from osiris_dagster.runtime.stores.ducklake_file import is_file_catalog

    env = os.environ if environ is None else environ
    store = session_store or _choice(env, "OSIRIS_SESSION_STORE", SESSION_STORES, "duckdb")
    catalog = (ducklake_catalog or _setting(env, "OSIRIS_DUCKLAKE_CATALOG") or ""
               ).removeprefix("ducklake:")
    one_process = store == "ducklake" and bool(catalog) and is_file_catalog(catalog)
    name = _choice(env, "OSIRIS_EXECUTOR", EXECUTORS,
                   "in_process" if one_process else DEFAULT_EXECUTOR[store])
    if one_process and name != "in_process":
        raise ExecutorSettingError(
            f"OSIRIS_EXECUTOR={name} runs steps in several processes, but the DuckLake catalog "
            f"{catalog} is a DuckDB file, which one process at a time can open: use a "
            "PostgreSQL catalog (OSIRIS_DUCKLAKE_CATALOG='postgres:dbname=... host=... "
            "user=...') to run steps in parallel, or OSIRIS_EXECUTOR=in_process")
    if store == "duckdb" and name != "in_process":
        raise ExecutorSettingError(
            f"OSIRIS_EXECUTOR={name} runs steps in several processes, but a DuckDB session file "
            "has one writer (OSIRIS_SESSION_STORE=duckdb): set OSIRIS_SESSION_STORE=ducklake "
            "to run steps in parallel, or OSIRIS_EXECUTOR=in_process")
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return _multiprocess(env)
    return _celery(env)


def _setting(env: Mapping[str, str], key: str) -> str | None:
    """A variable's value, stripped; empty counts as unset (as `KEY=` in a .env file means)."""
    value = (env.get(key) or "").strip()
    return value or None


def _choice(env: Mapping[str, str], key: str, valid: tuple[str, ...], default: str) -> str:
    value = _setting(env, key)
    if value is None:
        return default
    if value.lower() not in valid:
        raise ExecutorSettingError(
            f"{key}={value!r} is not one of: {', '.join(valid)}")
    return value.lower()


def _multiprocess(env: Mapping[str, str]) -> dg.ExecutorDefinition:
    """Dagster's multiprocess executor, with our defaults for what the run config leaves out:
    OSIRIS_MAX_CONCURRENT steps at once (unset: as many as CPUs, Dagster's own default) and
    steps started from a fork server (OSIRIS_MULTIPROCESS_START_METHOD)."""
    limit = _max_concurrent(env)
    start = _start_method(env)
    start_config = {"preload_modules": list(FORKSERVER_PRELOAD)} if start == "forkserver" else {}
    if start == "forkserver":
        atexit.unregister(_stop_fork_server)  # once per process, however many pipelines
        atexit.register(_stop_fork_server)

    def with_defaults(config: dict[str, Any]) -> dict[str, Any]:
        config = dict(config)
        if config.get("max_concurrent") is None and limit is not None:
            config["max_concurrent"] = limit
        config.setdefault("start_method", {start: start_config})
        return config

    return dg.multiprocess_executor.configured(
        with_defaults, name="multiprocess",
        config_schema=dg.multiprocess_executor.config_schema.as_field())


def _stop_fork_server() -> None:
    """At exit of a run's process: stop the fork server it started for its steps, if any, and
    wait for it (at most a few seconds).

    The server exits on its own once the run's process is gone, but then nobody waits for it: it
    is left to the init process, and one that does not reap (a container whose first process is
    not an init) keeps a zombie per run. Python's own way to stop it (``_stop``, private, in
    3.8-3.14) closes the pipe the server watches and waits for it; that wait runs in a thread
    given a few seconds, so an exit never hangs on it. (multiprocessing's resource tracker is
    left as Dagster leaves it under spawn too: it waits for every process that inherited its
    pipe, a step's own forks included, so waiting for it could hold the exit indefinitely.)"""
    forkserver = sys.modules.get("multiprocessing.forkserver")  # imported by starting one
    server = getattr(forkserver, "_forkserver", None)
    if getattr(server, "_forkserver_pid", None) is None:
        return  # not started, or started by another process

    def stop() -> None:
        with contextlib.suppress(Exception):  # exiting anyway: never fail the process' exit
            server._stop()

    stopper = threading.Thread(target=stop, name="osiris-stop-fork-server", daemon=True)
    stopper.start()
    stopper.join(timeout=5)


def _max_concurrent(env: Mapping[str, str]) -> int | None:
    raw = _setting(env, "OSIRIS_MAX_CONCURRENT")
    if raw is None:
        return None
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ExecutorSettingError(
            f"OSIRIS_MAX_CONCURRENT={raw!r} must be a whole number of steps, 1 or more")
    return limit


def _start_method(env: Mapping[str, str]) -> str:
    available = multiprocessing.get_all_start_methods()
    default = "forkserver" if "forkserver" in available else "spawn"
    start = _choice(env, "OSIRIS_MULTIPROCESS_START_METHOD", START_METHODS, default)
    if start not in available:
        raise ExecutorSettingError(
            f"OSIRIS_MULTIPROCESS_START_METHOD={start} is not available on this platform "
            f"(it has: {', '.join(available)}); use spawn")
    return start


def _celery(env: Mapping[str, str]) -> dg.ExecutorDefinition:
    """dagster-celery's executor, imported only here: the default install does not carry it.
    Workers must listen on the same broker and queue (`dagster-celery worker start -A
    dagster_celery.app -y <file with the same broker/backend> -q <queue>`)."""
    broker = _setting(env, "OSIRIS_CELERY_BROKER")
    if broker is None:
        raise ExecutorSettingError(
            "OSIRIS_EXECUTOR=celery needs OSIRIS_CELERY_BROKER, the broker URL the Celery "
            "workers listen on (e.g. amqp://guest:guest@rabbitmq:5672// or "
            "redis://redis:6379/0)")
    try:
        from dagster_celery import celery_executor
    except ImportError as exc:
        raise ExecutorSettingError(
            f"OSIRIS_EXECUTOR=celery needs dagster-celery, which is not installed ({exc}): "
            f"{CELERY_INSTALL_HINT}") from exc
    queue = _setting(env, "OSIRIS_CELERY_QUEUE") or DEFAULT_CELERY_QUEUE
    config = {
        "broker": broker,
        "backend": _setting(env, "OSIRIS_CELERY_BACKEND") or DEFAULT_CELERY_BACKEND,
        "config_source": {"task_default_queue": queue},
    }
    return celery_executor.configured(config, name="celery")
