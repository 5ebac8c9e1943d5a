"""What a sensor's ``watch`` glob reaches: its absolute form, the directory that must exist, and
whether an archive directory lies inside it. Pure path logic with glob's own rules, no I/O.

Used by ``validate`` (an archive inside the watched glob, or holding its directory, is an error)
and by the sensor.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path


def watch_pattern(watch: str, base_dir: Path) -> str:
    """An absolute glob: relative patterns are relative to base_dir (escaped, taken literally)."""
    expanded = os.path.expanduser(watch)
    if os.path.isabs(expanded):
        return expanded
    return os.path.join(glob.escape(str(base_dir)), expanded)


def watch_root(pattern: str) -> Path:
    """The directory part of a glob before its first wildcard (what must exist)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path("/")


def archive_in_watch(pattern: str, archive_dir: str) -> bool:
    """Whether a file moved into archive_dir could match the glob pattern again.

    Both must be absolute, or both relative to the same base. Follows glob's rules: `*` stays
    within one path component, `**` spans any number of them, and neither enters a hidden
    (dot) name unless the pattern component itself starts with a dot. The archived file's name
    is not known in advance, so any name is assumed to match the last component."""
    pat = _components(os.path.expanduser(pattern))
    arch = _components(os.path.expanduser(archive_dir))
    if (pat[:1] == ["/"]) != (arch[:1] == ["/"]) or ".." in arch:
        return False  # different bases, or escaping the base: decided on resolved paths
    return any(_one_name_left(rest) for rest in _rest_after_dir(tuple(pat), tuple(arch)))


def archive_holds_watch(pattern: str, archive_dir: str) -> bool:
    """Whether archive_dir is the glob's fixed directory part or one above it: every
    file the glob matches is then under the archive, which the sensor never reads.

    Both must be absolute, or both relative to the same base; a pair that depends on what the
    base is (``../done`` against ``in/*.csv``) is False, left to the sensor's resolved paths."""
    pat = _components(os.path.expanduser(pattern))
    fixed = next((i for i, p in enumerate(pat) if glob.has_magic(p)), len(pat) - 1)
    root = pat[:fixed]  # the directory part before the first wildcard (or the file's name)
    arch = _components(os.path.expanduser(archive_dir))
    if (root[:1] == ["/"]) != (arch[:1] == ["/"]):
        return False
    up_root, up_arch = _ups(root), _ups(arch)
    if up_arch > up_root:  # above the glob's directory only when it goes no further down
        return len(arch) == up_arch
    return up_arch == up_root and root[:len(arch)] == arch


def _ups(parts: Sequence[str]) -> int:
    """How many leading `..` a normalised path has."""
    return next((i for i, p in enumerate(parts) if p != ".."), len(parts))


def _components(path: str) -> list[str]:
    norm = os.path.normpath(path)
    parts = [p for p in norm.split(os.sep) if p not in ("", ".")]
    return (["/"] + parts) if norm.startswith(os.sep) else parts


def _rest_after_dir(pat: tuple[str, ...], dirs: tuple[str, ...]) -> Iterable[tuple[str, ...]]:
    """The remainders of pat after its leading components have matched all of dirs."""
    if not dirs:
        yield pat
        return
    if not pat:
        return
    head = pat[0]
    if head == "**":
        yield from _rest_after_dir(pat[1:], dirs)  # zero directories
        if not dirs[0].startswith("."):
            yield from _rest_after_dir(pat, dirs[1:])  # one more
    elif _component_matches(head, dirs[0]):
        yield from _rest_after_dir(pat[1:], dirs[1:])


def _component_matches(pattern: str, name: str) -> bool:
    if not glob.has_magic(pattern):
        return pattern == name
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


def _one_name_left(rest: Sequence[str]) -> bool:
    """Can these remaining components match exactly one more (file) name?"""
    return bool(rest) and sum(1 for p in rest if p != "**") <= 1
