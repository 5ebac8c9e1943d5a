"""Choosing the session store: wrong settings fail when the definitions load, naming the
setting; the store decides the default executor."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from osiris_dagster import build_definitions
from osiris_dagster.core.errors import SessionStoreError

from .helpers import write

PIPE = """\
oml_version: "0.1.0"
name: tiny
steps:
  - id: one
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT 1 AS x"}
"""


def _defs(tmp_path: Path, **store: str) -> dg.Definitions:
    return build_definitions([write(tmp_path / "tiny.yaml", PIPE)],
                             sessions_dir=str(tmp_path / "s"), **store)


def test_ducklake_without_a_catalog_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SessionStoreError, match="OSIRIS_DUCKLAKE_CATALOG"):
        _defs(tmp_path, session_store="ducklake", ducklake_data_path=str(tmp_path))


def test_ducklake_without_a_data_path_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SessionStoreError, match="OSIRIS_DUCKLAKE_DATA_PATH"):
        _defs(tmp_path, session_store="ducklake", ducklake_catalog="postgres:dbname=x")


def test_unknown_store_lists_the_stores(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSIRIS_SESSION_STORE", "sqlite")
    with pytest.raises(SessionStoreError, match="OSIRIS_SESSION_STORE='sqlite'.*duckdb, ducklake"):
        _defs(tmp_path)


def test_the_store_chooses_the_default_executor(tmp_path: Path) -> None:
    default = _defs(tmp_path).resolve_job_def("tiny")
    assert default.executor_def.name == dg.in_process_executor.name
    lake = _defs(tmp_path, session_store="ducklake", ducklake_catalog="postgres:dbname=x",
                 ducklake_data_path=str(tmp_path / "lake")).resolve_job_def("tiny")
    assert lake.executor_def.name == dg.multiprocess_executor.name
