"""Benchmark runner: ``python -m benchmarks [--rows 1e6,3e6,1e7] [--repeats 3] ...``.

Every measurement is one fresh subprocess; contenders are interleaved (round 1 in registry
order, round 2 reversed, ...) and repeated. Results: a markdown report printed and written to
``benchmarks/results/latest.md``, the raw runs and summaries in ``latest.json``, a plot in
``latest.png``, and the results section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import bootstrap, pairing, startup

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONTENDERS_DIR = HERE / "contenders"
DEFAULT_SIZES = (1_000_000, 3_000_000, 10_000_000)
TARGET_SIZE = 10_000_000
BASE_SIZE = 1_000_000
OVERHEAD_STEPS = (1, 20)
OVERHEAD_ROWS = 100

E2E, EXTRACT, LIMIT, OVERHEAD = "e2e", "extract", "limit", "overhead"
STARTUP = startup.STARTUP
ALL_CASES = (E2E, EXTRACT, LIMIT, OVERHEAD, STARTUP)
PER_ASSET_LIMIT_MS = 50.0  # issue 15 (was 150 ms)
# issue 15, against the raw-DuckDB floor at 10M rows (the earlier extract-speed targets against
# seed_pandas_chunked and dagster_duckdb_pandas are retired; e2e wall was 1.3x)
E2E_WALL_LIMIT, E2E_CPU_LIMIT, EXTRACT_WALL_LIMIT = 1.2, 1.15, 1.1


@dataclass(frozen=True)
class Contender:
    name: str
    kind: str  # osiris_cli | osiris_inproc | script | cat | dagster_noop
    cases: tuple[str, ...]
    description: str
    script: str | None = None
    args: tuple[str, ...] = ()
    caps: dict[str, int] = field(default_factory=dict)  # case -> largest default size
    env: dict[str, str] = field(default_factory=dict)
    role: str = "alt"  # osiris | floor | context | alt | limit
    extrapolate: bool = True  # to the target size, when capped below it


def registry() -> list[Contender]:
    one_m, three_m = 1_000_000, 3_000_000
    return [
        Contender("osiris_cli", "osiris_cli", (E2E, EXTRACT, OVERHEAD),
                  "`osiris-dagster run PIPELINE --sessions-dir DIR` (whole CLI process, Dagster "
                  "start-up included)", role="osiris"),
        Contender("osiris_inproc", "osiris_inproc", (E2E, EXTRACT, OVERHEAD),
                  "the same job via `job.execute_in_process()`; in-process s = that call alone "
                  "(run up to 3M: it separates the size-independent start-up)",
                  script="osiris_inproc.py", role="osiris", caps={E2E: three_m, EXTRACT: three_m},
                  extrapolate=False),
        Contender("duckdb_floor", "script", (E2E, EXTRACT),
                  "raw DuckDB, the same SQL in one script: CTAS extract, CTAS transform, COPY, "
                  "one DuckDB file (**the floor**)", script="duckdb_floor.py",
                  args=("--style", "tables"), role="floor"),
        Contender("duckdb_floor_novacuum", "script", (E2E, EXTRACT),
                  "the floor with `SET max_vacuum_tasks = 0` (context: the DuckDB setting "
                  "proposed for osiris' session connections, see results/FINDINGS.md)",
                  script="duckdb_floor.py", args=("--style", "tables", "--no-vacuum"),
                  role="context"),
        Contender("duckdb_stream", "script", (E2E,),
                  "raw DuckDB, one streaming `COPY (SELECT ... FROM read_csv) TO`, no tables kept "
                  "(context)", script="duckdb_floor.py", args=("--style", "stream"),
                  role="context"),
        Contender("seed_pandas_chunked", "script", (E2E, EXTRACT),
                  "seed prototype: `pd.read_csv(chunksize=1000)` -> INSERT per chunk into DuckDB; "
                  "SQL in DuckDB; whole table -> `DataFrame.to_csv`",
                  script="seed_pandas_chunked.py", caps={E2E: one_m, EXTRACT: three_m}),
        Contender("dagster_duckdb_pandas", "script", (E2E, EXTRACT),
                  "pandas assets + `DuckDBPandasIOManager` via `dagster.materialize`",
                  script="ddp_pandas_assets.py", caps={E2E: three_m}),
        Contender("dlt_filesystem", "script", (E2E, EXTRACT),
                  "dlt `filesystem` source -> duckdb destination (pyarrow batches); e2e adds the "
                  "SQL + COPY in the same DuckDB file", script="dlt_arrow_source.py",
                  caps={E2E: one_m, EXTRACT: one_m}),
        Contender("dagster_noop", "dagster_noop", (OVERHEAD,),
                  "Dagster's own floor: N assets that do nothing, Dagster's default SQLite "
                  "instance (context)", script="dagster_noop_assets.py", role="context"),
        Contender("dagster_noop_cli", "dagster_noop", (OVERHEAD,),
                  "the same on an instance set up as `osiris-dagster run` sets up its own "
                  "(pooled event log connections, files held open, stamped files opened "
                  "without Alembic's checks; context)",
                  script="dagster_noop_assets.py", args=("--storage", "cli"), role="context"),
        Contender("limit_duckdb_count", "script", (LIMIT,),
                  "physical limit: DuckDB `SELECT count(*) FROM read_csv(...)`",
                  script="duckdb_count.py", role="limit"),
        Contender("limit_cat", "cat", (LIMIT,), "physical limit: `cat FILE > /dev/null` "
                  "(page cache hot)", role="limit"),
    ]


# -- helpers ---------------------------------------------------------------------------------------
def parse_rows(text: str) -> list[int]:
    out = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        mult = {"k": 1_000, "m": 1_000_000}.get(item[-1], 1)
        if mult != 1:
            item = item[:-1]
        out.append(int(float(item) * mult))
    return sorted(set(out))


def human(n: float) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{int(n // 1_000_000)}M"
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{int(n // 1_000)}k"
    return str(int(n))


def parse_variant(spec: str) -> tuple[str, dict[str, str]]:
    """``NAME=K=V[,K=V...]`` -> (NAME, {K: V})."""
    name, sep, rest = spec.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SystemExit(f"--variant expects NAME=KEY=VALUE[,KEY=VALUE...], got {spec!r}")
    env = {}
    for pair in rest.split(","):
        k, s, v = pair.partition("=")
        if not s:
            raise SystemExit(f"--variant {name}: {pair!r} is not KEY=VALUE")
        env[k.strip()] = v
    return name, env


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DAGSTER_HOME", None)  # the CLI must use its own instance under --sessions-dir
    # Python's default: the warm-up round writes the .pyc files every later run reads. Inherited
    # from a sandbox, this would recompile osiris_dagster's sources in every run (~0.15 s) while
    # Dagster's, compiled by pip at install, load from .pyc: an unfair, unrealistic comparison.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for k in [k for k in env if k.startswith(("OSIRIS_", "PYTHONPROFILE"))]:
        if k not in ("OSIRIS_BENCH_DATA",):
            env.pop(k)
    env.update({"DAGSTER_DISABLE_TELEMETRY": "1", "RUNTIME__DLTHUB_TELEMETRY": "false",
                "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"})
    if "PYTHONPATH" in extra:  # a scratch copy of osiris_dagster goes first
        extra = dict(extra)
        extra["PYTHONPATH"] = os.pathsep.join(
            p for p in (extra["PYTHONPATH"], env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def osiris_cli_path() -> str:
    cand = Path(sys.executable).parent / "osiris-dagster"
    if cand.exists():
        return str(cand)
    found = shutil.which("osiris-dagster")
    if not found:
        raise SystemExit("osiris-dagster executable not found next to this Python")
    return found


def clean_dir(path: Path, keep_dot: bool = True) -> None:
    if not path.exists():
        return
    for child in path.iterdir():
        if keep_dot and child.name.startswith("."):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


# -- one run -----------------------------------------------------------------------------------
@dataclass
class Run:
    contender: str
    case: str
    rows: int
    round: int
    wall_s: float
    work_s: float | None
    peak_rss_mb: float
    sampled_sum_mb: float
    hwm_mb: float
    maxrss_mb: float
    cpu_s: float
    ok: bool
    steps: int | None = None
    rows_out: int | None = None
    verified: bool | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class Runner:
    def __init__(self, workroot: Path, server: Any) -> None:
        self.workroot = workroot
        self.server = server
        self.cli = osiris_cli_path()
        self.verified: set[tuple[str, str, int]] = set()

    def dirs(self, contender: str) -> tuple[Path, Path]:
        base = self.workroot / contender
        sessions, scratch = base / "sessions", base / "scratch"
        sessions.mkdir(parents=True, exist_ok=True)
        scratch.mkdir(parents=True, exist_ok=True)
        return sessions, scratch

    def command(self, c: Contender, case: str, csv: Path, steps: int | None
                ) -> tuple[list[str], Path]:
        sessions, scratch = self.dirs(c.name)
        out = scratch / "out.csv"
        if c.kind in ("osiris_cli", "osiris_inproc"):
            from .workload import write_pipeline

            pipe = write_pipeline(scratch, case, csv, out, steps or 1)
            if c.kind == "osiris_cli":
                return [self.cli, "run", str(pipe), "--sessions-dir", str(sessions)], out
            return [sys.executable, str(CONTENDERS_DIR / c.script), str(pipe),
                    "--sessions-dir", str(sessions)], out
        if c.kind == "cat":
            return ["/bin/sh", "-c", f"cat '{csv}' > /dev/null"], out
        if c.kind == "dagster_noop":
            return [sys.executable, str(CONTENDERS_DIR / c.script), "--steps", str(steps or 1),
                    "--home", str(sessions), *c.args], out
        script = str(CONTENDERS_DIR / c.script)
        if case == LIMIT:
            return [sys.executable, script, str(csv)], out
        return [sys.executable, script, "--case", case, "--input", str(csv), "--output", str(out),
                "--workdir", str(scratch), *c.args], out

    def run(self, c: Contender, case: str, csv: Path, meta: dict, rnd: int,
            steps: int | None = None, verify: bool = True) -> Run:
        sessions, scratch = self.dirs(c.name)
        cmd, out = self.command(c, case, csv, steps)
        env = child_env(c.env)
        log = self.workroot / "logs" / f"{c.name}_{case}_{meta['rows']}_{steps or 0}_{rnd}"
        log.parent.mkdir(parents=True, exist_ok=True)
        m = self.server.run(cmd, env=env, cwd=scratch, log_prefix=log)
        ok = m.returncode == 0
        error = None if ok else (f"exit {m.returncode}" + (" (timeout)" if m.timed_out else "")
                                 + ": " + (m.stderr_tail.strip().splitlines() or [""])[-1][:300])
        work = m.result.get("work_s")
        if c.kind == "osiris_cli":
            hit = re.search(r"done in ([0-9.]+)s", m.stdout_tail)
            work = float(hit.group(1)) if hit else None
        run = Run(contender=c.name, case=case, rows=meta["rows"], round=rnd, wall_s=m.wall_s,
                  work_s=work, peak_rss_mb=m.peak_rss_mb, sampled_sum_mb=m.sampled_sum_mb,
                  hwm_mb=m.hwm_mb, maxrss_mb=m.maxrss_mb, cpu_s=m.cpu_user_s + m.cpu_sys_s,
                  ok=ok, steps=steps,
                  error=error, detail={k: v for k, v in m.result.items() if k != "work_s"})
        key = (c.name, case, meta["rows"])
        if ok and verify and case == E2E and key not in self.verified:
            run.rows_out = count_csv_rows(out)
            run.verified = run.rows_out == meta["e2e_rows_out"]
            if not run.verified:
                run.ok = False
                run.error = (f"wrong output: {run.rows_out} rows, expected "
                             f"{meta['e2e_rows_out']}")
            self.verified.add(key)
        elif ok and case in (EXTRACT, LIMIT) and "rows_in" in m.result:
            run.verified = int(m.result["rows_in"]) == meta["rows"]
        # free disk and page cache for the next contender (keep the Dagster instances)
        out.unlink(missing_ok=True)
        clean_dir(sessions)
        clean_dir(scratch)
        return run


    def run_startup(self, command: startup.StartupCommand, rnd: int) -> Run:
        """One start-up command (see startup.py) in a fresh process."""
        log = self.workroot / "logs" / f"startup_{command.name.replace(':', '_')}_{rnd}"
        log.parent.mkdir(parents=True, exist_ok=True)
        m = self.server.run(list(command.cmd), env=child_env(command.env), cwd=command.cwd,
                            log_prefix=log)
        ok = m.returncode == 0
        error = None if ok else (f"exit {m.returncode}" + (" (timeout)" if m.timed_out else "")
                                 + ": " + (m.stderr_tail.strip().splitlines() or [""])[-1][:300])
        if command.sessions is not None:
            clean_dir(command.sessions)  # the session; the Dagster instance (.dagster) stays
        return Run(contender=command.name, case=STARTUP, rows=0, round=rnd, wall_s=m.wall_s,
                   work_s=None, peak_rss_mb=m.peak_rss_mb, sampled_sum_mb=m.sampled_sum_mb,
                   hwm_mb=m.hwm_mb, maxrss_mb=m.maxrss_mb, cpu_s=m.cpu_user_s + m.cpu_sys_s,
                   ok=ok, error=error)


def count_csv_rows(path: Path) -> int | None:
    if not path.exists():
        return None
    import duckdb

    con = duckdb.connect(":memory:")
    try:
        return int(con.execute(f"SELECT count(*) FROM read_csv('{path}', all_varchar=true)")
                   .fetchone()[0])
    finally:
        con.close()


# -- statistics ------------------------------------------------------------------------------------
def summarise(runs: list[Run]) -> dict[tuple[str, str, int], dict[str, Any]]:
    groups: dict[tuple[str, str, int], list[Run]] = {}
    for r in runs:
        if r.case in (OVERHEAD, STARTUP):
            continue
        groups.setdefault((r.contender, r.case, r.rows), []).append(r)
    out = {}
    for key, rs in groups.items():
        good = [r for r in rs if r.ok]
        if not good:
            out[key] = {"ok": False, "n": 0, "errors": sorted({r.error or "?" for r in rs})}
            continue
        walls = [r.wall_s for r in good]
        peaks = [r.peak_rss_mb for r in good]
        works = [r.work_s for r in good if r.work_s is not None]
        med = statistics.median(walls)
        out[key] = {
            "ok": True, "n": len(good), "failed": len(rs) - len(good),
            "wall_median": med, "wall_min": min(walls), "wall_max": max(walls),
            "wall_spread_pct": 100 * (max(walls) - min(walls)) / med if med else 0.0,
            "work_median": statistics.median(works) if works else None,
            "rows_per_s": key[2] / med if med else None,
            "peak_median": statistics.median(peaks), "peak_min": min(peaks),
            "peak_max": max(peaks),
            "cpu_median": statistics.median(r.cpu_s for r in good),
            "extrapolated": False,
            "verified": all(r.verified is not False for r in good),
        }
    return out


def extrapolate(summary: dict, contenders: list[Contender], sizes: list[int],
                target: int) -> list[str]:
    """Fill (contender, case, target) from smaller sizes when it was not run there; returns notes.

    Wall time and peak memory are fitted as a + b * rows through the two largest sizes measured
    (proportional to rows when only one size was measured)."""
    notes = []
    for c in contenders:
        for case in c.cases:
            if case in (OVERHEAD, STARTUP) or (c.name, case, target) in summary \
                    or not c.extrapolate:
                continue
            measured = sorted(n for (name, cs, n), s in summary.items()
                              if name == c.name and cs == case and s.get("ok") and n < target)
            if not measured:
                continue
            if len(measured) >= 2:
                n1, n2 = measured[-2], measured[-1]
                s1, s2 = summary[(c.name, case, n1)], summary[(c.name, case, n2)]

                def fit(a: float, b: float, n1: int = n1, n2: int = n2) -> float:
                    slope = (b - a) / (n2 - n1)
                    return max(b + slope * (target - n2), b)

                wall = fit(s1["wall_median"], s2["wall_median"])
                peak = fit(s1["peak_median"], s2["peak_median"])
                basis = f"{human(n1)} and {human(n2)}"
            else:
                n2 = measured[-1]
                s2 = summary[(c.name, case, n2)]
                wall = s2["wall_median"] * target / n2
                peak = s2["peak_median"]
                basis = human(n2)
            summary[(c.name, case, target)] = {
                "ok": True, "n": 0, "wall_median": wall, "wall_min": wall, "wall_max": wall,
                "wall_spread_pct": 0.0, "work_median": None, "rows_per_s": target / wall,
                "peak_median": peak, "peak_min": peak, "peak_max": peak, "cpu_median": None,
                "extrapolated": True, "basis": basis, "verified": True,
            }
            notes.append(f"{c.name} {case} at {human(target)}: not run (it would take too long "
                         f"at the default sizes; `--full` runs it); **extrapolated** linearly "
                         f"from {basis}")
    return notes


def paired_ratio(runs: list[Run], num: tuple[str, str, int], den: tuple[str, str, int],
                 attr: str = "wall_s") -> dict[str, float] | None:
    """Per-round ratio num/den of runs made in the same round (adjacent in time), then median."""
    return pairing.ratio(runs, pairing.run_of(*num), pairing.run_of(*den), attr)


NOOP_CLI = "dagster_noop_cli"  # what one more asset costs on the CLI's kind of instance


def _overhead_runs(runs: list[Run], contender: str) -> dict[int, dict[int, Run]]:
    """``contender``'s successful overhead runs: steps -> round -> run."""
    return {s: {r.round: r for r in runs if r.case == OVERHEAD and r.contender == contender
                and r.steps == s and r.ok} for s in OVERHEAD_STEPS}


def per_asset_by_round(runs: list[Run], contender: str) -> dict[int, float]:
    """(T20 - T1) / 19 of each round in which both runs of ``contender`` succeeded, seconds."""
    lo, hi = OVERHEAD_STEPS
    by = _overhead_runs(runs, contender)
    return {k: (by[hi][k].wall_s - by[lo][k].wall_s) / (hi - lo)
            for k in sorted(by[lo].keys() & by[hi].keys())}


def overhead_stats(runs: list[Run], contender: str) -> dict[str, Any] | None:
    lo, hi = OVERHEAD_STEPS
    by = _overhead_runs(runs, contender)
    if not by[lo] or not by[hi]:
        return None
    out: dict[str, Any] = {"contender": contender}
    for s in OVERHEAD_STEPS:
        walls = [r.wall_s for r in by[s].values()]
        works = [r.work_s for r in by[s].values() if r.work_s is not None]
        out[f"wall_{s}"] = statistics.median(walls)
        out[f"wall_{s}_min"], out[f"wall_{s}_max"] = min(walls), max(walls)
        out[f"work_{s}"] = statistics.median(works) if works else None
        out[f"peak_{s}"] = statistics.median(r.peak_rss_mb for r in by[s].values())
    rounds = sorted(by[lo].keys() & by[hi].keys())
    per_round = per_asset_by_round(runs, contender)
    per = list(per_round.values())
    out["per_asset_ms"] = 1000 * statistics.median(per)
    noop = per_asset_by_round(runs, NOOP_CLI) if contender != NOOP_CLI else {}
    above = [per_round[k] - noop[k] for k in per_round.keys() & noop.keys()]
    out["per_asset_above_noop_cli_ms"] = 1000 * statistics.median(above) if above else None
    out["per_asset_ms_min"], out["per_asset_ms_max"] = 1000 * min(per), 1000 * max(per)
    per_work = [(by[hi][k].work_s - by[lo][k].work_s) / (hi - lo) for k in rounds
                if by[hi][k].work_s is not None and by[lo][k].work_s is not None]
    out["per_asset_work_ms"] = 1000 * statistics.median(per_work) if per_work else None
    per_cpu = [(by[hi][k].cpu_s - by[lo][k].cpu_s) / (hi - lo) for k in rounds]
    out["per_asset_cpu_ms"] = 1000 * statistics.median(per_cpu)
    out["startup_s"] = out["wall_1"] - (out["work_1"] or 0) if out["work_1"] is not None else None
    return out


# -- targets ---------------------------------------------------------------------------------------
@dataclass
class Target:
    name: str
    subject: str
    description: str
    measured: float | None
    limit: float
    op: str  # "<=", ">=", "<"
    unit: str = ""
    note: str = ""

    @property
    def passed(self) -> bool | None:
        if self.measured is None:
            return None
        return {"<=": self.measured <= self.limit, ">=": self.measured >= self.limit,
                "<": self.measured < self.limit}[self.op]

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]


def evaluate_targets(summary: dict, runs: list[Run], osiris_names: list[str], target: int,
                     base: int, cases: tuple[str, ...] = ALL_CASES) -> list[Target]:
    out: list[Target] = []
    if OVERHEAD in cases:
        for o in osiris_names:
            oh = overhead_stats(runs, o)
            out.append(Target(
                "per_asset_overhead", o, f"per-asset overhead, (T{OVERHEAD_STEPS[1]} - "
                f"T{OVERHEAD_STEPS[0]}) / {OVERHEAD_STEPS[1] - OVERHEAD_STEPS[0]} on "
                f"{OVERHEAD_ROWS}-row tables", oh["per_asset_ms"] if oh else None,
                PER_ASSET_LIMIT_MS, "<=", " ms",
                f"paired per round, range {oh['per_asset_ms_min']:.0f}-"
                f"{oh['per_asset_ms_max']:.0f} ms" if oh else ""))
    if STARTUP in cases:
        out += startup.targets(runs, osiris_names, Target)
    if E2E not in cases and EXTRACT not in cases:
        return out
    T = human(target)

    def s(name: str, case: str, n: int = target) -> dict | None:
        v = summary.get((name, case, n))
        return v if v and v.get("ok") else None

    def ext(name: str, case: str) -> str:
        v = s(name, case)
        return f" ({name} extrapolated from {v['basis']})" if v and v.get("extrapolated") else ""

    def vs_floor(o: str, case: str, attr: str) -> tuple[float | None, str]:
        """Median per-round ratio of `o` to `duckdb_floor` (wall or CPU), with its note."""
        pr = paired_ratio(runs, (o, case, target), ("duckdb_floor", case, target), attr)
        if pr:
            return pr["median"], (f"paired per round, {pr['n']} rounds, range "
                                   f"{pr['min']:.2f}-{pr['max']:.2f}")
        key = "wall_median" if attr == "wall_s" else "cpu_median"
        osv, flo = s(o, case), s("duckdb_floor", case)
        num, den = (osv or {}).get(key), (flo or {}).get(key)
        return (num / den if num and den else None), "ratio of medians"

    for o in osiris_names:
        osv = s(o, E2E)
        stream, novac = s("duckdb_stream", E2E), s("duckdb_floor_novacuum", E2E)
        val, note = vs_floor(o, E2E, "wall_s")
        out.append(Target("e2e_vs_floor", o, f"end to end at {T}: wall / raw-DuckDB floor "
                          "(Dagster start-up included)", val, E2E_WALL_LIMIT, "<=", "x",
                          note + (f"; vs the floor with max_vacuum_tasks=0: "
                                  f"{osv['wall_median'] / novac['wall_median']:.2f}x"
                                  if osv and novac else "")
                          + (f"; vs one streaming COPY (no tables kept): "
                             f"{osv['wall_median'] / stream['wall_median']:.2f}x"
                             if osv and stream else "")))
        val, note = vs_floor(o, E2E, "cpu_s")
        out.append(Target("e2e_cpu_vs_floor", o, f"end to end at {T}: CPU seconds / raw-DuckDB "
                          "floor's", val, E2E_CPU_LIMIT, "<=", "x", note))
        ose = s(o, EXTRACT)
        val, note = vs_floor(o, EXTRACT, "wall_s")
        out.append(Target("extract_vs_floor", o, f"extract at {T}: wall / raw-DuckDB extract "
                          "(`CREATE TABLE AS ... read_csv`, DuckDB's defaults)", val,
                          EXTRACT_WALL_LIMIT, "<=", "x", note))
        a = s("dagster_duckdb_pandas", EXTRACT)
        val = a["peak_median"] / ose["peak_median"] if a and ose else None
        out.append(Target("extract_memory_vs_dagster_duckdb_pandas", o,
                          f"extract at {T}: dagster-duckdb-pandas peak RSS / osiris peak RSS",
                          val, 5.0, ">=", "x", ext("dagster_duckdb_pandas", EXTRACT).strip()))
        peaks = [v["peak_median"] for v in (s(o, E2E), s(o, EXTRACT)) if v]
        out.append(Target("peak_memory", o, f"peak RSS of the process tree at {T} "
                          "(max of e2e and extract)", max(peaks) if peaks else None, 600.0, "<=",
                          " MB"))
        growth = []
        for case in (E2E, EXTRACT):
            hi, lo = s(o, case), s(o, case, base)
            if hi and lo and base != target:
                growth.append((hi["peak_median"] / lo["peak_median"], case))
        g = max(growth) if growth else None
        note = f"worst case: {g[1]}" if g else \
            "one size measured: growth needs two (e.g. --rows 1e6,1e7)" if base == target else ""
        out.append(Target("peak_memory_growth", o, f"peak RSS growth {human(base)} -> {T} "
                          "(worse of e2e and extract)", g[0] if g else None, 1.5, "<", "x",
                          note))
    return out


# -- report ----------------------------------------------------------------------------------------
def fmt_s(v: float | None) -> str:
    if v is None:
        return "-"
    if v < 0.1:
        return f"{v:.3f}"
    return f"{v:.2f}" if v < 100 else f"{v:.0f}"


def fmt_measured(v: float, unit: str) -> str:
    return f"{v:.3f}{unit}" if unit == "x" else f"{v:.0f}{unit}"


def fmt_rate(v: float | None) -> str:
    if not v:
        return "-"
    if v >= 1e9:
        return f"{v / 1e9:.1f}G"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    return f"{v / 1e3:.0f}k"


def case_table(summary: dict, runs: list[Run], case: str, sizes: list[int], names: list[str],
               floor: str | None) -> list[str]:
    header = ("| rows | contender | wall s median [min-max] | in-process s | CPU s | rows/s | "
              "peak RSS MB median [min-max] | wall / floor |")
    lines = [header, "|" + "---|" * 8]
    for n in sizes:
        for name in names:
            v = summary.get((name, case, n))
            if v is None:
                continue
            if not v.get("ok"):
                lines.append(f"| {human(n)} | {name} | FAILED: {'; '.join(v['errors'])[:120]} "
                             "| | | | | |")
                continue
            ratio = "-"
            if floor and name != floor and (floor, case, n) in summary and \
                    summary[(floor, case, n)].get("ok"):
                pr = None if v.get("extrapolated") else paired_ratio(
                    runs, (name, case, n), (floor, case, n))
                r = pr["median"] if pr else v["wall_median"] / summary[(floor, case, n)][
                    "wall_median"]
                ratio = f"{r:.2f}x"
            elif name == floor:
                ratio = "1.00x"
            if v.get("extrapolated"):
                wall = f"~{fmt_s(v['wall_median'])} (extrapolated from {v['basis']})"
                peak = f"~{v['peak_median']:.0f} (extrapolated)"
            else:
                wall = (f"{fmt_s(v['wall_median'])} [{fmt_s(v['wall_min'])}-"
                        f"{fmt_s(v['wall_max'])}]")
                peak = f"{v['peak_median']:.0f} [{v['peak_min']:.0f}-{v['peak_max']:.0f}]"
            lines.append(f"| {human(n)} | {name} | {wall} | {fmt_s(v.get('work_median'))} | "
                         f"{fmt_s(v.get('cpu_median'))} | {fmt_rate(v['rows_per_s'])} | {peak} | "
                         f"{ratio} |")
    return lines


def repeats_text(report: dict) -> str:
    """How many interleaved rounds each case that ran had."""
    cases = report["cases"]
    parts = []
    if any(c in cases for c in (E2E, EXTRACT, LIMIT)):
        parts.append(f"{report['repeats']} interleaved repeats per size")
    if OVERHEAD in cases:
        parts.append(f"{report['overhead_repeats']} interleaved rounds for the overhead case")
    if STARTUP in cases:
        parts.append(f"{report['startup_repeats']} for the start-up case")
    return ", ".join(parts) + f"; cases: {', '.join(cases)}"


def render(report: dict) -> str:
    summary = report["_summary"]
    runs = report["_runs"]
    sizes = report["sizes"]
    names = [c["name"] for c in report["contenders"]]
    m = report["machine"]
    L = [f"## Results of {report['finished']}", "",
         f"Machine: {m['cpu_model']}, {m['cpus']} CPUs, {m['ram_gb']:.1f} GB RAM, {m['os']}; "
         f"Python {m['python']}, duckdb {m['versions'].get('duckdb')}, dagster "
         f"{m['versions'].get('dagster')}, pandas {m['versions'].get('pandas')}, "
         f"dagster-duckdb-pandas {m['versions'].get('dagster-duckdb-pandas')}, dlt "
         f"{m['versions'].get('dlt')}; osiris-dagster at {m['git']}. Load average "
         f"before/after: {m['loadavg_before']} / {m['loadavg_after']}.", "",
         f"Command: `{report['command']}` ({repeats_text(report)}; total "
         f"{report['elapsed_s']:.0f} s).", ""]
    if report.get("variants"):
        L += ["Variants (osiris_cli with a changed environment): " + "; ".join(
            f"`{k}`: {', '.join(f'{a}={b}' for a, b in v.items())}"
            for k, v in report["variants"].items()), ""]
    L += ["### Targets", "", "| target | subject | measured | limit | result | note |",
          "|---|---|---|---|---|---|"]
    for t in report["targets"]:
        meas = "-" if t["measured"] is None else fmt_measured(t["measured"], t["unit"])
        lim = f"{t['op']} {t['limit']:g}{t['unit']}"
        L.append(f"| {t['description']} | {t['subject']} | {meas} | {lim} | **{t['verdict']}** "
                 f"| {t['note']} |")
    if report.get("startup"):
        L += ["", "### Start-up: fixed cost of a command (bundled 60-row example)", ""]
        L += startup.table(report["startup"])
        L += ["", f"Per round: `python -c \"import dagster\"`, `python -c pass`, then "
              f"`osiris-dagster validate {startup.EXAMPLE}` and `osiris-dagster run "
              f"{startup.EXAMPLE}` (its Dagster instance kept across rounds) per osiris "
              "contender; the ratio is taken within each round, median over rounds."]
    for case, title, floor in ((E2E, "End to end: CSV -> filter/derive -> CSV", "duckdb_floor"),
                               (EXTRACT, "Extract only: CSV -> table in a DuckDB file",
                                "duckdb_floor"),
                               (LIMIT, "Physical limits (read the CSV, keep nothing)", None)):
        if any(k[1] == case for k in summary):
            L += ["", f"### {title}", ""]
            L += case_table(summary, runs, case, sizes, names, floor)
    L += ["", f"### Per-asset overhead ({OVERHEAD_ROWS}-row tables)", "",
          "| contender | 1 step: wall s [min-max] | 20 steps: wall s [min-max] | 1 step in-process "
          "s | 20 steps in-process s | per asset (wall) | per asset (in-process) | per asset (CPU) "
          f"| above `{NOOP_CLI}` (paired) | peak MB (20) |",
          "|---|---|---|---|---|---|---|---|---|---|"] if report["overhead"] else []
    for o in report["overhead"]:
        L.append(
            f"| {o['contender']} | {o['wall_1']:.2f} [{o['wall_1_min']:.2f}-{o['wall_1_max']:.2f}]"
            f" | {o['wall_20']:.2f} [{o['wall_20_min']:.2f}-{o['wall_20_max']:.2f}] | "
            f"{fmt_s(o['work_1'])} | {fmt_s(o['work_20'])} | {o['per_asset_ms']:.0f} ms "
            f"[{o['per_asset_ms_min']:.0f}-{o['per_asset_ms_max']:.0f}] | "
            + (f"{o['per_asset_work_ms']:.0f} ms" if o.get("per_asset_work_ms") is not None
               else "-") + f" | {o['per_asset_cpu_ms']:.0f} ms | "
            + (f"{o['per_asset_above_noop_cli_ms']:.0f} ms"
               if o.get("per_asset_above_noop_cli_ms") is not None else "-")
            + f" | {o['peak_20']:.0f} |")
    L += ["", "Per-asset overhead = (time of the 20-step run - time of the 1-step run) / 19, per "
          "round (the two runs are adjacent in time), median over rounds. The 1-step pipeline is "
          "the CSV extract alone; the 20-step one adds 19 SQL steps, each `SELECT *, k AS step_k "
          "FROM input_df WHERE id > 0` on the previous step's table, so process start-up, "
          "imports, definitions and the extract cancel out and what remains is what one more "
          "asset costs: Dagster's step orchestration and event log writes, the IO manager, our "
          "per-step DuckDB work (query check, table, swap, row counts, preview; the SQL steps "
          "of a session share one sealed instance), metadata and session logs. *Above "
          f"`{NOOP_CLI}`*: the same difference less `{NOOP_CLI}`'s in the same round, what one "
          "more asset costs beyond a Dagster asset that does nothing on the same kind of "
          "instance (the product's own share).", ""] \
        if report["overhead"] else []
    if report["notes"]:
        L += ["### Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    L += ["### Contenders", ""] + [f"- `{c['name']}`: {c['description']}"
                                   for c in report["contenders"]]
    L += ["", "wall = the whole subprocess (interpreter start, imports, work, exit) timed by the "
          "harness; in-process = the contender's own timed region (for `osiris_cli` the CLI's "
          "`done in` figure); rows/s = input rows / median wall; peak RSS = whole process tree; "
          "wall / floor = median over rounds of the per-round ratio to `duckdb_floor`.", ""]
    return "\n".join(L)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report["_summary"]
    names = [c["name"] for c in report["contenders"]]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    panels = [(E2E, "End to end (CSV -> filter/derive -> CSV)"),
              (EXTRACT, "Extract only (CSV -> DuckDB table); dashed grey: read limits")]
    cmap = plt.get_cmap("tab10")
    for row, (case, title) in enumerate(panels):
        ax_rate, ax_mem = axes[row]
        for i, name in enumerate(names):
            cases = [case] + ([LIMIT] if case == EXTRACT else [])
            for cs in cases:
                pts = sorted((n, v) for (nm, c, n), v in summary.items()
                             if nm == name and c == cs and v.get("ok"))
                if not pts:
                    continue
                style = dict(color=cmap(i % 10), marker="o", label=name)
                if cs == LIMIT:
                    style.update(color="grey", linestyle="--", marker="x")
                    style["label"] = name
                xs = [n for n, _ in pts]
                ax_rate.plot(xs, [v["rows_per_s"] for _, v in pts], **style)
                ax_mem.plot(xs, [v["peak_median"] for _, v in pts], **style)
                ex = [(n, v) for n, v in pts if v.get("extrapolated")]
                if ex:
                    for ax, key in ((ax_rate, "rows_per_s"), (ax_mem, "peak_median")):
                        ax.scatter([n for n, _ in ex], [v[key] for _, v in ex], s=90,
                                   facecolors="white", edgecolors=style["color"], zorder=3)
        for ax, ylabel in ((ax_rate, "rows/s (input rows / median wall)"),
                           (ax_mem, "peak RSS of process tree, MB")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("input rows")
            ax.set_ylabel(ylabel)
            ax.set_title(title, fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
        ax_mem.axhline(600, color="red", linewidth=0.8, linestyle=":")
        ax_mem.text(ax_mem.get_xlim()[0], 620, " 600 MB target", color="red", fontsize=8)
        ax_rate.legend(fontsize=7, loc="best")
    m = report["machine"]
    fig.suptitle(f"osiris-dagster benchmark {report['finished']} - {m['cpus']} CPUs, "
                 f"{m['ram_gb']:.0f} GB, Python {m['python']}, duckdb "
                 f"{m['versions'].get('duckdb')}, dagster {m['versions'].get('dagster')}"
                 " (hollow markers: extrapolated)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine_info() -> dict[str, Any]:
    import platform
    import subprocess
    from importlib import metadata

    import psutil

    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("duckdb", "dagster", "pandas", "pyarrow", "dagster-duckdb-pandas", "dlt",
                 "psutil", "osiris-dagster"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    git = "?"
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                                "osiris_dagster"], capture_output=True, text=True,
                               check=False).stdout.strip()
        git = head + (" (osiris_dagster/ modified)" if dirty else "")
    except OSError:
        pass
    return {"cpu_model": model, "cpus": os.cpu_count(),
            "physical_cores": psutil.cpu_count(logical=False),
            "ram_gb": psutil.virtual_memory().total / 1e9,
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "versions": versions, "git": git,
            "loadavg_before": tuple(round(x, 2) for x in os.getloadavg())}


README_START = "<!-- results:start (written by python -m benchmarks) -->"
README_END = "<!-- results:end -->"


def update_readme(md: str, readme: Path) -> None:
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    block = (f"{README_START}\n\n{md}\n\n![rows/s and peak memory against input size]"
             f"(results/latest.png)\n\n{README_END}")
    if README_START in text and README_END in text:
        pre, rest = text.split(README_START, 1)
        _, post = rest.split(README_END, 1)
        text = pre + block + post
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    readme.write_text(text, encoding="utf-8")


# -- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default=",".join(str(n) for n in DEFAULT_SIZES),
                   help="input sizes, e.g. 1e6,3e6,1e7 or 1M,3M,10M (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds per size")
    p.add_argument("--overhead-repeats", type=int, default=7)
    p.add_argument("--startup-repeats", type=int, default=7)
    p.add_argument("--cases", default=",".join(ALL_CASES),
                   help="cases to run (default: %(default)s); e.g. overhead,startup for the "
                        "fixed costs alone, a couple of minutes")
    p.add_argument("--contenders", help="comma-separated subset (default: all available)")
    p.add_argument("--skip", default="", help="comma-separated contenders to leave out")
    p.add_argument("--no-overhead", action="store_true", help="skip the 20-step overhead case")
    p.add_argument("--full", action="store_true",
                   help="run slow contenders at every size too (no extrapolation; much longer)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=K=V[,K=V]",
                   help="add osiris_cli+NAME run with these environment variables, e.g. "
                        "mem256=OSIRIS_DUCKDB_MEMORY_LIMIT=256MB or "
                        "patched=PYTHONPATH=/tmp/scratch (a copy of osiris_dagster)")
    p.add_argument("--data-dir", type=Path, help="cache of generated CSVs")
    p.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    p.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    p.add_argument("--no-install", action="store_true", help="do not pip-install missing deps")
    p.add_argument("--no-dlt", action="store_true", help="leave out the optional dlt contender")
    p.add_argument("--keep-workdir", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 100k and 300k rows, 1 round, 2 overhead rounds")
    args = p.parse_args(argv)
    started = time.perf_counter()
    cases = tuple(c for c in ALL_CASES if c in args.cases.split(","))
    if args.no_overhead:
        cases = tuple(c for c in cases if c != OVERHEAD)
    unknown = set(filter(None, args.cases.split(","))) - set(ALL_CASES)
    if unknown or not cases:
        raise SystemExit(f"--cases: choose from {', '.join(ALL_CASES)} (got {args.cases!r})")
    sized = [c for c in cases if c in (E2E, EXTRACT, LIMIT)]

    problems = bootstrap.ensure(with_dlt=not args.no_dlt, install=not args.no_install)
    from .measure import MeasureServer

    server = MeasureServer()  # started before this process loads DuckDB (see measure.py)
    from .data import dataset, default_cache_dir

    if args.quick:
        args.rows, args.repeats, args.overhead_repeats = "1e5,3e5", 1, 2
        args.startup_repeats = 2
    sizes = parse_rows(args.rows) if sized else []
    target = TARGET_SIZE if TARGET_SIZE in sizes or not sizes else max(sizes)
    base = BASE_SIZE if BASE_SIZE in sizes or not sizes else min(sizes)
    notes: list[str] = []
    if sizes and target != TARGET_SIZE:
        notes.append(f"the targets are defined at 10M rows; this run evaluates them at "
                     f"{human(target)} (and memory growth from {human(base)})")

    contenders = registry()
    variants = dict(parse_variant(v) for v in args.variant)
    base_cli = next(c for c in contenders if c.name == "osiris_cli")
    for vname, venv in variants.items():
        contenders.insert(1 + list(variants).index(vname), Contender(
            f"osiris_cli+{vname}", "osiris_cli", base_cli.cases,
            f"osiris_cli with {', '.join(f'{k}={v}' for k, v in venv.items())}", env=venv,
            role="osiris"))
    if args.no_dlt:
        problems.setdefault("dlt_filesystem", "left out (--no-dlt)")
    wanted = set(args.contenders.split(",")) if args.contenders else None
    skip = set(filter(None, args.skip.split(",")))
    chosen = []
    for c in contenders:
        if c.name in problems:
            notes.append(f"{c.name}: not run: {problems[c.name]}")
            continue
        if (wanted and c.name not in wanted) or c.name in skip:
            continue
        chosen.append(c)
    contenders = chosen
    osiris_names = [c.name for c in contenders if c.kind == "osiris_cli"]

    cache = args.data_dir or default_cache_dir()
    print(f"# data: generating/reusing CSVs in {cache}", file=sys.stderr, flush=True)
    data = {n: dataset(n, cache) for n in sizes}
    tiny = dataset(OVERHEAD_ROWS, cache)
    machine = machine_info()

    workroot = Path(tempfile.mkdtemp(prefix="osiris-bench-"))
    runner = Runner(workroot, server)
    runs: list[Run] = []
    starts = startup.prepare(workroot, REPO, [(c.name, runner.cli, c.env) for c in contenders
                                              if c.kind == "osiris_cli"]) \
        if STARTUP in cases else []
    try:
        # warm-up: .pyc files, Dagster instances, page cache of the libraries (not recorded)
        print("# warm-up (not recorded)", file=sys.stderr, flush=True)
        for c in contenders:
            case = next((cs for cs in c.cases if cs in sized), None)
            if case is None and OVERHEAD in c.cases and OVERHEAD in cases:
                case = EXTRACT  # the overhead case's 1-step pipeline is the extract
            if case is None:
                continue
            w = runner.run(c, case, tiny[0], tiny[1], rnd=-1, verify=False)
            if not w.ok:
                print(f"  warm-up of {c.name} failed: {w.error}", file=sys.stderr)
        for command in starts:
            w = runner.run_startup(command, rnd=-1)
            if not w.ok:
                print(f"  warm-up of {command.name} failed: {w.error}", file=sys.stderr)

        plan: list[tuple[int, Contender, str]] = []
        for n in sizes:
            for c in contenders:
                for case in c.cases:
                    if case not in sized:
                        continue
                    cap = c.caps.get(case)
                    if cap and n > cap and not args.full:
                        continue
                    plan.append((n, c, case))
        total = len(plan) * args.repeats
        done = 0
        for n in sizes:
            entries = [(c, case) for (m, c, case) in plan if m == n]
            for rnd in range(args.repeats):
                order = entries if rnd % 2 == 0 else list(reversed(entries))
                for c, case in order:
                    done += 1
                    r = runner.run(c, case, data[n][0], data[n][1], rnd)
                    runs.append(r)
                    status = "ok" if r.ok else f"FAILED {r.error}"
                    print(f"[{done}/{total} {time.perf_counter() - started:5.0f}s] {human(n):>4} "
                          f"{case:8} {c.name:28} r{rnd}: {r.wall_s:7.2f} s "
                          f"{r.peak_rss_mb:7.0f} MB {status}", file=sys.stderr, flush=True)
        if OVERHEAD in cases:
            ocs = [c for c in contenders if OVERHEAD in c.cases]
            entries = [(c, s) for c in ocs for s in OVERHEAD_STEPS]
            for rnd in range(args.overhead_repeats):
                order = entries if rnd % 2 == 0 else list(reversed(entries))
                for c, steps in order:
                    r = runner.run(c, OVERHEAD, tiny[0], tiny[1], rnd, steps=steps)
                    runs.append(r)
                    print(f"[overhead {time.perf_counter() - started:5.0f}s] {c.name:28} "
                          f"{steps:2d} steps r{rnd}: {r.wall_s:6.2f} s "
                          f"{'ok' if r.ok else 'FAILED ' + str(r.error)}", file=sys.stderr,
                          flush=True)
        for rnd in range(args.startup_repeats if starts else 0):
            for command in (starts if rnd % 2 == 0 else list(reversed(starts))):
                r = runner.run_startup(command, rnd)
                runs.append(r)
                print(f"[startup {time.perf_counter() - started:5.0f}s] {command.name:28} "
                      f"r{rnd}: {r.wall_s:6.2f} s {'ok' if r.ok else 'FAILED ' + str(r.error)}",
                      file=sys.stderr, flush=True)
    finally:
        server.close()
        if not args.keep_workdir:
            shutil.rmtree(workroot, ignore_errors=True)
        else:
            print(f"# work dir kept: {workroot}", file=sys.stderr)

    summary = summarise(runs)
    notes += extrapolate(summary, contenders, sizes, target)
    for (name, case, n), v in sorted(summary.items()):
        if v.get("ok") and not v.get("verified"):
            notes.append(f"{name} {case} at {human(n)}: output row count did not match")
    overhead = [o for o in (overhead_stats(runs, c.name) for c in contenders
                            if OVERHEAD in c.cases) if o]
    targets = evaluate_targets(summary, runs, osiris_names, target, base, cases)
    machine["loadavg_after"] = tuple(round(x, 2) for x in os.getloadavg())
    argv_text = " ".join(sys.argv[1:]) if argv is None else " ".join(argv)
    report: dict[str, Any] = {
        "finished": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": f"python -m benchmarks {argv_text}".strip(),
        "sizes": sizes, "target_size": target, "base_size": base, "repeats": args.repeats,
        "overhead_repeats": args.overhead_repeats,
        "startup_repeats": args.startup_repeats, "cases": list(cases),
        "startup": startup.summary(runs), "machine": machine,
        "variants": variants, "elapsed_s": time.perf_counter() - started,
        "data": {str(n): m for n, (_, m) in data.items()},
        "contenders": [{"name": c.name, "description": c.description, "role": c.role,
                        "cases": list(c.cases), "caps": c.caps, "env": c.env}
                       for c in contenders],
        "targets": [asdict(t) | {"verdict": t.verdict} for t in targets],
        "overhead": overhead, "notes": notes,
        "_summary": summary, "_runs": runs,
    }
    md = render(report)
    partial = set(cases) != set(ALL_CASES)
    if partial and args.out.resolve() == (HERE / "results").resolve():
        # a subset of the cases does not replace the full report (nor the README's block)
        args.out = HERE / "results" / ("cases-" + "-".join(cases))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text(md + "\n", encoding="utf-8")
    if sized:
        plot(report, args.out / "latest.png")
    js = {k: v for k, v in report.items() if not k.startswith("_")}
    js["summary"] = [{"contender": k[0], "case": k[1], "rows": k[2], **v}
                     for k, v in sorted(summary.items())]
    js["runs"] = [asdict(r) for r in runs]
    (args.out / "latest.json").write_text(json.dumps(js, indent=1, default=str) + "\n",
                                          encoding="utf-8")
    if not args.no_readme and args.out.resolve() == (HERE / "results").resolve():
        update_readme(md, HERE / "README.md")
    print(md)
    print()
    for t in targets:
        meas = "-" if t.measured is None else fmt_measured(t.measured, t.unit)
        print(f"{t.verdict:4}  [{t.subject}] {t.description}: {meas} (target {t.op} "
              f"{t.limit:g}{t.unit})")
    print(f"\nresults: {args.out / 'latest.md'}, latest.json, latest.png "
          f"({time.perf_counter() - started:.0f} s)")
    return 0
