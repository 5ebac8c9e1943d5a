"""Context for the PostgreSQL write: the ADBC PostgreSQL driver's bulk ingest (binary COPY) of the
rows, streamed from DuckDB as Arrow batches, into a new table. Not a dependency of osiris; run
only when ``adbc-driver-postgresql`` is installed. ``work_s`` is the ingest and commit alone
(the Arrow stream starts before the clock; DuckDB produces the rows while they are sent)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dsn-env", required=True, help="environment variable holding the libpq URL")
    p.add_argument("--source-sql", required=True, help="DuckDB query giving the rows")
    p.add_argument("--table", required=True, help="schema.table to create")
    p.add_argument("--workdir", type=Path, required=True)
    a = p.parse_args()

    import adbc_driver_postgresql.dbapi as adbc
    import duckdb

    schema, table = a.table.split(".", 1)
    reader = duckdb.connect().sql(a.source_sql).to_arrow_reader(100_000)
    with adbc.connect(os.environ[a.dsn_env]) as conn, conn.cursor() as cur:
        t0 = time.perf_counter()
        rows = cur.adbc_ingest(table, reader, mode="create", db_schema_name=schema)
        conn.commit()
        work = time.perf_counter() - t0
    emit(rows_in=rows, work_s=round(work, 4))


if __name__ == "__main__":
    main()
