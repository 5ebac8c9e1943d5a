"""A mixed project: a Python asset feeds an Osiris pipeline, whose table feeds a Python asset.

    cd examples/mixed_project && dagster dev -f definitions.py
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from osiris_dagster import build_definitions


@dg.asset(key=["raw", "orders"])
def orders() -> pd.DataFrame:
    """Anything Python can fetch; the `shop` pipeline reads it as df_orders."""
    return pd.DataFrame({"order_id": [1, 2, 3, 4], "customer_id": [1, 2, 1, 3],
                         "amount": [9.5, 3.0, 1.25, 7.0]})


@dg.asset(ins={"enriched": dg.AssetIn(key=["shop", "enrich"])})
def top_customers(enriched: duckdb.DuckDBPyRelation) -> pd.DataFrame:
    """The `enrich` step's table, as the type this input is annotated with."""
    return enriched.aggregate("name, sum(amount) AS total", "name").order("total DESC").df()


defs = dg.Definitions.merge(
    build_definitions([Path(__file__).parent / "shop.yaml"]),
    dg.Definitions(assets=[orders, top_customers]),
)
