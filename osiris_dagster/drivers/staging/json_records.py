"""API records (decoded JSON) -> the step's table in the session, for the HTTP API extractors
(``posthog.extractor``, ``graphql.extractor``).

* :func:`flatten_record` / :func:`to_scalar`: nested objects -> dotted column names (as pandas'
  ``json_normalize`` does), lists and other nested values JSON-encoded. Two keys that would
  become one column (``{"a.b": 1, "a": {"b": 2}}``) fail naming both (:class:`KeyCollision`).
* :class:`JsonStager`: rows are appended page by page to a newline-delimited JSON file in the
  session's ``tmp`` directory while their columns and value kinds are tracked, so memory stays
  flat however many pages arrive and columns first seen on a late page are kept. At the end one
  ``read_ndjson`` with an explicit schema (the union of all columns, in first-seen order) builds
  the step's table; types come from every value, not from a sample: only booleans -> BOOLEAN,
  only integers -> BIGINT, integers and floats -> DOUBLE, anything else (text, mixed kinds) ->
  VARCHAR. Every value is kept exactly: an integer past 64 bits makes its column VARCHAR, and
  so does one a double would round (``9007199254740993``) in a column that also holds floats
  (the column's text is each value's digits); a float that is not a number (NaN, infinite)
  fails. Text is never re-typed (an ISO timestamp stays VARCHAR: cast it downstream), so a
  column's type does not change from run to run with the data. Column names are unique ignoring
  case (DuckDB identifiers are case-insensitive), decided once every row is in, by the keys
  alone, never by the order the answer gives them in (JSON's key order means nothing): a
  declared key keeps its name, then an all-lowercase key, then the others in sorted order;
  ``Name`` next to ``name`` becomes ``Name.1`` whichever came first. With no row and no known
  column the table has one VARCHAR column ``_empty``.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osiris_dagster.core.errors import DriverError
from osiris_dagster.core.naming import quote_ident, quote_literal
from osiris_dagster.drivers.base import StepContext
from osiris_dagster.drivers.http.json_paths import format_path

EMPTY_COLUMN = "_empty"
_INT64 = (-(2**63), 2**63 - 1)
_DEFAULT_MAX_OBJECT = 16 * 1024 * 1024  # DuckDB's default maximum_object_size


# -- flattening -----------------------------------------------------------------------------------
def to_json_text(value: Any) -> str:
    """``value`` as JSON text (non-ASCII kept; what JSON cannot encode as its ``str``; a NaN or
    infinite float, which JSON has no form for, is a ValueError)."""
    return json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)


def to_scalar(value: Any) -> Any:
    """A value for one column: scalars as they are, nested values JSON-encoded."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return to_json_text(value)


class KeyCollision(ValueError):
    """Two places of a record that :func:`flatten_record` would make one column."""

    def __init__(self, column: str, first: tuple[str, ...], second: tuple[str, ...]) -> None:
        super().__init__(f"`{format_path(first)}` and `{format_path(second)}` would both be "
                         f"the column '{column}'")


def flatten_record(record: Any, sep: str = ".") -> dict[str, Any]:
    """Nested objects -> ``parent.child`` keys (pandas ``json_normalize``); lists JSON-encoded;
    empty nested objects produce no column. A non-object record becomes ``{"value": record}``.
    A key holding ``sep`` that meets a nested key of the same name raises
    :class:`KeyCollision` (one value would be lost)."""
    if not isinstance(record, dict):
        return {"value": to_scalar(record)}
    out: dict[str, Any] = {}
    _flatten_into(record, (), sep, out, {})
    return out


def _flatten_into(obj: Mapping[str, Any], prefix: tuple[str, ...], sep: str,
                  out: dict[str, Any], paths: dict[str, tuple[str, ...]]) -> None:
    for key, value in obj.items():
        path = (*prefix, str(key))
        if isinstance(value, dict):
            _flatten_into(value, path, sep, out, paths)
            continue
        name = sep.join(path)
        if name in paths:
            raise KeyCollision(name, paths[name], path)
        paths[name] = path
        out[name] = to_scalar(value)


def shallow_record(record: Any) -> dict[str, Any]:
    """Top-level keys only; nested values JSON-encoded (``flatten_result: false``)."""
    if not isinstance(record, dict):
        return {"value": to_scalar(record)}
    return {str(k): to_scalar(v) for k, v in record.items()}


# -- staging --------------------------------------------------------------------------------------
_KIND_TYPES = {  # other mixes: VARCHAR (an integer a double rounds, "wide_int", and floats too)
    frozenset({"bool"}): "BOOLEAN",
    frozenset({"int"}): "BIGINT",
    frozenset({"wide_int"}): "BIGINT",
    frozenset({"int", "wide_int"}): "BIGINT",
    frozenset({"float"}): "DOUBLE",
    frozenset({"int", "float"}): "DOUBLE",
}


@dataclass
class _Column:
    stage: str  # its key in the staging file (the column's name is decided at the end)
    kinds: set[str] = field(default_factory=set)
    declared: str | None = None  # type when no value was seen


class JsonStager:
    """Streams records to an NDJSON file; builds the step's table from it in one read."""

    def __init__(self, tmp_dir: Path, label: str) -> None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^0-9A-Za-z_-]", "_", label) or "stage"
        self.path = tmp_dir / f"{safe}-{uuid.uuid4().hex[:12]}.ndjson"
        self._fh: Any = None
        self._columns: dict[str, _Column] = {}  # source key -> column, in first-seen order
        self._names: dict[str, str] | None = None  # source key -> column name, once decided
        self.rows = 0
        self._max_line = 0

    # -- columns
    def declare(self, key: str, duckdb_type: str = "VARCHAR") -> None:
        """A column the table has even when no row carries it (e.g. the fixed event fields)."""
        self._column(key).declared = duckdb_type

    def _column(self, key: str) -> _Column:
        col = self._columns.get(key)
        if col is None:
            col = self._columns[key] = _Column(f"c{len(self._columns)}")
            self._names = None
        return col

    def _column_names(self) -> dict[str, str]:
        """Source key -> a column name unique ignoring case, by the keys alone: declared keys
        first, then all-lowercase keys, then the others in sorted order take their own name;
        a name taken (ignoring case) gets ``.1``, ``.2``... never the name of a real key
        (``Name`` beside ``name`` and ``Name.1`` is ``Name.2``), and the empty key is
        ``unnamed`` (or ``unnamed.1`` beside a real ``unnamed``)."""
        if self._names is None:
            ranked = sorted(self._columns, key=lambda k: (
                self._columns[k].declared is None, k != k.lower(), k))
            used: set[str] = set()
            names: dict[str, str] = {}
            for key in ranked:  # real keys claim their own names first
                if key and key.lower() not in used:
                    names[key] = key
                    used.add(key.lower())
            for key in ranked:
                if key in names:
                    continue
                base = name = key or "unnamed"
                n = 0
                while name.lower() in used:
                    n += 1
                    name = f"{base}.{n}"
                used.add(name.lower())
                names[key] = name
            self._names = {key: names[key] for key in self._columns}  # first-seen order
        return self._names

    @property
    def columns(self) -> list[str]:
        return list(self._column_names().values())

    @property
    def renamed(self) -> dict[str, str]:
        """Source keys whose column has another name (logged as ``columns_renamed``)."""
        return {k: n for k, n in self._column_names().items() if n != k}

    # -- rows
    def add(self, record: Mapping[str, Any]) -> None:
        """Append one flat record (values: None, bool, int, float, str)."""
        line: dict[str, Any] = {}
        for key, value in record.items():
            col = self._column(str(key))
            if value is None:
                continue
            if isinstance(value, bool):
                col.kinds.add("bool")
            elif isinstance(value, int):
                if not _INT64[0] <= value <= _INT64[1]:
                    value = str(value)
                    col.kinds.add("str")
                else:  # one a double would round makes a column with floats text
                    col.kinds.add("int" if float(value) == value else "wide_int")
            elif isinstance(value, float):
                if not math.isfinite(value):  # the readers refuse them before: a safeguard
                    raise DriverError(f"column '{key}' (row {self.rows + 1}): {value!r} "
                                      "is not a number JSON can hold; it is not stored as NULL")
                col.kinds.add("float")
            elif isinstance(value, str):
                col.kinds.add("str")
            else:
                value = to_json_text(value)
                col.kinds.add("str")
            line[col.stage] = value
        text = json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"
        if self._fh is None:
            self._fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._fh.write(text)
        self._max_line = max(self._max_line, len(text.encode("utf-8")))
        self.rows += 1

    def add_many(self, records: Iterable[Mapping[str, Any]]) -> int:
        n = 0
        for r in records:
            self.add(r)
            n += 1
        return n

    # -- the table
    def column_types(self) -> dict[str, str]:
        """Column name -> DuckDB type, in first-seen order."""
        names = self._column_names()
        return {names[key]: self._type(col) for key, col in self._columns.items()}

    @staticmethod
    def _type(col: _Column) -> str:
        if col.kinds:
            return _KIND_TYPES.get(frozenset(col.kinds), "VARCHAR")
        return col.declared or "VARCHAR"

    def select_sql(self) -> str:
        """The SELECT that materialises everything staged (call after the last ``add``)."""
        self._flush()
        types = self.column_types()
        if not types:
            return f"SELECT CAST(NULL AS VARCHAR) AS {quote_ident(EMPTY_COLUMN)} LIMIT 0"
        if self.rows == 0:
            cols = ", ".join(f"CAST(NULL AS {t}) AS {quote_ident(n)}" for n, t in types.items())
            return f"SELECT {cols} LIMIT 0"
        names = self._column_names()
        spec = ", ".join(f"{quote_literal(col.stage)}: {quote_literal(self._type(col))}"
                         for col in self._columns.values())
        select = ", ".join(f"{quote_ident(col.stage)} AS {quote_ident(names[key])}"
                           for key, col in self._columns.items())
        size = max(_DEFAULT_MAX_OBJECT, self._max_line + 1024)
        return (f"SELECT {select} FROM read_ndjson({quote_literal(str(self.path))}, "
                f"columns={{{spec}}}, auto_detect=false, maximum_object_size={size})")

    def create_output(self, ctx: StepContext) -> int:
        """Build the step's table from everything staged (call after the last ``add``); the
        rows it holds. Columns renamed to stay unique are logged (``columns_renamed``)."""
        rows = ctx.create_output(self.select_sql())
        if self.renamed:
            ctx.log_event("columns_renamed", renamed=self.renamed)
            pairs = ", ".join(f"{k!r} as {v!r}" for k, v in self.renamed.items())
            ctx.notice(f"keys that differ only in case are kept apart (DuckDB's column names "
                       f"ignore case): {pairs}")
        return rows

    def _flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        """Close and delete the staging file (safe to call more than once)."""
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> JsonStager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
