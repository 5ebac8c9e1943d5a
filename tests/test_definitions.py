"""definitions.py / build_definitions over a directory of pipelines."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from osiris_dagster import (
    OsirisStepData,
    OsirisTranslator,
    build_definitions,
)

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


BROKEN = ("oml_version: \"0.1.0\"\nname: broken\nsteps:\n  - id: x\n"
          "    component: nope.thing\n    mode: read\n")


def test_broken_file_is_reported_and_does_not_hide_the_others(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "pipes"
    write(d / "a.yaml", GOOD.format(name="alpha"))
    write(d / "nested" / "b.yml", GOOD.format(name="beta"))
    write(d / "broken.yaml", BROKEN)
    write(d / "osiris_connections.yaml", "version: 1\nconnections: {}\n")
    with caplog.at_level(logging.ERROR, logger="osiris_dagster"):
        defs = build_definitions(pipelines_dir=d, sessions_dir=str(tmp_path / "s"))
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert keys == {"alpha/gen", "beta/gen", "osiris_invalid/broken"}
    assert "unknown component 'nope.thing'" in caplog.text
    assert f"{d / 'broken.yaml'}:5: step 'x': unknown component" in caplog.text
    spec = next(s for s in defs.resolve_all_asset_specs()
                if s.key.to_user_string() == "osiris_invalid/broken")
    assert f"{d / 'broken.yaml'}:5: step 'x': unknown component 'nope.thing'" \
        in spec.description
    assert "unknown component 'nope.thing'" in spec.metadata["osiris/errors"].value
    assert defs.resolve_job_def("alpha") and defs.resolve_job_def("beta")
    dg.Definitions.validate_loadable(defs)


@pytest.mark.parametrize("name", ["type", "input", "class"])
def test_a_pipeline_with_a_name_dagster_reserves_loads_and_runs(tmp_path: Path,
                                                                 name: str) -> None:
    """Such a pipeline passed validate, then became an `osiris_invalid` asset (its job's
    name was refused) and `osiris-dagster run` crashed with a traceback."""
    d = tmp_path / "pipes"
    write(d / "p.yaml", GOOD.format(name=name))
    defs = build_definitions(pipelines_dir=d, sessions_dir=str(tmp_path / "s"))
    assert {k.to_user_string() for k in defs.resolve_all_asset_keys()} == {f"{name}/gen"}
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def(f"{name}_").execute_in_process(instance=instance)
    assert result.success


def test_broken_file_is_not_executable_and_all_selections_succeed(
        tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """A broken file is an external (non-materialisable) asset: `*`, a job over `*` and the
    UI's Materialize all (which offers executable assets only) run the good pipelines."""
    d = tmp_path / "pipes"
    write(d / "good.yaml", GOOD.format(name="good"))
    write(d / "broken.yaml", BROKEN)
    base = build_definitions(pipelines_dir=d, sessions_dir=str(tmp_path / "s"))
    graph = base.resolve_asset_graph()
    broken_key = dg.AssetKey(["osiris_invalid", "broken"])
    assert not graph.get(broken_key).is_executable
    assert not graph.get(broken_key).is_materializable
    assert graph.get(dg.AssetKey(["good", "gen"])).is_executable
    everything = dg.define_asset_job("everything", selection="*")
    defs = dg.Definitions.merge(base, dg.Definitions(jobs=[everything]))
    result = defs.resolve_job_def("everything").execute_in_process(instance=instance,
                                                                   raise_on_error=False)
    assert result.success
    assert {e.asset_key for e in result.get_asset_materialization_events()} \
        == {dg.AssetKey(["good", "gen"])}


def test_the_ui_sees_a_broken_file_as_not_materialisable(tmp_path: Path,
                                                         instance: dg.DagsterInstance) -> None:
    """What the webserver's GraphQL tells the UI (its Materialize all offers only executable,
    materialisable assets), through a real code server."""
    from dagster_graphql.test.utils import (
        define_out_of_process_context,
        execute_dagster_graphql,
    )

    write(tmp_path / "pipes" / "good.yaml", GOOD.format(name="good"))
    write(tmp_path / "pipes" / "broken.yaml", BROKEN)
    pipes = str(tmp_path / "pipes")
    write(tmp_path / "defs.py", "from osiris_dagster import build_definitions\n\n"
                                f"defs = build_definitions(pipelines_dir={pipes!r})\n")
    query = "{ assetNodes { assetKey { path } isExecutable isMaterializable description } }"
    with define_out_of_process_context(str(tmp_path / "defs.py"), "defs", instance) as ctx:
        nodes = execute_dagster_graphql(ctx, query).data["assetNodes"]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert set(by_key) == {"good/gen", "osiris_invalid/broken"}
    assert by_key["good/gen"]["isExecutable"] and by_key["good/gen"]["isMaterializable"]
    broken = by_key["osiris_invalid/broken"]
    assert not broken["isExecutable"] and not broken["isMaterializable"]
    assert f"{tmp_path / 'pipes' / 'broken.yaml'}:5: step 'x': unknown component" \
        in broken["description"]


def test_materialize_star_with_the_dagster_cli_skips_a_broken_file(tmp_path: Path) -> None:
    """`dagster asset materialize --select '*'` on a code location with a broken file next to a
    good one: the good pipeline materialises and the command exits 0."""
    write(tmp_path / "pipelines" / "good.yaml", GOOD.format(name="good"))
    write(tmp_path / "pipelines" / "broken.yaml", BROKEN)
    write(tmp_path / "definitions.py",
          "from osiris_dagster import build_definitions\n\ndefs = build_definitions()\n")
    home = tmp_path / "home"
    write(home / "dagster.yaml", "telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_")}
    env.update(DAGSTER_HOME=str(home), OSIRIS_SESSIONS_DIR=str(tmp_path / "s"))
    out = subprocess.run([sys.executable, "-m", "dagster", "asset", "materialize", "-f",
                          "definitions.py", "--select", "*"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "RUN_SUCCESS" in text and 'Started execution of step "good__gen"' in text
    assert f"{tmp_path / 'pipelines' / 'broken.yaml'}:5: step 'x': unknown component" in text


def test_any_exception_while_building_one_pipeline_is_a_broken_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Not only the product's own errors: whatever raises while one file's definitions are
    built (here a translator bug) marks that file broken, never the whole code location."""

    class Flaky(OsirisTranslator):
        def get_asset_spec(self, data: OsirisStepData) -> dg.AssetSpec:
            if data.pipeline.name == "bad-one":
                raise ZeroDivisionError("translator bug")
            return super().get_asset_spec(data)

    d = tmp_path / "pipes"
    write(d / "good.yaml", GOOD.format(name="good"))
    write(d / "bad.yaml", GOOD.format(name="bad-one"))
    with caplog.at_level(logging.ERROR, logger="osiris_dagster"):
        defs = build_definitions(pipelines_dir=d, translator=Flaky())
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert keys == {"good/gen", "osiris_invalid/bad"}
    assert "ZeroDivisionError: translator bug" in caplog.text


def test_pipelines_whose_dagster_names_collide_do_not_take_the_location_down(
        tmp_path: Path) -> None:
    """'a-b' and 'a_b' are different asset keys but the same Dagster job name."""
    d = tmp_path / "pipes"
    write(d / "first.yaml", GOOD.format(name="a-b"))
    write(d / "second.yaml", GOOD.format(name="a_b"))
    defs = build_definitions(pipelines_dir=d)
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert keys == {"a-b/gen", "osiris_invalid/second"}
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key.path[0] == "osiris_invalid")
    assert "a_b" in spec.description and str(d / "first.yaml") in spec.description


def test_pipelines_that_only_fail_together_keep_the_first_loadable(tmp_path: Path) -> None:
    """Dagster checks some things only for the whole location (here a dependency cycle
    across two files through x-dagster deps): the file that closes the cycle is broken."""
    d = tmp_path / "pipes"
    for name, other in (("a", "b/s"), ("b", "a/s")):
        write(d / f"{name}.yaml", GOOD.format(name=name).replace("id: gen", "id: s")
              + f"x-dagster:\n  steps:\n    s: {{deps: [\"{other}\"]}}\n")
    defs = build_definitions(pipelines_dir=d)
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert keys == {"a/s", "b/s", "osiris_invalid/b"}  # b/s: only a's external dependency
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey(["a", "s"])).is_executable
    assert not graph.get(dg.AssetKey(["b", "s"])).is_executable
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key.path[0] == "osiris_invalid")
    assert "Circular" in spec.description


def test_broken_files_with_the_same_name_in_two_folders(tmp_path: Path) -> None:
    d = tmp_path / "pipes"
    write(d / "one" / "broken.yaml", BROKEN)
    write(d / "two" / "broken.yaml", BROKEN)
    defs = build_definitions(pipelines_dir=d)
    dg.Definitions.validate_loadable(defs)
    assert len(defs.resolve_all_asset_keys()) == 2


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


def test_two_sets_of_pipelines_merge_into_one_location(tmp_path: Path,
                                                       instance: dg.DagsterInstance) -> None:
    """Two `dg` components (or Definitions.merge of two build_definitions) failed to load:
    'Definitions objects 0 and 1 have different resources with same key 'osiris'' (Dagster
    merges a resource key only when both hold the same object)."""
    a = write(tmp_path / "a.yaml", GOOD.format(name="first"))
    b = write(tmp_path / "b.yaml", GOOD.format(name="second"))
    sessions = str(tmp_path / "s")
    defs = dg.Definitions.merge(build_definitions([a], sessions_dir=sessions),
                                build_definitions([b], sessions_dir=sessions))
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert keys == {"first/gen", "second/gen"}
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)
    assert result.success


def test_loading_the_definitions_shows_no_beta_warning() -> None:
    """Every `dagster asset list -f ...` printed Dagster's BetaWarning for the code reference
    classes, twice per loaded module."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_definitions([REPO / "pipelines" / "director_stats.yaml"])
    assert [str(w.message) for w in caught if issubclass(w.category, dg.BetaWarning)] == []
