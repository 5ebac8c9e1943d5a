"""Files that readers see whole or not at all: write a temporary file next to the target, flush
it to disk, rename it into place, then persist the rename. The one place for this, used by
session state and manifests, the CSV writer and the CLI's instance config."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` in ``path``, replaced in one rename (the temporary name is unique per process
    and thread, so concurrent writers never share one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        publish(tmp, path)
    finally:
        remove_quietly(tmp)


def publish(tmp: Path, target: Path) -> None:
    """Rename a finished temporary file over ``target`` durably: its data first, then the rename."""
    fsync_file(tmp)
    os.replace(tmp, target)
    fsync_dir(target.parent)


def publish_new(tmp: Path, target: Path) -> bool:
    """Like :func:`publish`, but never over an existing ``target``: False (and nothing changed)
    when one is already there. ``tmp`` stays; the caller removes it."""
    fsync_file(tmp)
    try:
        os.link(tmp, target)
    except FileExistsError:
        return False
    fsync_dir(target.parent)
    return True


def fsync_file(path: Path) -> None:
    """Flush a closed file (ours, or one DuckDB wrote) or a directory to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Persist a rename; best effort because some filesystems refuse fsync on directories."""
    with contextlib.suppress(OSError):
        fsync_file(path)


def remove_quietly(path: Path) -> None:
    """Delete a temporary file; a failure to delete must never hide the original error."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
