"""The obvious Dagster alternative: pandas assets stored by ``DuckDBPandasIOManager``.

* ``extract`` returns ``pandas.read_csv(path)``; the IO manager stores it as a DuckDB table;
* ``transform`` gets that DataFrame back from the IO manager, filters it and adds the column;
* ``write`` gets the transform DataFrame and calls ``to_csv`` (columns sorted by name).

Run with ``dagster.materialize`` on an ephemeral instance in this process; ``work_s`` is the
``materialize`` call alone (imports and definitions excluded).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, fresh, parser, quiet_env  # noqa: E402

warnings.filterwarnings("ignore")
quiet_env()

import dagster as dg  # noqa: E402
import pandas as pd  # noqa: E402
from dagster_duckdb_pandas import DuckDBPandasIOManager  # noqa: E402


def build(src: Path, out: Path):  # noqa: ANN201
    @dg.asset
    def extract() -> pd.DataFrame:
        return pd.read_csv(src)

    @dg.asset
    def transform(extract: pd.DataFrame) -> pd.DataFrame:
        df = extract[(extract["amount"] >= 250) & (extract["category"] != "toys")].copy()
        df["total"] = (df["amount"] * df["quantity"]).round(2)
        return df

    @dg.asset
    def write(transform: pd.DataFrame) -> dg.MaterializeResult:
        transform[sorted(transform.columns)].to_csv(out, index=False)
        return dg.MaterializeResult(metadata={"rows": len(transform)})

    return extract, transform, write


def main() -> None:
    a = parser(__doc__).parse_args()
    extract, transform, write = build(a.input, a.output)
    assets = [extract] if a.case == "extract" else [extract, transform, write]
    db = fresh(a.workdir / "ddp.duckdb")
    t0 = time.perf_counter()
    res = dg.materialize(
        assets,
        resources={"io_manager": DuckDBPandasIOManager(database=str(db), schema="bench")},
        instance=dg.DagsterInstance.ephemeral(),
    )
    work = time.perf_counter() - t0
    if not res.success:
        raise SystemExit("materialize failed")
    rows = None
    if a.case == "e2e":
        for ev in res.get_asset_materialization_events():
            md = ev.materialization.metadata
            if ev.asset_key.path[-1] == "write" and "rows" in md:
                rows = int(md["rows"].value)
    emit(rows_out=rows, work_s=round(work, 4))


if __name__ == "__main__":
    main()
