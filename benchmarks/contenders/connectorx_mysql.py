"""Context for the MySQL extract: connectorx (a Rust reader) streaming Arrow record batches
(``return_type="arrow_stream"``) into a table in a DuckDB file. Not a dependency of osiris; run
only when connectorx is installed. ``work_s`` excludes the imports."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, fresh  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url-env", required=True, help="environment variable holding "
                   "mysql://user:password@host:port/database (kept off the command line)")
    p.add_argument("--query", required=True)
    p.add_argument("--workdir", type=Path, required=True)
    a = p.parse_args()

    import connectorx as cx
    import duckdb

    con = duckdb.connect(str(fresh(a.workdir / "cx.duckdb")))
    t0 = time.perf_counter()
    reader = cx.read_sql(os.environ[a.url_env], a.query, return_type="arrow_stream",
                         batch_size=10000)
    con.register("cx_stream", reader)
    con.execute("CREATE TABLE extract AS SELECT * FROM cx_stream")
    rows = con.execute("SELECT count(*) FROM extract").fetchone()[0]
    con.close()
    emit(rows_in=rows, work_s=round(time.perf_counter() - t0, 4))


if __name__ == "__main__":
    main()
