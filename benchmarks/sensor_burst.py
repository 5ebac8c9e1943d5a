"""``python -m benchmarks.sensor_burst``: file dropped -> run SUCCESS under `dagster dev`.

1. A scratch project (`benchmarks/burst_project.py`: the bundled `incoming_movies.yaml` and its
   CSV sensor, plus copies of `director_stats.yaml` up to --pipelines files), a fresh
   DAGSTER_HOME, `dagster dev` in its own process group. Once the code location is LOADED and
   the sensor RUNNING, --files small CSV files are dropped in one burst; each run's Dagster
   events (from the instance's event log) give, per file: drop -> run created (RUN_ENQUEUED),
   -> dequeued and launched (RUN_STARTING), -> the run worker running the job (RUN_START),
   -> RUN_SUCCESS.
2. Definitions load time: fresh processes, interleaved rounds, of `python -c "import dagster"`
   and of `import dagster; import osiris_dagster; build_definitions()` over 1 and over N
   pipeline files (what a run worker and a code server pay on top of Dagster's import).
3. Writes `benchmarks/results/sensor_burst.md` and prints it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import burst_project as bp

RESULTS = Path(__file__).resolve().parent / "results"
SENSOR_JOB_TAG = "dagster/sensor_name"
INTERVALS = [("drop -> run created (queued)", "drop", "enqueued"),
             ("created -> launched (dequeued)", "enqueued", "starting"),
             ("launched -> run worker executing (RUN_START)", "starting", "start"),
             ("RUN_START -> SUCCESS (the 3 steps)", "start", "success"),
             ("**drop -> SUCCESS**", "drop", "success")]

LOAD_SNIPPET = """\
import json, sys, time
t0 = time.perf_counter()
import dagster
t1 = time.perf_counter()
from osiris_dagster import build_definitions
import osiris_dagster.dagster_layer.loader
import osiris_dagster.dagster_layer.assets as assets
t2 = time.perf_counter()
validating = [0.0]
validate = assets.validate_pipeline
def timed_validate(*args, **kwargs):  # the OML checks: ours, inside build_definitions
    started = time.perf_counter()
    try:
        return validate(*args, **kwargs)
    finally:
        validating[0] += time.perf_counter() - started
assets.validate_pipeline = timed_validate
defs = build_definitions(pipelines_dir=sys.argv[1])
t3 = time.perf_counter()
print(json.dumps({"import_dagster": t1 - t0, "import_osiris": t2 - t1, "build": t3 - t2,
                  "validate": validating[0],
                  "assets": len(list(defs.resolve_asset_graph().get_all_asset_keys()))}))
"""


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def loadavg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


# ---------------------------------------------------------------- part 1: the burst

def drop_files(incoming: Path, n: int) -> dict[str, float]:
    """n copies of the bundled movies.csv, each written under a temporary name and renamed."""
    data = (bp.REPO / "pipelines" / "data" / "movies.csv").read_bytes()
    dropped = {}
    for i in range(n):
        final = incoming / f"burst_{i:02d}.csv"
        tmp = incoming / f".burst_{i:02d}.part"
        tmp.write_bytes(data)
        t = time.time()
        os.replace(tmp, final)
        dropped[str(final.resolve())] = t
    return dropped


def run_events(home: Path, run_ids: list[str]) -> dict[str, dict[str, float]]:
    """Per run: the timestamps of its lifecycle events, from the instance's event log."""
    os.environ["DAGSTER_HOME"] = str(home)
    from dagster import DagsterEventType as E
    from dagster import DagsterInstance

    kinds = {E.RUN_ENQUEUED: "enqueued", E.RUN_DEQUEUED: "dequeued", E.RUN_STARTING: "starting",
             E.RUN_START: "start", E.RUN_SUCCESS: "success", E.RUN_FAILURE: "failure"}
    out: dict[str, dict[str, float]] = {}
    with DagsterInstance.get() as instance:
        for run_id in run_ids:
            stamps: dict[str, float] = {}
            for entry in instance.all_logs(run_id, of_type=set(kinds)):
                stamps.setdefault(kinds[entry.dagster_event_type], entry.timestamp)
            out[run_id] = stamps
    return out


def burst(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    work = bp.make_project(root, args.pipelines, args.settle_seconds, args.interval_seconds)
    home = bp.make_home(root, args.max_concurrent_runs)
    t0 = time.monotonic()
    dev = bp.start(work, home, root / "dagster_dev.log")
    try:
        bp.wait_for(dev.loaded, 180, "dagster dev to load the code location")
        load_s = time.monotonic() - t0
        sensor = bp.wait_for(lambda: _sensor_running(dev), 60, "the sensor to be RUNNING")
        time.sleep(1)
        la_drop = loadavg()
        dropped = drop_files(work / "incoming", args.files)

        def finished() -> list[dict[str, Any]] | None:
            dev.alive()
            runs = [r for r in dev.runs()
                    if {t["key"]: t["value"] for t in r["tags"]}.get("osiris/file") in dropped]
            done = [r for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
            return runs if len(done) >= len(dropped) else None

        runs = bp.wait_for(finished, args.timeout, f"{args.files} runs to finish", poll=1)
        la_done = loadavg()
        ticks = sensor_ticks(dev, sensor)
    finally:
        bp.stop(dev)
    events = run_events(home, [r["runId"] for r in runs])
    rows = []
    for r in runs:
        tags = {t["key"]: t["value"] for t in r["tags"]}
        stamps = {"drop": dropped[tags["osiris/file"]], **events[r["runId"]]}
        rows.append({"run_id": r["runId"], "file": Path(tags["osiris/file"]).name,
                     "status": r["status"], **stamps})
    return {"rows": rows, "load_s": load_s, "sensor": sensor["sensorName"], "ticks": ticks,
            "loadavg_drop": la_drop,
            "loadavg_done": la_done, "work": str(work)}


def _sensor_running(dev: bp.DagsterDev) -> dict[str, str] | None:
    data = dev.graphql("{ workspaceOrError { ... on Workspace { locationEntries { name "
                       "locationOrLoadError { ... on RepositoryLocation { repositories { name "
                       "sensors { name sensorState { status } } } } } } } } }")
    for entry in data["workspaceOrError"]["locationEntries"]:
        for repo in (entry["locationOrLoadError"] or {}).get("repositories", []):
            for s in repo["sensors"]:
                if s["sensorState"]["status"] == "RUNNING":
                    return {"repositoryLocationName": entry["name"],
                            "repositoryName": repo["name"], "sensorName": s["name"]}
    return None


def sensor_ticks(dev: bp.DagsterDev, selector: dict[str, str]) -> list[dict[str, Any]]:
    """The sensor's recent ticks: start, end, status, runs requested."""
    data = dev.graphql("query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { "
                       "... on Sensor { sensorState { ticks(limit: 50) { timestamp "
                       "endTimestamp status runIds } } } } }", {"s": selector})
    return list(data["sensorOrError"]["sensorState"]["ticks"])


# ------------------------------------------- part 1b: our sensor's evaluation, alone

EVAL_SNIPPET = """\
import json, statistics, sys, time
import dagster as dg
from osiris_dagster import build_definitions
defs = build_definitions(pipelines_dir="pipelines")
sensor = defs.resolve_sensor_def("incoming_movies_sensor")
times = []
with dg.DagsterInstance.local_temp() as instance:
    for _ in range(int(sys.argv[1])):
        ctx = dg.build_sensor_context(instance=instance, cursor=None)
        t = time.perf_counter()
        data = sensor.evaluate_tick(ctx)
        times.append(time.perf_counter() - t)
print(json.dumps({"runs": len(data.run_requests or []), "median": statistics.median(times),
                  "min": min(times), "max": max(times)}))
"""


def sensor_evaluation(args: argparse.Namespace, work: Path, root: Path) -> dict[str, Any]:
    """Our sensor function alone on --files new files (no settling: settle_seconds 0), in one
    process, cursor reset each time: what the daemon's call into the code server costs us."""
    ev = root / "sensor_eval"
    (ev / "pipelines").mkdir(parents=True)
    text = (work / "pipelines" / bp.SENSOR_PIPELINE).read_text(encoding="utf-8")
    (ev / "pipelines" / bp.SENSOR_PIPELINE).write_text(
        re.sub(r"settle_seconds: [\d.]+", "settle_seconds: 0", text), encoding="utf-8")
    (ev / "incoming").mkdir()
    drop_files(ev / "incoming", args.files)
    _, _, out = timed([sys.executable, "-c", EVAL_SNIPPET, str(args.rounds)], ev)
    return dict(json.loads(out.strip().splitlines()[-1]))


# ------------------------------------------------------- part 2: definitions load time

def timed(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """Wall and CPU (user + system) of one fresh process, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"{cmd} failed:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def load_times(args: argparse.Namespace, work: Path, root: Path) -> dict[str, Any]:
    one = root / "one_pipeline"
    one.mkdir()
    (one / bp.SENSOR_PIPELINE).write_text(
        (work / "pipelines" / bp.SENSOR_PIPELINE).read_text(encoding="utf-8"))
    py = sys.executable
    cmds = {"python -c pass": [py, "-c", "pass"],
            "python -c 'import dagster'": [py, "-c", "import dagster"],
            "build_definitions, 1 file": [py, "-c", LOAD_SNIPPET, str(one)],
            f"build_definitions, {args.pipelines} files":
                [py, "-c", LOAD_SNIPPET, str(work / "pipelines")]}
    res: dict[str, list[dict[str, Any]]] = {k: [] for k in cmds}
    timed(cmds[f"build_definitions, {args.pipelines} files"], work)  # warm-up: .pyc, caches
    for rnd in range(args.rounds):
        order = list(cmds) if rnd % 2 == 0 else list(reversed(cmds))
        for name in order:
            wall, cpu, out = timed(cmds[name], work)
            res[name].append({"wall": wall, "cpu": cpu,
                              **(json.loads(out.strip().splitlines()[-1]) if "build" in name
                                 else {})})
    return res


# ------------------------------------------------------------------------- report

def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for pkg in ("dagster", "dagster-webserver", "duckdb", "osiris-dagster"):
        try:
            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001 - a missing package is reported, not fatal
            out[pkg] = "?"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=bp.REPO,
                            capture_output=True, text=True, check=False).stdout.strip()
    out["osiris-dagster commit"] = commit or "?"
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def report(args: argparse.Namespace, b: dict[str, Any], lt: dict[str, Any],
           ev: dict[str, Any], la_start: str, la_end: str, started: str) -> str:
    rows = b["rows"]
    ok = [r for r in rows if r["status"] == "SUCCESS" and "success" in r]
    v = versions()
    lines = [
        "# Sensor burst: file dropped -> run SUCCESS under `dagster dev` (issue 15)", "",
        f"`python -m benchmarks.sensor_burst --files {args.files} --pipelines {args.pipelines} "
        f"--max-concurrent-runs {args.max_concurrent_runs} --rounds {args.rounds}`, "
        f"started {started} UTC.", "",
        f"- Machine: {os.cpu_count()} cores ({cpu_model()}), {platform.platform()}; "
        "**shared with other work**: load average (1/5/15 min) "
        f"{la_start} at start, {b['loadavg_drop']} at the drop, {b['loadavg_done']} when the "
        f"last run finished, {la_end} at the end. Wall times move with the load.",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"- Project: the bundled `incoming_movies.yaml` (sensor `{b['sensor']}`: settle "
        f"{args.settle_seconds if args.settle_seconds is not None else 5} s, minimum interval "
        f"{args.interval_seconds if args.interval_seconds is not None else 10} s, archive to "
        f"processed/) plus {args.pipelines - 1} copies of `director_stats.yaml`: a code location "
        f"of {args.pipelines} pipeline files. Dagster instance: `run_queue: "
        f"{{max_concurrent_runs: {args.max_concurrent_runs}, dequeue_interval_seconds: 1, "
        "dequeue_use_threads: true}`, `sensors: {use_threads: true}` (Dagster's default "
        "max_concurrent_runs is 10).",
        f"- `dagster dev` start -> code location LOADED: {b['load_s']:.1f} s.", "",
        f"## 1. Burst: {args.files} CSV files (60 rows each) dropped at once", "",
        f"{len(ok)} of {len(rows)} runs SUCCESS. Burst total (first drop -> last SUCCESS): "
        + (f"**{max(r['success'] for r in ok) - min(r['drop'] for r in rows):.1f} s**."
           if ok else "-"), "",
        "| interval, per file | p50 s | p95 s | max s | whose |", "|---|---|---|---|---|"]
    whose = ["Dagster's sensor daemon tick (~5 s loop floor, minimum_interval) + our "
             "settle_seconds + our sensor evaluation",
             f"Dagster's run queue (max_concurrent_runs={args.max_concurrent_runs}, "
             "1 s dequeue): waits for earlier runs",
             "run worker start: a `spawn` process of the code server (Python, Dagster's "
             "imports, instance, run events) + `import osiris_dagster` + definitions of all "
             "pipeline files (ours, see 2.)",
             "the run: Dagster's step orchestration and event writes + our 3 steps",
             "all of the above"]
    for (label, a, z), who in zip(INTERVALS, whose, strict=True):
        vals = [r[z] - r[a] for r in ok if a in r and z in r]
        if vals:
            lines.append(f"| {label} | {pct(vals, 50):.1f} | {pct(vals, 95):.1f} | "
                         f"{max(vals):.1f} | {who} |")
    base = min(r["drop"] for r in rows)
    lines += ["", "Sensor ticks around the burst (seconds after the first drop; a tick's duration "
              "is the daemon's call to our sensor in the code server plus, for a tick with "
              "runs, Dagster creating and enqueuing them):", "",
              "| tick start | duration s | status | runs requested |", "|---|---|---|---|"]
    for t in sorted(b["ticks"], key=lambda t: t["timestamp"]):
        if t["timestamp"] >= base - 15 and t["timestamp"] <= max(r.get("success", base)
                                                               for r in rows):
            dur = f"{t['endTimestamp'] - t['timestamp']:.2f}" if t["endTimestamp"] else "-"
            lines.append(f"| {t['timestamp'] - base:.1f} | {dur} | {t['status']} | "
                         f"{len(t['runIds'] or [])} |")
    lines += ["", f"Our sensor function alone (in one process, a temporary SQLite instance, cursor "
              f"reset, {ev['runs']} run requests for {args.files} new files, {args.rounds} "
              f"calls): median {ev['median'] * 1000:.0f} ms [{ev['min'] * 1000:.0f}-"
              f"{ev['max'] * 1000:.0f}]. The rest of the tick that requested the runs is "
              "Dagster's: the gRPC call and creating and enqueuing each run (its job and "
              "execution-plan snapshots, its events), one after the other."]
    lines += ["", "Per run (seconds after the first drop):", "",
              "| file | status | dropped | queued | launched | RUN_START | SUCCESS |",
              "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r.get("enqueued", 1e18)):
        cells = [f"{r[k] - base:.1f}" if k in r else "-"
                 for k in ("drop", "enqueued", "starting", "start", "success")]
        lines.append(f"| {r['file']} | {r['status']} | " + " | ".join(cells) + " |")
    lines += ["", f"## 2. Definitions load time ({args.rounds} interleaved rounds, fresh "
              "processes, median [min-max])", "",
              "| command | wall s | CPU s | in-process: import dagster | import osiris_dagster "
              "| build_definitions | of it: validation | assets |",
              "|---|---|---|---|---|---|---|---|"]
    for name, runs in lt.items():
        w = [r["wall"] for r in runs]
        c = [r["cpu"] for r in runs]
        cells = [f"{statistics.median(w):.2f} [{min(w):.2f}-{max(w):.2f}]",
                 f"{statistics.median(c):.2f}"]
        if "build" in runs[0]:
            cells += [f"{statistics.median(r[k] for r in runs):.3f}"
                      for k in ("import_dagster", "import_osiris", "build", "validate")]
            cells.append(str(runs[0]["assets"]))
        else:
            cells += ["-", "-", "-", "-", "-"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    many = lt[f"build_definitions, {args.pipelines} files"]
    ours = statistics.median(r["import_osiris"] + r["build"] for r in many)
    dag = statistics.median(r["import_dagster"] for r in many)
    checks = statistics.median(r["validate"] for r in many)
    built = statistics.median(r["build"] - r["validate"] for r in many)
    lines += ["", f"In every run worker and code-server load with {args.pipelines} "
              f"pipeline files: `import osiris_dagster` + `build_definitions` = **{ours:.2f} s** "
              f"(median), against `import dagster` {dag:.2f} s in the same processes. Of the "
              f"build, {checks:.2f} s is osiris' validation of the files (YAML, OML checks, "
              "each SQL query parsed by DuckDB); the other "
              f"{built:.2f} s is, profiled, mostly Dagster's own: its `@asset` decorators, the "
              "asset jobs and the checks of the `Definitions`. The "
              "interval *launched -> RUN_START* above is the whole run worker start (under "
              "`dagster dev` the code server's gRPC `StartRun` spawns a `multiprocessing` "
              "process, the equivalent of `dagster api execute_run`: interpreter, Dagster's "
              "imports and instance, loading `defs.py`, i.e. this build, and the run's first "
              "events); what is left of it after our share is Dagster's.", "",
              "Not timed assertions: a measurement on a shared machine, run by hand.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=20, help="CSV files dropped in one burst")
    ap.add_argument("--pipelines", type=int, default=50, help="pipeline files in the project")
    ap.add_argument("--max-concurrent-runs", type=int, default=2)
    ap.add_argument("--settle-seconds", type=float, default=None,
                    help="override the bundled sensor's settle_seconds (5)")
    ap.add_argument("--interval-seconds", type=int, default=None,
                    help="override the bundled sensor's minimum_interval_seconds (10)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the load-time case")
    ap.add_argument("--timeout", type=float, default=900, help="seconds to wait for the runs")
    ap.add_argument("--out", type=Path, default=RESULTS / "sensor_burst.md")
    args = ap.parse_args(argv)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    la_start = loadavg()
    with tempfile.TemporaryDirectory(prefix="osiris-burst-") as tmp:
        root = Path(tmp)
        b = burst(args, root)
        lt = load_times(args, Path(b["work"]), root)
        ev = sensor_evaluation(args, Path(b["work"]), root)
    text = report(args, b, lt, ev, la_start, loadavg(), started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
