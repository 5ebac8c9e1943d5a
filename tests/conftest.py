"""Shared fixtures: isolated working directory, sessions root and Dagster instance per test."""

from __future__ import annotations

import importlib.util
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_DATA = REPO / "pipelines" / "data"

warnings.filterwarnings("ignore", module="dagster")

# tests/lake/ (the ducklake store, Celery, S3) needs DuckDB's extension wheels, which pin DuckDB to
# the version they were built for: it runs in its own virtualenv (.ci/run makes .lakevenv with
# `pip install -e '.[test,lake,celery]'` and runs `python -m pytest tests/lake` there).
LAKE_ENV = importlib.util.find_spec("duckdb_extension_ducklake") is not None
collect_ignore = [] if LAKE_ENV else ["lake"]


def pytest_report_header() -> str:
    return ("tests/lake: collected (DuckLake extension wheels installed)" if LAKE_ENV else
            "tests/lake: not collected here; .ci/run runs it in .lakevenv")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No OSIRIS_* / DAGSTER_HOME leaks from the developer's shell into a test."""
    for key in list(os.environ):
        if key.startswith("OSIRIS_") or key == "DAGSTER_HOME":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OSIRIS_HEARTBEAT_SECONDS", "0")
    yield


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with the example data copied in; the test runs inside it."""
    wd = tmp_path / "work"
    (wd / "data").mkdir(parents=True)
    for f in EXAMPLE_DATA.glob("*.csv"):
        shutil.copy(f, wd / "data" / f.name)
    monkeypatch.chdir(wd)
    return wd


@pytest.fixture
def instance(tmp_path: Path):
    import dagster as dg

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.local_temp(tempdir=str(home)) as inst:
        yield inst
