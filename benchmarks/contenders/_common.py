"""Shared by the contender scripts (stdlib only, imported by path)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

T0 = time.perf_counter()  # as close to interpreter start as a script gets

FILTER = "amount >= 250 AND category <> 'toys'"
DERIVED = "round(amount * quantity, 2) AS total"


def transform_sql(source: str) -> str:
    # keep in step with benchmarks/workload.py (which the harness and the osiris YAML use)
    return f"SELECT *, {DERIVED} FROM {source} WHERE {FILTER}"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--case", choices=("e2e", "extract"), required=True)
    p.add_argument("--input", type=Path, required=True, help="input CSV")
    p.add_argument("--output", type=Path, required=True, help="output CSV (e2e)")
    p.add_argument("--workdir", type=Path, required=True, help="scratch dir for this run")
    return p


def fresh(path: Path) -> Path:
    for p in (path, Path(str(path) + ".wal")):
        if p.exists():
            p.unlink()
    return path


def emit(**fields: object) -> None:
    fields.setdefault("script_total_s", round(time.perf_counter() - T0, 4))
    sys.stdout.write("BENCH_RESULT " + json.dumps(fields) + "\n")
    sys.stdout.flush()


def quiet_env() -> None:
    """No telemetry or update checks: the benchmark machine has no internet."""
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
