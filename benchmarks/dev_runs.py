"""``python -m benchmarks.dev_runs``: runs launched as the UI launches them, under `dagster dev`,
on a Dagster home with Dagster's default SQLite storage and on one whose `dagster.yaml` names
osiris-dagster's storages (`osiris-dagster init-home`), side by side.

1. Two scratch projects, each with a 1-step and a 20-step osiris pipeline on a 100-row CSV
   (`benchmarks/workload.py`: one CSV extract, then SQL steps), and two fresh DAGSTER_HOMEs that
   differ only in those storage keys; a `dagster dev` on each, in its own process group.
2. Rounds (the first a warm-up, not counted): in each, on each home (the order alternates), the
   20-step job then the 1-step job are launched through GraphQL as the UI does, one at a time.
   From each run, as the instance records it: creation -> RUN_START (the run worker's start)
   and RUN_START -> RUN_SUCCESS (the steps). Per asset = (20-step run - 1-step run) / 19, per
   round; the ratio pairs the two homes within a round.
3. Writes `benchmarks/results/dev_runs.md` and prints it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import burst_project as bp
from benchmarks.sensor_burst import cpu_model, loadavg, versions
from benchmarks.workload import chain_pipeline

RESULTS = Path(__file__).resolve().parent / "results"
HOMES = ("dagster-default", "osiris-storages")
STEPS = (20, 1)
LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""
RUN = """query($id: ID!) { runOrError(runId: $id) {
  ... on Run { status creationTime startTime endTime } } }"""


def make_project(root: Path) -> Path:
    work = root / "work"
    (work / "pipelines").mkdir(parents=True)
    csv = work / "table.csv"
    csv.write_text("id,value\n" + "".join(f"{i},{i * 2}\n" for i in range(1, 101)),
                   encoding="utf-8")
    for steps in STEPS:
        (work / "pipelines" / f"chain_{steps}.yaml").write_text(chain_pipeline(csv, steps),
                                                                encoding="utf-8")
    (work / "defs.py").write_text("from osiris_dagster import build_definitions\n"
                                  "defs = build_definitions()\n", encoding="utf-8")
    return work


def make_home(root: Path, which: str) -> Path:
    from osiris_dagster.dagster_layer.dagster_home import init_home

    home = bp.make_home(root, max_runs=1)
    if which == "osiris-storages":
        init_home(home)  # what `osiris-dagster init-home` does
    return home


def launch_and_wait(dev: bp.DagsterDev, steps: int, timeout: float) -> dict[str, float]:
    params = {"selector": {"repositoryLocationName": "defs.py",
                           "repositoryName": "__repository__",
                           "pipelineName": f"bench_chain_{steps}"}, "runConfigData": {}}
    launched = dev.graphql(LAUNCH, {"params": params})["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"launch failed: {launched}")
    run_id = launched["run"]["runId"]

    def finished() -> dict[str, Any] | None:
        dev.alive()
        run = dev.graphql(RUN, {"id": run_id})["runOrError"]
        return run if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

    run = bp.wait_for(finished, timeout, f"run {run_id} of bench_chain_{steps}", poll=0.2)
    if run["status"] != "SUCCESS":
        raise RuntimeError(f"run {run_id} ended {run['status']}; see {dev.log}")
    return {"worker_start": run["startTime"] - run["creationTime"],
            "steps": run["endTime"] - run["startTime"]}


def measure(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    devs: dict[str, bp.DagsterDev] = {}
    try:
        for which in HOMES:
            sub = root / which
            work, home = make_project(sub), make_home(sub, which)
            devs[which] = bp.start(work, home, sub / "dagster_dev.log")
        for dev in devs.values():
            bp.wait_for(dev.loaded, 300, "dagster dev to load the code location")
        rounds: list[dict[str, dict[int, dict[str, float]]]] = []
        for n in range(args.rounds + 1):
            order = HOMES if n % 2 == 0 else HOMES[::-1]
            got = {which: {steps: launch_and_wait(devs[which], steps, args.timeout)
                           for steps in STEPS} for which in order}
            if n:  # the first round warms both up
                rounds.append(got)
        return {"rounds": rounds}
    finally:
        for dev in devs.values():
            bp.stop(dev)


def _per_asset(r: dict[int, dict[str, float]]) -> float:
    return (r[20]["steps"] - r[1]["steps"]) / 19


def report(args: argparse.Namespace, m: dict[str, Any], la_start: str, la_end: str,
           started: str) -> str:
    rounds = m["rounds"]

    def stats(values: list[float], unit: float = 1.0, fmt: str = "{:.0f}") -> str:
        vals = [v * unit for v in values]
        return (f"{fmt.format(statistics.median(vals))} "
                f"[{fmt.format(min(vals))}-{fmt.format(max(vals))}]")

    v = versions()
    lines = [
        "# Runs launched as the UI launches them: Dagster's default SQLite storage against "
        "osiris-dagster's (issue 15)", "",
        f"`python -m benchmarks.dev_runs --rounds {args.rounds}`, started {started} UTC; "
        f"{len(rounds)} rounds after a warm-up round, median [min-max].", "",
        f"- Machine: {os.cpu_count()} cores ({cpu_model()}), "
        f"{platform.platform()}; **shared**: load average (1/5/15 min) {la_start} at start, "
        f"{la_end} at the end.",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "- Each home: a fresh DAGSTER_HOME with `telemetry: {enabled: false}`, `run_queue: "
        "{max_concurrent_runs: 1, dequeue_interval_seconds: 1, dequeue_use_threads: true}`; "
        "`osiris-storages` adds the `event_log_storage`, `run_storage` and `schedule_storage` "
        "that `osiris-dagster init-home` adds (the same files under the home). Both "
        "`dagster dev`s run at once; runs are launched one at a time.", "",
        "| home | per asset, ms | 20-step run (RUN_START -> SUCCESS), s | 1-step run, s | "
        "run created -> RUN_START (worker start), s |", "|---|---|---|---|---|"]
    for which in HOMES:
        mine = [r[which] for r in rounds]
        lines.append(
            f"| {which} | {stats([_per_asset(r) for r in mine], 1000)} | "
            f"{stats([r[20]['steps'] for r in mine], fmt='{:.2f}')} | "
            f"{stats([r[1]['steps'] for r in mine], fmt='{:.2f}')} | "
            f"{stats([r[s]['worker_start'] for r in mine for s in STEPS], fmt='{:.2f}')} |")
    ratios = [_per_asset(r["osiris-storages"]) / _per_asset(r["dagster-default"])
              for r in rounds]
    runs20 = [r["osiris-storages"][20]["steps"] / r["dagster-default"][20]["steps"]
              for r in rounds]
    lines += ["", f"osiris-storages / dagster-default, paired per round: per asset "
              f"**{stats(ratios, fmt='{:.2f}x')}**; 20-step run {stats(runs20, fmt='{:.2f}x')}.",
              "", "Not timed assertions: a measurement on a shared machine, run by hand.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="rounds counted (after a warm-up)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds to wait for a run")
    ap.add_argument("--out", type=Path, default=RESULTS / "dev_runs.md")
    args = ap.parse_args(argv)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    la_start = loadavg()
    with tempfile.TemporaryDirectory(prefix="osiris-dev-runs-") as tmp:
        m = measure(args, Path(tmp))
    text = report(args, m, la_start, loadavg(), started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
