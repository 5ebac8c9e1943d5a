"""core/atomic_files: the sweep of temporary files a killed process left."""

from __future__ import annotations

import os
from pathlib import Path

from osiris_dagster.core.atomic_files import remove_orphaned_temp_files, temporary_name

from .helpers import gone_pid


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_only_the_files_of_gone_processes_are_removed(tmp_path: Path) -> None:
    dead, me, alive = gone_pid(), os.getpid(), os.getppid()
    gone = [f".out.csv.{dead}.0123abcd.tmp", f".out.csv.{dead}.1.tmp-wal",
            f".a.b.db.{dead}.2.tmp", f".a.b.db.{dead}.2.tmp-journal"]
    kept = [f".out.csv.{me}.0123abcd.tmp", f".out.csv.{alive}.0123abcd.tmp",
            ".out.csv.\u00b2.x.tmp", ".out.csv.\u0663.x.tmp",  # digits, not ASCII ones
            ".out.csv.99999999999.x.tmp", ".out.csv.12.tmp",  # no pid any system has; no token
            f"out.csv.{dead}.x.tmp", f".out.csv.{dead}.x.tmpx", "out.csv", temporary_name(
                tmp_path / "state.json").name]
    for name in gone + kept:
        (tmp_path / name).write_text("x")
    remove_orphaned_temp_files(tmp_path)
    assert _names(tmp_path) == sorted(kept)


def test_a_name_limits_the_sweep_to_that_targets_files(tmp_path: Path) -> None:
    dead = gone_pid()
    for name in (f".out.csv.{dead}.a.tmp", f".other.csv.{dead}.a.tmp", f".csv.{dead}.a.tmp"):
        (tmp_path / name).write_text("x")
    remove_orphaned_temp_files(tmp_path, "out.csv")
    assert _names(tmp_path) == sorted([f".other.csv.{dead}.a.tmp", f".csv.{dead}.a.tmp"])


def test_a_missing_directory_is_nothing_to_sweep(tmp_path: Path) -> None:
    remove_orphaned_temp_files(tmp_path / "absent")
