"""Data-quality checks declared in `x-dagster.steps.<id>.checks`, run as SQL on the step's table
inside the session database: no data leaves DuckDB, only counts and a small sample. No Dagster."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from osiris_dagster.core.errors import DriverError
from osiris_dagster.core.naming import quote_ident, quote_literal
from osiris_dagster.drivers.duckdb.seal import (
    check_expression,
    expression_query,
)
from osiris_dagster.runtime.python_rows import first_rows

CHECK_KINDS = ("not_null", "unique", "row_count", "accepted_values", "expression", "freshness")
SAMPLE_ROWS = 5


@dataclass(frozen=True)
class CheckSpec:
    name: str
    kind: str
    params: Any
    blocking: bool = False

    @property
    def description(self) -> str:
        p = self.params
        if self.kind == "not_null":
            return f"No NULLs in {', '.join(p)}."
        if self.kind == "unique":
            return "Unique: " + "; ".join(", ".join(k) for k in p) + "."
        if self.kind == "row_count":
            bounds = [f"at least {p['min']}" if p.get("min") is not None else "",
                      f"at most {p['max']}" if p.get("max") is not None else ""]
            return "Row count " + " and ".join(b for b in bounds if b) + "."
        if self.kind == "accepted_values":
            return "Only accepted values in " + ", ".join(p) + "."
        if self.kind == "expression":
            return f"Every row satisfies: {p}"
        return (f"Newest {p['column']} is at most {p['max_age_hours']:g} hours old.")


@dataclass
class CheckOutcome:
    spec: CheckSpec
    passed: bool
    failing_rows: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""


def specs_from_config(checks: Mapping[str, Any] | None) -> list[CheckSpec]:
    """Validated `checks:` mapping -> one CheckSpec per check (expressions may be several)."""
    if not checks:
        return []
    blocking = bool(checks.get("blocking", False))
    out = []
    for kind in CHECK_KINDS:
        if kind not in checks:
            continue
        value = checks[kind]
        if kind == "unique":
            keys = [[k] if isinstance(k, str) else list(k) for k in value]
            out.append(CheckSpec(kind, kind, keys, blocking))
        elif kind == "expression":
            items = [value] if isinstance(value, str) else list(value)
            for i, sql in enumerate(items):
                out.append(CheckSpec(kind if i == 0 else f"{kind}_{i + 1}", kind, sql, blocking))
        else:
            out.append(CheckSpec(kind, kind, value, blocking))
    return out


def run_checks(con: duckdb.DuckDBPyConnection, relation: str, specs: Sequence[CheckSpec]
               ) -> list[CheckOutcome]:
    return [_run_one(con, relation, spec) for spec in specs]


def _run_one(con: duckdb.DuckDBPyConnection, relation: str, spec: CheckSpec) -> CheckOutcome:
    try:
        if spec.kind == "row_count":
            n = int(con.execute(f"SELECT count(*) FROM {relation}").fetchone()[0])
            lo, hi = spec.params.get("min"), spec.params.get("max")
            ok = (lo is None or n >= lo) and (hi is None or n <= hi)
            return CheckOutcome(spec, ok, 0 if ok else 1, [], f"{n} rows")
        if spec.kind == "freshness":
            col = quote_ident(spec.params["column"])
            newest = con.execute(f"SELECT max({col}) FROM {relation}").fetchone()[0]
            limit = datetime.now(UTC) - timedelta(hours=float(spec.params["max_age_hours"]))
            if newest is None:
                return CheckOutcome(spec, False, 0, [], "no values")
            if not isinstance(newest, datetime):
                newest = datetime.fromisoformat(str(newest))
            if newest.tzinfo is None:
                newest = newest.replace(tzinfo=UTC)
            return CheckOutcome(spec, newest >= limit, 0, [], f"newest value {newest}")
        if spec.kind == "expression":  # one condition on the table's columns, nothing else
            try:
                check_expression(con, spec.params)
            except DriverError as exc:
                return CheckOutcome(spec, False, 0, [], f"the check could not run: {exc}")
        where = _failing_rows_sql(relation, spec)
        n = int(con.execute(f"SELECT count(*) FROM ({where})").fetchone()[0])
        sample: list[dict[str, Any]] = []
        if n:
            names, rows = first_rows(con, f"SELECT * FROM ({where})", SAMPLE_ROWS,
                                     shown=True)
            sample = [dict(zip(names, row, strict=True)) for row in rows]
        return CheckOutcome(spec, n == 0, n, sample, f"{n} failing row(s)")
    except (duckdb.Error, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return CheckOutcome(spec, False, 0, [], f"the check could not run: {first}")


def _failing_rows_sql(relation: str, spec: CheckSpec) -> str:
    p = spec.params
    if spec.kind == "not_null":
        cond = " OR ".join(f"{quote_ident(c)} IS NULL" for c in p)
        return f"SELECT * FROM {relation} WHERE {cond}"
    if spec.kind == "unique":  # one pass, each row once: a row failing several keys (or an
        # identical row) is one failing row, not one per key as a UNION ALL of the keys made it
        conds = " OR ".join(
            f"count(*) OVER (PARTITION BY {', '.join(quote_ident(c) for c in key)}) > 1"
            for key in p)
        return f"SELECT * FROM {relation} QUALIFY {conds}"
    if spec.kind == "accepted_values":
        conds = []
        for col, values in p.items():
            allowed = ", ".join(_literal(v) for v in values)
            conds.append(f"({quote_ident(col)} IS NOT NULL AND {quote_ident(col)} NOT IN "
                         f"({allowed}))")
        return f"SELECT * FROM {relation} WHERE " + " OR ".join(conds)
    if spec.kind == "expression":
        return expression_query(p, relation)
    raise ValueError(spec.kind)


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return quote_literal(str(value))
