"""YAML loading that remembers the line of every mapping key and list item.

Validation messages point at `FILE:LINE`, so the loaded document keeps line numbers next to the
values: mappings become :class:`LineDict`, sequences :class:`LineList`. Duplicate keys (which
PyYAML silently overwrites) are recorded so the validator can report them; keys a merge key
(`<<`) brings in are not duplicates.
"""

from __future__ import annotations

import functools
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode, SequenceNode


class LineDict(dict):
    """A dict with ``line`` (its own first line) and ``key_lines[key]`` (1-based)."""

    line: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines: dict[Any, int] = {}
        self.duplicates: list[tuple[Any, int]] = []
        self.merge_conflicts: list[tuple[Any, int]] = []  # (key, line of the merge key)

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


_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"
_STR_TAG = "tag:yaml.org,2002:str"


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    def flatten_mapping(self, node: MappingNode) -> None:
        """Resolve merge keys (`<<: *defaults`, `<<: [*a, *b]`) by the YAML rules: the
        mapping's own keys win over merged ones, and an earlier map in a merge list wins over a
        later one. (PyYAML 6.0.4 decides the latter by the identity of key strings, so the
        outcome depends on string interning.) The node remembers its own key nodes, so only
        a key written twice by hand counts as a duplicate, and keys several merged maps give
        without an own value (which PyYAML-based tools may resolve differently)."""
        if hasattr(node, "own_keys"):  # an anchored mapping, already flattened
            return
        sources: list[list[tuple[Any, Any]]] = []
        own: list[tuple[Any, Any]] = []
        merge_line = 0
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                if key_node.tag == _VALUE_TAG:
                    key_node.tag = _STR_TAG
                own.append((key_node, value_node))
                continue
            merge_line = merge_line or key_node.start_mark.line + 1
            subnodes = value_node.value if isinstance(value_node, SequenceNode) \
                else [value_node]
            for sub in subnodes:
                if not isinstance(sub, MappingNode):
                    raise ConstructorError("while constructing a mapping", node.start_mark,
                                           "expected a mapping or list of mappings for "
                                           f"merging, but found {sub.id}", sub.start_mark)
                self.flatten_mapping(sub)
                sources.append(list(sub.value))
        # dict construction lets later pairs win: last merge source first, own pairs last
        node.value = [pair for src in reversed(sources) for pair in src] + own
        node.own_keys = {id(k) for k, _v in own}
        node.merge_conflicts = _merge_conflicts(sources, own, merge_line)


def _merge_conflicts(sources: list[list[tuple[Any, Any]]], own: list[tuple[Any, Any]],
                     line: int) -> list[tuple[Any, int]]:
    """Scalar keys that more than one merged map gives and the mapping does not set."""
    own_names = {k.value for k, _v in own if isinstance(k, ScalarNode)}
    counts: dict[Any, int] = {}
    for src in sources:
        for name in {k.value for k, _v in src if isinstance(k, ScalarNode)}:
            counts[name] = counts.get(name, 0) + 1
    return [(name, line) for name, n in counts.items() if n > 1 and name not in own_names]


def _construct_mapping(loader: _Loader, node: MappingNode) -> LineDict:
    result = LineDict()
    result.line = node.start_mark.line + 1
    loader.flatten_mapping(node)
    own_keys: set[int] = node.own_keys
    result.merge_conflicts = list(node.merge_conflicts)
    written: set[Any] = set()  # keys written in this mapping itself (not merged in)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            key = str(key)
        if id(key_node) in own_keys:
            if key in written:
                result.duplicates.append((key, key_node.start_mark.line + 1))
            written.add(key)
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


def not_text_hint(value: Any) -> str:
    """Why a value that should be text is not, when YAML made it something else: unquoted
    `off`, `no`, `yes`, `on`, `true` are booleans and `2024` a number, which nobody sees in
    the file ('' for any other value)."""
    if isinstance(value, bool):
        return (f" (YAML read it as the boolean {str(value).lower()}: an unquoted yes, no, on, "
                "off, true or false is one; quote it to keep the word, e.g. 'off')")
    if isinstance(value, int | float):
        return f" (YAML read it as the number {value!r}: quote it to keep it as text)"
    return ""

