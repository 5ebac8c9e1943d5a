"""What a `duckdb.processor` query may be: one SELECT over its upstream views, checked by DuckDB's
own parser before it runs.

Two layers keep the step sealed:

1. This module: the text must parse as exactly one statement of type SELECT, and every table
   it names (read from DuckDB's parse tree, not from the words) must be one of the step's
   upstream views or a CTE in scope where it is read (as DuckDB binds CTEs; none named like
   one of DuckDB's catalog views, which DuckDB reads where the CTE is not in scope); it may
   call only the table functions that make rows from their arguments (`range`, `unnest`,
   `json_each`, ...): any other one may run SQL text (`query`, `json_execute_serialized_sql`),
   read a table named by a string (`query_table`, the `histogram` table macros), list the
   catalog (`duckdb_*`) or read files; no scalar macro that reads the catalog
   (`pg_get_viewdef`, ...), no `SHOW TABLES`. Check expressions follow the same rules, over
   the step's own table only.
2. The step's connection (``StepContext.seal_sql_access``): DuckDB's ``enable_external_access``
   off (no file, network, ATTACH, INSTALL/LOAD) and ``lock_configuration`` on (no settings
   changes), so what the parse check cannot see is still refused by DuckDB itself.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import duckdb

from osiris_dagster.core.errors import DriverError

# Table functions that would reach past the step's views: run SQL given as text, or read the
# catalog of the session (other steps' tables, attached files, settings, secrets). Named in the
# error: every table function outside _ROW_ONLY_TABLE_FUNCTIONS is refused.
_SQL_TEXT_FUNCTIONS = frozenset({"query", "query_table", "json_execute_serialized_sql",
                                 "histogram", "histogram_values"})
_CATALOG_PREFIXES = ("duckdb_", "pragma_", "sqlite_", "pg_", "information_schema")
_CATALOG_FUNCTIONS = frozenset({"which_secret", "checkpoint", "force_checkpoint"})
# The table functions a sealed query or check expression may call: they make rows from their
# arguments only. SQL calling no other one leaves its DuckDB instance as it found it, so the
# session's next SQL step may run in that instance (runtime.duckdb_instances); another one
# might not (register_external_resource_type keeps an entry for the whole instance, which the
# next step would find: its own registration of the name then fails).
_ROW_ONLY_TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree",
    "summary", "test_all_types", "test_vector_types", "icu_calendar_names",
})

# what a query of a step that needs no table-making step sees (a writer makes no table)
NO_TABLES_VISIBLE = "none (no step it needs makes a table; a writer makes none)"


def check_query(con: duckdb.DuckDBPyConnection, query: str, visible: Iterable[str]) -> None:
    """Raise DriverError unless ``query`` is one SELECT that reads only ``visible`` tables and
    calls only the table functions that make rows (so it also leaves the DuckDB instance as it
    found it: the session's next SQL step may run in it)."""
    _check_statements(con, query)
    _check_tree(_parse_tree(con, query), visible, con)


def _check_statements(con: duckdb.DuckDBPyConnection, query: str) -> None:
    try:  # con's parser: the module-level function would open DuckDB's default instance
        statements = con.extract_statements(query)
    except duckdb.ParserException as exc:
        raise DriverError(f"SQL syntax error: {first_lines(exc)}. The query must be a single "
                          "SELECT (or WITH ... SELECT) over the step's upstream views.") from exc
    if len(statements) != 1:
        raise DriverError(f"refused: the query holds {len(statements)} statements; a "
                          "duckdb.processor step runs exactly one SELECT (or WITH ... SELECT)")
    kind = statements[0].type
    if kind == duckdb.StatementType.MULTI and "pivot" in query.lower():
        raise DriverError("refused: a PIVOT without an IN list runs as several statements "
                          "(DuckDB first creates a type of the distinct values); list the "
                          "values instead: PIVOT ... ON column IN ('a', 'b') USING ...")
    if kind != duckdb.StatementType.SELECT:
        raise DriverError(f"refused: a {kind.name} statement; a duckdb.processor step runs "
                          "only one SELECT (or WITH ... SELECT) and changes nothing else")


def _check_tree(tree: dict[str, Any], visible: Iterable[str],
                con: duckdb.DuckDBPyConnection) -> None:
    """Every table the parse tree reads is one of ``visible`` or a CTE in scope where it is
    read, and no CTE is named like a catalog view DuckDB would read instead where it is not
    in scope; every table function makes rows; no scalar macro reads the catalog; no SHOW
    lists it. ``visible`` is ``[CHECKED_TABLE]`` for a check expression, whose own table is
    read only by the query around it (:func:`check_expression`)."""
    visible = list(visible)
    expression = visible == [CHECKED_TABLE]
    names = set() if expression else {fold(name) for name in visible}
    wrapper = _expression_table(tree) if expression else None
    shown = ", ".join(sorted(set(visible))) or NO_TABLES_VISIBLE
    catalog_names, catalog_macros = _catalog_names(con)
    for node, ctes in _scoped_nodes(tree):
        kind = node.get("type")
        if node is wrapper:
            continue
        for cte in ctes & catalog_names:
            raise DriverError(f"refused: a CTE named {cte!r}, like one of DuckDB's catalog "
                              "views (read in its place where the CTE is not in scope); "
                              "give it another name")
        if kind == "SHOW_REF" and not node.get("query"):
            if node.get("show_type") != "SHOW" or not node.get("table_name"):
                raise DriverError(  # SHOW TABLES, SHOW ALL TABLES, SHOW SCHEMAS, ...
                    f"refused: SHOW lists the catalog of the session, past this step's "
                    f"upstream views (tables visible: {shown}); DESCRIBE or SUMMARIZE a view "
                    "or a SELECT instead")
            _check_table(node, names, shown, expression)  # SHOW <view>: not a CTE's name
        elif kind == "BASE_TABLE":
            _check_table(node, names, shown, expression, ctes)
        elif kind == "TABLE_FUNCTION":
            _check_table_function(node, shown, expression)
        elif kind == "FUNCTION" and fold(str(node.get("function_name") or "")) in \
                catalog_macros:
            raise DriverError(
                f"refused: {node.get('function_name')}() reads DuckDB's catalog (the tables "
                "of the session), past this step's upstream views")


def fold(name: str) -> str:
    """A name as DuckDB compares names: case-insensitive in ASCII only (Python's lower() also
    folds e.g. the Kelvin sign into 'k', which DuckDB keeps apart)."""
    return name.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


_CATALOG: tuple[frozenset[str], frozenset[str]] | None = None


def _catalog_names(con: duckdb.DuckDBPyConnection) -> tuple[frozenset[str], frozenset[str]]:
    """What DuckDB's own catalog (``system``) holds, the same in every instance of a version
    (read once per process, from the connection at hand: no instance is opened for it): the
    names of its views and tables (``duckdb_tables``, ``sqlite_master``, ``pg_class``, ...: a
    query reads one where a name it uses is not a CTE in scope), and the scalar macros that
    read the catalog through a subquery (``pg_get_viewdef``, ``format_type``, ...)."""
    global _CATALOG
    if _CATALOG is None:
        # information_schema's views are not on the search path: a CTE may be named `tables`
        views = con.execute(
            "SELECT view_name FROM duckdb_views() WHERE database_name = 'system' AND "
            "schema_name <> 'information_schema' UNION SELECT table_name FROM duckdb_tables() "
            "WHERE database_name = 'system' AND schema_name <> 'information_schema'").fetchall()
        macros = con.execute(
            "SELECT function_name FROM duckdb_functions() WHERE function_type = 'macro' AND "
            "database_name = 'system' AND regexp_matches(macro_definition, '(?i)\\bFROM\\b')"
        ).fetchall()
        _CATALOG = (frozenset(fold(v) for (v,) in views), frozenset(fold(m) for (m,) in macros))
    return _CATALOG


def _expression_table(tree: dict[str, Any]) -> Any:
    """The FROM of the query :func:`expression_query` wraps a check expression in: the one
    place :data:`CHECKED_TABLE` may be read."""
    statements = tree.get("statements") or [{}]
    return (statements[0].get("node") or {}).get("from_table")


# The name a check expression's table has while the expression is checked (never a real table)
CHECKED_TABLE = "__osiris_checked_table"


def expression_query(expression: str, relation: str = CHECKED_TABLE) -> str:
    """The query that finds the rows of ``relation`` failing a check expression (the line break
    ends a trailing comment); over :data:`CHECKED_TABLE` it is what :func:`check_expression`
    judges."""
    return f"SELECT * FROM {relation} WHERE NOT coalesce(({expression}\n), false)"


def expression_problems(expressions: Sequence[str]) -> list[str | None]:
    """What a check expression's run would refuse in each of ``expressions``, or None (for
    `validate`, before any run; nothing is executed)."""
    out: list[str | None] = []
    for expression in expressions:
        try:
            check_expression(_parser_connection(), expression)
            out.append(None)
        except DriverError as exc:
            out.append(str(exc))
    return out


def check_expression(con: duckdb.DuckDBPyConnection, expression: str) -> None:
    """Raise DriverError unless ``expression`` is one SQL condition on the columns of the
    step's own table: it reads no other table (its subqueries may read CTEs of their own) and
    calls only the table functions a query may."""
    query = expression_query(expression)
    try:
        statements = con.extract_statements(query)
    except duckdb.ParserException as exc:
        raise DriverError(f"SQL syntax error in the check expression: {first_lines(exc)}") \
            from exc
    if len(statements) != 1:
        raise DriverError("refused: a check expression is one SQL condition, not several "
                          "statements")
    _check_tree(_parse_tree(con, query), [CHECKED_TABLE], con)


def problems(queries: Sequence[tuple[str, Sequence[str]]]) -> list[str | None]:
    """What :func:`check_query` would refuse in each ``(query, visible tables)``, or None: for
    `validate`, before any run. Nothing is executed; the parse trees of all queries come from
    one call into a private in-memory DuckDB (a call per query would cost ~0.3 ms each)."""
    out: list[str | None] = []
    pending: list[tuple[int, str, Sequence[str]]] = []
    for query, visible in queries:
        query = query.strip()
        while query.endswith(";"):
            query = query[:-1].rstrip()
        out.append(None)
        if not query:
            continue  # the config check reports an empty query
        try:
            _check_statements(_parser_connection(), query)
        except DriverError as exc:
            out[-1] = str(exc)
            continue
        pending.append((len(out) - 1, query, visible))
    if pending:
        texts = _parser_connection().execute(
            "SELECT list_transform(?::VARCHAR[], lambda q: json_serialize_sql(q))",
            [[q for _, q, _ in pending]]).fetchone()[0]
        for (index, _query, visible), text in zip(pending, texts, strict=True):
            try:
                _check_tree(_tree_of(text), visible, _parser_connection())
            except DriverError as exc:
                out[index] = str(exc)
    return out


_LOCAL = threading.local()


def _parser_connection() -> duckdb.DuckDBPyConnection:
    """One empty in-memory DuckDB per thread, only for parsing (opening one costs ~20 ms, which
    a pipeline of thousands of SQL steps would pay per step)."""
    con = getattr(_LOCAL, "con", None)
    if con is None:
        con = _LOCAL.con = duckdb.connect(":memory:")
    return con


def _parse_tree(con: duckdb.DuckDBPyConnection, query: str) -> dict[str, Any]:
    return _tree_of(con.execute("SELECT json_serialize_sql(?)", [query]).fetchone()[0])


# DuckDB parses expressions up to 1000 levels deep (max_expression_depth), which its JSON
# nests ~3 times as deep: past Python's default recursion limit for json.loads. The limit is
# raised as far as the stack holds (json.loads takes ~100-200 bytes of C stack per level:
# 400 leaves room; past the stack it would crash, not raise).
_JSON_DEPTH = 20_000
_STACK_BYTES_PER_LEVEL = 400
_DEPTH_LOCK = threading.Lock()  # the limit is the process' own: raised and restored under it


def _json_depth() -> int:
    stack = threading.stack_size() or resource.getrlimit(resource.RLIMIT_STACK)[0]
    if stack <= 0:  # unlimited: threads get the platform's default (8 MiB)
        stack = 8 << 20
    return min(_JSON_DEPTH, stack // _STACK_BYTES_PER_LEVEL)


def _tree_of(text: str) -> dict[str, Any]:
    with _DEPTH_LOCK:
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old, _json_depth()))
        try:
            tree = json.loads(text)
        except RecursionError:
            raise DriverError("refused: the SQL is nested too deeply to be checked; split it "
                              "(CTEs, or a step before this one)") from None
        finally:
            sys.setrecursionlimit(old)
    if tree.get("error"):
        raise DriverError(f"refused: DuckDB could not analyse the query "
                          f"({tree.get('error_message', 'unknown reason')}); write it as a plain "
                          "SELECT (or WITH ... SELECT) over the step's upstream views")
    return tree


def _check_table(node: dict[str, Any], allowed: set[str], shown: str, expression: bool,
                 ctes: frozenset[str] = frozenset()) -> None:
    """``allowed``: the step's views; ``ctes``: the CTEs in scope, which DuckDB binds only to
    an unqualified name (``main.x`` reads the table x, whatever CTE x there is), and to
    ``recurring.x`` in a USING KEY recursive CTE."""
    catalog = str(node.get("catalog_name") or "")
    schema = str(node.get("schema_name") or "")
    table = str(node.get("table_name") or "")
    if not catalog and (not schema or fold(schema) == "recurring") and fold(table) in ctes:
        return
    if fold(catalog) in ("", "memory") and fold(schema) in ("", "main") and \
            fold(table) in allowed and not (expression and (catalog or schema)):
        return
    qualified = ".".join(p for p in (catalog, schema, table) if p)
    if expression:
        raise DriverError(
            f"refused: the check expression reads {qualified!r}; an expression is a condition "
            "on the columns of the step's own table and reads no other table. Check another "
            "step's table on that step, or join it in a duckdb.processor step and check that")
    raise DriverError(
        f"refused: the query reads {qualified!r}, which this step cannot see. A "
        f"duckdb.processor query reads only its upstream steps (tables visible: {shown}); "
        "add the step it needs to `needs`, or read files with filesystem.csv_extractor")


def _check_table_function(node: dict[str, Any], shown: str, expression: bool) -> None:
    function = node.get("function") or {}
    name = fold(str(function.get("function_name") or ""))
    if name == "summary" and not all(arg.get("class") == "SUBQUERY"
                                      for arg in _arguments(function)):
        raise DriverError("refused: summary() takes a subquery, summary((SELECT ... FROM "
                          "view)); given a table's name DuckDB runs without end")
    if name in _ROW_ONLY_TABLE_FUNCTIONS:
        return
    allowed = ", ".join(sorted(_ROW_ONLY_TABLE_FUNCTIONS))
    if expression:
        raise DriverError(f"refused: the check expression calls table function {name}(); an "
                          f"expression may call only {allowed}")
    if name in _SQL_TEXT_FUNCTIONS or name in _CATALOG_FUNCTIONS or \
            name.startswith(_CATALOG_PREFIXES):
        raise DriverError(
            f"refused: table function {name}() reaches past this step's upstream views "
            f"(tables visible: {shown}); a duckdb.processor query reads only its upstream steps")
    raise DriverError(
        f"refused: table function {name}() is not one a duckdb.processor query may call; it "
        f"reads its upstream views (tables visible: {shown}) and may call only {allowed}. "
        "Read files with filesystem.csv_extractor")


def _arguments(function: dict[str, Any]) -> list[dict[str, Any]]:
    """A function node's argument expressions (``children`` before DuckDB 2.0, ``arguments``
    with a name and an expression since)."""
    if "arguments" in function:
        return [arg.get("expression") or {} for arg in function["arguments"] or []]
    return list(function.get("children") or [])


def _scoped_nodes(tree: Any) -> Iterator[tuple[dict[str, Any], frozenset[str]]]:
    """Each node of the parse tree with the CTE names in scope there, as DuckDB binds them: a
    query node's CTEs are seen by the node and everything in it but the CTEs' own bodies, a
    CTE's body sees the CTEs listed before it, and a recursive CTE sees itself in its
    recursive part only."""
    stack: list[tuple[Any, frozenset[str]]] = [(tree, frozenset())]
    while stack:
        item, ctes = stack.pop()
        if isinstance(item, list):
            stack.extend((value, ctes) for value in item)
            continue
        if not isinstance(item, dict):
            continue
        cte_map = item.get("cte_map")
        entries = [e for e in (cte_map.get("map") or ()) if isinstance(e, dict) and
                   e.get("key")] if isinstance(cte_map, dict) else []
        inside = ctes | {fold(str(e["key"])) for e in entries}
        yield item, inside
        for k, entry in enumerate(entries):
            stack.append((entry.get("value"),
                          ctes | {fold(str(e["key"])) for e in entries[:k]}))
        for key, value in item.items():
            if key == "cte_map":
                continue
            if key == "right" and item.get("type") == "RECURSIVE_CTE_NODE":
                stack.append((value, inside | {fold(str(item.get("cte_name") or ""))}))
            else:
                stack.append((value, inside))


def first_lines(exc: Exception, n: int = 6) -> str:
    return "\n".join(str(exc).strip().splitlines()[:n])
