"""The work every contender does, defined once.

* **e2e**: CSV -> filter + derived column -> CSV.
* **extract**: CSV -> a table in a DuckDB file (what an extract step produces).
* **overhead**: an N-step osiris pipeline on a 100-row table (1 CSV extract + N-1 SQL steps).

The filter keeps about 66 % of the rows; the derived column is a rounded product.
"""

from __future__ import annotations

import json
from pathlib import Path

FILTER = "amount >= 250 AND category <> 'toys'"
DERIVED = "round(amount * quantity, 2) AS total"
COLUMNS = ("id", "customer", "category", "country", "amount", "quantity", "order_date", "note")


def transform_sql(source: str) -> str:
    """The filter/derive query over ``source`` (a table, view or table function)."""
    return f"SELECT *, {DERIVED} FROM {source} WHERE {FILTER}"


def _q(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar


def e2e_pipeline(csv: Path, out: Path) -> str:
    return f"""# osiris-dagster benchmark: CSV -> filter/derive -> CSV (written by benchmarks/)
oml_version: "0.1.0"
name: bench-e2e
steps:
  - id: extract
    component: filesystem.csv_extractor
    mode: read
    config:
      path: {_q(str(csv))}
  - id: transform
    component: duckdb.processor
    mode: transform
    config:
      query: {_q(transform_sql("input_df"))}
  - id: write
    component: filesystem.csv_writer
    mode: write
    config:
      path: {_q(str(out))}
"""


def extract_pipeline(csv: Path) -> str:
    return f"""# osiris-dagster benchmark: extract only (written by benchmarks/)
oml_version: "0.1.0"
name: bench-extract
steps:
  - id: extract
    component: filesystem.csv_extractor
    mode: read
    config:
      path: {_q(str(csv))}
"""


def chain_pipeline(csv: Path, steps: int) -> str:
    """``steps`` assets: one CSV extract, then ``steps - 1`` SQL steps each reading the previous."""
    lines = [
        "# osiris-dagster benchmark: per-asset overhead (written by benchmarks/)",
        'oml_version: "0.1.0"',
        f"name: bench-chain-{steps}",
        "steps:",
        "  - id: s01",
        "    component: filesystem.csv_extractor",
        "    mode: read",
        "    config:",
        f"      path: {_q(str(csv))}",
    ]
    for i in range(2, steps + 1):
        lines += [
            f"  - id: s{i:02d}",
            "    component: duckdb.processor",
            "    mode: transform",
            "    config:",
            f"      query: {_q(f'SELECT *, {i} AS step_{i:02d} FROM input_df WHERE id > 0')}",
        ]
    return "\n".join(lines) + "\n"


def write_pipeline(workdir: Path, case: str, csv: Path, out: Path, steps: int = 1) -> Path:
    if case == "e2e":
        text, name = e2e_pipeline(csv, out), "e2e.yaml"
    elif case == "extract":
        text, name = extract_pipeline(csv), "extract.yaml"
    elif case == "overhead":
        text, name = chain_pipeline(csv, steps), f"chain_{steps}.yaml"
    else:
        raise ValueError(case)
    path = workdir / name
    path.write_text(text, encoding="utf-8")
    return path
