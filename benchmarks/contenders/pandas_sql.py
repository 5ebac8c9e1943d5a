"""The pandas way to move database rows, as an Osiris user would write it (SQLAlchemy engines):

* ``mysql_extract``: ``pandas.read_sql(QUERY, engine, chunksize=10000)`` over ``mysql+pymysql``
  (the driver Osiris uses), each chunk inserted into a table in a DuckDB file (the first chunk
  creates it), like the seed prototype;
* ``pg_write``: the rows as one DataFrame (built before the clock starts, from the same DuckDB
  query osiris' pipeline uses), then ``DataFrame.to_sql(TABLE, engine, index=False,
  chunksize=10000)`` over ``postgresql+psycopg`` into a table that does not exist yet.

``work_s`` is that work alone (imports and DataFrame building excluded).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, fresh  # noqa: E402

warnings.filterwarnings("ignore")

CHUNK = 10000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--case", choices=("mysql_extract", "pg_write"), required=True)
    p.add_argument("--url-env", required=True,
                   help="environment variable holding the SQLAlchemy URL (kept off the command "
                        "line: it may hold a password)")
    p.add_argument("--query", help="mysql_extract: the SELECT")
    p.add_argument("--source-sql", help="pg_write: DuckDB query giving the rows")
    p.add_argument("--table", help="pg_write: schema.table to create")
    p.add_argument("--workdir", type=Path, required=True)
    a = p.parse_args()

    import duckdb
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(os.environ[a.url_env])
    if a.case == "mysql_extract":
        con = duckdb.connect(str(fresh(a.workdir / "pandas.duckdb")))
        t0 = time.perf_counter()
        rows = 0
        with engine.connect() as conn:
            for chunk in pd.read_sql(a.query, conn, chunksize=CHUNK):
                if rows == 0:
                    con.execute("CREATE TABLE extract AS SELECT * FROM chunk")
                else:
                    con.execute("INSERT INTO extract SELECT * FROM chunk")
                rows += len(chunk)
        con.close()
        emit(rows_in=rows, work_s=round(time.perf_counter() - t0, 4))
        return
    frame = duckdb.sql(a.source_sql).df()
    schema, table = a.table.split(".", 1)
    t0 = time.perf_counter()
    frame.to_sql(table, engine, schema=schema, index=False, chunksize=CHUNK)
    emit(rows_in=len(frame), work_s=round(time.perf_counter() - t0, 4))


if __name__ == "__main__":
    main()
