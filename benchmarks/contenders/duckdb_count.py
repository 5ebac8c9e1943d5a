"""Physical limit: DuckDB parses the whole CSV and counts it (``SELECT count(*) FROM read_csv``),
storing nothing."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import duckdb  # noqa: E402
from _common import emit  # noqa: E402

if __name__ == "__main__":
    path = sys.argv[1]
    t0 = time.perf_counter()
    n = duckdb.connect(":memory:").execute(f"SELECT count(*) FROM read_csv('{path}')").fetchone()[0]
    emit(rows_in=int(n), work_s=round(time.perf_counter() - t0, 4))
