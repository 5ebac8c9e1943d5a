"""OsirisPipelineComponent: in a components sandbox and in a real `dg` project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from osiris_dagster import OsirisPipelineComponent

PIPE = """\
oml_version: "0.1.0"
name: orders
steps:
  - id: extract-orders
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT range AS id FROM range(4)"}
  - id: big-orders
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT * FROM input_df WHERE id > 1"}
"""


def test_component_in_a_sandbox_with_translation(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster.components.testing import create_defs_folder_sandbox

    monkeypatch.setenv("OSIRIS_SESSIONS_DIR", str(tmp_path / "s"))
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(
            component_cls=OsirisPipelineComponent,
            defs_yaml_contents={
                "type": "osiris_dagster.OsirisPipelineComponent",
                "attributes": {"pipeline_path": "pipeline.yaml", "key_prefix": ["wh"],
                               "group": "etl", "tags": {"team": "bi"},
                               "owners": ["team:data"]}})
        (path / "pipeline.yaml").write_text(PIPE)
        with sandbox.load_component_and_build_defs(defs_path=path) as (_component, defs):
            specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
            assert set(specs) == {"wh/orders/extract-orders", "wh/orders/big-orders"}
            big = specs["wh/orders/big-orders"]
            assert {d.asset_key.to_user_string() for d in big.deps} == {
                "wh/orders/extract-orders"}
            assert big.group_name == "etl" and big.tags["team"] == "bi"
            assert "team:data" in big.owners
            result = defs.resolve_job_def("orders").execute_in_process(
                instance=dg.DagsterInstance.ephemeral())
            assert result.success
            rows = {ev.asset_key.to_user_string():
                    ev.event_specific_data.materialization.metadata["dagster/row_count"].value
                    for ev in result.get_asset_materialization_events()}
            assert rows == {"wh/orders/extract-orders": 4, "wh/orders/big-orders": 2}


def _dg(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent
    return subprocess.run([str(exe / args[0]), *args[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_real_dg_project_scaffold_check_and_launch(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_")}
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env.update({"DAGSTER_HOME": str(home), "PYTHONPATH": str(tmp_path / "proj" / "src"),
                "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
                "OSIRIS_SESSIONS_DIR": str(tmp_path / "sessions")})
    made = _dg(["create-dagster", "project", "proj", "--no-uv-sync"], tmp_path, env)
    assert made.returncode == 0, made.stdout + made.stderr
    proj = tmp_path / "proj"
    listed = _dg(["dg", "list", "components"], proj, env)
    assert "osiris_dagster.OsirisPipelineComponent" in listed.stdout, listed.stderr
    scaffolded = _dg(["dg", "scaffold", "defs", "osiris_dagster.OsirisPipelineComponent",
                      "orders_etl"], proj, env)
    assert scaffolded.returncode == 0, scaffolded.stdout + scaffolded.stderr
    folder = proj / "src" / "proj" / "defs" / "orders_etl"
    assert (folder / "defs.yaml").is_file() and (folder / "pipeline.yaml").is_file()
    checked = _dg(["dg", "check", "defs"], proj, env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    launched = _dg(["dg", "launch", "--assets", "*"], proj, env)
    assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-2000:]
    out = proj / "output" / "orders-etl.csv"
    assert out.read_text().splitlines()[:2] == ["id,label", "0,item 0"]
    # a broken pipeline fails `dg check defs` with the validator's line-accurate message
    pipeline = folder / "pipeline.yaml"
    pipeline.write_text(pipeline.read_text().replace("mode: transform", "mode: read"))
    broken = _dg(["dg", "check", "defs"], proj, env)
    assert broken.returncode != 0
    assert f"{pipeline}:9: step 'generate': mode 'read' is not allowed" in \
        broken.stdout + broken.stderr
