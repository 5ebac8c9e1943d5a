"""Which Dagster executor runs a pipeline's steps, chosen from the environment.

A DuckDB session file has one writer, so the `duckdb` store keeps every step in one process. The
`ducklake` store lets steps of one session write from many processes or machines, so there the
steps run in parallel: Dagster's multiprocess executor by default, or Celery workers (through
`dagster-celery`) when `OSIRIS_EXECUTOR=celery`. We build no scheduler of our own.

Settings:
- `OSIRIS_SESSION_STORE`: `duckdb` (default) or `ducklake`.
- `OSIRIS_EXECUTOR`: `in_process`, `multiprocess` or `celery`; unset, `multiprocess` for the
  ducklake store and `in_process` for duckdb.
- `OSIRIS_MAX_CONCURRENT`: steps at once under the multiprocess executor (default: CPU count).
- `OSIRIS_CELERY_BROKER` (required for celery: `amqp://` RabbitMQ or `redis://`),
  `OSIRIS_CELERY_BACKEND` (default `rpc://`: results come back as messages through the broker,
  which works with both brokers and is dagster-celery's own default), `OSIRIS_CELERY_QUEUE`
  (default `dagster`, the queue `dagster-celery worker start` listens on without `-q`).
The workers import the definitions too (each step's task carries a code pointer), so they need
the same OSIRIS_* settings, and their `-y` file the same broker and backend.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

from osiris_dagster.core.errors import OsirisError
from osiris_dagster.core.settings import SESSION_STORES

EXECUTORS = ("in_process", "multiprocess", "celery")
DEFAULT_EXECUTOR = {"duckdb": "in_process", "ducklake": "multiprocess"}
DEFAULT_CELERY_QUEUE = "dagster"  # dagster-celery's own default, on both sides
DEFAULT_CELERY_BACKEND = "rpc://"  # dagster-celery's default; checked with RabbitMQ and Redis
CELERY_INSTALL_HINT = "pip install 'osiris-dagster[celery]'"


class ExecutorSettingError(OsirisError):
    """An OSIRIS_* executor setting is unknown, missing, or does not fit the session store."""


def executor_from_env(environ: Mapping[str, str] | None = None,
                      session_store: str | None = None) -> dg.ExecutorDefinition:
    """The executor the settings ask for (see the module docstring), or ExecutorSettingError
    naming the setting to change. Reads os.environ when `environ` is None; ``session_store``
    (given to build_definitions or the component) wins over OSIRIS_SESSION_STORE."""
    env = os.environ if environ is None else environ
    store = session_store or _choice(env, "OSIRIS_SESSION_STORE", SESSION_STORES, "duckdb")
    name = _choice(env, "OSIRIS_EXECUTOR", EXECUTORS, DEFAULT_EXECUTOR[store])
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
    """Dagster's multiprocess executor; without OSIRIS_MAX_CONCURRENT it runs as many steps at
    once as there are CPUs (Dagster's own default)."""
    raw = _setting(env, "OSIRIS_MAX_CONCURRENT")
    if raw is None:
        return dg.multiprocess_executor
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ExecutorSettingError(
            f"OSIRIS_MAX_CONCURRENT={raw!r} must be a whole number of steps, 1 or more")
    return dg.multiprocess_executor.configured({"max_concurrent": limit},
                                               name="multiprocess")


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
