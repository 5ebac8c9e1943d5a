"""Loading the DuckDB extensions a store needs, online or offline.

Online, DuckDB installs its own signed extensions on first use (``INSTALL``). Offline (as on
build machines without internet) the PyPI wheels ``duckdb-extension-<name>`` carry the same signed
binaries for one DuckDB version each: ``pip install 'osiris-dagster[lake]'`` brings them. We
load a wheel's file when one is installed, else DuckDB's own copy, else ask DuckDB to install it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb

from osiris_dagster.core.errors import SessionStoreError
from osiris_dagster.core.naming import quote_literal

# extension name -> the PyPI wheel's import package
WHEEL_PACKAGES = {
    "ducklake": "duckdb_extension_ducklake",
    "postgres_scanner": "duckdb_extension_postgres_scanner",
    "httpfs": "duckdb_extension_httpfs",
    "sqlite_scanner": "duckdb_extension_sqlite_scanner",
}


def load_extension(con: duckdb.DuckDBPyConnection, name: str, needed_for: str) -> None:
    """LOAD extension ``name`` into ``con``; ``needed_for`` names the setting that needs it."""
    wheel_file = _wheel_file(name)
    if wheel_file is not None:
        try:
            con.execute(f"LOAD {quote_literal(str(wheel_file))}")
            return
        except duckdb.Error as exc:
            raise SessionStoreError(
                f"DuckDB extension '{name}' (needed for {needed_for}) from {wheel_file} does not "
                f"load into DuckDB {duckdb.__version__}: {_first_line(exc)}. The wheel "
                f"{WHEEL_PACKAGES[name].replace('_', '-')} is built for one DuckDB version: "
                "install the DuckDB version it names (pip install 'osiris-dagster[lake]' pins "
                "a matching pair), or uninstall the wheel to let DuckDB install its own copy."
            ) from None
    try:
        con.execute(f"LOAD {name}")
        return
    except duckdb.Error:
        pass
    try:
        con.execute(f"INSTALL {name}")
        con.execute(f"LOAD {name}")
    except duckdb.Error as exc:
        raise SessionStoreError(
            f"DuckDB extension '{name}' (needed for {needed_for}) is not available: "
            f"{_first_line(exc)}. Without internet access install it from PyPI: "
            "pip install 'osiris-dagster[lake]' (DuckDB's signed extension wheels, pinned to "
            "the DuckDB version they were built for)."
        ) from None


def _wheel_file(name: str) -> Path | None:
    package = WHEEL_PACKAGES.get(name)
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "extensions"
    exact = root / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if exact.exists():
        return exact
    found = sorted(root.glob(f"*/{name}.duckdb_extension"))
    return found[-1] if found else None  # another version: LOAD says which, clearly


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
