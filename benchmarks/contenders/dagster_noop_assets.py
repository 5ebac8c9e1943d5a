"""Dagster's own floor for the fixed costs: a run of N assets that do nothing.

What any Dagster job of N assets pays, whatever its assets do: the import of Dagster, opening a
persistent SQLite instance (set up as `osiris-dagster run` sets up its own: no telemetry, no
compute-log capture, console logging off), then `execute_in_process`: every step's events
written to the instance. Each asset returns a short string through an IO manager that stores
nothing, as osiris' IO manager passes a table name.

* `--steps N`: N assets in a chain (the overhead case: 1 and 20);
* `--shape example`: 4 assets shaped like `pipelines/director_stats.yaml` (two roots, a join of
  them, a sink), the start-up case;
* `--storage cli`: the instance as `osiris-dagster run` opens its own
  (`cli_instance_overrides`): the event log stored through osiris' `PooledSqliteEventLogStorage`,
  the run and schedule storages of `sqlite_storages`, the SQLite files held open during the run;
  `dagster` (the default): Dagster's own storage, as any Dagster job has it.

``work_s`` is the `execute_in_process` call alone.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import uuid
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, quiet_env  # noqa: E402

warnings.filterwarnings("ignore")
quiet_env()

import dagster as dg  # noqa: E402

from osiris_dagster.cli import CLI_INSTANCE_YAML  # noqa: E402


class NamesOnly(dg.IOManager):
    def handle_output(self, context: dg.OutputContext, obj: str) -> None:
        return None

    def load_input(self, context: dg.InputContext) -> str:
        return f"table_{context.upstream_output.name}"


def _asset(name: str, upstream: list[str]) -> dg.AssetsDefinition:
    @dg.asset(name=name, ins={u: dg.AssetIn(key=u) for u in upstream})
    def step(**inputs: str) -> str:
        return name

    return step


def chain(n: int) -> list[dg.AssetsDefinition]:
    names = [f"s{i:02d}" for i in range(1, n + 1)]
    return [_asset(name, names[i - 1:i]) for i, name in enumerate(names)]


def example() -> list[dg.AssetsDefinition]:
    return [_asset("extract_movies", []), _asset("extract_reviews", []),
            _asset("join", ["extract_movies", "extract_reviews"]), _asset("write", ["join"])]


def instance(home: Path, storage: str) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(CLI_INSTANCE_YAML, encoding="utf-8")
    overrides = None
    if storage == "cli":
        from osiris_dagster.dagster_layer.sqlite_events import cli_instance_overrides

        overrides = cli_instance_overrides(str(home))
    return dg.DagsterInstance.local_temp(tempdir=str(home), overrides=overrides)


def held_open(inst: dg.DagsterInstance) -> contextlib.AbstractContextManager:
    from osiris_dagster.dagster_layer.sqlite_files import sqlite_files_held_open

    return sqlite_files_held_open(inst)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--shape", choices=("chain", "example"), default="chain")
    p.add_argument("--storage", choices=("dagster", "cli"), default="dagster")
    p.add_argument("--home", type=Path, required=True, help="the instance's directory (kept)")
    args = p.parse_args()
    assets = example() if args.shape == "example" else chain(args.steps)
    job = dg.Definitions(assets=assets, resources={"io_manager": NamesOnly()}
                         ).resolve_implicit_global_asset_job_def()
    inst = instance(args.home / ".dagster", args.storage)
    run_id = str(uuid.uuid4())
    started = time.perf_counter()
    with held_open(inst) if args.storage == "cli" else contextlib.nullcontext():
        result = job.execute_in_process(
            instance=inst, run_id=run_id,
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}})
    work = time.perf_counter() - started
    if not result.success:
        sys.exit("the run failed")
    emit(work_s=round(work, 4), assets=len(assets))


if __name__ == "__main__":
    main()
