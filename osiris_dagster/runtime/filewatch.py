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
mtime is still seen), the keys that sit exactly at that mark, a digest of the files behind the
mark (written when all of them had a run) and the few files skipped as unreadable: it stays
small however many files were seen. A file behind the mark that never ran (a directory renamed
into the watched tree keeps its files' times, a link points at an older file, another host's
clock is behind) changes that digest; the files behind the mark are then looked up among the
runs already started (``plan_runs``'s ``ran``), and those without one run like new files.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

    def differences(self, now: Fingerprint | None, ctime: bool = True) -> str | None:
        """What changed since this fingerprint, in words (None: nothing). ``ctime=False``: of
        a file this process renamed since (a rename moves its ctime)."""
        if now is None:
            return "the file is unreadable or being written right now"
        out = []
        if now.size != self.size:
            out.append(f"size {self.size} -> {now.size} bytes")
        if now.mtime_ns != self.mtime_ns:
            out.append("modification time changed")
        if now.inode != self.inode:
            out.append("replaced by another file")
        elif ctime and now.ctime_ns != self.ctime_ns:
            out.append("status change time changed (written, touched or moved)")
        if now.digest != self.digest:
            out.append("content changed")
        return "; ".join(out) or None


def fingerprint(path: str) -> Fingerprint | None:
    """:func:`read_fingerprint`, or None also when the file is gone or cannot be read."""
    try:
        return read_fingerprint(path)
    except OSError:
        return None


def read_fingerprint(path: str) -> Fingerprint | None:
    """Size, times, inode and a content digest, or None when the file changed while being read
    (it is still being written: try again on a later tick). Raises OSError when the file is gone
    or cannot be read.

    Cheap for any size: at most 1 MiB is read (whole small files, the head and tail of large
    ones). Changes in the middle of a large file are caught by mtime/ctime, which every write
    updates; the digest covers filesystems whose coarse timestamps hide a same-size rewrite."""
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


SKIPPED_KEPT = 50  # skipped files the cursor names; more are found again through `ran`


@dataclass
class Cursor:
    high_water_ns: int = 0
    keys_at_mark: set[str] = field(default_factory=set)
    passed: str | None = None  # digest of the files behind the mark, written when all had a run
    skipped: set[str] = field(default_factory=set)  # unreadable or unnamable: tried every tick
    # versions a successful run left in place when their archive failed, with why: named by
    # every tick's skip reason while they stay, without looking their runs up again
    unarchived: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> Cursor:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            return cls(int(data.get("hw", 0)), set(data.get("keys", [])), data.get("passed"),
                       set(data.get("skipped", [])), dict(data.get("unarchived") or {}))
        except (ValueError, TypeError, AttributeError):
            return cls()  # an unreadable cursor restarts the scan; run keys still dedupe

    def dump(self) -> str:  # ASCII: a name that is not UTF-8 is kept as its JSON escape
        data: dict[str, Any] = {"hw": self.high_water_ns, "keys": sorted(self.keys_at_mark),
                                "passed": self.passed, "skipped": sorted(self.skipped)}
        if self.unarchived:
            data["unarchived"] = dict(sorted(self.unarchived.items())[:SKIPPED_KEPT])
        return json.dumps(data, separators=(",", ":"))

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


def _digest(files: Iterable[FileVersion]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for key in sorted(f.stat_key for f in files):
        h.update(key.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


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


def utf8_name(path: str) -> bool:
    """Whether the path is text (a name that is not UTF-8 holds surrogate escapes): one that
    is not cannot become a parameter, a run tag or a key in the instance."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class Plan:
    to_run: list[Planned]
    settling: list[FileVersion]
    cursor: Cursor
    seen: list[FileVersion] = field(default_factory=list)  # passed versions that had a run
    skipped: list[tuple[FileVersion, str]] = field(default_factory=list)  # and why


def _none_ran(files: list[FileVersion]) -> set[str]:
    return set()


def last_change_ns(f: FileVersion, now_ns: int) -> int:
    """When the file was last written: its mtime, or its ctime when the mtime is in the future
    (a writer's clock ahead, ``touch -d``; the ctime is set by the machine that stores the
    file and moves on every write); a file waiting for a future time would wait for good."""
    return f.mtime_ns if f.mtime_ns <= now_ns else f.ctime_ns


def plan_runs(files: Iterable[FileVersion], cursor: Cursor, now_ns: int,
              settle_seconds: float, max_runs: int,
              fingerprint_of: Callable[[str], Fingerprint | None] = read_fingerprint,
              ran: Callable[[list[FileVersion]], set[str]] = _none_ran) -> Plan:
    """New versions in version order, at most max_runs; unsettled files wait.

    A file whose fingerprint no longer matches what the scan saw is being written right now: it
    waits like an unsettled one. A file that cannot be read, or whose name is not UTF-8, is
    skipped (named in ``Plan.skipped``) and the others go on. ``ran`` gives the stat keys of
    those files (passed by the cursor) that already had a run; it is asked only when the files
    behind the mark are not the ones the cursor recorded."""
    settle_ns = int(settle_seconds * 1e9)
    files = sorted(files)
    skipped = [(f, "its name is not valid UTF-8") for f in files if not utf8_name(f.path)]
    files = [f for f in files if utf8_name(f.path)]
    passed = [f for f in files if not cursor.is_new(f) and f.stat_key not in cursor.skipped]
    seen, unknown = passed, []
    if _digest(passed) != cursor.passed:  # one appeared behind the mark, or went
        had_run = ran(passed) if passed else set()
        seen = [f for f in passed if f.stat_key in had_run]
        unknown = [f for f in passed if f.stat_key not in had_run]
    candidates = sorted([*unknown, *(f for f in files
                                     if cursor.is_new(f) or f.stat_key in cursor.skipped)])
    new_cursor = Cursor(cursor.high_water_ns, set(cursor.keys_at_mark))
    to_run: list[Planned] = []
    settling: list[FileVersion] = []
    for f in candidates:
        if len(to_run) >= max_runs:
            break
        behind = not cursor.is_new(f)  # the mark passed it already: it holds nothing back
        try:
            fp = None if now_ns - last_change_ns(f, now_ns) < settle_ns \
                else fingerprint_of(f.path)
        except FileNotFoundError:
            continue  # gone since the scan
        except OSError as exc:
            skipped.append((f, f"cannot be read: {exc.strerror or exc}"))
            continue
        if fp is None or not fp.matches(f):  # still being written (a moved-in file is not)
            settling.append(f)
            if behind:
                continue
            break  # the cursor must never pass this file: later ones wait with it
        to_run.append(Planned(f, fp))
        new_cursor.advance(f)
    new_cursor.skipped = {f.stat_key for f, _ in skipped[:SKIPPED_KEPT]}
    done = {f.stat_key for f in seen} | {p.file.stat_key for p in to_run}
    now_passed = [f for f in files
                  if not new_cursor.is_new(f) and f.stat_key not in new_cursor.skipped]
    if all(f.stat_key in done for f in now_passed):
        new_cursor.passed = _digest(now_passed)
    return Plan(to_run, settling, new_cursor, seen, skipped)
