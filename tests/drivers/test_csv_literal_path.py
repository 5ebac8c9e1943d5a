"""filesystem.csv_extractor reads the one file `path` names: `*`, `?`, `[...]` in a name are part
of it, never a DuckDB glob (a value from outside is data, never a pattern)."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import pytest

from osiris_dagster.core.settings import Settings
from osiris_dagster.drivers.csv import extractor as csv_extractor
from osiris_dagster.runtime.session import Session
from osiris_dagster.runtime.workspace import StepWorkspace

from .conftest import EXTRACTOR_DEFAULTS, ExtractFn


def _rows(first: int, count: int) -> str:
    return "id\n" + "".join(f"{i}\n" for i in range(first, first + count))


@pytest.mark.parametrize("name, neighbours", [
    ("[ab].csv", ("a.csv", "b.csv")),   # a DuckDB glob would read a.csv + b.csv, not itself
    ("q?.csv", ("qq.csv",)),            # ... qq.csv as well
    ("*.csv", ("other.csv",)),
])
def test_a_name_with_glob_characters_is_read_literally(extract: ExtractFn, data_dir: Path,
                                                        name: str,
                                                        neighbours: tuple[str, ...]) -> None:
    for i, other in enumerate(neighbours):
        (data_dir / other).write_text(_rows(100 * (i + 1), 5))
    (data_dir / name).write_text(_rows(1, 3))
    table = extract(path=name)
    assert table.rows == [(1,), (2,), (3,)]
    assert table.result.rows_read == 3


def test_a_gzip_file_with_glob_characters_in_its_directory(extract: ExtractFn,
                                                           data_dir: Path) -> None:
    folder = data_dir / "in[1]"
    folder.mkdir()
    (data_dir / "in1").mkdir()
    (data_dir / "in1" / "t.csv.gz").write_bytes(gzip.compress(_rows(50, 2).encode()))
    (folder / "t.csv.gz").write_bytes(gzip.compress(_rows(1, 2).encode()))
    assert extract(path="in[1]/t.csv.gz").rows == [(1,), (2,)]


def test_a_large_file_read_in_parallel(extract: ExtractFn, data_dir: Path) -> None:
    (data_dir / "big[1].csv").write_text("id,v\n" + "".join(f"{i},{i % 7}\n"
                                                           for i in range(300_000)))
    (data_dir / "big1.csv").write_text("id,v\n1,1\n")
    table = extract(path="big[1].csv")
    assert table.result.rows_read == 300_000


def test_a_scratch_copy_under_a_sessions_dir_with_glob_characters(tmp_path: Path) -> None:
    """bz2 is decompressed into a scratch file in the session's tmp dir: that path reaches
    DuckDB too (as the user's file does, through /dev/fd). A guard: DuckDB reads a glob that
    matches nothing as the literal name, and nothing else has the scratch file's name."""
    session = Session(Settings.from_env(tmp_path / "s[1]"), "s1").ensure()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.csv.bz2").write_bytes(bz2.compress(_rows(1, 4).encode()))
    with StepWorkspace(session, pipeline_name="p", step_id="x", output_table="x",
                       base_dir=tmp_path / "data") as ws:
        result = csv_extractor.run(ws, {**EXTRACTOR_DEFAULTS, "path": "t.csv.bz2"}, [])
        assert result.rows_read == 4
        assert ws.preview_rows(limit=10)[1] == [(1,), (2,), (3,), (4,)]


def test_without_dev_fd_a_pattern_name_fails_clearly(extract: ExtractFn, data_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from osiris_dagster.core.errors import DriverError
    from osiris_dagster.drivers.csv import scratch

    monkeypatch.setattr(scratch, "_OPEN_FILES", data_dir / "no-dev-fd")
    (data_dir / "a.csv").write_text(_rows(1, 2))
    (data_dir / "[a].csv").write_text(_rows(7, 1))
    assert extract(path="a.csv").rows == [(1,), (2,)]
    with pytest.raises(DriverError, match=r"would read this name as a pattern"):
        extract(path="[a].csv")
