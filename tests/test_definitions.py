"""definitions.py / build_definitions over a directory of pipelines."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from osiris_dagster import build_definitions

from .conftest import REPO
from .helpers import write

GOOD = """\
oml_version: "0.1.0"
name: {name}
steps:
  - id: gen
    component: duckdb.processor
    mode: transform
    config: {{query: "SELECT 1 AS x"}}
"""


def test_broken_file_is_reported_and_does_not_hide_the_others(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "pipes"
    write(d / "a.yaml", GOOD.format(name="alpha"))
    write(d / "nested" / "b.yml", GOOD.format(name="beta"))
    write(d / "broken.yaml", "oml_version: \"0.1.0\"\nname: broken\nsteps:\n  - id: x\n"
                             "    component: nope.thing\n    mode: read\n")
    write(d / "osiris_connections.yaml", "version: 1\nconnections: {}\n")
    with caplog.at_level(logging.ERROR, logger="osiris_dagster"):
        defs = build_definitions(pipelines_dir=d, sessions_dir=str(tmp_path / "s"))
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert keys == {"alpha/gen", "beta/gen", "osiris_invalid/broken"}
    assert "unknown component 'nope.thing'" in caplog.text
    assert f"{d / 'broken.yaml'}:5" in caplog.text
    spec = next(s for s in defs.resolve_all_asset_specs()
                if s.key.to_user_string() == "osiris_invalid/broken")
    assert "unknown component 'nope.thing'" in spec.description
    assert defs.resolve_job_def("alpha") and defs.resolve_job_def("beta")
    dg.Definitions.validate_loadable(defs)
    # materialising the placeholder fails with the validation message
    result = dg.materialize([defs.get_assets_def(dg.AssetKey(["osiris_invalid", "broken"]))],
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success


def test_duplicate_pipeline_names_are_reported(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "pipes"
    write(d / "a.yaml", GOOD.format(name="same"))
    write(d / "b.yaml", GOOD.format(name="same"))
    with caplog.at_level(logging.ERROR, logger="osiris_dagster"):
        defs = build_definitions(pipelines_dir=d)
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert keys == {"same/gen", "osiris_invalid/b"}
    assert "already used by" in caplog.text


def test_default_code_location_loads_with_dagster_cli(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    out = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w",
                          "workspace.yaml"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


def test_pipelines_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "elsewhere"
    write(d / "x.yaml", GOOD.format(name="from-env"))
    monkeypatch.setenv("OSIRIS_PIPELINES_DIR", str(d))
    defs = build_definitions()
    assert {k.to_user_string() for k in defs.resolve_all_asset_keys()} == {"from-env/gen"}
