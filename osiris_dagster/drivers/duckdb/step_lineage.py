"""The column lineage a ``duckdb.processor`` step reports, remembered between runs.

:mod:`osiris_dagster.drivers.duckdb.lineage` traces a query with sqlglot, whose import alone costs
0.3-0.7 s per process. The answer depends only on the query, the upstream views and their
columns, the columns DuckDB produced, and the versions of the tracing code and of sqlglot, so it is
kept in the step's state directory (``column_lineage.json``) under a hash of all of them: a
scheduled run of an unchanged pipeline reads that small file and never imports sqlglot. A missing,
unreadable or malformed cache file counts as empty and is rewritten; a cache that cannot be
written only costs the next run the tracing again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from osiris_dagster.core.atomic_files import write_text_atomic
from osiris_dagster.core.naming import SINGLE_INPUT_VIEW
from osiris_dagster.drivers.base import StepColumnLineage, UpstreamTable

CACHE_FILE = "column_lineage.json"
CACHE_FORMAT = 1  # bump when the file's layout or the mapping below changes
MAX_ENTRIES = 16  # a parameterised query (one text per partition) keeps a few answers


def step_column_lineage(state_dir: Path, query: str, inputs: Sequence[UpstreamTable],
                        output_columns: Sequence[str]) -> StepColumnLineage:
    """Which upstream step's columns each output column of ``query`` comes from."""
    key = cache_key(query, inputs, output_columns)
    path = state_dir / CACHE_FILE
    entries = _read_entries(path)
    cached = _entry_lineage(entries.get(key))
    if cached is not None:
        return cached
    lineage = _trace(query, inputs, output_columns)
    _write_entry(path, entries, key, lineage)
    return lineage


def cache_key(query: str, inputs: Sequence[UpstreamTable], output_columns: Sequence[str]
              ) -> str:
    """A hash of everything the traced lineage depends on."""
    document = {
        "format": CACHE_FORMAT,
        "query": query,
        "upstreams": [[u.step_id, u.view_name, [name for name, _ in u.columns]] for u in inputs],
        "output": list(output_columns),
        "tracer": _tracer_version(),
    }
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.cache
def _tracer_version() -> str:
    """The lineage module's source and sqlglot's version: a change to either is a new answer."""
    source = Path(__file__).with_name("lineage.py").read_bytes()
    try:
        sqlglot = metadata.version("sqlglot")
    except metadata.PackageNotFoundError:
        sqlglot = "missing"
    return f"{hashlib.sha256(source).hexdigest()[:16]}/sqlglot-{sqlglot}"


def _trace(query: str, inputs: Sequence[UpstreamTable], output_columns: Sequence[str]
           ) -> StepColumnLineage:
    from osiris_dagster.drivers.duckdb.lineage import sql_column_lineage  # imports sqlglot

    step_of_view = {u.view_name: u.step_id for u in inputs}
    upstream_columns = {u.view_name: [name for name, _ in u.columns] for u in inputs}
    if len(inputs) == 1:
        upstream_columns[SINGLE_INPUT_VIEW] = upstream_columns[inputs[0].view_name]
    traced = sql_column_lineage(query, upstream_columns, list(output_columns))
    if traced.problem is not None:
        return StepColumnLineage.unknown(traced.problem)
    columns: dict[str, tuple[tuple[str, str], ...]] = {}
    for output, sources in traced.columns.items():
        unknown = [view for view, _ in sources if view not in step_of_view]
        if unknown:
            return StepColumnLineage.unknown(f"the query's lineage names {unknown[0]}, which is "
                                             "not an upstream step's view")
        columns[output] = tuple((step_of_view[view], column) for view, column in sources)
    return StepColumnLineage(columns)


def _read_entries(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    if not isinstance(document, dict) or document.get("format") != CACHE_FORMAT:
        return {}
    entries = document.get("entries")
    return dict(entries) if isinstance(entries, dict) else {}


def _entry_lineage(entry: Any) -> StepColumnLineage | None:
    """A cached answer, or None when there is none or it is malformed."""
    if not isinstance(entry, dict):
        return None
    problem, columns = entry.get("problem"), entry.get("columns")
    if problem is not None:
        return StepColumnLineage.unknown(problem) if isinstance(problem, str) else None
    if not isinstance(columns, dict):
        return None
    out: dict[str, tuple[tuple[str, str], ...]] = {}
    for name, sources in columns.items():
        if not isinstance(sources, list) or not all(
                isinstance(s, list) and len(s) == 2 and all(isinstance(p, str) for p in s)
                for s in sources):
            return None
        out[name] = tuple((step, column) for step, column in sources)
    return StepColumnLineage(out)


def _write_entry(path: Path, entries: Mapping[str, Any], key: str,
                 lineage: StepColumnLineage) -> None:
    kept = dict(entries)
    kept.pop(key, None)
    while len(kept) >= MAX_ENTRIES:
        kept.pop(next(iter(kept)))  # the oldest answer first
    kept[key] = {"columns": {name: [list(s) for s in sources]
                             for name, sources in lineage.columns.items()},
                 "problem": lineage.problem, "traced_at": round(time.time(), 3)}
    document = {"format": CACHE_FORMAT, "entries": kept}
    with contextlib.suppress(OSError):  # only a cache: the next run traces the query again
        write_text_atomic(path, json.dumps(document, ensure_ascii=False, indent=1))
