"""YAML loading that remembers the line of every mapping key and list item.

Validation messages point at `FILE:LINE`, so the loaded document keeps line numbers next to the
values: mappings become :class:`LineDict`, sequences :class:`LineList`. Duplicate keys (which
PyYAML silently overwrites) are recorded so the validator can report them.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, SequenceNode


class LineDict(dict):
    """A dict with ``line`` (its own first line) and ``key_lines[key]`` (1-based)."""

    line: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines: dict[Any, int] = {}
        self.duplicates: list[tuple[Any, int]] = []

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    """A list with ``line`` and ``item_lines[i]`` (1-based)."""

    line: int = 0

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_lines: list[int] = []

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: MappingNode) -> LineDict:
    result = LineDict()
    result.line = node.start_mark.line + 1
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            key = str(key)
        if key in result:
            result.duplicates.append((key, key_node.start_mark.line + 1))
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _Loader, node: SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml_with_lines(text: str) -> Any:
    """Parse YAML text; raises ``yaml.YAMLError`` (with ``problem_mark``) on bad syntax."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def to_plain(obj: Any) -> Any:
    """Strip line bookkeeping: plain dicts and lists (for hashing, manifests, drivers)."""
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    return obj
