"""Column lineage of duckdb.processor queries (osiris_dagster.drivers.duckdb.lineage).

Every query runs in DuckDB first, over the same views a processor step sees, so the output
column names passed in (and the keys asserted) are DuckDB's own.
"""

from __future__ import annotations

import re

import duckdb
import pytest

from osiris_dagster.core.naming import query_visible_names, quote_ident, upstream_view_names
from osiris_dagster.drivers.duckdb.lineage import ColumnLineage, sql_column_lineage

ORDERS = "df_orders"
CUSTOMERS = "df_customers"

UPSTREAMS = {
    "orders": ("CREATE TABLE t_orders (order_id INT, customer_id INT, amount DOUBLE, "
               "status TEXT, ts TIMESTAMP, tags INT[])"),
    "customers": ('CREATE TABLE t_customers (customer_id INT, "Customer Name" TEXT, '
                  '"Country" TEXT, status TEXT)'),
}


def _views(con: duckdb.DuckDBPyConnection, step_ids: list[str]) -> dict[str, list[str]]:
    """Create the upstream tables and the views a processor query sees; their columns."""
    names = upstream_view_names(step_ids)
    visible = query_visible_names(names[i] for i in step_ids)
    for step in step_ids:
        con.execute(UPSTREAMS[step])
        con.execute(f"INSERT INTO t_{step} DEFAULT VALUES")
        con.execute(f"CREATE VIEW {quote_ident(names[step])} AS FROM t_{step}")
    if len(step_ids) == 1:
        con.execute(f"CREATE VIEW input_df AS FROM {quote_ident(names[step_ids[0]])}")
    return {view: [r[0] for r in con.execute(f"DESCRIBE {quote_ident(view)}").fetchall()]
            for view in visible}


def _run(query: str, step_ids: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    con = duckdb.connect()
    upstream = _views(con, step_ids)
    con.execute(f"CREATE TABLE step_output AS {query}\n")
    produced = [r[0] for r in con.execute("DESCRIBE step_output").fetchall()]
    return upstream, produced


def traced(query: str, step_ids: list[str] | None = None) -> dict[str, list[tuple[str, str]]]:
    upstream, produced = _run(query, step_ids or ["orders", "customers"])
    result = sql_column_lineage(query, upstream, produced)
    assert result.problem is None, result.problem
    assert list(result.columns) == produced
    return result.columns


def refused(query: str, step_ids: list[str] | None = None) -> str:
    upstream, produced = _run(query, step_ids or ["orders", "customers"])
    result = sql_column_lineage(query, upstream, produced)
    assert result.columns == {}
    assert result.problem
    return result.problem


def o(column: str) -> tuple[str, str]:
    return (ORDERS, column)


def c(column: str) -> tuple[str, str]:
    return (CUSTOMERS, column)


def test_projection_and_renames():
    assert traced("SELECT order_id, amount AS total, amount * 2, status FROM df_orders") == {
        "order_id": [o("order_id")],
        "total": [o("amount")],
        "(amount * 2)": [o("amount")],
        "status": [o("status")],
    }


def test_input_df_is_reported_as_the_real_view():
    query = ("SELECT i.order_id, d.amount FROM input_df i "
             "JOIN df_orders d ON i.order_id = d.order_id")
    assert traced(query, ["orders"]) == {"order_id": [o("order_id")], "amount": [o("amount")]}


def test_join_qualified_and_unqualified_columns():
    query = ("SELECT o.order_id, \"Customer Name\", c.status AS customer_status, amount "
             "FROM df_orders o LEFT JOIN df_customers c ON o.customer_id = c.customer_id")
    assert traced(query) == {
        "order_id": [o("order_id")],
        "Customer Name": [c("Customer Name")],
        "customer_status": [c("status")],
        "amount": [o("amount")],
    }


def test_join_using_and_star():
    assert traced("SELECT * FROM df_orders JOIN df_customers USING (customer_id)") == {
        "order_id": [o("order_id")],
        "customer_id": [o("customer_id"), c("customer_id")],
        "amount": [o("amount")],
        "status": [o("status")],
        "ts": [o("ts")],
        "tags": [o("tags")],
        "Customer Name": [c("Customer Name")],
        "Country": [c("Country")],
        "status_1": [c("status")],
    }
    query = "SELECT customer_id, order_id FROM df_orders JOIN df_customers USING (customer_id)"
    assert traced(query) == {"customer_id": [o("customer_id"), c("customer_id")],
                             "order_id": [o("order_id")]}


def test_aggregates_with_group_by():
    query = ("SELECT c.\"Country\", count(*) AS n, sum(o.amount) AS total, "
             "count(DISTINCT o.customer_id) FROM df_orders o "
             "JOIN df_customers c ON o.customer_id = c.customer_id "
             "WHERE o.status = 'paid' GROUP BY c.\"Country\" HAVING count(*) > 1")
    assert traced(query) == {
        "Country": [c("Country")],
        "n": [],  # count(*) reads no column
        "total": [o("amount")],
        "count(DISTINCT o.customer_id)": [o("customer_id")],
    }


def test_case_expression():
    query = ("SELECT CASE WHEN status = 'paid' THEN amount WHEN ts IS NULL THEN 0 "
             "ELSE -amount END AS signed FROM df_orders")
    assert traced(query) == {"signed": [o("status"), o("amount"), o("ts")]}


def test_window_partition_and_order_columns_are_sources():
    query = ("SELECT order_id, sum(amount) OVER (PARTITION BY customer_id ORDER BY ts) AS running,"
             " row_number() OVER () AS rn FROM df_orders")
    assert traced(query) == {
        "order_id": [o("order_id")],
        "running": [o("amount"), o("customer_id"), o("ts")],
        "rn": [],
    }


def test_named_window_definitions_are_sources():
    query = ("SELECT sum(amount) OVER w AS s, count(*) OVER (w ORDER BY ts) AS n "
             "FROM df_orders WINDOW w AS (PARTITION BY customer_id)")
    assert traced(query) == {"s": [o("amount"), o("customer_id")],
                             "n": [o("ts"), o("customer_id")]}


def test_star_variants():
    assert traced("SELECT * EXCLUDE (tags, ts) FROM df_orders") == {
        "order_id": [o("order_id")], "customer_id": [o("customer_id")],
        "amount": [o("amount")], "status": [o("status")]}
    assert traced("SELECT * EXCLUDE (tags) REPLACE (round(amount) AS amount) FROM df_orders") == {
        "order_id": [o("order_id")], "customer_id": [o("customer_id")],
        "amount": [o("amount")], "status": [o("status")], "ts": [o("ts")]}
    assert traced("SELECT * RENAME (\"Country\" AS land) FROM df_customers") == {
        "customer_id": [c("customer_id")], "Customer Name": [c("Customer Name")],
        "land": [c("Country")], "status": [c("status")]}
    query = ("SELECT c.*, o.amount FROM df_orders o "
             "JOIN df_customers c ON o.customer_id = c.customer_id")
    assert traced(query) == {
        "customer_id": [c("customer_id")], "Customer Name": [c("Customer Name")],
        "Country": [c("Country")], "status": [c("status")], "amount": [o("amount")]}


def test_nested_ctes_and_subqueries():
    query = """
        WITH paid AS (SELECT customer_id, amount AS paid_amount FROM df_orders
                      WHERE status = 'paid'),
             per_customer AS (
                 WITH summed AS (SELECT customer_id, sum(paid_amount) AS total FROM paid
                                 GROUP BY customer_id)
                 SELECT * FROM summed)
        SELECT c."Customer Name" AS name, p.total,
               (SELECT max(amount) FROM df_orders x WHERE x.customer_id = c.customer_id)
                   AS biggest,
               d.n
        FROM per_customer p
        JOIN df_customers c USING (customer_id)
        JOIN (SELECT customer_id, count(*) AS n FROM df_orders GROUP BY ALL) d
          ON d.customer_id = p.customer_id
    """
    assert traced(query) == {
        "name": [c("Customer Name")],
        "total": [o("amount")],
        "biggest": [o("amount")],
        "n": [],
    }


def test_correlated_scalar_subquery_reading_the_outer_row():
    query = ("SELECT (SELECT max(o.amount) + c.customer_id FROM df_orders o) AS m "
             "FROM df_customers c")
    assert traced(query) == {"m": [o("amount"), c("customer_id")]}


def test_in_subquery_counts_its_column_and_exists_counts_none():
    query = ("SELECT customer_id IN (SELECT customer_id FROM df_orders) AS has_orders, "
             "EXISTS (SELECT * FROM df_orders o WHERE o.customer_id = c.customer_id) AS any_ "
             "FROM df_customers c")
    assert traced(query) == {"has_orders": [c("customer_id"), o("customer_id")],
                             "any_": []}


def test_column_aliases_on_a_view_rename_by_position():
    # t.customer_id is df_orders.order_id here, not df_orders.customer_id
    query = "SELECT t.customer_id, status FROM df_orders AS t(customer_id, order_id)"
    assert traced(query) == {"customer_id": [o("order_id")], "status": [o("status")]}
    assert traced("SELECT * FROM df_customers c(id)") == {
        "id": [c("customer_id")], "Customer Name": [c("Customer Name")],
        "Country": [c("Country")], "status": [c("status")]}
    query = "WITH x(a, b) AS (SELECT amount, order_id FROM df_orders) SELECT b, a FROM x"
    assert traced(query) == {"b": [o("order_id")], "a": [o("amount")]}


def test_a_cte_shadows_the_upstream_view_of_the_same_name():
    query = ("WITH df_orders AS (SELECT customer_id AS order_id FROM df_customers) "
             "SELECT order_id FROM df_orders")
    assert traced(query) == {"order_id": [c("customer_id")]}


def test_union_takes_column_i_of_every_branch():
    query = ("SELECT order_id AS id, status FROM df_orders "
             "UNION ALL SELECT customer_id, \"Country\" FROM df_customers "
             "UNION SELECT 0, 'none'")
    assert traced(query) == {"id": [o("order_id"), c("customer_id")],
                             "status": [o("status"), c("Country")]}


def test_union_by_name_and_except():
    query = ("SELECT status, order_id AS id FROM df_orders "
             "UNION ALL BY NAME SELECT customer_id AS id, \"Country\" FROM df_customers")
    assert traced(query) == {"status": [o("status")],
                             "id": [o("order_id"), c("customer_id")],
                             "Country": [c("Country")]}
    query = "SELECT customer_id FROM df_orders EXCEPT SELECT customer_id FROM df_customers"
    assert traced(query) == {"customer_id": [o("customer_id")]}


def test_identifiers_needing_quotes_and_case_insensitive_names():
    query = ('SELECT "customer name" AS "Full Name", country, "COUNTRY" AS "Country Again", '
             'CUSTOMER_ID FROM DF_CUSTOMERS')
    assert traced(query) == {
        "Full Name": [c("Customer Name")],
        "Country": [c("Country")],
        "Country Again": [c("Country")],
        "customer_id": [c("customer_id")],
    }


def test_duplicate_output_names_get_duckdbs_suffixes():
    query = ("SELECT o.status, c.status, o.customer_id, c.customer_id FROM df_orders o "
             "JOIN df_customers c ON o.customer_id = c.customer_id")
    assert traced(query) == {"status": [o("status")], "status_1": [c("status")],
                             "customer_id": [o("customer_id")],
                             "customer_id_1": [c("customer_id")]}


def test_duckdb_only_syntax_that_is_traced():
    assert traced("SELECT * FROM input_df QUALIFY row_number() OVER "
                  "(PARTITION BY customer_id ORDER BY ts DESC) = 1", ["orders"]) == {
        "order_id": [o("order_id")], "customer_id": [o("customer_id")],
        "amount": [o("amount")], "status": [o("status")], "ts": [o("ts")],
        "tags": [o("tags")]}
    assert traced("SELECT status, sum(amount) AS total FROM input_df GROUP BY ALL "
                  "ORDER BY ALL", ["orders"]) == {"status": [o("status")],
                                                  "total": [o("amount")]}
    assert traced("FROM input_df SELECT order_id, amount AS a, a * 2 AS doubled",
                  ["orders"]) == {"order_id": [o("order_id")], "a": [o("amount")],
                                  "doubled": [o("amount")]}
    # a lambda parameter is not a column, even when a column has its name
    assert traced("SELECT list_transform(tags, lambda amount: amount + customer_id) AS t, "
                  "u FROM input_df, unnest(input_df.tags) AS x(u)", ["orders"]) == {
        "t": [o("tags"), o("customer_id")], "u": [o("tags")]}


def test_query_without_upstream_columns():
    assert traced("SELECT 1 AS one, i FROM range(3) t(i)", []) == {"one": [], "i": []}


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("SELECT COLUMNS('^(order|customer)_id$') FROM df_orders", "COLUMNS"),
        ("SELECT COLUMNS('amount') + 1 FROM df_orders", "COLUMNS"),
        ("SELECT * LIKE 'order%' FROM df_orders", "LIKE"),
        ("PIVOT df_orders ON status USING sum(amount)", "PIVOT"),
        ("SELECT * FROM (PIVOT df_orders ON status USING sum(amount) GROUP BY customer_id)",
         "PIVOT"),
        ("WITH RECURSIVE r AS (SELECT order_id AS n FROM df_orders UNION ALL "
         "SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r", "recursive"),
        # DuckDB renames the second status to status_1; sqlglot cannot tell which is which
        ("SELECT * FROM (SELECT o.status, c.status FROM df_orders o, df_customers c)",
         "expanded|ambiguous"),
        ("SELECT * FROM df_orders, unnest(tags) AS u", "expanded"),
        ("SELECT s.* FROM (SELECT {'a': order_id, 'b': amount} AS s FROM df_orders)",
         "expanded"),
    ],
)
def test_duckdb_syntax_that_is_not_traced_is_refused(query, reason):
    assert re.search(reason, refused(query))


def test_a_query_sqlglot_cannot_parse_or_resolve():
    bad = sql_column_lineage("SELECT FROM WHERE", {ORDERS: ["order_id"]})
    assert bad.columns == {} and "could not parse" in bad.problem
    unknown = sql_column_lineage("SELECT nope FROM df_orders", {ORDERS: ["order_id"]})
    assert unknown.columns == {} and "nope" in unknown.problem
    other = sql_column_lineage("SELECT * FROM secret_table", {ORDERS: ["order_id"]})
    assert other.columns == {} and "secret_table" in other.problem
    two = sql_column_lineage("SELECT 1; SELECT 2", {})
    assert two.columns == {} and "2 statements" in two.problem
    ddl = sql_column_lineage("DROP TABLE df_orders", {ORDERS: ["order_id"]})
    assert ddl.columns == {} and "not a SELECT" in ddl.problem


def test_output_columns_that_do_not_line_up_are_a_problem():
    upstream, produced = _run("SELECT order_id, amount FROM df_orders", ["orders"])
    assert sql_column_lineage("SELECT order_id, amount FROM df_orders", upstream,
                              produced).problem is None
    fewer = sql_column_lineage("SELECT order_id FROM df_orders", upstream, produced)
    assert fewer.columns == {} and "1 output columns" in fewer.problem
    renamed = sql_column_lineage("SELECT order_id, amount AS total FROM df_orders", upstream,
                                 produced)
    assert renamed.columns == {} and "'amount'" in renamed.problem
    computed = sql_column_lineage("SELECT order_id, amount * 2 AS doubled FROM df_orders",
                                  upstream, produced)
    assert computed.columns == {} and "'doubled'" in computed.problem


def test_without_output_columns_names_are_sqlglots():
    result = sql_column_lineage('SELECT "Customer Name", upper("Country") FROM df_customers',
                                {CUSTOMERS: ["customer_id", "Customer Name", "Country"]})
    assert result == ColumnLineage({"customer name": [c("Customer Name")],
                                    "_col_1": [c("Country")]})


def test_a_query_sqlglot_cannot_tokenize_is_not_quoted_in_the_problem() -> None:
    """sqlglot's tokenizer error quotes 50 characters of the query: half a secret literal that
    no masker knows. The problem (kept in the lineage cache and shown in Dagster) says less."""
    traced = sql_column_lineage("SELECT 'Tok3n-Secret-77' AS x, 'a'''' AS y FROM df_a",
                                {"df_a": ["v"]}, ["x", "y"])
    assert traced.problem is not None and "could not read" in traced.problem
    assert "Secret" not in traced.problem and "'a'" not in traced.problem
