"""A JSONPath-like lookup of dotted paths in a decoded JSON document, for the HTTP API extractors
(``graphql.extractor``'s ``data_path`` and ``pagination_path``): ``data.users``,
``$.data.users.edges[*].node``, ``items[0]``; a name step applied to a list applies to each
element.

:func:`find_path` gives what matches (nothing when nothing does). :func:`rows_at` gives the
records at a path and raises :class:`PathMiss` when the path reaches no value: a key absent, an
index past the list's end, or a step into null or a scalar (only a path that ends in null, or
in ``[*]`` steps on null, holds no records without an error).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from osiris_dagster.core.errors import DriverError

Place = tuple[str | int, ...]  # a place in a document: keys and list indexes from the top

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
    current: list[tuple[Place, Any]] = [((), obj)]
    for token in parse_path(path):
        nxt: list[tuple[Place, Any]] = []
        for place, value in current:
            _step(path, place, value, token, nxt, strict=False)
        current = nxt
        if not current:
            break
    return [value for _, value in current]


class PathMiss(DriverError):
    """A path that reaches no value: at ``place`` (the deepest place it matched) the document
    holds ``found``, which has no ``step``."""

    def __init__(self, path: str, place: Place, found: Any, step: str | int) -> None:
        self.path, self.place, self.found, self.step = path, place, found, step
        super().__init__(f"{path} matches nothing: the document has {self.describe()}")

    def describe(self) -> str:
        """``no `itemz` at data (its keys there: items)``, ``null at data.user, not an object
        with `posts```: what is at the deepest place the path matched."""
        where = format_path(self.place)
        found, step = self.found, self.step
        if isinstance(found, dict) and isinstance(step, str) and step != "*":
            keys = list(map(str, found))
            shown = ", ".join(keys[:20]) + (", ..." if len(keys) > 20 else "")
            return (f"no `{step}` at {where} " +
                    (f"(its keys there: {shown})" if keys else "(an empty object)"))
        if isinstance(found, list) and isinstance(step, int):
            return f"a list of {len(found)} at {where}, with no [{step}]"
        wanted = ("a list or an object" if step == "*" else "a list" if isinstance(step, int)
                  else f"an object with `{step}`")
        text = json.dumps(found, ensure_ascii=False, default=str)
        return f"{text if len(text) <= 80 else text[:77] + '...'} at {where}, not {wanted}"


def rows_at(obj: Any, path: str) -> list[Any]:
    """The records at ``path``: a list match gives its elements, several matches (through
    ``[*]`` or a name step on a list) are concatenated, lists extended. A null element or match
    among several is a record (``None``); a single match that is null (or ``[*]`` steps on
    one) holds none. A path reaching no value raises :class:`PathMiss`."""
    tokens = parse_path(path)
    current: list[tuple[Place, Any]] = [((), obj)]
    fanned = False  # whether a step gave more than one value per value
    for i, token in enumerate(tokens):
        if token == "*" or (isinstance(token, str) and any(isinstance(v, list)
                                                            for _, v in current)):
            fanned = True
        only_wildcards_left = all(t == "*" for t in tokens[i:])
        nxt: list[tuple[Place, Any]] = []
        for place, value in current:
            if value is None and only_wildcards_left:
                continue  # `items[*]` on a null `items`: as `items` itself, no records
            _step(path, place, value, token, nxt, strict=True)
        current = nxt
    rows: list[Any] = []
    for _, match in current:
        if isinstance(match, list):
            rows.extend(match)
        elif match is not None or fanned:
            rows.append(match)
    return rows


def _step(path: str, place: Place, value: Any, token: str | int,
          out: list[tuple[Place, Any]], *, strict: bool) -> None:
    """The values one step of ``path`` reaches from ``value`` (at ``place``), with their
    places; a miss adds none, or with ``strict`` raises :class:`PathMiss`."""
    if token == "*" and isinstance(value, list):
        out.extend(((*place, i), v) for i, v in enumerate(value))
    elif token == "*" and isinstance(value, dict):
        out.extend(((*place, k), v) for k, v in value.items())
    elif isinstance(token, int) and isinstance(value, list) and -len(value) <= token < len(value):
        out.append(((*place, token % len(value)), value[token]))
    elif isinstance(token, str) and token != "*" and isinstance(value, dict) and token in value:
        out.append(((*place, token), value[token]))
    elif isinstance(token, str) and token != "*" and isinstance(value, list):
        for i, item in enumerate(value):
            _step(path, (*place, i), item, token, out, strict=strict)
    elif strict:
        raise PathMiss(path, place, value, token)
