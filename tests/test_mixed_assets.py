"""Hand-written Dagster assets mixed with Osiris steps, both ways, on a real Dagster instance:
a step reads a Python asset's value as ``df_<name>``, and a Python asset reads a step's table as
the type it annotates (pandas, polars, Arrow, a DuckDB relation)."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from osiris_dagster import build_definitions
from osiris_dagster.oml import validate_pipeline
from osiris_dagster.runtime.runner import TableRef

from .conftest import REPO
from .helpers import events, failure_description, materialisations, write

PIPELINE = """\
oml_version: "0.1.0"
name: shop
x-dagster:
  steps:
    enrich: {deps: ["raw/orders", "raw/lineage_only"]}
steps:
  - id: customers
    component: filesystem.csv_extractor
    mode: read
    config: {path: data/customers.csv}
  - id: enrich
    component: duckdb.processor
    mode: transform
    needs: [customers]
    config:
      query: >
        SELECT o.order_id, c.name, o.amount
        FROM df_orders o JOIN df_customers c USING (customer_id) ORDER BY o.order_id
"""
ORDERS = {"order_id": [1, 2, 3], "customer_id": [1, 2, 1], "amount": [9.5, 3.0, 1.25]}
ENRICHED = [(1, "Ada", 9.5), (2, "Bob", 3.0), (3, "Ada", 1.25)]
ORDERS_KEY = dg.AssetKey(["raw", "orders"])
ENRICH_KEY = dg.AssetKey(["shop", "enrich"])


@pytest.fixture
def pipeline(workdir: Path) -> Path:
    write(workdir / "data" / "customers.csv", "customer_id,name\n1,Ada\n2,Bob\n")
    return write(workdir / "pipelines" / "shop.yaml", PIPELINE)


class KeepIOManager(dg.ConfigurableIOManager):
    """Keeps values in this process across runs: for values that cannot be pickled (a
    RecordBatchReader, a relation), as a user's own IO manager might hand them over."""

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        _KEPT[context.asset_key] = obj

    def load_input(self, context: dg.InputContext) -> Any:
        return _KEPT[context.asset_key]


_KEPT: dict[dg.AssetKey, Any] = {}
_HELD: list[Any] = []
_USER_DB: list[duckdb.DuckDBPyConnection] = []


def _relation() -> duckdb.DuckDBPyRelation:
    con = duckdb.connect(":memory:")
    _USER_DB.append(con)
    return con.from_df(pd.DataFrame(ORDERS))


def _polars() -> Any:
    pl = pytest.importorskip("polars")
    return pl.DataFrame(ORDERS)


VALUES = {
    "pandas": (lambda: pd.DataFrame(ORDERS), False),
    "arrow_table": (lambda: pa.table(ORDERS), False),
    "polars": (_polars, False),
    "record_batch_reader": (lambda: pa.table(ORDERS).to_reader(max_chunksize=1), True),
    "relation": (_relation, True),
}


def orders_asset(make: Any, keep: bool) -> dg.AssetsDefinition:
    @dg.asset(key=ORDERS_KEY, io_manager_key="keep" if keep else "io_manager")
    def orders() -> Any:
        return make()

    return orders


def mixed_defs(pipeline: Path, sessions: Path, *assets: Any) -> dg.Definitions:
    return dg.Definitions.merge(
        build_definitions([pipeline], sessions_dir=str(sessions)),
        dg.Definitions(assets=list(assets), resources={"keep": KeepIOManager()}))


def session_rows(sessions: Path, run_id: str, table: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(sessions / run_id / "pipeline_data.duckdb"), read_only=True) as con:
        return con.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()


def materialise(defs: dg.Definitions, instance: dg.DagsterInstance,
                *keys: dg.AssetKey) -> dg.ExecuteInProcessResult:
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=list(keys) or None, raise_on_error=False)


# -- a Python asset upstream of a step --------------------------------------------------------
def test_validate_lets_the_query_read_a_dep_it_names(pipeline: Path) -> None:
    """(raw/lineage_only is never materialised in these tests: a dep the query does not read
    stays lineage only, and the runs below succeed without it.)"""
    assert validate_pipeline(pipeline).ok
    no_dep = validate_pipeline(pipeline, text=PIPELINE.replace(
        '{deps: ["raw/orders", "raw/lineage_only"]}', '{deps: ["raw/lineage_only"]}'))
    assert not no_dep.ok
    assert "df_orders" in str(no_dep.errors[0])
    defs = build_definitions([pipeline], sessions_dir="s")
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == ENRICH_KEY)
    deps = {d.asset_key for d in spec.deps}
    assert {ORDERS_KEY, dg.AssetKey(["raw", "lineage_only"])} <= deps


@pytest.mark.parametrize("kind", list(VALUES))
def test_python_asset_feeds_a_step_in_the_same_run(pipeline: Path, tmp_path: Path,
                                                   instance: dg.DagsterInstance,
                                                   kind: str) -> None:
    make, keep = VALUES[kind]
    make()  # skips polars when it is not installed
    sessions = tmp_path / "s"
    defs = mixed_defs(pipeline, sessions, orders_asset(make, keep))
    result = materialise(defs, instance)
    assert result.success, failure_description(result)
    assert session_rows(sessions, result.run_id, "enrich") == ENRICHED
    assert session_rows(sessions, result.run_id, "enrich<-raw/orders") == [
        (1, 1, 9.5), (2, 2, 3.0), (3, 1, 1.25)]
    note = materialisations(result)["shop/enrich"]["osiris/asset_inputs"].value
    assert note == "- `raw/orders` as `df_orders` (3 rows)"
    lineage = materialisations(result)["shop/enrich"]["dagster/column_lineage"].value
    sources = {d.asset_key for deps in lineage.deps_by_column.values() for d in deps}
    assert ORDERS_KEY in sources  # the hand-written asset's columns are lineage sources too
    loaded = [e for e in events(sessions / result.run_id) if e["event"] == "asset_input"]
    assert [(e["asset"], e["view"], e["rows"]) for e in loaded] == [("raw/orders", "df_orders",
                                                                     3)]


def test_step_reads_the_python_assets_latest_materialisation_from_earlier_runs(
        pipeline: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    sessions = tmp_path / "s"
    data = dict(ORDERS)

    @dg.asset(key=ORDERS_KEY)
    def orders() -> pd.DataFrame:
        return pd.DataFrame(data)

    defs = mixed_defs(pipeline, sessions, orders)
    assert materialise(defs, instance, ORDERS_KEY).success
    first = defs.resolve_job_def("shop").execute_in_process(instance=instance,
                                                           raise_on_error=False)
    assert first.success, failure_description(first)
    assert session_rows(sessions, first.run_id, "enrich") == ENRICHED
    data["amount"] = [1.0, 2.0, 3.0]
    assert materialise(defs, instance, ORDERS_KEY).success
    second = defs.resolve_job_def("shop").execute_in_process(instance=instance,
                                                            raise_on_error=False)
    assert second.success, failure_description(second)
    assert [r[2] for r in session_rows(sessions, second.run_id, "enrich")] == [1.0, 2.0, 3.0]


def test_step_fails_naming_the_asset_when_it_was_never_materialised(
        pipeline: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    defs = mixed_defs(pipeline, tmp_path / "s", orders_asset(VALUES["pandas"][0], False))
    result = defs.resolve_job_def("shop").execute_in_process(instance=instance,
                                                            raise_on_error=False)
    assert not result.success
    message = failure_description(result)
    assert "pipeline 'shop', step 'enrich'" in message
    assert "'raw/orders' has never been materialised: materialise 'raw/orders' first" in message
    step_errors = [e for e in events(tmp_path / "s" / result.run_id)
                   if e["event"] in ("step_error", "run_end")]
    assert [e["event"] for e in step_errors] == ["step_error", "run_end"]


def test_a_value_that_is_no_table_fails_naming_the_asset_and_the_types(
        pipeline: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    defs = mixed_defs(pipeline, tmp_path / "s", orders_asset(lambda: {"order_id": 1}, False))
    result = materialise(defs, instance)
    assert not result.success
    message = failure_description(result)
    assert "step 'enrich'" in message and "asset 'raw/orders' as df_orders" in message
    assert "a dict cannot become a table" in message
    assert "pandas.DataFrame" in message and "pyarrow.RecordBatchReader" in message


def test_input_df_is_the_only_dep_of_a_step_without_upstream_steps(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    pipeline = write(workdir / "pipelines" / "only.yaml", """\
oml_version: "0.1.0"
name: only
x-dagster: {steps: {total: {deps: ["raw/orders"]}}}
steps:
  - id: total
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT sum(amount) AS total FROM input_df"}
""")
    sessions = tmp_path / "s"
    defs = mixed_defs(pipeline, sessions, orders_asset(VALUES["pandas"][0], False))
    result = materialise(defs, instance)
    assert result.success, failure_description(result)
    assert session_rows(sessions, result.run_id, "total") == [(13.75,)]


# -- a Python asset downstream of a step ------------------------------------------------------
def _rows(value: Any) -> list[tuple[Any, ...]]:
    """What each supported type holds, read with that type's own API."""
    if isinstance(value, TableRef):
        return []
    if isinstance(value, duckdb.DuckDBPyRelation):
        return value.order("order_id").fetchall()
    if isinstance(value, pa.RecordBatchReader):
        return [tuple(r.values()) for batch in value for r in batch.to_pylist()]
    if isinstance(value, pa.Table):
        return [tuple(r.values()) for r in value.to_pylist()]
    if isinstance(value, pd.DataFrame):
        return list(value.itertuples(index=False, name=None))
    return list(value.rows())  # polars


def _polars_type() -> type:
    return pytest.importorskip("polars").DataFrame


LOAD_TYPES = {"relation": lambda: duckdb.DuckDBPyRelation, "arrow_table": lambda: pa.Table,
              "record_batch_reader": lambda: pa.RecordBatchReader,
              "pandas": lambda: pd.DataFrame, "polars": _polars_type}


def reader_asset(load_type: Any, name: str = "report") -> dg.AssetsDefinition:
    def report(enrich):  # noqa: ANN001, ANN202 - annotated below (this module's are strings)
        _HELD.append(enrich)  # still referenced after the run: its connection must be closed
        return [type(enrich).__name__, _rows(enrich)]

    report.__annotations__ = {"enrich": load_type, "return": list}
    return dg.asset(name=name, ins={"enrich": dg.AssetIn(key=ENRICH_KEY)})(report)


@pytest.mark.parametrize("kind", list(LOAD_TYPES))
def test_downstream_asset_gets_the_table_as_its_annotated_type(
        pipeline: Path, tmp_path: Path, instance: dg.DagsterInstance, kind: str) -> None:
    load_type = LOAD_TYPES[kind]()
    sessions = tmp_path / "s"
    defs = mixed_defs(pipeline, sessions, orders_asset(VALUES["pandas"][0], False),
                      reader_asset(load_type))
    result = materialise(defs, instance)
    assert result.success, failure_description(result)
    type_name, rows = result.output_for_node("report")
    assert type_name == load_type.__name__
    assert [tuple(r) for r in rows] == ENRICHED
    db = sessions / result.run_id / "pipeline_data.duckdb"
    duckdb.connect(str(db)).close()  # no read connection of the run holds the file


def test_downstream_asset_reads_a_step_materialised_in_an_earlier_run(
        pipeline: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    sessions = tmp_path / "s"
    defs = mixed_defs(pipeline, sessions, orders_asset(VALUES["pandas"][0], False),
                      reader_asset(duckdb.DuckDBPyRelation), reader_asset(dict, "bad"),
                      reader_asset(pd.DataFrame | None, "optional"), reader_asset(Any, "plain"))
    first = materialise(defs, instance, ORDERS_KEY, dg.AssetKey(["shop", "customers"]),
                        ENRICH_KEY)
    assert first.success, failure_description(first)
    later = materialise(defs, instance, dg.AssetKey("report"), dg.AssetKey("plain"))
    assert later.success, failure_description(later)
    assert [tuple(r) for r in later.output_for_node("report")[1]] == ENRICHED
    type_name, rows = later.output_for_node("plain")  # no annotation: today's TableRef
    assert type_name == TableRef.__name__
    assert not (sessions / later.run_id).exists()  # nothing written for a read
    duckdb.connect(str(sessions / first.run_id / "pipeline_data.duckdb")).close()
    bad = materialise(defs, instance, dg.AssetKey("bad"))
    assert not bad.success
    message = failure_description(bad)
    assert "asset 'bad', input 'enrich' (from Osiris step 'shop/enrich')" in message
    assert "cannot load a table as dict" in message
    optional = materialise(defs, instance, dg.AssetKey("optional"))
    assert "cannot load a table as typing.Optional[pandas.DataFrame]" in \
        failure_description(optional)
    for name in ("duckdb.DuckDBPyRelation", "pyarrow.Table", "pyarrow.RecordBatchReader",
                 "pandas.DataFrame", "polars.DataFrame"):
        assert name in message


# -- both ways in one project ----------------------------------------------------------------
CHAIN = """\
oml_version: "0.1.0"
name: chain
x-dagster:
  steps:
    enrich: {deps: ["raw/orders"]}
    publish: {deps: ["summary"]}
steps:
  - id: customers
    component: filesystem.csv_extractor
    mode: read
    config: {path: data/customers.csv}
  - id: enrich
    component: duckdb.processor
    mode: transform
    needs: [customers]
    config:
      query: >
        SELECT o.order_id, c.name, o.amount
        FROM df_orders o JOIN df_customers c USING (customer_id)
  - id: publish
    component: duckdb.processor
    mode: transform
    needs: []
    config: {query: "SELECT name, total FROM input_df WHERE total > 5 ORDER BY name"}
  - id: write
    component: filesystem.csv_writer
    mode: write
    config: {path: out/summary.csv}
"""


def test_python_to_pipeline_to_python_to_pipeline_in_one_run(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    write(workdir / "data" / "customers.csv", "customer_id,name\n1,Ada\n2,Bob\n")
    pipeline = write(workdir / "pipelines" / "chain.yaml", CHAIN)
    still_referenced: list[duckdb.DuckDBPyRelation] = []

    @dg.asset(ins={"enrich": dg.AssetIn(key=["chain", "enrich"])})
    def summary(enrich: duckdb.DuckDBPyRelation) -> pd.DataFrame:
        still_referenced.append(enrich)  # e.g. cached by the user: its connection stays open
        return enrich.aggregate("name, sum(amount) AS total", "name").df()

    defs = mixed_defs(pipeline, tmp_path / "s", orders_asset(VALUES["pandas"][0], False),
                      summary)
    result = materialise(defs, instance)
    assert result.success, failure_description(result)
    assert (workdir / "out" / "summary.csv").read_text().splitlines() == ["name,total",
                                                                          "Ada,10.75"]
    with pytest.raises(duckdb.ConnectionException):  # closed before `publish` wrote the file
        still_referenced[0].fetchall()


# -- the README's mixed project, through the Dagster CLI (launched runs, as from the UI) ------
def test_example_mixed_project_in_one_run_and_across_runs_with_the_dagster_cli(
        tmp_path: Path) -> None:
    project = tmp_path / "mixed_project"
    shutil.copytree(REPO / "examples" / "mixed_project", project)
    home = tmp_path / "home"
    write(home / "dagster.yaml", "telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_")}
    env.update(DAGSTER_HOME=str(home), OSIRIS_SESSIONS_DIR=str(tmp_path / "s"))

    def materialise_cli(selection: str) -> str:
        out = subprocess.run([sys.executable, "-m", "dagster", "asset", "materialize", "-f",
                              "definitions.py", "--select", selection], cwd=project, env=env,
                             capture_output=True, text=True, timeout=300)
        text = out.stdout + out.stderr
        assert out.returncode == 0 and "RUN_SUCCESS" in text, text
        return text

    def top_customers() -> list[tuple[Any, ...]]:
        frame = pickle.loads((home / "storage" / "top_customers").read_bytes())
        return list(frame.itertuples(index=False, name=None))

    materialise_cli("*")  # one run: orders -> shop/customers, shop/enrich -> top_customers
    assert top_customers() == [("Ada", 10.75), ("Cy", 7.0), ("Bob", 3.0)]
    (home / "storage" / "top_customers").unlink()
    materialise_cli("top_customers")  # the step's table from the earlier run's session
    assert top_customers() == [("Ada", 10.75), ("Cy", 7.0), ("Bob", 3.0)]
    text = materialise_cli("shop/enrich")  # the Python asset from the earlier run
    assert 'Started execution of step "shop__enrich"' in text
    assert 'Started execution of step "orders"' not in text


def test_a_step_of_another_pipeline_is_read_in_its_session_without_a_copy(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    source = write(workdir / "pipelines" / "source.yaml", """\
oml_version: "0.1.0"
name: source
steps:
  - id: gen
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT range AS n FROM range(4)"}
""")
    reader = write(workdir / "pipelines" / "reader.yaml", """\
oml_version: "0.1.0"
name: reader
x-dagster: {steps: {total: {deps: ["source/gen"]}}}
steps:
  - id: total
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT sum(n) AS total FROM df_gen"}
""")
    sessions = tmp_path / "s"
    defs = build_definitions([source, reader], sessions_dir=str(sessions))
    first = defs.resolve_job_def("source").execute_in_process(instance=instance)
    later = defs.resolve_job_def("reader").execute_in_process(instance=instance,
                                                             raise_on_error=False)
    assert later.success, failure_description(later)
    assert session_rows(sessions, later.run_id, "total") == [(6,)]
    with duckdb.connect(str(sessions / later.run_id / "pipeline_data.duckdb"),
                        read_only=True) as con:
        assert con.execute("SHOW TABLES").fetchall() == [("total",)]
    assert first.run_id != later.run_id


def test_view_names_of_deps_follow_one_rule() -> None:
    from osiris_dagster.core.naming import assets_read_by_query

    query = "SELECT * FROM df_customers JOIN df_raw_customers USING (id) JOIN df_events USING (id)"
    # an upstream step already is df_customers: the dep gets its whole key
    assert assets_read_by_query(query, ["df_customers"], ["raw/customers", "x/events", "y/z"]) \
        == {"raw/customers": "df_raw_customers", "x/events": "df_events"}
    # input_df: only for the only upstream, and only when no df_<name> is read
    assert assets_read_by_query("SELECT * FROM input_df", [], ["raw/orders"]) == {
        "raw/orders": "df_orders"}
    assert assets_read_by_query("SELECT * FROM input_df", ["df_a"], ["raw/orders"]) == {}
    assert assets_read_by_query("SELECT * FROM input_df", [], ["raw/a", "raw/b"]) == {}
