"""Bad ducklake settings stop a run with a message that names the setting to fix.

Every case runs the real `osiris-dagster run` (all at once, one process each) on a one-step
pipeline whose step writes a table; the assertions are on what the command prints.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .conftest import CATALOG, Proc, make_lake, osiris_run, start_proc

PIPELINE = """\
oml_version: "0.1.0"
name: settings
steps:
  - id: src
    component: filesystem.csv_extractor
    mode: read
    config: {path: src.csv}
"""


@dataclass(frozen=True)
class Case:
    id: str
    env: dict[str, str | None]  # None: the variable is unset; FILE / OTHER_DIR: a path
    says: tuple[str, ...]
    catalog_in_use: bool = True  # False: the run is the first to open its catalog


CASES = [
    Case("no-catalog", {"OSIRIS_DUCKLAKE_CATALOG": None},
         ("OSIRIS_DUCKLAKE_CATALOG", "needs a catalog")),
    Case("no-data-path", {"OSIRIS_DUCKLAKE_DATA_PATH": None},
         ("OSIRIS_DUCKLAKE_DATA_PATH", "needs a data path")),
    Case("unreachable-catalog",
         {"OSIRIS_DUCKLAKE_CATALOG": CATALOG.replace("host=", "port=1 host=")},
         ("Check OSIRIS_DUCKLAKE_CATALOG", "port=1", "Connection refused")),
    Case("unknown-store", {"OSIRIS_SESSION_STORE": "ducklak"},
         ("OSIRIS_SESSION_STORE='ducklak' is not a session store", "duckdb, ducklake")),
    # a worker configured with another data path than the catalog was created with
    Case("data-path-not-the-catalogs", {"OSIRIS_DUCKLAKE_DATA_PATH": "OTHER_DIR"},
         ("Check OSIRIS_DUCKLAKE_DATA_PATH", "does not match")),
    # the first run of a new catalog, with a data path that cannot hold directories
    Case("data-path-is-a-file", {"OSIRIS_DUCKLAKE_DATA_PATH": "FILE"},
         ("OSIRIS_DUCKLAKE_DATA_PATH",), catalog_in_use=False),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory,
         lake_requirements: None) -> Iterator[dict[str, Proc]]:
    root = tmp_path_factory.mktemp("lake_settings")
    procs: dict[str, Proc] = {}
    with contextlib.ExitStack() as stack:
        for case in CASES:
            work = root / case.id
            lake = stack.enter_context(make_lake(work / "lakeroot", case.catalog_in_use))
            (work / "pipe.yaml").write_text(PIPELINE, encoding="utf-8")
            (work / "src.csv").write_text("x\n1\n", encoding="utf-8")
            paths = {"FILE": work / "a_file", "OTHER_DIR": work / "other_dir"}
            paths["FILE"].write_text("", encoding="utf-8")
            paths["OTHER_DIR"].mkdir()
            env = dict(lake.env)
            for key, value in case.env.items():
                if value is None:
                    env.pop(key)
                else:
                    env[key] = str(paths.get(value, value))
            procs[case.id] = start_proc(osiris_run("pipe.yaml"), work, env, case.id,
                                        root / "logs")
        try:
            for proc in procs.values():
                proc.wait()
            yield procs
        finally:
            for proc in procs.values():
                if proc.running():
                    proc.kill()


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_setting_is_named(case: Case, runs: dict[str, Proc]) -> None:
    proc = runs[case.id]
    assert proc.popen.returncode != 0, proc.describe()
    assert "Traceback (most recent call last)" not in proc.output, proc.describe()
    for fragment in case.says:
        assert fragment in proc.stderr, f"{fragment!r} not in the output\n{proc.describe()}"
    assert "Check `delimiter`" not in proc.stderr, "a lake problem blamed on the CSV file\n" + \
        proc.describe()

