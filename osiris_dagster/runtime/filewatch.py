"""Which files a CSV sensor should start runs for. Pure functions, no Dagster.

A file counts once per version. What identifies a version is its fingerprint: size, mtime,
ctime, inode and a digest of its content (all of it for small files, the first and last blocks
for large ones). The kernel updates ctime on every write, rename, `touch` and chmod, and nobody
can set it back, so a file moved back from `processed/`, or rewritten and `touch -r`'d to its
old mtime, is a new version with a new run key; the digest also catches a same-size rewrite on a
filesystem whose timestamps are too coarse to show it. The run records the fingerprint the
sensor saw, so the file can be checked again before it is archived.

Files still being written (changed within ``settle_seconds``) wait for a later tick. The cursor is
a high-water mark of "version time" (the later of mtime and ctime, so a file moved in with an old
mtime is still seen) plus only the keys that sit exactly at that mark: it stays small however
many files were seen.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

FULL_HASH_BYTES = 1 << 20  # files up to 1 MiB are hashed whole
EDGE_BYTES = 64 << 10  # larger ones: first and last 64 KiB (appends and rewrites show there)


@dataclass(frozen=True, order=True)
class FileVersion:
    version_ns: int  # max(mtime, ctime): orders files by when they (re)appeared
    path: str
    size: int
    mtime_ns: int
    ctime_ns: int = 0
    inode: int = 0

    @property
    def stat_key(self) -> str:
        """What the cursor remembers: changes on any write, rename or touch of the file."""
        return f"{self.path}|{self.size}|{self.mtime_ns}|{self.ctime_ns}|{self.inode}"

    @property
    def legacy_key(self) -> str:
        """The key cursors written by earlier versions hold (path, size, mtime)."""
        return f"{self.path}|{self.size}|{self.mtime_ns}"


@dataclass(frozen=True)
class Fingerprint:
    """The version of a file a run was started for (recorded in the run's tags)."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    digest: str

    def dump(self) -> str:
        return f"{self.size}:{self.mtime_ns}:{self.ctime_ns}:{self.inode}:{self.digest}"

    @classmethod
    def parse(cls, raw: str | None) -> Fingerprint | None:
        try:
            size, mtime, ctime, inode, digest = (raw or "").split(":")
            return cls(int(size), int(mtime), int(ctime), int(inode), digest)
        except ValueError:
            return None

    def matches(self, f: FileVersion) -> bool:
        return (self.size, self.mtime_ns, self.ctime_ns, self.inode) == (
            f.size, f.mtime_ns, f.ctime_ns, f.inode)

    def differences(self, now: Fingerprint | None) -> str | None:
        """What changed since this fingerprint, in words (None: nothing)."""
        if now is None:
            return "the file is unreadable or being written right now"
        out = []
        if now.size != self.size:
            out.append(f"size {self.size} -> {now.size} bytes")
        if now.mtime_ns != self.mtime_ns:
            out.append("modification time changed")
        if now.inode != self.inode:
            out.append("replaced by another file")
        elif now.ctime_ns != self.ctime_ns:
            out.append("status change time changed (written, touched or moved)")
        if now.digest != self.digest:
            out.append("content changed")
        return "; ".join(out) or None


def fingerprint(path: str) -> Fingerprint | None:
    """Size, times, inode and a content digest, or None when the file is gone or changed while
    being read (it is still being written: try again on a later tick).

    Cheap for any size: at most 1 MiB is read (whole small files, the head and tail of large
    ones). Changes in the middle of a large file are caught by mtime/ctime, which every write
    updates; the digest covers filesystems whose coarse timestamps hide a same-size rewrite."""
    try:
        with open(path, "rb") as fh:
            before = os.fstat(fh.fileno())
            h = hashlib.blake2b(digest_size=16)
            h.update(before.st_size.to_bytes(8, "little"))
            if before.st_size <= FULL_HASH_BYTES:
                h.update(fh.read(FULL_HASH_BYTES + 1))
            else:
                h.update(fh.read(EDGE_BYTES))
                fh.seek(before.st_size - EDGE_BYTES)
                h.update(fh.read(EDGE_BYTES))
            after = os.fstat(fh.fileno())
        current = os.stat(path)
    except OSError:
        return None
    stats = [(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
             for st in (before, after, current)]
    if stats[0] != stats[1] or stats[1] != stats[2]:
        return None
    return Fingerprint(before.st_size, before.st_mtime_ns, before.st_ctime_ns, before.st_ino,
                       h.hexdigest())


@dataclass(frozen=True)
class Planned:
    """A file version to start a run for, with the fingerprint the run must still match."""

    file: FileVersion
    fingerprint: Fingerprint

    @property
    def run_key(self) -> str:
        return f"{self.file.path}|{self.fingerprint.dump()}"


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
            f.version_ns == self.high_water_ns and f.stat_key not in self.keys_at_mark
            and f.legacy_key not in self.keys_at_mark)

    def advance(self, f: FileVersion) -> None:
        if f.version_ns > self.high_water_ns:
            self.high_water_ns = f.version_ns
            self.keys_at_mark = {f.stat_key}
        elif f.version_ns == self.high_water_ns:
            self.keys_at_mark.add(f.stat_key)


def scan(pattern: str, exclude: Path | None = None) -> list[FileVersion]:
    """Files matching pattern, except those under `exclude` (the sensor's archive directory:
    archived files must never be picked up again, whatever the glob)."""
    skip = os.path.realpath(exclude) if exclude is not None else None
    out = []
    for name in glob.glob(pattern, recursive=True):
        try:
            st = os.stat(name)
        except OSError:
            continue  # vanished between listing and stat
        if not os.path.isfile(name):
            continue
        if skip is not None and _is_under(os.path.realpath(name), skip):
            continue
        out.append(FileVersion(max(st.st_mtime_ns, st.st_ctime_ns), os.path.abspath(name),
                               st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return sorted(out)


def _is_under(path: str, directory: str) -> bool:
    return os.path.commonpath([path, directory]) == directory


@dataclass
class Plan:
    to_run: list[Planned]
    settling: list[FileVersion]
    cursor: Cursor
    seen: list[FileVersion] = field(default_factory=list)  # versions the cursor already passed


def plan_runs(files: Iterable[FileVersion], cursor: Cursor, now_ns: int,
              settle_seconds: float, max_runs: int,
              fingerprint_of: Callable[[str], Fingerprint | None] = fingerprint) -> Plan:
    """New versions in version order, at most max_runs; unsettled files wait.

    A file whose fingerprint cannot be taken, or no longer matches what the scan saw, is being
    written right now: it waits like an unsettled one."""
    new_cursor = Cursor(cursor.high_water_ns, set(cursor.keys_at_mark))
    settle_ns = int(settle_seconds * 1e9)
    to_run: list[Planned] = []
    settling: list[FileVersion] = []
    ordered = sorted(files)
    for f in ordered:
        if not cursor.is_new(f):
            continue
        if len(to_run) >= max_runs:
            break
        fp = None if now_ns - f.mtime_ns < settle_ns else fingerprint_of(f.path)
        if fp is None or not fp.matches(f):  # still being written (a moved-in file is not)
            settling.append(f)
            break  # the cursor must never pass this file: later ones wait with it
        to_run.append(Planned(f, fp))
        new_cursor.advance(f)
    seen = [f for f in ordered if not cursor.is_new(f)]
    return Plan(to_run, settling, new_cursor, seen)
