"""Several pipelines in one Dagster run ("Materialize all", a selection across pipelines): each
pipeline keeps a session of its own, so steps with the same id never share a table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import yaml

from osiris_dagster import build_definitions
from osiris_dagster.dagster_layer.translator import OsirisStepData, OsirisTranslator

from .helpers import failure_description, materialisations, write

PIPELINE = """\
oml_version: "0.1.0"
name: {name}
steps:
  - id: load
    component: filesystem.csv_extractor
    mode: read
    config: {{path: {csv}}}
  - id: total
    component: duckdb.processor
    mode: transform
    needs: [load]
    config: {{query: "SELECT count(*) AS n, sum(x) AS s FROM input_df"}}
"""


def _project(tmp_path: Path, names: tuple[str, str] = ("first", "second"),
             translator: OsirisTranslator | None = None) -> tuple[dg.Definitions, Path]:
    files = []
    for i, (name, values) in enumerate(zip(names, ([1, 2], [10, 20, 30]), strict=True)):
        csv = write(tmp_path / f"{i}.csv", "x\n" + "".join(f"{v}\n" for v in values))
        files.append(write(tmp_path / "pipelines" / f"{name if len(name) < 20 else i}.yaml",
                           PIPELINE.format(name=name, csv=csv)))
    sessions = tmp_path / "sessions"
    return build_definitions(files, sessions_dir=str(sessions), translator=translator), sessions


def _total(metadata: dict) -> tuple[int, int]:
    db, table = metadata["osiris/session_db"].value, metadata["osiris/table"].value
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"SELECT n, s FROM {table}").fetchone()


def test_pipelines_in_one_run_keep_their_own_tables(tmp_path: Path,
                                                    instance: dg.DagsterInstance) -> None:
    """Both pipelines have steps `load` and `total`; materialised together, each `total` reads
    its own `load` (before, one session held both: a step read the other pipeline's table)."""
    defs, sessions = _project(tmp_path)
    seen: dict[str, pd.DataFrame] = {}

    @dg.asset(ins={"total": dg.AssetIn(key=dg.AssetKey(["second", "total"]))})
    def report(total: pd.DataFrame) -> None:  # a hand-written asset reads one of them
        seen["second"] = total

    job = dg.Definitions.merge(defs, dg.Definitions(assets=[report])
                               ).get_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert result.success, failure_description(result)
    mats = materialisations(result)
    assert _total(mats["first/total"]) == (2, 3)
    assert _total(mats["second/total"]) == (3, 60)
    assert seen["second"].to_dict("records") == [{"n": 3, "s": 60}]
    # a session per pipeline, each with its own manifest
    dirs = {str(mats[f"{p}/total"]["osiris/session_dir"].value) for p in ("first", "second")}
    assert len(dirs) == 2
    for name in ("first", "second"):
        session = Path(str(mats[f"{name}/total"]["osiris/session_dir"].value))
        assert session.parent == sessions
        assert yaml.safe_load((session / "manifest.yaml").read_text())["name"] == name


class _OwnMetadata(OsirisTranslator):
    """A user's translator that replaces every asset's metadata with its own."""

    def get_asset_spec(self, data: OsirisStepData) -> dg.AssetSpec:
        return super().get_asset_spec(data).replace_attributes(metadata={"team": "data"})


def test_a_translator_replacing_the_metadata_and_long_pipeline_names(
        tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """Each pipeline's session is found from its steps' ops, not from metadata a translator
    may replace; a pipeline name too long for a directory name is shortened (and hashed, so
    two names with the same start stay apart)."""
    names = ("p" * 230 + "a", "p" * 230 + "b")
    defs, sessions = _project(tmp_path, names, _OwnMetadata())
    result = defs.get_implicit_global_asset_job_def().execute_in_process(
        instance=instance, raise_on_error=False)
    assert result.success, failure_description(result)
    totals = sorted(_total(md) for key, md in materialisations(result).items()
                    if key.endswith("/total"))
    assert totals == [(2, 3), (3, 60)]
    dirs = [p.name for p in sessions.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(dirs) == 2 and all(len(d) == 36 + 1 + 64 for d in dirs)


DEFS = """\
import dagster as dg
from osiris_dagster import build_definitions
from osiris_dagster.dagster_layer.translator import OsirisStepData, OsirisTranslator

defs = build_definitions(["pipelines/first.yaml", "pipelines/second.yaml"],
                         sessions_dir="sessions", executor=dg.multiprocess_executor)
"""


def test_each_process_of_a_run_finds_its_pipelines_session(tmp_path: Path) -> None:
    """As a user runs it: `dagster asset materialize` with steps in processes of their own. All
    assets: a session per pipeline; one pipeline's assets: the run's one session (its id)."""
    _project(tmp_path)
    write(tmp_path / "defs.py", DEFS)
    home = tmp_path / "home"
    write(home / "dagster.yaml", "telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_")}
    env["DAGSTER_HOME"] = str(home)
    sessions = tmp_path / "sessions"
    found: list[dict[str, tuple[str, tuple[int, int]]]] = []
    seen: set[str] = set()
    for selection in ("*", "*first/total"):
        out = subprocess.run([sys.executable, "-m", "dagster", "asset", "materialize",
                              "--select", selection, "-f", "defs.py"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        new = [p for p in sessions.iterdir() if p.is_dir() and not p.name.startswith(".")
               and p.name not in seen]
        seen.update(p.name for p in new)
        found.append({})
        for session in new:
            name = yaml.safe_load((session / "manifest.yaml").read_text())["name"]
            with duckdb.connect(str(session / "pipeline_data.duckdb"), read_only=True) as con:
                found[-1][name] = (session.name,
                                   con.execute("SELECT n, s FROM total").fetchone())
    everything, first_only = found
    assert {k: v[1] for k, v in everything.items()} == {"first": (2, 3), "second": (3, 60)}
    (run_id,) = {v[0].rsplit("-", 1)[0] for v in everything.values()}
    assert len(run_id) == 36
    assert {k: v[0] for k, v in everything.items()} == {p: f"{run_id}-{p}"
                                                        for p in ("first", "second")}
    assert list(first_only) == ["first"] and first_only["first"][1] == (2, 3)
    assert len(first_only["first"][0]) == 36  # the run id itself
