"""executor_from_env: the executor follows the session store, and a setting that cannot work
fails with a message naming it. Nothing here needs dagster-celery
(the working celery case is in tests/lake/test_celery_toy.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from osiris_dagster.core.errors import OsirisError
from osiris_dagster.dagster_layer.executors import (
    FORKSERVER_PRELOAD,
    ExecutorSettingError,
    executor_from_env,
)

LAKE = {"OSIRIS_SESSION_STORE": "ducklake"}
REPO = Path(__file__).resolve().parents[1]


def resolved_config(executor: dg.ExecutorDefinition,
                    run_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config a `.configured(...)` executor will run with, given the run config's
    `execution: config:` part."""
    result = executor.config_schema.resolve_config({"config": run_config or {}})
    assert result.success, result.errors
    value = result.value
    return value.get("config", value)


def is_multiprocess(executor: dg.ExecutorDefinition) -> bool:
    return executor.name == "multiprocess" and \
        executor.executor_creation_fn is dg.multiprocess_executor.executor_creation_fn


def test_default_is_in_process_for_the_duckdb_store() -> None:
    assert executor_from_env({}) is dg.in_process_executor
    assert executor_from_env({"OSIRIS_SESSION_STORE": "duckdb"}) is dg.in_process_executor
    assert executor_from_env({"OSIRIS_EXECUTOR": "in_process"}) is dg.in_process_executor


def test_default_is_multiprocess_for_the_ducklake_store() -> None:
    executor = executor_from_env(LAKE)
    assert is_multiprocess(executor)
    config = resolved_config(executor)
    assert config.get("max_concurrent") is None  # Dagster's own default: as many as CPUs
    # each step's process forks from a server that imported Dagster and our modules once
    assert config["start_method"] == {"forkserver": {"preload_modules":
                                                     list(FORKSERVER_PRELOAD)}}


def test_a_duckdb_file_lake_catalog_runs_in_one_process() -> None:
    """Several step processes cannot share a DuckDB file (one process at a time opens it): the
    lake's default multiprocess executor failed or passed by timing."""
    for catalog in ("/srv/lake/catalog.duckdb", "ducklake:duckdb:/srv/lake/c.duckdb"):
        env = {**LAKE, "OSIRIS_DUCKLAKE_CATALOG": catalog}
        assert executor_from_env(env) is dg.in_process_executor
        with pytest.raises(ExecutorSettingError, match=r"is a DuckDB file, which one process "
                                                      r"at a time can open: use a PostgreSQL"):
            executor_from_env({**env, "OSIRIS_EXECUTOR": "multiprocess"})
    postgres = {**LAKE, "OSIRIS_DUCKLAKE_CATALOG": "postgres:dbname=lake host=db"}
    assert is_multiprocess(executor_from_env(postgres))
    assert executor_from_env(LAKE, ducklake_catalog="/x/c.duckdb") is dg.in_process_executor


def test_start_method_spawn_is_dagsters_own() -> None:
    executor = executor_from_env({**LAKE, "OSIRIS_MULTIPROCESS_START_METHOD": " Spawn "})
    assert resolved_config(executor)["start_method"] == {"spawn": {}}


def test_unknown_start_method_lists_the_valid_ones() -> None:
    with pytest.raises(ExecutorSettingError,
                       match=r"OSIRIS_MULTIPROCESS_START_METHOD='fork' is not one of: "
                             r"forkserver, spawn"):
        executor_from_env({**LAKE, "OSIRIS_MULTIPROCESS_START_METHOD": "fork"})


def test_without_a_fork_server_the_default_is_spawn(monkeypatch: pytest.MonkeyPatch) -> None:
    # as on Windows: Python has no forkserver start method there
    monkeypatch.setattr("multiprocessing.get_all_start_methods", lambda: ["spawn"])
    assert resolved_config(executor_from_env(LAKE))["start_method"] == {"spawn": {}}
    with pytest.raises(ExecutorSettingError,
                       match=r"OSIRIS_MULTIPROCESS_START_METHOD=forkserver is not available "
                             r"on this platform \(it has: spawn\); use spawn"):
        executor_from_env({**LAKE, "OSIRIS_MULTIPROCESS_START_METHOD": "forkserver"})


def test_run_config_wins_over_the_settings() -> None:
    executor = executor_from_env({**LAKE, "OSIRIS_MAX_CONCURRENT": "3"})
    config = resolved_config(executor, {"max_concurrent": 5, "start_method": {"spawn": {}}})
    assert config["max_concurrent"] == 5
    assert config["start_method"] == {"spawn": {}}
    assert not executor.config_schema.resolve_config({"config": {"bogus": 1}}).success


def test_the_fork_servers_preload_starts_no_thread_and_opens_nothing() -> None:
    assert_preload_is_fork_safe()


def assert_preload_is_fork_safe() -> None:
    """What the fork server imports is inherited by every step's process: importing it (as
    forkserver does: a missing optional module is skipped) must leave no thread, Python's or
    native (a forked child would have its memory but not its thread), and no open file or
    connection. Also run under the lake virtualenv (tests/lake)."""
    script = (
        "import os\n"
        f"for name in {list(FORKSERVER_PRELOAD)!r}:\n"
        "    try:\n"
        "        __import__(name)\n"
        "    except ImportError:\n"
        "        pass\n"
        "tasks = len(os.listdir('/proc/self/task'))\n"
        "fds = sorted(int(fd) for fd in os.listdir('/proc/self/fd'))\n"
        "print(tasks, fds)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=REPO, stdin=subprocess.DEVNULL,
                         close_fds=True).stdout
    tasks, fds = out.strip().split(" ", 1)
    assert tasks == "1", out  # the main thread only
    assert fds == "[0, 1, 2, 3]", out  # the standard streams and the listing's own


def test_max_concurrent_sets_the_multiprocess_limit() -> None:
    executor = executor_from_env({**LAKE, "OSIRIS_MAX_CONCURRENT": "3"})
    assert is_multiprocess(executor)
    assert resolved_config(executor)["max_concurrent"] == 3


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_max_concurrent_names_the_setting(value: str) -> None:
    with pytest.raises(ExecutorSettingError, match="OSIRIS_MAX_CONCURRENT"):
        executor_from_env({**LAKE, "OSIRIS_MAX_CONCURRENT": value})


def test_ducklake_can_keep_steps_in_one_process() -> None:
    assert executor_from_env({**LAKE, "OSIRIS_EXECUTOR": "in_process"}) is dg.in_process_executor


@pytest.mark.parametrize("executor", ["multiprocess", "celery"])
def test_duckdb_store_refuses_executors_of_several_processes(executor: str) -> None:
    with pytest.raises(ExecutorSettingError) as caught:
        executor_from_env({"OSIRIS_EXECUTOR": executor, "OSIRIS_CELERY_BROKER": "redis://x/0"})
    message = str(caught.value)
    assert f"OSIRIS_EXECUTOR={executor}" in message
    assert "one writer" in message
    assert "OSIRIS_SESSION_STORE=ducklake" in message
    assert isinstance(caught.value, OsirisError)


def test_unknown_executor_lists_the_valid_ones() -> None:
    with pytest.raises(ExecutorSettingError,
                       match=r"OSIRIS_EXECUTOR='k8s' is not one of: in_process, multiprocess, "
                             r"celery"):
        executor_from_env({**LAKE, "OSIRIS_EXECUTOR": "k8s"})


def test_unknown_store_lists_the_valid_ones() -> None:
    with pytest.raises(ExecutorSettingError,
                       match=r"OSIRIS_SESSION_STORE='sqlite' is not one of: duckdb, ducklake"):
        executor_from_env({"OSIRIS_SESSION_STORE": "sqlite"})


def test_values_are_trimmed_case_blind_and_empty_means_unset() -> None:
    assert is_multiprocess(executor_from_env({"OSIRIS_SESSION_STORE": " DuckLake ",
                                              "OSIRIS_EXECUTOR": ""}))
    assert executor_from_env({**LAKE, "OSIRIS_EXECUTOR": "In_Process\n"}) is dg.in_process_executor


def test_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSIRIS_SESSION_STORE", "ducklake")
    assert is_multiprocess(executor_from_env())


def test_celery_without_broker_names_the_setting() -> None:
    with pytest.raises(ExecutorSettingError, match="needs OSIRIS_CELERY_BROKER"):
        executor_from_env({**LAKE, "OSIRIS_EXECUTOR": "celery", "OSIRIS_CELERY_BROKER": " "})


def test_celery_not_installed_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dagster_celery", None)  # import fails as if absent
    with pytest.raises(ExecutorSettingError,
                       match=r"needs dagster-celery.*pip install 'osiris-dagster\[celery\]'"):
        executor_from_env({**LAKE, "OSIRIS_EXECUTOR": "celery",
                           "OSIRIS_CELERY_BROKER": "amqp://guest:guest@127.0.0.1:5672//"})


def test_dagster_celery_is_imported_only_when_celery_is_chosen() -> None:
    code = ("import sys\n"
            "from osiris_dagster.dagster_layer.executors import executor_from_env\n"
            "for env in ({}, {'OSIRIS_SESSION_STORE': 'ducklake'}):\n"
            "    executor_from_env(env)\n"
            "assert 'dagster_celery' not in sys.modules, 'dagster_celery imported'\n"
            "assert 'celery' not in sys.modules, 'celery imported'\n")
    # `-c` puts the working directory first on sys.path: this checkout's package is the one tested
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
