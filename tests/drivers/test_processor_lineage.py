"""Column lineage reported by duckdb.processor steps (in upstream step ids) and by writers, and
its cache in the step's state directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from osiris_dagster.core.naming import upstream_view_names
from osiris_dagster.drivers.base import DriverResult, StepColumnLineage
from osiris_dagster.drivers.duckdb import processor, step_lineage
from osiris_dagster.runtime.session import Session
from osiris_dagster.runtime.workspace import StepWorkspace

from .conftest import WriteFn

ORDERS = "SELECT * FROM (VALUES (1, 10, 5.0), (2, 10, 7.5), (3, 20, 1.0)) " \
         "t(order_id, customer_id, amount)"
CUSTOMERS = "SELECT * FROM (VALUES (10, 'Ann', 'CZ'), (20, 'Bob', 'DE')) " \
            't(customer_id, "Name", country)'

JOIN = """
WITH big AS (SELECT * FROM df_orders WHERE amount >= 1)
SELECT c."Name" AS customer, sum(b.amount) AS total,
       CASE WHEN c.country = 'CZ' THEN 'home' ELSE c.country END AS region,
       rank() OVER (PARTITION BY c.country ORDER BY sum(b.amount)) AS rnk,
       count(*) AS n
FROM big b JOIN df_customer_list c ON b.customer_id = c.customer_id
GROUP BY c."Name", c.country
"""

Run = Callable[..., tuple[DriverResult, list[str]]]


@pytest.fixture
def run_processor(session: Session) -> Run:
    """Build the upstream tables (steps `orders` and `customer-list`), then run a processor
    step `report` over the ones named in ``upstreams``; returns its result and workspace."""
    tables = {"orders": ORDERS, "customer-list": CUSTOMERS}
    for step, sql in tables.items():
        with StepWorkspace(session, pipeline_name="p", step_id=step,
                           output_table=step.replace("-", "_")) as ws:
            ws.create_output(sql)

    def run(query: str, upstreams: tuple[str, ...] = ("orders", "customer-list")
            ) -> tuple[DriverResult, list[str]]:
        views = upstream_view_names(upstreams)
        with StepWorkspace(session, pipeline_name="p", step_id="report",
                           output_table="report") as ws:
            extra = ["input_df"] if len(upstreams) == 1 else []
            inputs = [ws.add_upstream(s, views[s], session.db_path, s.replace("-", "_"), extra)
                      for s in upstreams]
            result = processor.run(ws, {"query": query}, inputs)
            return result, [name for name, _ in ws.output_columns()]
    return run


def test_join_aggregate_case_window_and_cte_map_to_upstream_steps(run_processor: Run) -> None:
    result, columns = run_processor(JOIN)
    assert result.rows_written == 2
    lineage = result.column_lineage
    assert lineage is not None and lineage.problem is None
    assert list(lineage.columns) == columns
    assert dict(lineage.columns) == {
        "customer": (("customer-list", "Name"),),
        "total": (("orders", "amount"),),
        "region": (("customer-list", "country"),),
        "rnk": (("customer-list", "country"), ("orders", "amount")),
        "n": (),
    }


def test_select_star_from_the_single_input_view(run_processor: Run) -> None:
    result, _ = run_processor("SELECT * EXCLUDE (amount), amount * 2 AS doubled FROM input_df",
                              ("orders",))
    assert result.column_lineage == StepColumnLineage({
        "order_id": (("orders", "order_id"),),
        "customer_id": (("orders", "customer_id"),),
        "doubled": (("orders", "amount"),),
    })


def test_a_query_sqlglot_cannot_parse_keeps_the_step_going(run_processor: Run,
                                                           session: Session) -> None:
    # postfix factorial: DuckDB runs it, sqlglot cannot parse it
    result, columns = run_processor("SELECT order_id, order_id ! AS f FROM df_orders")
    assert result.rows_written == 3 and columns == ["order_id", "f"]
    lineage = result.column_lineage
    assert lineage is not None and lineage.columns == {}
    assert "could not parse" in lineage.problem
    logged = [json.loads(line) for line in session.events_path.read_text().splitlines()]
    unavailable = [e for e in logged if e.get("event") == "column_lineage_unavailable"]
    assert len(unavailable) == 1 and unavailable[0]["step_id"] == "report"
    assert "could not parse" in unavailable[0]["problem"]


def _cache(session: Session) -> dict:
    path = session.settings.sessions_dir / ".state" / "p" / "report" / step_lineage.CACHE_FILE
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_answer_is_cached_by_query_and_columns(run_processor: Run, session: Session,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    first, _ = run_processor(JOIN)
    assert len(_cache(session)["entries"]) == 1
    traced: list[str] = []
    real = step_lineage._trace

    def counting(query, *args):  # noqa: ANN001, ANN202
        traced.append(query)
        return real(query, *args)

    monkeypatch.setattr(step_lineage, "_trace", counting)
    again, _ = run_processor(JOIN)
    assert again.column_lineage == first.column_lineage and traced == []
    other, _ = run_processor("SELECT customer_id AS id FROM df_orders")
    assert traced and other.column_lineage == StepColumnLineage(
        {"id": (("orders", "customer_id"),)})
    assert len(_cache(session)["entries"]) == 2


def test_a_corrupt_or_malformed_cache_is_ignored_and_rewritten(run_processor: Run,
                                                               session: Session) -> None:
    first, _ = run_processor(JOIN)
    path = session.settings.sessions_dir / ".state" / "p" / "report" / step_lineage.CACHE_FILE
    path.write_text('{"format": 1, "entries": {', encoding="utf-8")
    assert run_processor(JOIN)[0].column_lineage == first.column_lineage
    document = _cache(session)
    (key,) = document["entries"]
    document["entries"][key]["columns"] = {"customer": "not a list"}
    path.write_text(json.dumps(document), encoding="utf-8")
    assert run_processor(JOIN)[0].column_lineage == first.column_lineage
    assert _cache(session)["entries"][key]["columns"]["customer"] == [["customer-list", "Name"]]


def test_the_cache_keeps_a_bounded_number_of_answers(run_processor: Run,
                                                     session: Session) -> None:
    for n in range(step_lineage.MAX_ENTRIES + 3):
        result, _ = run_processor(f"SELECT amount + {n} AS x{n} FROM df_orders")
        assert result.column_lineage == StepColumnLineage({f"x{n}": (("orders", "amount"),)})
    entries = _cache(session)["entries"]
    assert len(entries) == step_lineage.MAX_ENTRIES
    assert [list(e["columns"]) for e in entries.values()][-1] == \
        [f"x{step_lineage.MAX_ENTRIES + 2}"]


CLI_PIPELINE = """\
oml_version: "0.1.0"
name: cached-lineage
steps:
  - id: orders
    component: filesystem.csv_extractor
    mode: read
    config: {path: orders.csv}
  - id: totals
    component: duckdb.processor
    mode: transform
    config:
      query: "SELECT customer_id, sum(amount) AS total FROM input_df GROUP BY customer_id"
"""


def test_an_unchanged_pipeline_run_again_never_imports_sqlglot(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text("customer_id,amount\n1,2.5\n1,3\n2,4\n")
    (tmp_path / "p.yaml").write_text(CLI_PIPELINE)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OSIRIS_") and k != "DAGSTER_HOME"}
    env["OSIRIS_SESSIONS_DIR"] = str(tmp_path / "sessions")

    def imports_of_a_run() -> str:
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "osiris_dagster.cli",
                               "run", "p.yaml"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stderr

    assert "sqlglot" in imports_of_a_run()  # first run: traced
    cache = tmp_path / "sessions" / ".state" / "cached_lineage" / "totals" / "column_lineage.json"
    assert cache.is_file()
    assert "sqlglot" not in imports_of_a_run()  # same query, same columns: read from the cache


def test_writers_pass_columns_through_from_their_upstream(upstream: Callable[[str], None],
                                                          write: WriteFn) -> None:
    upstream("SELECT 1 AS b_col, 'x' AS \"A col\"")
    result = write(path="out.csv")
    assert result.column_lineage == StepColumnLineage({
        "A col": (("up", "A col"),), "b_col": (("up", "b_col"),)})
