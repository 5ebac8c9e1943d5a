"""One CSV extract, timed: the ``filesystem.csv_extractor`` driver on a real session, or raw DuckDB.

``--mode driver``: ``csv_extractor.run`` in a ``StepWorkspace`` (the step's DuckDB connection with
its memory_limit, spill directory and table swap, no Dagster). Which code runs is whatever
``osiris_dagster`` is first on the path: the harness puts a frozen copy of an older commit first
to measure "before" against "after" in the same run.

``--mode duckdb_sample`` / ``duckdb_full`` (context): ``CREATE TABLE AS SELECT * FROM read_csv``
with DuckDB's sniffer typing from its 20,480-row sample, or from the whole file
(``sample_size=-1``), on a plain connection with the same memory_limit.

Prints ``BENCH_RESULT`` with the work time, the row count, the column types and the value of
``--probe-column`` in the last row (to show what a late value became).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import argparse  # noqa: E402

from _common import emit, fresh  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mode", choices=("driver", "duckdb_sample", "duckdb_full"), required=True)
    p.add_argument("--input", type=Path, required=True)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--parse-dates", action="store_true")
    p.add_argument("--probe-column", default="quantity")
    p.add_argument("--memory-limit", default="224MB")
    a = p.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    if a.mode == "driver":
        rows, types, probe, work_s = run_driver(a)
    else:
        rows, types, probe, work_s = run_duckdb(a)
    emit(rows=rows, types=types, probe=probe, work_s=round(work_s, 4))


def run_driver(a: argparse.Namespace) -> tuple[int, dict[str, str], str, float]:
    import osiris_dagster

    try:
        from osiris_dagster.core.settings import Settings
        from osiris_dagster.drivers.csv import extractor as csv_extractor
        from osiris_dagster.runtime.session import Session
        from osiris_dagster.runtime.workspace import StepWorkspace
    except ModuleNotFoundError:  # a "before" commit from the flat layout (before 481f4d9)
        from osiris_dagster.session import Session  # type: ignore[no-redef]
        from osiris_dagster.settings import Settings  # type: ignore[no-redef]
        from osiris_dagster.workspace import StepWorkspace  # type: ignore[no-redef]

        from osiris_dagster.drivers import csv_extractor  # type: ignore[no-redef]

    print(f"osiris_dagster from {Path(osiris_dagster.__file__).parent}", file=sys.stderr)
    session = Session(Settings.from_env(a.workdir / "sessions"), "bench").ensure()
    config = {"path": str(a.input), "parse_dates": bool(a.parse_dates)}
    t0 = time.perf_counter()
    with StepWorkspace(session, pipeline_name="bench", step_id="extract",
                       output_table="extract") as ws:
        result = csv_extractor.run(ws, config, [])
        work_s = time.perf_counter() - t0
        types = dict(ws.output_columns())
        probe = ws.con.execute(f'SELECT CAST("{a.probe_column}" AS VARCHAR) FROM '
                               "session.main.extract ORDER BY id DESC LIMIT 1").fetchone()[0]
    return result.rows_read, types, str(probe), work_s


def run_duckdb(a: argparse.Namespace) -> tuple[int, dict[str, str], str, float]:
    import duckdb

    con = duckdb.connect(str(fresh(a.workdir / "raw.duckdb")),
                         config={"memory_limit": a.memory_limit,
                                 "temp_directory": str(a.workdir / "tmp")})
    con.execute("SET max_vacuum_tasks = 0")  # as osiris' step connections
    candidates = ["BOOLEAN", "BIGINT", "DOUBLE", "VARCHAR"]
    if a.parse_dates:
        candidates[3:3] = ["DATE", "TIMESTAMP", "TIMESTAMPTZ"]
    sample = ", sample_size=-1" if a.mode == "duckdb_full" else ""
    t0 = time.perf_counter()
    con.execute(f"CREATE TABLE extract AS SELECT * FROM read_csv('{a.input}', "
                f"auto_type_candidates={candidates}{sample})")
    con.execute("CHECKPOINT")
    work_s = time.perf_counter() - t0
    rows = con.execute("SELECT count(*) FROM extract").fetchone()[0]
    types = {str(r[0]): str(r[1]) for r in con.execute("DESCRIBE extract").fetchall()}
    probe = con.execute(f'SELECT CAST("{a.probe_column}" AS VARCHAR) FROM extract '
                        "ORDER BY id DESC LIMIT 1").fetchone()[0]
    con.close()
    return int(rows), types, str(probe), work_s


if __name__ == "__main__":
    main()
