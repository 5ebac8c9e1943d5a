"""DuckDB's error text, shortened for a CSV step's error message."""

from __future__ import annotations


def duckdb_summary(exc: BaseException, limit: int = 400) -> str:
    """The useful head of a DuckDB error: its text up to the 'Possible fixes' / options dump."""
    lines: list[str] = []
    for line in str(exc).splitlines():
        stripped = line.strip()
        if not stripped:
            if lines:
                break
            continue
        if stripped.startswith(("Possible fix", "Possible Solution", "file =", "* ")):
            break
        if not stripped.startswith("Original Line:"):  # may be megabytes of row text
            lines.append(stripped)
    text = " ".join(lines) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
