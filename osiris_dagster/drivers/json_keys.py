"""JSON objects that write one key twice.

JSON allows ``{"a": 1, "a": 2}``; Python's :mod:`json` keeps the last value and drops the
others without a word. A value from outside is kept exactly or the step fails, so the HTTP API
extractors decode with :func:`loads_unique_keys`, which fails naming the key and where its
object is.
"""

from __future__ import annotations

import json
from typing import Any

from osiris_dagster.drivers.http.json_paths import format_path


class RepeatedKeyError(ValueError):
    """An object of the document writes ``key`` more than once."""

    def __init__(self, key: str, path: tuple[int | str, ...]) -> None:
        super().__init__(f"repeated key {key!r}")
        self.key = key
        self.path = path

    def describe(self) -> str:
        """``the key 'id' twice in the object at `data.items[3]```."""
        return f"the key {self.key!r} twice in the object at `{format_path(self.path)}`"


class _Repeated(Exception):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Repeated
    return obj


def loads_unique_keys(document: str | bytes) -> Any:
    """``json.loads(document)``, failing with :class:`RepeatedKeyError` where an object writes
    a key twice (other invalid JSON raises ``ValueError`` as ``json.loads`` does)."""
    try:
        return json.loads(document, object_pairs_hook=_unique)
    except _Repeated:
        pass
    tree = json.loads(document, object_pairs_hook=_MarkedObject.of)
    key, path = _first_repeat(tree)
    raise RepeatedKeyError(key, path)


class _MarkedObject(dict):  # type: ignore[type-arg]
    """An object kept with the first key it writes twice (None when none)."""

    repeated: str | None = None

    @classmethod
    def of(cls, pairs: list[tuple[str, Any]]) -> _MarkedObject:
        obj = cls(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    obj.repeated = key
                    break
                seen.add(key)
        return obj


def _first_repeat(tree: Any) -> tuple[str, tuple[int | str, ...]]:
    """The first object in document order that writes a key twice, and its path."""
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(tree, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, _MarkedObject):
            if item.repeated is not None:
                return item.repeated, path
            stack.extend((v, (*path, k)) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(item))))
    raise AssertionError("a repeated key was seen but not found again")
