"""A JSONPath-like lookup of dotted paths in a decoded JSON document, for the HTTP API extractors
(``graphql.extractor``'s ``data_path`` and ``pagination_path``): ``data.users``,
``$.data.users.edges[*].node``, ``items[0]``; a name step applied to a list applies to each
element.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from osiris_dagster.core.errors import DriverError

_NAME = re.compile(r"[^.\[\]'\"$*\s]+")  # a key written bare
_TOKEN = re.compile(r"\[(\*|-?\d+)\]|\[(?:'([^']*)'|\"([^\"]*)\")\]|\.?([^.\[\]]+)")


def parse_path(path: str) -> list[str | int]:
    """``$.a.b[*].c[0]`` -> ``['a', 'b', '*', 'c', 0]``; ``*`` is a wildcard step."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    text = text.lstrip(".")
    tokens: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise DriverError(f"cannot parse the path {path!r} at {text[pos:]!r}; use dotted "
                              "names with optional [*] or [n] steps, e.g. data.users.edges[*].node")
        index, q1, q2, name = m.groups()
        if index is not None:
            tokens.append("*" if index == "*" else int(index))
        elif q1 is not None or q2 is not None:
            tokens.append(q1 if q1 is not None else q2)  # type: ignore[arg-type]
        else:
            tokens.append(name)
        pos = m.end()
    return tokens


def format_path(path: Sequence[str | int]) -> str:
    """``('data', 'users', 2, 'a.b')`` -> ``data.users[2]['a.b']``: a place in a document, written
    as :func:`parse_path` reads it (``$`` for the document itself)."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _NAME.fullmatch(step):
            out += f".{step}" if out else step
        else:
            out += f"[{step!r}]" if "'" not in step else f"[{json.dumps(step)}]"
    return out or "$"


def find_path(obj: Any, path: str) -> list[Any]:
    """Every value at ``path`` (JSONPath-like; an empty path or ``$`` is the object itself).
    A name step on a list applies to each element, as if written ``[*].name``."""
    current = [obj]
    for token in parse_path(path):
        nxt: list[Any] = []
        for value in current:
            _step(value, token, nxt)
        current = nxt
        if not current:
            break
    return current


def _step(value: Any, token: str | int, out: list[Any]) -> None:
    if token == "*":
        if isinstance(value, list):
            out.extend(value)
        elif isinstance(value, dict):
            out.extend(value.values())
    elif isinstance(token, int):
        if isinstance(value, list) and -len(value) <= token < len(value):
            out.append(value[token])
    elif isinstance(value, dict):
        if token in value:
            out.append(value[token])
    elif isinstance(value, list):
        for item in value:
            _step(item, token, out)


def first_at(obj: Any, path: str) -> Any:
    """The first value at ``path``, or None when there is none."""
    found = find_path(obj, path)
    return found[0] if found else None


def rows_at(obj: Any, path: str) -> list[Any]:
    """The records at ``path``: a list match gives its elements, several matches are
    concatenated (lists extended), ``null`` and no match give no rows."""
    rows: list[Any] = []
    for match in find_path(obj, path):
        if match is None:
            continue
        if isinstance(match, list):
            rows.extend(m for m in match if m is not None)
        else:
            rows.append(match)
    return rows
