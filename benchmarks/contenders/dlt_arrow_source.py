"""Optional contender: dlt, filesystem source -> duckdb destination.

dlt's own CSV readers do not fit here: ``read_csv`` (pandas) yields Python dicts row by row
(174 s and 4.5 GB for 1M rows on the reference machine) and ``read_csv_duckdb`` calls
``fetchmany`` on a DuckDB relation, which DuckDB 2.x removed. So the ``filesystem`` resource's
file items go through a small transformer that streams pyarrow record batches (dlt's fast
arrow path: arrow -> parquet -> DuckDB). For ``e2e`` the filter/derive SQL then runs in the
destination DuckDB file (dlt has no transform step) and ``COPY`` writes the CSV.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, parser, quiet_env, transform_sql  # noqa: E402

quiet_env()
os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")

import dlt  # noqa: E402
import duckdb  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
from dlt.sources.filesystem import filesystem  # noqa: E402


@dlt.transformer(standalone=False)
def read_csv_arrow(items):  # noqa: ANN001, ANN201
    for item in items:
        with item.open() as fh:
            reader = pacsv.open_csv(fh, read_options=pacsv.ReadOptions(block_size=16 << 20))
            yield from reader


def main() -> None:
    a = parser(__doc__).parse_args()
    work = a.workdir / "dlt"
    db = work / "dlt.duckdb"
    os.environ["DLT_DATA_DIR"] = str(work / "data")
    t0 = time.perf_counter()
    files = filesystem(bucket_url=str(a.input.resolve().parent), file_glob=a.input.name)
    pipe = dlt.pipeline(pipeline_name="bench", destination=dlt.destinations.duckdb(str(db)),
                        dataset_name="bench", pipelines_dir=str(work / "pipelines"))
    pipe.run((files | read_csv_arrow()).with_name("extract"))
    rows_out = None
    con = duckdb.connect(str(db))
    rows_in = con.execute("SELECT count(*) FROM bench.extract").fetchone()[0]
    if a.case == "e2e":
        con.execute(f"CREATE TABLE bench.transform AS {transform_sql('bench.extract')}")
        cols = sorted(r[0] for r in con.execute("DESCRIBE bench.transform").fetchall()
                      if not r[0].startswith("_dlt"))
        select = ", ".join(f'"{c}"' for c in cols)
        rows_out = con.execute(f"COPY (SELECT {select} FROM bench.transform) TO '{a.output}' "
                               "(FORMAT csv, HEADER true)").fetchone()[0]
    con.close()
    emit(rows_in=int(rows_in), rows_out=rows_out, work_s=round(time.perf_counter() - t0, 4))


if __name__ == "__main__":
    main()
