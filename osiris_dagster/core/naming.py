"""How step ids become SQL names, table names and Dagster names."""

from __future__ import annotations

import hashlib
import keyword
import re
from collections.abc import Iterable

_NON_WORD = re.compile(r"[^0-9A-Za-z_]")


def sanitise(name: str) -> str:
    """Osiris `step_naming`: every char outside [0-9A-Za-z_] -> '_', '_' prefix before a digit."""
    out = _NON_WORD.sub("_", name)
    if not out or out[0].isdigit():
        out = "_" + out
    return out


def _short_hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]


def upstream_view_names(upstream_ids: Iterable[str]) -> dict[str, str]:
    """`df_<sanitised id>` per upstream; colliding ids get `_<8 hex of sha256(id)>` (Osiris)."""
    ids = list(upstream_ids)
    base = {i: "df_" + sanitise(i) for i in ids}
    counts: dict[str, int] = {}
    for name in base.values():
        key = name.lower()
        counts[key] = counts.get(key, 0) + 1
    return {
        i: (name + "_" + _short_hash(i) if counts[name.lower()] > 1 else name)
        for i, name in base.items()
    }


SINGLE_INPUT_VIEW = "input_df"


def query_visible_names(view_names: Iterable[str]) -> list[str]:
    """What a processor query may read: its ``df_<id>`` views, and ``input_df`` too when there
    is exactly one (as every published Osiris example uses)."""
    names = list(view_names)
    return names + [SINGLE_INPUT_VIEW] if len(names) == 1 else names


def table_names(step_ids: Iterable[str]) -> dict[str, str]:
    """Session table per step: the sanitised id, hash-suffixed when two ids would collide.

    DuckDB identifiers are case-insensitive, so collisions are checked case-insensitively.
    """
    ids = list(step_ids)
    base = {i: sanitise(i) for i in ids}
    counts: dict[str, int] = {}
    for name in base.values():
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    return {
        i: (name + "_" + _short_hash(i) if counts[name.lower()] > 1 else name)
        for i, name in base.items()
    }


def bounded_name(name: str, limit: int) -> str:
    """``name`` when at most ``limit`` characters; else its start and a hash of all of it (two
    long names with the same start stay apart), ``limit`` characters in all."""
    if len(name) <= limit:
        return name
    return name[:limit - 9] + "_" + _short_hash(name)


# Names Dagster refuses for a job, op or resource key: Python's keywords and a few of its own
# (dagster._core.definitions.utils.DISALLOWED_NAMES; tests/test_naming.py checks this covers it).
_RESERVED = frozenset(keyword.kwlist) | {
    "arg_dict", "bool", "conf", "config", "context", "dict", "float", "input",
    "input_arg_dict", "int", "meta", "output", "output_arg_dict", "str", "type"}


def dagster_name(*parts: str) -> str:
    """A name valid for Dagster ops, jobs, groups and resource keys (^[A-Za-z0-9_]+$); a
    name Dagster reserves (``type``, ``input``, ``class``, ...) gets a trailing '_'."""
    joined = "__".join(_NON_WORD.sub("_", p) for p in parts)
    if not joined or joined[0].isdigit():
        joined = "_" + joined
    return joined + "_" if joined in _RESERVED else joined


def quote_ident(name: str) -> str:
    """Quote a SQL identifier for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """Quote a SQL string literal for DuckDB."""
    return "'" + value.replace("'", "''") + "'"


_KEY_UNSAFE = re.compile(r"[^0-9A-Za-z_-]")


def asset_key_part(name: str) -> str:
    """One asset-key component: keeps letters, digits, '_' and '-'; anything else becomes '_'."""
    return _KEY_UNSAFE.sub("_", name) or "_"


_PATH_UNSAFE = re.compile(r"[^0-9A-Za-z_.-]")


def safe_dir_name(name: str) -> str:
    """A single path component for a step id: no separators, no '..', no hidden names."""
    out = _PATH_UNSAFE.sub("_", name) or "_"
    return "_" + out if out.startswith(".") else out


def step_names(step_id: str) -> tuple[str, str]:
    """The names a step id becomes, which no two ids of a pipeline may share, even ignoring
    case (file systems that ignore it, macOS's and Windows', would give them one directory):
    its state directory's (``sanitise``; its Dagster op's, :func:`dagster_name`, is equal
    whenever this is) and its artifacts directory's (:func:`safe_dir_name`)."""
    return sanitise(step_id), safe_dir_name(step_id)


def asset_view_names(taken: Iterable[str], asset_keys: Iterable[str]) -> dict[str, str]:
    """The view a step's SQL reads an asset outside the pipeline (an ``x-dagster`` dep such as
    ``raw/orders``) through: ``df_<last key part>`` (``df_orders``), or ``df_<whole key>``
    (``df_raw_orders``) when another upstream of the step already has that name."""
    used = {name.lower() for name in taken}
    out: dict[str, str] = {}
    for key in asset_keys:
        name = "df_" + sanitise(key.split("/")[-1])
        if name.lower() in used:
            name = "df_" + sanitise(key.replace("/", "_"))
        if name.lower() in used:
            name = f"{name}_{_short_hash(key)}"
        used.add(name.lower())
        out[key] = name
    return out


_SQL_WORD = re.compile(r"[A-Za-z_][0-9A-Za-z_$]*")


def assets_read_by_query(query: str, upstream_views: Iterable[str],
                         asset_keys: Iterable[str]) -> dict[str, str]:
    """Which ``x-dagster`` deps a step's query reads, with their view names: those whose
    ``df_<name>`` it mentions, or the only dep when the step has no upstream step and the query
    reads ``input_df``. The other deps stay lineage only (no data is loaded for them)."""
    views = list(upstream_views)
    names = asset_view_names(views, asset_keys)
    words = {w.lower() for w in _SQL_WORD.findall(query)}
    read = {key: name for key, name in names.items() if name.lower() in words}
    if not read and not views and len(names) == 1 and SINGLE_INPUT_VIEW in words:
        read = dict(names)
    return read
