"""The seed prototype's approach (Osiris' DuckDB streaming prototype), re-implemented:

* extract: ``pandas.read_csv(chunksize=1000)``; the first chunk creates the table
  (``CREATE TABLE t AS SELECT * FROM chunk_df``), every later chunk is ``INSERT INTO ... SELECT *
  FROM chunk_df``, into one DuckDB file;
* transform: the SQL in DuckDB (``CREATE TABLE ... AS``), as the seed's duckdb processor;
* write: the table read back into one DataFrame with columns sorted by name, then
  ``DataFrame.to_csv(index=False)`` (the seed's writer loads the whole table).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import duckdb  # noqa: E402
import pandas as pd  # noqa: E402
from _common import emit, fresh, parser, transform_sql  # noqa: E402

CHUNK = 1000


def main() -> None:
    a = parser(__doc__).parse_args()
    t0 = time.perf_counter()
    con = duckdb.connect(str(fresh(a.workdir / "seed.duckdb")))
    rows_in = 0
    first = True
    for chunk_df in pd.read_csv(a.input, chunksize=CHUNK, low_memory=False):
        if chunk_df.empty:
            continue
        if first:
            con.execute("CREATE TABLE extract AS SELECT * FROM chunk_df")
            first = False
        else:
            con.execute("INSERT INTO extract SELECT * FROM chunk_df")
        rows_in += len(chunk_df)
    t_extract = time.perf_counter() - t0
    rows_out = None
    if a.case == "e2e":
        con.execute(f"CREATE TABLE transform AS {transform_sql('extract')}")
        cols = sorted(r[0] for r in con.execute("DESCRIBE transform").fetchall())
        select = ", ".join(f'"{c}"' for c in cols)
        df = con.execute(f"SELECT {select} FROM transform").df()
        df.to_csv(a.output, index=False)
        rows_out = len(df)
    con.close()
    emit(rows_in=rows_in, rows_out=rows_out, extract_s=round(t_extract, 4),
         work_s=round(time.perf_counter() - t0, 4))


if __name__ == "__main__":
    main()
