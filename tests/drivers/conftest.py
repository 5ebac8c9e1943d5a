"""Fixtures for driver tests: a real session DuckDB file and StepWorkspaces over it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from osiris_dagster.core.settings import Settings
from osiris_dagster.drivers.base import DriverResult, UpstreamTable
from osiris_dagster.runtime.session import Session
from osiris_dagster.runtime.workspace import StepWorkspace

EXTRACTOR_DEFAULTS: dict[str, Any] = {
    "delimiter": ",", "encoding": "utf-8", "header": True, "skip_rows": 0,
    "skip_blank_lines": True, "compression": "infer", "chunk_size": 10000,
}
WRITER_DEFAULTS: dict[str, Any] = {
    "delimiter": ",", "header": True, "encoding": "utf-8", "newline": "lf",
    "quoting": "minimal", "create_dirs": True, "chunk_size": 1000,
}


@pytest.fixture
def session(tmp_path: Path) -> Session:
    return Session(Settings.from_env(tmp_path / "sessions"), "s1").ensure()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


WorkspaceFactory = Callable[..., StepWorkspace]


@pytest.fixture
def workspace(session: Session) -> Iterator[WorkspaceFactory]:
    """Open a StepWorkspace (closed at teardown). Open one at a time: one writer per file."""
    with ExitStack() as stack:
        def make(step_id: str = "x", base_dir: Path | None = None) -> StepWorkspace:
            ws = StepWorkspace(session, pipeline_name="p", step_id=step_id,
                               output_table=step_id, base_dir=base_dir)
            return stack.enter_context(ws)
        yield make


class Table:
    """A session table read back for assertions."""

    def __init__(self, ws: StepWorkspace, result: DriverResult) -> None:
        self.result = result
        self.types = dict(ws.output_columns())
        self.columns = list(self.types)
        _, self.rows = ws.preview_rows(limit=1_000_000)


ExtractFn = Callable[..., Table]


@pytest.fixture
def extract(session: Session, data_dir: Path) -> ExtractFn:
    """Run the extractor over ``config`` (defaults filled in) and read back its table."""
    from osiris_dagster.drivers.csv import extractor as csv_extractor

    def run(base_dir: Path | None = None, **config: Any) -> Table:
        with StepWorkspace(session, pipeline_name="p", step_id="x", output_table="x",
                           base_dir=base_dir or data_dir) as ws:
            result = csv_extractor.run(ws, {**EXTRACTOR_DEFAULTS, **config}, [])
            return Table(ws, result)
    return run


@pytest.fixture
def upstream(session: Session) -> Callable[[str], None]:
    """Create session table ``up`` from a SELECT (as an upstream step would)."""
    def make(select_sql: str, params: Sequence[Any] | None = None) -> None:
        with StepWorkspace(session, pipeline_name="p", step_id="up", output_table="up") as ws:
            ws.create_output(select_sql, params)
    return make


WriteFn = Callable[..., DriverResult]


@pytest.fixture
def write(session: Session, data_dir: Path) -> WriteFn:
    """Run the writer on table ``up`` (see ``upstream``) with ``config`` (defaults filled in)."""
    from osiris_dagster.drivers.csv import writer as csv_writer

    def run(*, with_input: bool = True, **config: Any) -> DriverResult:
        with StepWorkspace(session, pipeline_name="p", step_id="w", output_table="w",
                           base_dir=data_dir) as ws:
            inputs: list[UpstreamTable] = []
            if with_input:
                inputs.append(ws.add_upstream("up", "df_up", session.db_path, "up",
                                              ["input_df"]))
            cfg: Mapping[str, Any] = {**WRITER_DEFAULTS, **config}
            return csv_writer.run(ws, cfg, inputs)
    return run
