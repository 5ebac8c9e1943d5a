"""Install what the suite needs into the running interpreter's environment, when missing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _not_installed(dist: str) -> bool:
    """The contenders run outside the repository, so the project must be installed, not just
    importable from the current directory (which also provides the ``osiris-dagster`` script)."""
    from importlib import metadata

    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return True
    return False


def _pip(*args: str) -> bool:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args]
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=False).returncode == 0


def ensure(with_dlt: bool = True, install: bool = True, with_ddp: bool = True) -> dict[str, str]:
    """Returns {component: problem} for optional parts that are unavailable."""
    problems: dict[str, str] = {}
    if _not_installed("osiris-dagster") and (not install or not _pip("-e", str(REPO))):
        raise SystemExit("osiris_dagster is not importable; run `pip install -e .` first")
    if _missing("psutil", "matplotlib") and (
            not install or not _pip("-r", str(HERE / "requirements.txt"))):
        raise SystemExit("psutil and matplotlib are needed: "
                         "pip install -r benchmarks/requirements.txt")
    if _missing("sqlalchemy") and (not install or not _pip("sqlalchemy>=2")):
        raise SystemExit("sqlalchemy is needed (the pandas contenders use it): "
                         "pip install -r benchmarks/requirements.txt")
    if with_ddp and _missing("dagster_duckdb_pandas") and (
            not install or not _pip("--no-deps", "dagster-duckdb", "dagster-duckdb-pandas")):
        problems["dagster_duckdb_pandas"] = "dagster-duckdb-pandas is not installed"
    if with_dlt and _missing("dlt") and (not install or not _pip("dlt[duckdb]")):
        problems["dlt_filesystem"] = "dlt[duckdb] did not install"
    importlib.invalidate_caches()
    return problems
