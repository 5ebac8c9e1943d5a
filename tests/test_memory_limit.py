"""A step that needs more than DuckDB's memory_limit (tables with hundreds of columns) is retried
with a higher limit when it can run again, and otherwise fails saying which setting to raise.

The limits are scaled down (32MB instead of the 224MB default) so a 300-column CSV of 3,000
rows shows what a 1,000-column CSV of 20,000 rows does at the default.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pytest

from osiris_dagster.core import memory

from .helpers import write
from .test_cli_run import cli

COLUMNS, ROWS = 300, 3000

PIPELINE = """\
oml_version: "0.1.0"
name: wide
steps:
  - id: extract
    component: filesystem.csv_extractor
    mode: read
    config: {path: wide.csv}
  - id: total
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT * FROM input_df WHERE c1 >= 0"}
  - id: write
    component: filesystem.csv_writer
    mode: write
    config: {path: out.csv}
"""


@pytest.fixture
def wide(tmp_path: Path) -> Path:
    select = ", ".join(f"(i * {c} % 997)::INT AS c{c}" if c % 3 else
                       f"'v' || (i % {c + 1}) AS c{c}" for c in range(COLUMNS))
    duckdb.sql(f"COPY (SELECT {select} FROM range({ROWS}) t(i)) TO "
               f"'{tmp_path / 'wide.csv'}' (HEADER)")
    write(tmp_path / "wide.yaml", PIPELINE)
    return tmp_path


def _raised(tmp_path: Path) -> list[dict[str, str]]:
    sessions = [p for p in (tmp_path / "sessions").iterdir() if not p.name.startswith(".")]
    lines = (sessions[0] / "logs" / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == "memory_limit_raised"]


def test_a_wide_table_is_retried_with_more_memory_and_comes_out_whole(wide: Path) -> None:
    res = cli("run", "wide.yaml", "--sessions-dir", "sessions", cwd=wide,
              env={"OSIRIS_DUCKDB_MEMORY_LIMIT": "32MB"})
    assert res.returncode == 0, res.stderr
    raised = _raised(wide)
    assert {e["step_id"] for e in raised} >= {"extract"}
    assert all(e["from_limit"] == "32MB" and e["to_limit"] in ("64MB", "128MB")
               for e in raised if e["from_limit"] == "32MB")
    with open(wide / "out.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == ROWS + 1 and len(rows[0]) == COLUMNS
    header = rows[0]
    c7 = header.index("c7")
    assert sorted(int(r[c7]) for r in rows[1:]) == sorted(i * 7 % 997 for i in range(ROWS))


def test_without_room_to_grow_the_error_names_the_setting(wide: Path) -> None:
    res = cli("run", "wide.yaml", "--sessions-dir", "sessions", cwd=wide,
              env={"OSIRIS_DUCKDB_MEMORY_LIMIT": "32MB", "OSIRIS_DUCKDB_MEMORY_LIMIT_MAX": "32MB"})
    assert res.returncode == 1
    err = res.stderr
    assert "step 'extract'" in err and "ran out of memory under memory_limit 32MB" in err
    assert "OSIRIS_DUCKDB_MEMORY_LIMIT_MAX" in err and "hundreds of columns" in err
    assert "delimiter" not in err and "Traceback" not in err


def test_sizes_and_out_of_memory_detection() -> None:
    assert memory.parse_size("224MB") == 224 * 10**6
    assert memory.parse_size("1.5GiB") == int(1.5 * 2**30)
    assert memory.parse_size(" 512 kb ") == 512 * 10**3
    assert memory.parse_size("80%") is None and memory.parse_size("lots") is None
    assert memory.next_limit(100, 1000) == 200 and memory.next_limit(600, 1000) == 1000
    assert memory.next_limit(1000, 1000) is None
    assert memory.limit_for_width(224 * 10**6, 2 * 10**9, 10) == 224 * 10**6
    assert memory.limit_for_width(224 * 10**6, 2 * 10**9, 400) == 400 * memory.BYTES_PER_COLUMN
    assert memory.limit_for_width(224 * 10**6, 2 * 10**9, 5000) == 2 * 10**9
    con = duckdb.connect(config={"memory_limit": "8MB"})
    with pytest.raises(duckdb.Error) as info:
        con.execute("SELECT list(range) FROM range(10000000)").fetchall()
    assert memory.is_out_of_memory(info.value)
    wrapped = RuntimeError("cannot build the table")
    wrapped.__cause__ = info.value
    assert memory.is_out_of_memory(wrapped)
    assert not memory.is_out_of_memory(duckdb.CatalogException("Table x does not exist"))
