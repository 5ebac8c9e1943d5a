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
from osiris_dagster.dagster_layer.executors import ExecutorSettingError, executor_from_env

LAKE = {"OSIRIS_SESSION_STORE": "ducklake"}
REPO = Path(__file__).resolve().parents[1]


def resolved_config(executor: dg.ExecutorDefinition) -> dict[str, Any]:
    """The config a `.configured(...)` executor will run with."""
    value = executor.config_schema.resolve_config({}).value
    return value.get("config", value)


def test_default_is_in_process_for_the_duckdb_store() -> None:
    assert executor_from_env({}) is dg.in_process_executor
    assert executor_from_env({"OSIRIS_SESSION_STORE": "duckdb"}) is dg.in_process_executor
    assert executor_from_env({"OSIRIS_EXECUTOR": "in_process"}) is dg.in_process_executor


def test_default_is_multiprocess_for_the_ducklake_store() -> None:
    # Dagster's own: as many steps at once as CPUs
    assert executor_from_env(LAKE) is dg.multiprocess_executor


def test_max_concurrent_sets_the_multiprocess_limit() -> None:
    executor = executor_from_env({**LAKE, "OSIRIS_MAX_CONCURRENT": "3"})
    assert executor.name == "multiprocess"
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
    assert executor_from_env({"OSIRIS_SESSION_STORE": " DuckLake ", "OSIRIS_EXECUTOR": ""}) \
        is dg.multiprocess_executor
    assert executor_from_env({**LAKE, "OSIRIS_EXECUTOR": "In_Process\n"}) is dg.in_process_executor


def test_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSIRIS_SESSION_STORE", "ducklake")
    assert executor_from_env() is dg.multiprocess_executor


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
