"""YAML loading that remembers the line of every mapping key and list item.

Validation messages point at `FILE:LINE`, so the loaded document keeps line numbers next to the
values: mappings become :class:`LineDict`, sequences :class:`LineList`. Duplicate keys (which
PyYAML silently overwrites) are recorded so the validator can report them.
"""

from __future__ import annotations

import functools
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


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: ~25x faster
MAX_ALIASES = 1000  # YAML anchors are rare in pipelines; a "billion laughs" file has thousands
MAX_DEPTH = 100


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
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


class YamlTooComplex(yaml.YAMLError):
    """Too many aliases or too deep: refuse before anything walks the expanded document."""

    def __init__(self, problem: str, line: int) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = yaml.Mark("", 0, line - 1, 0, None, None)


MAX_EXPANDED_NODES = 1_000_000


def _check_shape(text: str) -> None:
    """Refuse documents whose aliases expand exponentially ("billion laughs") or that nest too
    deeply, from the event stream (libyaml, no recursion) before anything walks them."""
    sizes: dict[str, int] = {}  # anchor -> expanded node count
    stack: list[list[Any]] = [[None, 0]]  # [anchor, expanded nodes so far]
    aliases = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            stack[-1][1] += sizes.get(event.anchor, 1)
        elif isinstance(event, yaml.ScalarEvent):
            stack[-1][1] += 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            stack.append([event.anchor, 1])
            if len(stack) > MAX_DEPTH + 1:
                raise YamlTooComplex(f"nested more than {MAX_DEPTH} levels deep", line)
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            anchor, count = stack.pop()
            if anchor:
                sizes[anchor] = count
            stack[-1][1] += count
        else:
            continue
        if stack[-1][1] > MAX_EXPANDED_NODES or aliases > MAX_ALIASES:
            raise YamlTooComplex(
                f"aliases (*refs) expand to more than {MAX_EXPANDED_NODES:,} values - refusing "
                "a document that expands exponentially", line)


@functools.lru_cache(maxsize=32)
def load_yaml_with_lines(text: str) -> Any:
    """Parse YAML text; raises ``yaml.YAMLError`` (with ``problem_mark``) on bad syntax or a
    document with too many aliases or too much nesting. Cached by text: callers must not
    mutate the result."""
    _check_shape(text)
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except ValueError as exc:  # e.g. an integer with more digits than Python allows
        raise YamlTooComplex(f"unreadable value: {exc}", 0) from None


def to_plain(obj: Any) -> Any:
    """Strip line bookkeeping: plain dicts and lists (for hashing, manifests, drivers)."""
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    return obj
