"""Scratch files for one CSV driver call, inside the session's tmp dir; all removed on exit."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from osiris_dagster.core.atomic_files import remove_quietly
from osiris_dagster.core.errors import DriverError

# what DuckDB's file readers take as a pattern, not a name: glob characters (DuckDB has no escape
# that reads the name literally) and a leading `~`
_DUCKDB_PATTERN = re.compile(r"[*?\[]|^~")
_OPEN_FILES = Path("/dev/fd")


class Scratch:
    """Scratch files for one driver call inside the session's tmp dir; all removed on exit."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory = directory
        self.prefix = re.sub(r"[^0-9A-Za-z_.-]", "_", prefix)
        self._paths: list[Path] = []
        self._opened: dict[Path, int] = {}

    def new_path(self, suffix: str = ".csv") -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.prefix}.{os.getpid()}.{uuid.uuid4().hex[:12]}{suffix}"
        self._paths.append(path)
        return path

    def literal(self, path: Path) -> Path:
        """``path`` as DuckDB's ``read_csv`` reads it: always that one file, never a glob.

        The file is opened here and DuckDB gets ``/dev/fd/N`` (open until exit), a name without
        pattern characters that reopens this file, whatever its own name holds (``[ab].csv``,
        ``q?.csv``) and even if it is renamed meanwhile. Without ``/dev/fd`` a name DuckDB would
        take as a pattern fails here rather than read other files."""
        if path in self._opened:
            return _OPEN_FILES / str(self._opened[path])
        if not _OPEN_FILES.is_dir():
            if _DUCKDB_PATTERN.search(str(path)):
                raise DriverError(f"{path}: DuckDB would read this name as a pattern (it holds "
                                  "*, ? or [); rename the file")
            return path
        self._opened[path] = os.open(path, os.O_RDONLY)
        return _OPEN_FILES / str(self._opened[path])

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._opened.values():
            os.close(fd)
        for path in self._paths:
            remove_quietly(path)
