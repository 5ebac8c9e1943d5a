"""Runs at the same time: two runs of one pipeline (separate sessions, one sessions root and
Dagster instance) do not interfere; two pipelines writing the same file leave one complete file,
equal to one of the two outputs, never a mix."""

from __future__ import annotations

import csv
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from .conftest import (
    CliResult,
    assert_no_traceback,
    db_query,
    db_tables,
    hidden_temp_files,
    kill_group,
    read_events,
    start_cli,
)

PIPELINE = """\
oml_version: "0.1.0"
name: {name}
params:
  n: {{default: 1000}}
  tag: {{default: none}}
  out: {{default: out/result.csv}}
steps:
  - id: gen
    component: duckdb.processor
    mode: transform
    config:
      query: >
        SELECT range AS id, '${{params.tag}}' AS tag, md5(range::VARCHAR) AS h
        FROM range(${{params.n}})
  - id: evens
    component: duckdb.processor
    mode: transform
    config:
      query: "SELECT * FROM input_df WHERE id % 2 = 0"
  - id: write
    component: filesystem.csv_writer
    mode: write
    config: {{path: "${{params.out}}"}}
"""


def run_together(cwd: Path, commands: list[list[str]], timeout: float = 240) -> list[CliResult]:
    """Start every command at once (each in its own process group); wait for all."""
    procs = [start_cli(cmd, cwd) for cmd in commands]
    results = []
    try:
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=timeout)
                results.append(CliResult(proc.returncode, out, err, 0.0))
            except subprocess.TimeoutExpired:
                kill_group(proc)
                out, err = proc.communicate()
                results.append(CliResult(None, out, err, timeout, timed_out=True))
    finally:
        for proc in procs:
            if proc.poll() is None:
                kill_group(proc)
    for res in results:
        assert not res.timed_out, res.describe()
        assert_no_traceback(res.output)
    return results


def warm_up(cwd: Path, sessions: str) -> None:
    """One tiny run first, so the sessions root's Dagster instance exists (creating it from
    several processes at once is `test_first_runs_in_a_fresh_sessions_dir_at_once_all_succeed`'s
    subject, not these tests')."""
    (cwd / "warm_up.yaml").write_text(
        'oml_version: "0.1.0"\nname: warm-up\nsteps:\n  - id: one\n'
        '    component: duckdb.processor\n    mode: transform\n'
        '    config: {query: "SELECT 1 AS one"}\n', encoding="utf-8")
    res = run_together(cwd, [["run", "warm_up.yaml", "--sessions-dir", sessions]])[0]
    assert res.rc == 0, res.describe()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_two_runs_of_one_pipeline_at_once_do_not_interfere(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(PIPELINE.format(name="concurrent"), encoding="utf-8")
    runs = {"A": 300_000, "B": 200_000}
    base = ["run", "pipeline.yaml", "--sessions-dir", "sessions"]
    warm_up(tmp_path, "sessions")
    results = run_together(tmp_path, [
        [*base, "--param", f"n={n}", "--param", f"tag={tag}", "--param", f"out=out/{tag}.csv"]
        for tag, n in runs.items()])
    sessions = set()
    for (tag, n), res in zip(runs.items(), results, strict=True):
        assert res.rc == 0, res.describe()
        session = res.session_dir
        assert session is not None and session not in sessions
        sessions.add(session)
        db = session / "pipeline_data.duckdb"
        assert db_tables(db) == {"gen": n, "evens": n // 2}
        assert db_query(db, "SELECT DISTINCT tag FROM gen UNION SELECT DISTINCT tag FROM evens"
                        ) == [(tag,)]
        assert db_query(db, "SELECT min(id), max(id), count(DISTINCT id) FROM evens") == \
            [(0, n - 2, n // 2)]
        ends = [e for e in read_events(session) if e.get("event") == "run_end"]
        assert [e.get("status") for e in ends] == ["success"]
        rows = read_csv(tmp_path / "out" / f"{tag}.csv")
        assert len(rows) == n // 2 and {r["tag"] for r in rows} == {tag}
        assert hidden_temp_files(tmp_path / "out" / f"{tag}.csv") == []


def test_first_runs_in_a_fresh_sessions_dir_at_once_all_succeed(tmp_path: Path) -> None:
    """Every run in a fresh sessions root creates the Dagster instance under `.dagster`; runs
    started together must not race each other there (two rounds of four, tiny pipelines)."""
    (tmp_path / "pipeline.yaml").write_text(PIPELINE.format(name="fresh-root"), encoding="utf-8")
    for round_ in range(2):
        sessions = f"sessions_{round_}"
        results = run_together(tmp_path, [
            ["run", "pipeline.yaml", "--sessions-dir", sessions, "--param", "n=10",
             "--param", f"tag=t{i}", "--param", f"out=out/{round_}_{i}.csv"] for i in range(4)])
        for i, res in enumerate(results):
            assert res.rc == 0, res.describe()
            assert db_query(res.session_dir / "pipeline_data.duckdb",
                            "SELECT DISTINCT tag FROM gen") == [(f"t{i}",)]


def _interval(session: Path, step_id: str) -> tuple[datetime, datetime]:
    def ts(event: str) -> datetime:
        found = [e["ts"] for e in read_events(session)
                 if e.get("event") == event and e.get("step_id") == step_id]
        assert found, (event, step_id)
        return datetime.fromisoformat(found[0].replace("Z", "+00:00"))
    return ts("step_start"), ts("step_complete")


SHARED_PIPELINE = """\
oml_version: "0.1.0"
name: {name}
steps:
  - id: gen
    component: duckdb.processor
    mode: transform
    config:
      query: >
        SELECT range AS id, '{tag}' AS tag,
               md5(range::VARCHAR || '{tag}') || md5(range::VARCHAR) AS h
        FROM range({n})
  - id: write-shared
    component: filesystem.csv_writer
    mode: write
    needs: [gen]
    config: {{path: out/shared.csv}}
  - id: write-own
    component: filesystem.csv_writer
    mode: write
    needs: [write-shared, gen]
    config: {{path: out/own_{tag}.csv}}
"""


@pytest.mark.parametrize("attempts", [8])
def test_two_pipelines_writing_one_file_leave_one_complete_file(tmp_path: Path,
                                                                attempts: int) -> None:
    sizes = {"a": 1_500_000, "b": 1_500_000}  # equal work before the shared write
    for tag, n in sizes.items():
        (tmp_path / f"pipeline_{tag}.yaml").write_text(
            SHARED_PIPELINE.format(name=f"shared-writer-{tag}", tag=tag, n=n), encoding="utf-8")
    shared = tmp_path / "out" / "shared.csv"
    warm_up(tmp_path, "sessions")
    overlapped = False
    for _ in range(attempts):
        shared.unlink(missing_ok=True)
        results = run_together(tmp_path, [
            ["run", f"pipeline_{tag}.yaml", "--sessions-dir", "sessions"] for tag in sizes])
        for res in results:
            assert res.rc == 0, res.describe()
        final = shared.read_bytes()
        own = {tag: (tmp_path / "out" / f"own_{tag}.csv").read_bytes() for tag in sizes}
        assert final in own.values(), (
            f"out/shared.csv ({len(final)} bytes) is neither pipeline's output "
            f"({ {t: len(b) for t, b in own.items()} } bytes)")
        assert hidden_temp_files(shared) == []
        (a_start, a_end), (b_start, b_end) = (_interval(r.session_dir, "write-shared")
                                              for r in results)
        print(f"write-shared: a {a_start:%S.%f}-{a_end:%S.%f}, b {b_start:%S.%f}-{b_end:%S.%f}")
        if a_start < b_end and b_start < a_end:
            overlapped = True
            break
    assert overlapped, "the two writes of out/shared.csv never overlapped; nothing was tested"
    for path in (tmp_path / "out").iterdir():
        path.unlink()
