"""Raw DuckDB in one script, DuckDB's default settings.

``--style tables`` (the floor the targets use): the same SQL statements an osiris run issues, on
one connection to one DuckDB file: CREATE TABLE extract AS read_csv; CREATE TABLE transform AS
<filter/derive>; COPY transform (columns sorted by name, as osiris writes them) TO CSV.
``--case extract`` is the first statement alone.

``--style stream`` (context, e2e only): one ``COPY (<filter/derive over read_csv>) TO`` with no
intermediate tables, what DuckDB does when nothing is kept.

``--no-vacuum`` (context): the floor with ``SET max_vacuum_tasks = 0``, so that its checkpoint
does not rewrite the tables to merge partial row groups (see results/FINDINGS.md); the setting
proposed for osiris-dagster's session connections.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import duckdb  # noqa: E402
from _common import emit, fresh, parser, transform_sql  # noqa: E402


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--style", choices=("tables", "stream"), default="tables")
    p.add_argument("--no-vacuum", action="store_true")
    a = p.parse_args()
    src = f"read_csv('{a.input}')"
    t0 = time.perf_counter()
    if a.style == "stream":
        if a.case != "e2e":
            raise SystemExit("--style stream has no extract case")
        con = duckdb.connect(":memory:")
        rows = con.execute(f"COPY ({transform_sql(src)}) TO '{a.output}' "
                           "(FORMAT csv, HEADER true)").fetchone()[0]
        con.close()
        emit(rows_out=int(rows), work_s=round(time.perf_counter() - t0, 4))
        return
    con = duckdb.connect(str(fresh(a.workdir / "floor.duckdb")))
    if a.no_vacuum:
        con.execute("SET max_vacuum_tasks = 0")
    con.execute(f"CREATE TABLE extract AS SELECT * FROM {src}")
    rows_in = con.execute("SELECT count(*) FROM extract").fetchone()[0]
    rows_out = None
    if a.case == "e2e":
        con.execute(f"CREATE TABLE transform AS {transform_sql('extract')}")
        cols = sorted(r[0] for r in con.execute("DESCRIBE transform").fetchall())
        select = ", ".join(f'"{c}"' for c in cols)
        rows_out = con.execute(f"COPY (SELECT {select} FROM transform) TO '{a.output}' "
                               "(FORMAT csv, HEADER true)").fetchone()[0]
    con.close()  # checkpoint: the tables are on disk, as after an osiris step
    emit(rows_in=int(rows_in), rows_out=rows_out, work_s=round(time.perf_counter() - t0, 4))


if __name__ == "__main__":
    main()
