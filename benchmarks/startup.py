"""The start-up case: what every command pays before any data moves, against Dagster's import.

A new user's first commands, on the bundled 60-row example (`pipelines/director_stats.yaml`: two
CSV extracts, a DuckDB join, a CSV export), each a fresh process timed by the harness:

* `import_dagster`: `python -c "import dagster"`, the yardstick (what any Dagster tool pays);
* `python_bare`: `python -c pass`, the interpreter alone (context);
* `dagster_noop_4:run`: Dagster's own floor for a run: 4 assets that do nothing, shaped like the
  example, run in-process on a persistent SQLite instance (`contenders/dagster_noop_assets.py`);
  `dagster_noop_4_cli_instance:run`: the same on an instance set up as `osiris-dagster run`
  sets up its own (context: what a run costs before any osiris code runs);
* `<osiris contender>:validate`: `osiris-dagster validate pipelines/director_stats.yaml`;
* `<osiris contender>:run`: `osiris-dagster run pipelines/director_stats.yaml --sessions-dir D`
  with the Dagster instance under D kept across rounds (a user's second and later runs; the
  warm-up round creates it).

The figures that count are per-round ratios to `import_dagster` (the runs of one round are
adjacent in time), so a busy machine slows numerator and denominator alike. Each `--variant`
of `osiris_cli` gets its own validate and run, so a frozen copy of the code before a change
(`--variant before=PYTHONPATH=/tmp/copy`) is measured side by side in the same rounds.
"""

from __future__ import annotations

import shutil
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import pairing

STARTUP = "startup"
EXAMPLE = "pipelines/director_stats.yaml"
REFERENCE, BARE = "import_dagster", "python_bare"
# Dagster's own floor: a run of 4 assets that do nothing, shaped like the example
DAGSTER_FLOOR, DAGSTER_FLOOR_CLI = "dagster_noop_4:run", "dagster_noop_4_cli_instance:run"
VALIDATE_LIMIT, RUN_LIMIT = 0.35, 2.0  # issue 15: x the wall of `import dagster`


@dataclass(frozen=True)
class StartupCommand:
    name: str  # import_dagster | python_bare | <osiris contender>:validate | ...:run
    cmd: tuple[str, ...]
    env: dict[str, str]
    cwd: Path
    sessions: Path | None = None  # cleaned after each run (its .dagster instance is kept)


def prepare(workroot: Path, repo: Path, osiris: list[tuple[str, str, dict[str, str]]]
            ) -> list[StartupCommand]:
    """The commands of one round. `osiris`: (contender name, CLI path, extra env) each; every
    contender works in its own copy of the example (its output CSV and sessions stay there)."""
    py = sys.executable
    home = workroot / "startup"
    out = [StartupCommand(REFERENCE, (py, "-c", "import dagster"), {}, home),
           StartupCommand(BARE, (py, "-c", "pass"), {}, home)]
    home.mkdir(parents=True, exist_ok=True)
    noop = str(repo / "benchmarks" / "contenders" / "dagster_noop_assets.py")
    for name, storage in ((DAGSTER_FLOOR, "dagster"), (DAGSTER_FLOOR_CLI, "cli")):
        out.append(StartupCommand(name, (py, noop, "--shape", "example", "--storage", storage,
                                         "--home", str(home / name)), {}, home))
    for name, cli, env in osiris:
        work = home / name.replace("+", "_")
        if not work.exists():
            shutil.copytree(repo / "pipelines", work / "pipelines")
            shutil.copy2(repo / "osiris_connections.yaml", work / "osiris_connections.yaml")
        sessions = work / "sessions"
        sessions.mkdir(exist_ok=True)
        out.append(StartupCommand(f"{name}:validate", (cli, "validate", EXAMPLE), env, work))
        out.append(StartupCommand(f"{name}:run", (cli, "run", EXAMPLE, "--sessions-dir",
                                                  str(sessions)), env, work, sessions))
    return out


def _command(name: str) -> pairing.Match:
    return lambda r: r.case == STARTUP and r.contender == name


def paired(runs: list[Any], num: str, den: str = REFERENCE, attr: str = "wall_s"
           ) -> dict[str, float] | None:
    """Median over rounds of num / den (wall, or `attr`) of the same round, with its range."""
    return pairing.ratio(runs, _command(num), _command(den), attr)


def paired_difference(runs: list[Any], num: str, den: str) -> dict[str, float] | None:
    """Median over rounds of num's wall minus den's wall in the same round, with its range."""
    return pairing.difference(runs, _command(num), _command(den))


def summary(runs: list[Any]) -> list[dict[str, Any]]:
    """One row per command: wall, CPU, peak memory and the paired ratio to `import dagster`."""
    names = list(dict.fromkeys(r.contender for r in runs if r.case == STARTUP))
    rows = []
    for name in names:
        good = [r for r in runs if r.case == STARTUP and r.contender == name and r.ok]
        failed = [r for r in runs if r.case == STARTUP and r.contender == name and not r.ok]
        row: dict[str, Any] = {"command": name, "n": len(good), "failed": len(failed),
                               "errors": sorted({r.error or "?" for r in failed})}
        if good:
            walls = [r.wall_s for r in good]
            row.update(wall_median=statistics.median(walls), wall_min=min(walls),
                       wall_max=max(walls),
                       cpu_median=statistics.median(r.cpu_s for r in good),
                       peak_median=statistics.median(r.peak_rss_mb for r in good),
                       vs_import=paired(runs, name),
                       cpu_vs_import=paired(runs, name, attr="cpu_s"),
                       above_floor=paired_difference(runs, name, DAGSTER_FLOOR_CLI)
                       if name.endswith(":run") and name != DAGSTER_FLOOR_CLI else None)
        rows.append(row)
    return rows


def targets(runs: list[Any], osiris_names: list[str], make: Any) -> list[Any]:
    """Issue 15's start-up targets for each osiris contender; `make` builds a run.Target."""
    out = []
    for o in osiris_names:
        for command, limit, what in (
                ("validate", VALIDATE_LIMIT, "`validate` of the bundled example"),
                ("run", RUN_LIMIT, "`run` of the bundled 4-step example")):
            pr = paired(runs, f"{o}:{command}")
            out.append(make(f"startup_{command}_vs_import_dagster", o,
                            f"{what}: wall / `python -c \"import dagster\"` wall",
                            pr["median"] if pr else None, limit, "<=", "x",
                            f"paired per round, {pr['n']} rounds, range {pr['min']:.2f}-"
                            f"{pr['max']:.2f}" if pr else ""))
    return out


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| command | wall s median [min-max] | CPU s | peak RSS MB | wall / import dagster "
             f"(paired) [min-max] | CPU / import dagster CPU | wall above `{DAGSTER_FLOOR_CLI}` "
             "(paired) [min-max] |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        if not row["n"]:
            lines.append(f"| {row['command']} | FAILED: {'; '.join(row['errors'])[:120]} "
                         "| | | | | |")
            continue
        pr = row["vs_import"]
        ratio = f"{pr['median']:.2f}x [{pr['min']:.2f}-{pr['max']:.2f}]" if pr else "-"
        cpu = row.get("cpu_vs_import")
        cpu_ratio = f"{cpu['median']:.2f}x" if cpu else "-"
        above = row.get("above_floor")
        above_text = (f"{above['median']:.2f} s [{above['min']:.2f}-{above['max']:.2f}]"
                      if above else "-")
        lines.append(f"| {row['command']} | {row['wall_median']:.2f} [{row['wall_min']:.2f}-"
                     f"{row['wall_max']:.2f}] | {row['cpu_median']:.2f} | "
                     f"{row['peak_median']:.0f} | {ratio} | {cpu_ratio} | {above_text} |")
    return lines
