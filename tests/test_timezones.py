"""Output never depends on the host's time zone (issue 17, item 2).

The same pipeline (CSV with naive and offset timestamps -> SQL step -> CSV) runs in separate
`osiris-dagster run` processes under different `TZ` values; the written files must be identical
byte for byte, naive values written back as they were and aware ones as the same instant in UTC.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .helpers import write

ZONES = ("UTC", "America/New_York", "Europe/Prague", "Asia/Kolkata")

SOURCE = (
    "id,naive,aware,day,mixed\n"
    # 02:30 is no time in Prague that day; 01:30 happens twice in New York
    "1,2024-03-31 02:30:00,2024-06-01 12:00:00+02:00,2024-03-31,2024-03-31 02:30:00\n"
    "2,2024-11-03 01:30:00,2024-11-03 01:30:00-04:00,2024-11-03,2024-06-01 12:00:00+02:00\n"
    "3,2024-01-01 00:00:00.250000,2024-01-01 00:00:00Z,2024-01-01,\n"
    "4,,,,\n"
)
PIPELINE = """\
oml_version: "0.1.0"
name: tz-check
steps:
  - id: extract
    component: filesystem.csv_extractor
    mode: read
    config: {path: "in.csv", parse_dates: true}
  - id: derive
    component: duckdb.processor
    mode: transform
    config:
      query: >-
        SELECT *, date_trunc('day', aware) AS aware_day, CAST(aware AS VARCHAR) AS aware_text,
               naive + INTERVAL 1 DAY AS naive_next
        FROM input_df ORDER BY id
  - id: write
    component: filesystem.csv_writer
    mode: write
    config: {path: "out.csv"}
"""
EXPECTED = (  # columns sorted by name, as Osiris writes them
    "aware,aware_day,aware_text,day,id,mixed,naive,naive_next\n"
    "2024-06-01 10:00:00+00:00,2024-06-01 00:00:00+00:00,2024-06-01 10:00:00+00,2024-03-31,1,"
    "2024-03-31 02:30:00,2024-03-31 02:30:00,2024-04-01 02:30:00\n"
    "2024-11-03 05:30:00+00:00,2024-11-03 00:00:00+00:00,2024-11-03 05:30:00+00,2024-11-03,2,"
    "2024-06-01 12:00:00+02:00,2024-11-03 01:30:00,2024-11-04 01:30:00\n"
    "2024-01-01 00:00:00+00:00,2024-01-01 00:00:00+00:00,2024-01-01 00:00:00+00,2024-01-01,3,,"
    "2024-01-01 00:00:00.25,2024-01-02 00:00:00.25\n"
    ",,,,4,,,\n"
)


def run_in_zone(tmp_path: Path, zone: str) -> bytes:
    work = tmp_path / zone.replace("/", "_")
    write(work / "in.csv", SOURCE)
    pipeline = write(work / "tz.yaml", PIPELINE)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OSIRIS_") and k != "DAGSTER_HOME"}
    env.update(TZ=zone, OSIRIS_HEARTBEAT_SECONDS="0")
    out = subprocess.run(
        [sys.executable, "-m", "osiris_dagster.cli", "run", str(pipeline), "--sessions-dir",
         str(work / "sessions")], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return (work / "out.csv").read_bytes()


def test_same_bytes_in_every_host_time_zone(tmp_path: Path) -> None:
    """Naive values stay as written, aware ones are the same instant in UTC, and a column that
    mixes both stays text (no zone is assumed for its naive values)."""
    outputs = {zone: run_in_zone(tmp_path, zone) for zone in ZONES}
    for zone in ZONES:
        assert outputs[zone].decode() == outputs["UTC"].decode(), zone
    assert outputs["UTC"].decode() == EXPECTED
