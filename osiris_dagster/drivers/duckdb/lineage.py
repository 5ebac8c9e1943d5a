"""Column-level lineage of a ``duckdb.processor`` query: which upstream columns each output
column is computed from.

Pure (sqlglot only; no Dagster, no DuckDB connection). sqlglot parses the query as DuckDB SQL
and ``qualify`` resolves every column reference to its source and expands every ``*`` (with
``EXCLUDE``/``REPLACE``/``RENAME``) against the upstream schemas; the scopes of the qualified
query (CTEs, derived tables, subqueries, set operations, ``UNNEST``, ``LATERAL``) are then walked
down to the upstream views.

A source column counts when it appears in the expression that computes the output column:
``CASE`` conditions, function arguments, window ``PARTITION BY``/``ORDER BY`` (also from a
named ``WINDOW``), and the output columns of a scalar or ``IN`` subquery. Columns read only by
``WHERE``, ``JOIN ... ON``, ``GROUP BY``, ``HAVING``, ``QUALIFY``, ``ORDER BY`` or an ``EXISTS``
subquery do not (they filter or group rows, they are not copied or computed into the value).
An output column that depends on no upstream column (a literal, ``count(*)``,
``row_number() OVER ()``) maps to an empty list. ``USING``/``NATURAL`` join keys map to the key
of both sides. ``UNION``/``INTERSECT`` column i comes from column i of every branch
(``UNION BY NAME``: from the same-named columns); ``EXCEPT`` from its first branch only. A
struct field (``s.x``) is traced to everything the struct ``s`` was built from.

The answer is all or nothing: when something cannot be traced with certainty (a parse error,
DuckDB syntax sqlglot does not model such as ``COLUMNS(...)``, ``* LIKE``, ``PIVOT``, an output
list that does not line up with the table DuckDB produced), ``problem`` says why and ``columns``
is empty, so a caller never shows a guessed edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import SqlglotError, TokenError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope, find_all_in_scope
from sqlglot.schema import MappingSchema

from osiris_dagster.core.naming import SINGLE_INPUT_VIEW
from osiris_dagster.drivers.identifiers import duckdb_result_names

DIALECT = "duckdb"
_NAMED = "osiris_named"  # meta key: the projection had an alias in the query as written

Source = tuple[str, str]
"""(upstream view name, column name), both spelt as the caller gave them."""


@dataclass(frozen=True)
class ColumnLineage:
    """Output column -> the upstream (view, column) pairs it is computed from, in the order
    they appear in the query, without duplicates. Empty ``columns`` and a reason in ``problem``
    when the lineage could not be worked out."""

    columns: dict[str, list[Source]] = field(default_factory=dict)
    problem: str | None = None


class _Untraceable(Exception):
    """The query uses something whose lineage cannot be stated with certainty."""


def sql_column_lineage(query: str, upstream_columns: Mapping[str, Sequence[str]],
                       output_columns: Sequence[str] | None = None) -> ColumnLineage:
    """Lineage of each output column of ``query`` (DuckDB SQL) in terms of the upstream views.

    ``upstream_columns`` maps every name the query may read (``df_<id>``, and ``input_df`` for a
    single upstream, see :func:`osiris_dagster.core.naming.query_visible_names`) to its columns in
    order. ``input_df`` is reported as the one other view it stands for.

    ``output_columns`` are the columns of the table DuckDB produced. Give them: results are then
    keyed by DuckDB's names, and the query's outputs as sqlglot sees them must line up with them
    (same count, same names where the query names the column) or ``problem`` is set. Without
    them the keys are sqlglot's names: lower case, ``_col_<i>`` for an unnamed expression.

    Never raises for a bad or unsupported query; ``problem`` says what went wrong.
    """
    try:
        return ColumnLineage(_lineage(query, upstream_columns, output_columns))
    except _Untraceable as exc:
        return ColumnLineage({}, str(exc))
    except TokenError:
        # its text quotes 50 characters of the query, perhaps half a secret no masker knows
        return ColumnLineage({}, "sqlglot could not read the query's tokens")
    except SqlglotError as exc:
        return ColumnLineage({}, "sqlglot could not parse or resolve the query: "
                                 + _first_line(exc))
    except RecursionError:
        return ColumnLineage({}, "the query is nested too deeply to trace")
    except Exception as exc:  # lineage is advisory: a bug here must not fail the step
        return ColumnLineage({}, f"internal error while tracing the query "
                                 f"({type(exc).__name__}: {_first_line(exc)}); please report it")


def _first_line(exc: BaseException) -> str:
    """Uncut: whoever shows it masks it first, then cuts it."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _lineage(query: str, upstream_columns: Mapping[str, Sequence[str]],
             output_columns: Sequence[str] | None) -> dict[str, list[Source]]:
    tree = _parse_one(query)
    _refuse_unmodelled(tree)
    for select in tree.find_all(exp.Select):
        for selection in select.expressions:
            if isinstance(selection, exp.Alias):
                selection.meta[_NAMED] = True
    dialect = Dialect.get_or_raise(DIALECT)
    views = _Views(upstream_columns, dialect)
    qualified = qualify(tree, dialect=dialect, schema=views.schema, quote_identifiers=False,
                        validate_qualify_columns=True)
    root = build_scope(qualified)
    if root is None:
        raise _Untraceable("the query is not a SELECT")
    tracer = _Tracer(views, root)
    outputs = tracer.outputs(root)
    names = duckdb_result_names([out.name for out in outputs])
    if output_columns is None:
        return dict(zip(names, (out.sources for out in outputs), strict=True))
    real = list(output_columns)
    if len(real) != len(outputs):
        raise _Untraceable(f"the query has {len(outputs)} output columns as sqlglot reads it "
                           f"but DuckDB produced {len(real)}")
    for out, expected, actual in zip(outputs, names, real, strict=True):
        if out.named and expected.casefold() != actual.casefold():
            raise _Untraceable(f"DuckDB's output column {actual!r} is {expected!r} in "
                               "sqlglot's reading of the query")
    return {actual: out.sources for actual, out in zip(real, outputs, strict=True)}


def _name_is_reliable(selection: exp.Expr) -> bool:
    """Whether DuckDB names this output as sqlglot does: an alias written in the query, or a
    plain column. sqlglot names ``x::TEXT`` "x" and ``1 + x`` "_col_0"; DuckDB uses the text."""
    if selection.meta.get(_NAMED):
        return True
    inner = selection.this if isinstance(selection, exp.Alias) else selection
    return isinstance(inner, exp.Column)


def _parse_one(query: str) -> exp.Expr:
    text = query.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    statements = [s for s in sqlglot.parse(text, read=DIALECT) if s is not None]
    if len(statements) != 1:
        raise _Untraceable(f"expected one SELECT, found {len(statements)} statements")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise _Untraceable(f"the query is a {tree.key.upper()}, not a SELECT")
    return tree


def _refuse_unmodelled(tree: exp.Expr) -> None:
    """DuckDB constructs whose output columns sqlglot cannot enumerate or resolve."""
    for node in tree.walk():
        if isinstance(node, exp.Columns):
            raise _Untraceable("COLUMNS(...) expressions are not traced")
        if isinstance(node, exp.PositionalColumn):
            raise _Untraceable("positional column references (#n) are not traced")
        if isinstance(node, exp.Pivot):
            raise _Untraceable("PIVOT/UNPIVOT is not traced")
        if isinstance(node, exp.Star) and isinstance(node.parent, (exp.Like, exp.SimilarTo,
                                                                   exp.RegexpLike)):
            raise _Untraceable("* LIKE / * SIMILAR TO is not traced")
        if isinstance(node, exp.With) and node.args.get("recursive"):
            raise _Untraceable("recursive CTEs are not traced")
        if (isinstance(node, exp.SetOperation) and node.args.get("by_name")
                and node is not tree):
            raise _Untraceable("UNION BY NAME is only traced as the outermost query")


class _Views:
    """The upstream schemas as sqlglot wants them, and the way back to the caller's names."""

    def __init__(self, upstream_columns: Mapping[str, Sequence[str]], dialect: Dialect) -> None:
        self._dialect = dialect
        real = {name: name for name in upstream_columns}
        others = [name for name in upstream_columns if name != SINGLE_INPUT_VIEW]
        if SINGLE_INPUT_VIEW in upstream_columns and len(others) == 1:
            real[SINGLE_INPUT_VIEW] = others[0]
        tables: dict[str, dict[str, str]] = {}
        self._view: dict[str, str] = {}
        self._columns: dict[str, dict[str, str]] = {}
        for name, columns in upstream_columns.items():
            key = self.norm(name)
            self._view[key] = real[name]
            self._columns[key] = {self.norm(c): c for c in columns}
            # Names go in normalised, as qualify normalises the query's identifiers; the type
            # is not used for lineage.
            tables[key] = {self.norm(c): "TEXT" for c in columns}
        self.schema = MappingSchema(tables, dialect=dialect, normalize=False)

    def norm(self, name: str) -> str:
        return self._dialect.normalize_identifier(exp.to_identifier(name, quoted=False)).name

    def check(self, table: exp.Table) -> None:
        if table.args.get("db") or table.args.get("catalog") or table.name not in self._view:
            raise _Untraceable(f"the query reads {exp.table_name(table)}, which is not one of its "
                               "upstream views")

    def column(self, table: exp.Table, column: str) -> Source:
        self.check(table)
        key = table.name
        columns = self._columns[key]
        alias = table.args.get("alias")
        renamed = [c.name for c in alias.columns] if alias else []
        if renamed:
            # FROM df_x AS t(a, b) renames df_x's first columns, by position
            if len(renamed) > len(columns):
                raise _Untraceable(f"{exp.table_name(table)} AS {alias.name}(...) names more "
                                   "columns than the view has")
            columns = {(renamed[i] if i < len(renamed) else name): real
                       for i, (name, real) in enumerate(columns.items())}
        if column not in columns:
            raise _Untraceable(f"column {column!r} is not in {self._view[key]}")
        return self._view[key], columns[column]

    def all_columns(self, table: exp.Table) -> list[Source]:
        self.check(table)
        return [self.column(table, c) for c in self._columns[table.name]]


@dataclass(frozen=True)
class _Out:
    """One output column of a scope: its name as sqlglot reads it, what it is computed from,
    and whether DuckDB is known to give it that name (written alias or plain column)."""

    name: str
    sources: list[Source]
    named: bool = True


class _Tracer:
    """Walks the scopes of a qualified query down to the upstream views."""

    def __init__(self, views: _Views, root: Scope) -> None:
        self._views = views
        self._memo: dict[int, list[_Out]] = {}
        self._scope_of: dict[int, Scope] = {id(s.expression): s for s in root.traverse()}

    def outputs(self, scope: Scope) -> list[_Out]:
        """The output columns of ``scope``, in order."""
        key = id(scope)
        if key not in self._memo:
            self._memo[key] = self._compute(scope)
        return self._memo[key]

    def _compute(self, scope: Scope) -> list[_Out]:
        node = scope.expression
        if isinstance(node, exp.SetOperation):
            return self._set_operation(node)
        if isinstance(node, exp.Select):
            self._check_tables(scope)
            return [_Out(sel.alias_or_name, self._projection(scope, sel), _name_is_reliable(sel))
                    for sel in node.selects]
        if isinstance(node, exp.Subquery):
            return self.outputs(self._branch(node.this))
        if isinstance(node, exp.Unnest):
            return self._unnest(scope, node)
        if isinstance(node, exp.Lateral):
            return self._lateral(node)
        if isinstance(node, exp.Values):
            alias = node.args.get("alias")
            return [_Out(c.name, []) for c in (alias.columns if alias else [])]
        raise _Untraceable(f"cannot trace a {node.key.upper()} source")

    def _check_tables(self, scope: Scope) -> None:
        for source in scope.sources.values():
            if isinstance(source, exp.Table) and not isinstance(source.this, exp.Func):
                self._views.check(source)

    def _branch(self, node: exp.Expr) -> Scope:
        while isinstance(node, exp.Subquery) and id(node) not in self._scope_of:
            node = node.this
        scope = self._scope_of.get(id(node))
        if scope is None:
            raise _Untraceable(f"cannot trace part of the query: {node.sql(DIALECT)[:80]}")
        return scope

    def _set_operation(self, node: exp.SetOperation) -> list[_Out]:
        left = self.outputs(self._branch(node.this))
        right = self.outputs(self._branch(node.expression))
        if node.args.get("by_name"):
            merged: dict[str, _Out] = {}
            for out in left + right:
                key = out.name.casefold()
                first = merged.get(key)
                merged[key] = (out if first is None else
                               _Out(first.name, _merge(first.sources, out.sources), first.named))
            return list(merged.values())
        if len(left) != len(right):
            raise _Untraceable(f"the branches of a {node.key.upper()} have {len(left)} and "
                               f"{len(right)} columns")
        if isinstance(node, exp.Except):
            return left  # the right side only removes rows
        return [_Out(a.name, _merge(a.sources, b.sources), a.named)
                for a, b in zip(left, right, strict=True)]

    def _projection(self, scope: Scope, selection: exp.Expr) -> list[Source]:
        inner = selection.this if isinstance(selection, exp.Alias) else selection
        if inner.is_star or selection.alias_or_name == "*":
            raise _Untraceable(f"{inner.sql(DIALECT)} could not be expanded (a struct, or a "
                               "source whose columns are not known)")
        return self._expression(scope, selection)

    def _expression(self, scope: Scope, node: exp.Expr) -> list[Source]:
        """Upstream columns read by ``node`` (within ``scope``), including scalar subqueries."""
        sources: list[Source] = []
        windows: list[Source] = []  # after the window's own columns, as they read in the query
        for item in find_all_in_scope(node, exp.Column, exp.TableColumn, exp.Window,
                                      *exp.UNWRAPPED_QUERIES):
            if isinstance(item, exp.Window):
                windows = _merge(windows, self._named_window(scope, item))
                continue
            if isinstance(item, exp.Column):
                found = self._column(scope, item)
            elif isinstance(item, exp.TableColumn):
                found = self._whole_row(scope, item)
            elif isinstance(item.parent, exp.Exists):
                found = []  # EXISTS only asks whether rows match, like a WHERE
            else:
                found = _all_sources(self.outputs(self._branch(item)))
            sources = _merge(sources, found)
        return _merge(sources, windows)

    def _named_window(self, scope: Scope, window: exp.Window) -> list[Source]:
        """Columns of the ``WINDOW w AS (...)`` definitions ``OVER w`` builds on."""
        definitions = {d.name: d for d in scope.expression.args.get("windows") or []}
        sources: list[Source] = []
        seen: set[str] = set()
        name = window.alias
        while name:
            if name in seen or name not in definitions:
                raise _Untraceable(f"cannot find the definition of window {name!r}")
            seen.add(name)
            definition = definitions[name]
            for clause in ("partition_by", "order", "spec"):
                value = definition.args.get(clause)
                for part in value if isinstance(value, list) else [value] if value else []:
                    sources = _merge(sources, self._expression(scope, part))
            name = definition.alias
        return sources

    def _column(self, scope: Scope, column: exp.Column) -> list[Source]:
        source = self._source(scope, column.table) if column.table else None
        if source is None or column.is_star:
            raise _Untraceable(f"could not resolve column {column.sql(DIALECT)}")
        if isinstance(source, exp.Table):
            if isinstance(source.this, exp.Func):
                return []  # a table function such as range(): no upstream column
            return [self._views.column(source, column.name)]
        matches = [out for out in self.outputs(source) if out.name == column.name]
        if len(matches) != 1:
            raise _Untraceable(f"column {column.sql(DIALECT)} is "
                               f"{'ambiguous' if matches else 'not found'} in its source")
        return matches[0].sources

    def _whole_row(self, scope: Scope, column: exp.TableColumn) -> list[Source]:
        """DuckDB reads a bare table name as a struct of the whole row."""
        source = self._source(scope, column.name)
        if source is None:
            raise _Untraceable(f"could not resolve {column.sql(DIALECT)}")
        if isinstance(source, Scope):
            return _all_sources(self.outputs(source))
        if isinstance(source.this, exp.Func):
            return []
        return self._views.all_columns(source)

    def _source(self, scope: Scope, name: str) -> Scope | exp.Table | None:
        """The source ``name`` refers to in ``scope`` or, when correlated, an enclosing one."""
        current: Scope | None = scope
        while current is not None:
            if name in current.sources:
                return current.sources[name]
            current = current.parent
        return None

    def _unnest(self, scope: Scope, node: exp.Unnest) -> list[_Out]:
        alias = node.args.get("alias")
        names = [c.name for c in alias.columns] if alias else []
        args = node.expressions
        if len(names) != len(args):
            raise _Untraceable(f"cannot match the columns of {node.sql(DIALECT)[:80]}")
        return [_Out(name, self._expression(scope, arg))
                for name, arg in zip(names, args, strict=True)]

    def _lateral(self, node: exp.Lateral) -> list[_Out]:
        inner = self.outputs(self._branch(node.this))
        alias = node.args.get("alias")
        names = [c.name for c in alias.columns] if alias else []
        if len(names) > len(inner):
            raise _Untraceable(f"cannot match the columns of {node.sql(DIALECT)[:80]}")
        renamed = [_Out(name, out.sources) for name, out in zip(names, inner, strict=False)]
        return renamed + inner[len(names):]


def _all_sources(outputs: list[_Out]) -> list[Source]:
    sources: list[Source] = []
    for out in outputs:
        sources = _merge(sources, out.sources)
    return sources


def _merge(first: list[Source], more: list[Source]) -> list[Source]:
    return first + [s for s in more if s not in first]
