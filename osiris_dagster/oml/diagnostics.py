"""Validation findings in the `FILE:LINE: step 'ID': message` shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    file: str
    line: int
    message: str
    step: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        step = f" step '{self.step}':" if self.step else ""
        return f"{where}:{step} {self.message}"


class BySeverity:
    """The ``errors`` and ``warnings`` among ``self.diagnostics``."""

    diagnostics: list[Diagnostic]

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


class Collector(BySeverity):
    """Accumulates diagnostics for one file so that every problem is reported at once."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.diagnostics: list[Diagnostic] = []

    def error(self, line: int, message: str, step: str | None = None) -> None:
        self.diagnostics.append(Diagnostic("error", self.file, line, message, step))

    def warning(self, line: int, message: str, step: str | None = None) -> None:
        self.diagnostics.append(Diagnostic("warning", self.file, line, message, step))
