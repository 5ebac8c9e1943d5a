"""osiris-dagster in process: the pipeline's Dagster job run by ``job.execute_in_process()``.

The process imports dagster and osiris_dagster and builds the definitions first (reported as
``import_s`` and ``build_s``); ``work_s`` is the ``execute_in_process`` call alone, on the same
kind of instance the CLI uses (a persistent sqlite instance under ``<sessions dir>/.dagster``),
so ``wall - work_s`` is the process start-up the CLI figure includes. ``steps`` gives each
step's own duration (the ``duration_s`` metadata).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import T0, emit, quiet_env  # noqa: E402

warnings.filterwarnings("ignore")
quiet_env()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("pipeline", type=Path)
    p.add_argument("--sessions-dir", type=Path, required=True)
    a = p.parse_args()

    import dagster as dg

    from osiris_dagster import build_definitions, build_osiris_assets

    t_import = time.perf_counter()
    one = build_osiris_assets(a.pipeline)
    defs = build_definitions([a.pipeline], sessions_dir=str(a.sessions_dir))
    job = defs.resolve_job_def(one.job.name)
    home = a.sessions_dir / ".dagster"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    instance = dg.DagsterInstance.local_temp(tempdir=str(home))
    t_build = time.perf_counter()
    res = job.execute_in_process(
        instance=instance, raise_on_error=True,
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}})
    t_exec = time.perf_counter()
    if not res.success:
        raise SystemExit("run failed")
    rows, steps = {}, {}
    for ev in res.get_asset_materialization_events():
        md = ev.materialization.metadata
        if "rows_written" in md:
            rows[ev.asset_key.path[-1]] = int(md["rows_written"].value)
        if "duration_s" in md:
            steps[ev.asset_key.path[-1]] = float(md["duration_s"].value)
    emit(import_s=round(t_import - T0, 4), build_s=round(t_build - t_import, 4),
         work_s=round(t_exec - t_build, 4), rows=rows, steps=steps)


if __name__ == "__main__":
    main()
