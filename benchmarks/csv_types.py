"""``python -m benchmarks.csv_types``: what faithful CSV typing costs, before and after, in one run.

The CSV extractor used to type columns from DuckDB's 20,480-row sample and let DuckDB's lenient
casts change later values (``2.5`` -> 3 in a BIGINT column). It now reads text, types every value
by explicit rules and, when a value past the first rows does not fit, types the whole file again
(issue 17). This measures the price on the benchmark file (default 10M rows, ``parse_dates:
true``) in three cases:

* ``clean``: the file as generated; the first rows' types fit every value (the common case);
* ``late``: the same file plus one last row whose ``quantity`` is ``2.5``: the old code rounds it
  silently, the new one re-types the column over the whole file (its slow path);
* ``late2`` / ``late4``: a last row whose values fit the types of the first rows in none of two
  (``amount``, ``quantity``) or four (``id``, ``amount``, ``quantity``, ``order_date``) columns:
  a pass stops at the first such value, so each column costs a pass until the extractor types
  the whole file at once (``WIDENINGS_BEFORE_WHOLE_FILE_TYPES``);
* ``footer``: the ``wide`` file's first 30,000 rows (past the 20,480 typed first) plus a footer
  row of text (``total``) in every column, as some exports end: every typed column is
  contradicted once;
* ``wide``: 200 columns (integers, decimals, text, dates, booleans) and a hundredth of the rows,
  where typing the first rows weighs most.

Contenders, each a fresh subprocess measured by ``benchmarks/measure.py`` (wall, CPU, peak RSS of
the process tree), interleaved over ``--repeats`` rounds (the order reverses every round):

* ``driver_before``: ``csv_extractor.run`` on a frozen copy of ``osiris_dagster`` at ``--before``
  (``git archive``; default: the commit before the change);
* ``driver_after``: the same call on the working tree's code;
* ``duckdb_sample`` / ``duckdb_full``: raw DuckDB ``CREATE TABLE AS read_csv`` typing from its
  sample, and from the whole file (``sample_size=-1``; also lenient, shown for the cost of a
  whole-file sniff).

Ratios are paired per round against ``driver_before``. Results: printed, and written to
``benchmarks/results/csv_types.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .data import dataset, default_cache_dir, write_csv
from .measure import MeasureServer
from .run import CONTENDERS_DIR, HERE, child_env, human, machine_info, parse_rows

DEFAULT_BEFORE = "6f62d98"  # the last commit typing CSV columns from DuckDB's sample
CONTENDERS = ("driver_before", "driver_after", "duckdb_sample", "duckdb_full")
LATE_ROWS = {  # case -> the last row appended to the clean file
    "late": "{id},cust_999999,books,CZ,1.00,2.5,2024-01-01,late row\n",
    "late2": "{id},cust_999999,books,CZ,n/a?,2.5,2024-01-01,late row\n",
    "late4": "{id}.5,cust_999999,books,CZ,n/a?,2.5,2024-01-01 10:00:00,late row\n",
}
CASES = ("clean", "late", "late2", "late4", "footer", "wide")


def late_file(clean: Path, rows: int, case: str = "late") -> Path:
    """The clean file plus the case's last row (cached next to it)."""
    path = clean.with_name(f"{clean.stem}_{case}.csv")
    if not path.exists() or path.stat().st_size <= clean.stat().st_size:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        shutil.copyfile(clean, tmp)
        with open(tmp, "a", encoding="utf-8") as fh:
            fh.write(LATE_ROWS[case].format(id=rows + 1))
        os.replace(tmp, path)
    return path


WIDE_COLUMNS = 200  # the wide case: as many bytes per row as ~25 rows of the bench file


def wide_file(clean: Path, rows: int) -> Path:
    """A 200-column file with ``rows // 100`` rows (cached next to the clean one): ``id``,
    ``quantity`` and then columns cycling through integers, decimals, text, dates and booleans,
    so typing a sample costs what it costs for a wide export rather than for 8 columns."""
    path = clean.with_name(f"{clean.stem}_wide{WIDE_COLUMNS}.csv")
    if path.exists():
        return path
    cycle = ["CAST(i * 7 % 1000003 AS VARCHAR)", "printf('%.2f', (i * 13 % 100000) / 100.0)",
             "'item ' || CAST(i % 97 AS VARCHAR)",
             "strftime(DATE '2020-01-01' + CAST(i % 1826 AS INTEGER), '%Y-%m-%d')",
             "CASE WHEN i % 3 = 0 THEN 'true' ELSE 'False' END"]
    columns = ["i + 1 AS id", "1 + i % 20 AS quantity"] + [
        f"{cycle[k % len(cycle)]} AS c{k}" for k in range(2, WIDE_COLUMNS)]
    write_csv(f"SELECT {', '.join(columns)} FROM range({wide_rows(rows)}) t(i) ORDER BY i", path)
    return path


def wide_rows(rows: int) -> int:
    return max(rows // 100, 1)


FOOTER_ROWS = 30_000


def footer_file(clean: Path, rows: int) -> Path:
    """The wide file's first :data:`FOOTER_ROWS` rows and a row of ``total`` in every column."""
    wide = wide_file(clean, rows)
    path = clean.with_name(f"{clean.stem}_footer{WIDE_COLUMNS}.csv")
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(wide, encoding="utf-8") as src, open(tmp, "w", encoding="utf-8") as out:
            for _ in range(min(FOOTER_ROWS, wide_rows(rows)) + 1):  # the header and the rows
                out.write(src.readline())
            out.write(",".join(["total"] * WIDE_COLUMNS) + "\n")
        os.replace(tmp, path)
    return path


def frozen_copy(ref: str, into: Path) -> Path:
    """``osiris_dagster`` as of ``ref``, unpacked under ``into`` (to put first on PYTHONPATH)."""
    repo = HERE.parent
    archive = subprocess.run(["git", "-C", str(repo), "archive", ref, "osiris_dagster"],
                             check=True, capture_output=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def command(contender: str, path: Path, workdir: Path) -> tuple[list[str], dict[str, str]]:
    mode = "driver" if contender.startswith("driver") else contender
    cmd = [sys.executable, str(CONTENDERS_DIR / "csv_extract_step.py"), "--mode", mode,
           "--input", str(path), "--workdir", str(workdir), "--parse-dates"]
    return cmd, {}


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    rows = args.rows
    clean, meta = dataset(rows, args.data_dir)
    special = {"clean": lambda: clean, "wide": lambda: wide_file(clean, rows),
               "footer": lambda: footer_file(clean, rows)}
    files = {case: special[case]() if case in special else late_file(clean, rows, case)
             for case in args.cases}
    server = MeasureServer()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="osiris-csvtypes-") as tmp:
        before = frozen_copy(args.before, Path(tmp) / "before")
        envs = {"driver_before": child_env({"PYTHONPATH": str(before)}),
                "driver_after": child_env({}), "duckdb_sample": child_env({}),
                "duckdb_full": child_env({})}
        order = [(case, c) for case in files for c in args.contenders]
        try:
            for rnd in range(args.repeats):
                for case, contender in (order if rnd % 2 == 0 else order[::-1]):
                    workdir = Path(tmp) / f"{contender}_{case}_{rnd}"
                    cmd, _ = command(contender, files[case], workdir)
                    m = server.run(cmd, env=envs[contender], cwd=Path(tmp),
                                   log_prefix=workdir.with_suffix(""))
                    shutil.rmtree(workdir, ignore_errors=True)
                    if m.returncode != 0:
                        raise SystemExit(f"{contender} {case} failed:\n{m.stderr_tail}")
                    runs.append({"case": case, "contender": contender, "round": rnd,
                                 "wall_s": m.wall_s, "cpu_s": m.cpu_user_s + m.cpu_sys_s,
                                 "peak_rss_mb": m.peak_rss_mb, **m.result})
                    print(f"  round {rnd + 1} {case:5} {contender:14} {m.wall_s:7.2f} s wall "
                          f"{m.result.get('work_s', 0):7.2f} s work {m.peak_rss_mb:6.0f} MB",
                          flush=True)
        finally:
            server.close()
    return {"rows": rows, "file_bytes": meta["bytes"], "before": args.before, "runs": runs,
            "machine": machine_info(), "repeats": args.repeats}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(data: dict[str, Any]) -> str:
    runs, m = data["runs"], data["machine"]
    lines = [f"# CSV typing: before / after (issue 17), {human(data['rows'])} rows "
             f"(wide: {WIDE_COLUMNS} columns, {human(wide_rows(data['rows']))} rows)",
             "", f"Machine: {m.get('cpu_model', '?')}, {m.get('cpus', '?')} CPUs, load average "
             f"{m.get('loadavg_before')} before; osiris-dagster at {m.get('git', '?')}; "
             f"duckdb {m.get('versions', {}).get('duckdb', '?')}; "
             f"{data['repeats']} interleaved rounds; before = `{data['before']}`. "
             "Work = the extract call alone (driver: `csv_extractor.run` in a StepWorkspace, "
             "table swap included; raw DuckDB: CTAS + checkpoint). Ratios are per round against "
             "`driver_before`, median over rounds.", ""]
    for case in dict.fromkeys(r["case"] for r in runs):
        lines += [f"## {case}", "",
                  "| contender | wall s [min-max] | work s | work / before | CPU s | "
                  "peak RSS MB | quantity type | last quantity |",
                  "|---|---|---|---|---|---|---|---|"]
        base = {r["round"]: r["work_s"] for r in runs
                if r["case"] == case and r["contender"] == "driver_before"}
        for contender in CONTENDERS:
            mine = [r for r in runs if r["case"] == case and r["contender"] == contender]
            if not mine:
                continue
            walls = [r["wall_s"] for r in mine]
            ratios = [r["work_s"] / base[r["round"]] for r in mine if base.get(r["round"])]
            lines.append(
                f"| {contender} | {_median(walls):.2f} [{min(walls):.2f}-{max(walls):.2f}] | "
                f"{_median([r['work_s'] for r in mine]):.2f} | {_median(ratios):.2f}x | "
                f"{_median([r['cpu_s'] for r in mine]):.1f} | "
                f"{_median([r['peak_rss_mb'] for r in mine]):.0f} | "
                f"{mine[-1]['types'].get('quantity')} | {mine[-1]['probe']} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=lambda s: parse_rows(s)[0], default=10_000_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--before", default=DEFAULT_BEFORE, help="git ref of the 'before' code")
    p.add_argument("--contenders", type=lambda s: [c for c in s.split(",") if c],
                   default=list(CONTENDERS))
    p.add_argument("--cases", type=lambda s: [c for c in s.split(",") if c],
                   default=list(CASES), help=f"a subset of {','.join(CASES)}")
    p.add_argument("--data-dir", type=Path, default=default_cache_dir())
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    from .bootstrap import ensure

    ensure(with_dlt=False, with_ddp=False)
    t0 = time.perf_counter()
    data = run_all(args)
    data["total_s"] = round(time.perf_counter() - t0, 1)
    text = report(data)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "csv_types.md").write_text(text + "\n", encoding="utf-8")
    (args.out / "csv_types.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
