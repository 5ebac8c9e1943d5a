"""Scratch files for one CSV driver call, inside the session's tmp dir; all removed on exit."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from osiris_dagster.core.atomic_files import remove_quietly


class Scratch:
    """Scratch files for one driver call inside the session's tmp dir; all removed on exit."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory = directory
        self.prefix = re.sub(r"[^0-9A-Za-z_.-]", "_", prefix)
        self._paths: list[Path] = []

    def new_path(self, suffix: str = ".csv") -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.prefix}.{os.getpid()}.{uuid.uuid4().hex[:12]}{suffix}"
        self._paths.append(path)
        return path

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        for path in self._paths:
            remove_quietly(path)
