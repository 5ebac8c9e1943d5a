"""Which files a CSV sensor should start runs for. Pure functions, no Dagster.

A file counts once per version: its run key is built from path, size and modification time, so
an unchanged file never runs twice and a rewritten one runs again. Files still being written
(changed within ``settle_seconds``) wait for a later tick. The cursor is a high-water mark of
"version time" (the later of mtime and ctime, so a file moved in with an old mtime is still seen)
plus only the keys that sit exactly at that mark: it stays small however many files were seen.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, order=True)
class FileVersion:
    version_ns: int  # max(mtime, ctime): orders files by when they (re)appeared
    path: str
    size: int
    mtime_ns: int

    @property
    def run_key(self) -> str:
        return f"{self.path}|{self.size}|{self.mtime_ns}"


@dataclass
class Cursor:
    high_water_ns: int = 0
    keys_at_mark: set[str] = field(default_factory=set)

    @classmethod
    def parse(cls, raw: str | None) -> Cursor:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            return cls(int(data.get("hw", 0)), set(data.get("keys", [])))
        except (ValueError, TypeError, AttributeError):
            return cls()  # an unreadable cursor restarts the scan; run keys still dedupe

    def dump(self) -> str:
        return json.dumps({"hw": self.high_water_ns, "keys": sorted(self.keys_at_mark)},
                          separators=(",", ":"))

    def is_new(self, f: FileVersion) -> bool:
        return f.version_ns > self.high_water_ns or (
            f.version_ns == self.high_water_ns and f.run_key not in self.keys_at_mark)

    def advance(self, f: FileVersion) -> None:
        if f.version_ns > self.high_water_ns:
            self.high_water_ns = f.version_ns
            self.keys_at_mark = {f.run_key}
        elif f.version_ns == self.high_water_ns:
            self.keys_at_mark.add(f.run_key)


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


def scan(pattern: str) -> list[FileVersion]:
    out = []
    for name in glob.glob(pattern, recursive=True):
        try:
            st = os.stat(name)
        except OSError:
            continue  # vanished between listing and stat
        if not os.path.isfile(name):
            continue
        out.append(FileVersion(max(st.st_mtime_ns, st.st_ctime_ns), os.path.abspath(name),
                               st.st_size, st.st_mtime_ns))
    return sorted(out)


@dataclass
class Plan:
    to_run: list[FileVersion]
    settling: list[FileVersion]
    cursor: Cursor


def plan_runs(files: Iterable[FileVersion], cursor: Cursor, now_ns: int,
              settle_seconds: float, max_runs: int) -> Plan:
    """New versions in version order, at most max_runs; unsettled files wait."""
    new_cursor = Cursor(cursor.high_water_ns, set(cursor.keys_at_mark))
    settle_ns = int(settle_seconds * 1e9)
    to_run: list[FileVersion] = []
    settling: list[FileVersion] = []
    for f in sorted(files):
        if not cursor.is_new(f):
            continue
        if now_ns - f.mtime_ns < settle_ns:  # still being written (a moved-in file is not)
            settling.append(f)
            break  # the cursor must never pass this file: later ones wait with it
        if len(to_run) >= max_runs:
            break
        to_run.append(f)
        new_cursor.advance(f)
    return Plan(to_run, settling, new_cursor)
