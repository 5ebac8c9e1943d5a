"""One asset per step over one DuckDB file per run: specs, metadata, sessions, cross-run loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from osiris_dagster import build_osiris_assets

from .helpers import (
    defs_for,
    events,
    failure_description,
    materialisations,
    metrics,
    run_job,
    table_columns,
    table_rows,
    write,
)

PIPELINE = """\
oml_version: "0.1.0"
name: movies-demo
params:
  min_movies: {default: 2, description: Minimum movies per director}
x-dagster:
  owners: ["team:data"]
  tags: {domain: movies}
  steps:
    join: {description: "Joins movies with directors", tags: {tier: gold}}
steps:
  - id: extract-movies
    component: filesystem.csv_extractor
    mode: read
    config: {path: data/movies.csv}
  - id: extract.directors
    component: filesystem.csv_extractor
    mode: read
    needs: []
    config: {path: data/directors.csv}
  - id: join
    component: duckdb.processor
    mode: transform
    needs: [extract-movies, extract.directors]
    config:
      query: >
        SELECT d.name, count(*) AS movies
        FROM df_extract_movies m JOIN df_extract_directors d USING (director_id)
        GROUP BY d.name HAVING count(*) >= ${params.min_movies} ORDER BY d.name
  - id: write
    component: filesystem.csv_writer
    mode: write
    config: {path: out/directors.csv}
"""

KEY = dg.AssetKey


@pytest.fixture
def pipeline(workdir: Path) -> Path:
    return write(workdir / "pipelines" / "movies.yaml", PIPELINE)


def test_one_asset_per_step_with_lineage_and_spec_fields(pipeline: Path, tmp_path: Path) -> None:
    defs = defs_for(pipeline, tmp_path / "s")
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    assert set(specs) == {KEY(["movies-demo", "extract-movies"]),
                          KEY(["movies-demo", "extract_directors"]),
                          KEY(["movies-demo", "join"]), KEY(["movies-demo", "write"])}
    join = specs[KEY(["movies-demo", "join"])]
    assert {d.asset_key for d in join.deps} == {KEY(["movies-demo", "extract-movies"]),
                                                KEY(["movies-demo", "extract_directors"])}
    # implicit dependency: `write` has no needs, so it depends on the previous step
    assert {d.asset_key for d in specs[KEY(["movies-demo", "write"])].deps} == {
        KEY(["movies-demo", "join"])}
    # needs: [] -> no deps
    assert not specs[KEY(["movies-demo", "extract_directors"])].deps
    assert join.group_name == "movies_demo"
    assert join.description == "Joins movies with directors"
    assert join.owners == ["team:data"]
    assert join.tags["domain"] == "movies" and join.tags["tier"] == "gold"
    assert join.kinds == {"duckdb", "sql"}
    assert specs[KEY(["movies-demo", "write"])].kinds == {"duckdb", "csv"}
    assert join.metadata["osiris/step_id"] == "join"
    assert specs[KEY(["movies-demo", "extract_directors"])].metadata[
        "osiris/step_id"] == "extract.directors"
    ref = join.metadata["dagster/code_references"].code_references[0]
    assert ref.file_path == str(pipeline.resolve()) and ref.line_number == 20
    assert join.code_version and len(join.code_version) == 16
    job = defs.resolve_job_def("movies_demo")
    assert job.executor_def.name == "in_process"


def test_code_version_changes_exactly_with_the_step_config(pipeline: Path) -> None:
    before = {k: s.code_version for k, s in
              ((s.key, s) for d in [build_osiris_assets(pipeline)] for a in d.assets
               for s in a.specs)}
    changed = pipeline.read_text().replace("path: out/directors.csv", "path: out/other.csv")
    pipeline.write_text(changed)
    after = {s.key: s.code_version for a in build_osiris_assets(pipeline).assets
             for s in a.specs}
    diff = {k.path[-1] for k in before if before[k] != after[k]}
    assert diff == {"write"}
    pipeline.write_text(changed.replace("{default: 2,", "{default: 3,"))
    again = {s.key: s.code_version for a in build_osiris_assets(pipeline).assets
             for s in a.specs}
    assert {k.path[-1] for k in after if after[k] != again[k]} == {"join"}


def test_materialise_all_writes_one_session_with_standard_metadata(
        pipeline: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    sessions = tmp_path / "s"
    result = run_job(defs_for(pipeline, sessions), "movies_demo", instance)
    assert result.success, failure_description(result)
    mats = materialisations(result)
    assert set(mats) == {"movies-demo/extract-movies", "movies-demo/extract_directors",
                         "movies-demo/join", "movies-demo/write"}
    session_dir = sessions / result.run_id
    db = session_dir / "pipeline_data.duckdb"
    movies = mats["movies-demo/extract-movies"]
    assert movies["dagster/row_count"].value == 60
    assert movies["dagster/table_name"].value == "pipeline_data.main.extract_movies"
    assert movies["dagster/uri"].value == db.as_uri()
    cols = [c.name for c in movies["dagster/column_schema"].schema.columns]
    assert cols[:3] == ["movie_id", "title", "release_year"]
    preview = movies["preview"]
    assert table_columns(preview) == [(c.name, c.type)
                                      for c in movies["dagster/column_schema"].schema.columns]
    assert len(table_rows(preview)) == 10  # the preview's row limit
    assert table_rows(preview)[0]["movie_id"] == 1
    assert movies["osiris/session_id"].value == result.run_id
    assert movies["rows_read"].value == 60
    written = mats["movies-demo/write"]
    target = Path(written["target"].value)
    assert target == (Path.cwd() / "out" / "directors.csv")
    assert "dagster/row_count" not in written

    with duckdb.connect(str(db), read_only=True) as con:
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        assert tables == {"extract_movies", "extract_directors", "join"}
        rows = con.execute("SELECT name, movies FROM \"join\" ORDER BY name").fetchall()
    assert rows and all(n >= 2 for _, n in rows)
    expected = "movies,name\n" + "".join(f"{n},{name}\n" for name, n in rows)
    assert target.read_text() == expected  # columns sorted by name, as Osiris writes them

    names = [e["event"] for e in events(session_dir)]
    assert names[0] == "run_start" and names[-1] == "run_end"
    assert names.count("step_start") == 4 and names.count("step_complete") == 4
    done = {e["step_id"]: e for e in events(session_dir) if e["event"] == "step_complete"}
    assert done["extract-movies"]["rows_written"] == 60
    assert done["write"]["target"] == str(target)
    metric_names = {m["metric"] for m in metrics(session_dir)}
    assert {"rows_read", "rows_written", "step_join_duration",
            "step_extract-movies_duration"} <= metric_names
    cleaned = session_dir / "artifacts" / "join" / "cleaned_config.json"
    assert "df_extract_movies" in cleaned.read_text()
    manifest = yaml.safe_load((session_dir / "manifest.yaml").read_text())
    assert manifest["meta"]["fingerprint"].startswith("sha256:")
    assert [s["id"] for s in manifest["steps"]] == ["extract-movies", "extract.directors",
                                                    "join", "write"]
    assert manifest["params"] == {"min_movies": 2}


def test_step_metadata_is_stored_once_with_the_materialisation(
        pipeline: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """A step's metadata (preview, column schema and lineage: kilobytes per asset) goes into its
    materialisation only. Metadata given to an Output is also copied into the STEP_OUTPUT event,
    one more serialisation and event-log write of it per asset; the run's log shows it there."""
    result = run_job(defs_for(pipeline, tmp_path / "s"), "movies_demo", instance)
    assert result.success, failure_description(result)
    stored = instance.all_logs(result.run_id)
    outputs = [e.dagster_event for e in stored
               if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_OUTPUT]
    assert len(outputs) == 4  # the writer's result too
    assert [dict(o.step_output_data.metadata) for o in outputs] == [{}] * 4
    mats = {e.dagster_event.asset_key.to_user_string(): e.dagster_event.materialization.metadata
            for e in stored if e.dagster_event and e.dagster_event.is_step_materialization}
    assert set(mats) == set(materialisations(result))
    assert "preview" in mats["movies-demo/join"] and "target" in mats["movies-demo/write"]


def test_partial_materialisation_reads_upstream_from_its_latest_session(
        pipeline: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    sessions = tmp_path / "s"
    defs = defs_for(pipeline, sessions)
    first = run_job(defs, "movies_demo", instance)
    assert first.success
    second = run_job(defs, "movies_demo", instance, selection=[KEY(["movies-demo", "join"])],
                     params={"min_movies": 1})
    assert second.success, failure_description(second)
    assert set(materialisations(second)) == {"movies-demo/join"}
    with duckdb.connect(str(sessions / second.run_id / "pipeline_data.duckdb"),
                        read_only=True) as con:
        assert {r[0] for r in con.execute("SHOW TABLES").fetchall()} == {"join"}
        total = con.execute('SELECT sum(movies) FROM "join"').fetchone()[0]
    assert total == 60  # every movie counted: upstream came from the first session
    # The writer alone: its input is join's latest materialisation (the second session).
    third = run_job(defs, "movies_demo", instance, selection=[KEY(["movies-demo", "write"])])
    assert third.success, failure_description(third)
    assert sum(int(line.split(",")[0]) for line in
               Path("out/directors.csv").read_text().splitlines()[1:]) == 60


def test_upstream_session_gone_says_what_to_materialise(
        pipeline: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    sessions = tmp_path / "s"
    defs = defs_for(pipeline, sessions)
    first = run_job(defs, "movies_demo", instance)
    assert first.success
    shutil.rmtree(sessions / first.run_id)
    again = run_job(defs, "movies_demo", instance, selection=[KEY(["movies-demo", "join"])])
    assert not again.success
    message = failure_description(again)
    assert "materialise 'movies-demo/extract-movies' again" in message
    assert f"was materialised in session {first.run_id}, whose directory " \
           f"{sessions / first.run_id} is gone (cleaned or deleted)" in message
    # the UI shows the message itself, not Dagster's DagsterExecutionLoadInputError with a
    # stack trace in front of it
    (failure,) = [e.step_failure_data for e in again.all_events if e.is_step_failure]
    assert failure.user_failure_data is not None
    assert failure.user_failure_data.description == message
    assert "LoadInputError" not in failure.error.cls_name


def test_upstream_database_gone_but_session_directory_kept(
        pipeline: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    sessions = tmp_path / "s"
    defs = defs_for(pipeline, sessions)
    first = run_job(defs, "movies_demo", instance)
    assert first.success
    (sessions / first.run_id / "pipeline_data.duckdb").unlink()
    again = run_job(defs, "movies_demo", instance, selection=[KEY(["movies-demo", "join"])])
    assert not again.success
    message = failure_description(again)
    assert f"was materialised in session {first.run_id}, whose database " \
           f"{sessions / first.run_id / 'pipeline_data.duckdb'} is missing" in message


def test_upstream_never_materialised(pipeline: Path, tmp_path: Path,
                                     instance: dg.DagsterInstance) -> None:
    defs = defs_for(pipeline, tmp_path / "s")
    result = run_job(defs, "movies_demo", instance, selection=[KEY(["movies-demo", "join"])])
    assert not result.success
    assert "has never been materialised" in failure_description(result)


def test_failed_step_stops_dependants_and_is_logged(workdir: Path, tmp_path: Path,
                                                    instance: dg.DagsterInstance) -> None:
    # a column that is not there: only the run can tell (validate refuses unknown tables)
    p = write(workdir / "bad.yaml", PIPELINE.replace("SELECT d.name,",
                                                     "SELECT d.no_such_column,"))
    sessions = tmp_path / "s"
    result = run_job(defs_for(p, sessions), "movies_demo", instance)
    assert not result.success
    message = failure_description(result)
    assert "pipeline 'movies-demo', step 'join'" in message
    assert "no_such_column" in message
    assert set(materialisations(result)) == {"movies-demo/extract-movies",
                                             "movies-demo/extract_directors"}
    evs = events(sessions / result.run_id)
    assert [e["step_id"] for e in evs if e["event"] == "step_error"] == ["join"]
    end = evs[-1]
    assert end["event"] == "run_end" and end["status"] == "failure"
    assert end["steps_skipped"] == ["write"]
    assert not Path("out/directors.csv").exists()


def test_run_config_params_env_and_profile_precedence(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch) -> None:
    text = """\
oml_version: "0.1.0"
name: params-demo
params: {n: 3, label: {default: oml}}
profiles:
  dev: {params: {label: dev}}
  prod: {params: {label: prod, n: 5}}
steps:
  - id: gen
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT range AS i, '${params.label}' AS label FROM range(${params.n})"}
"""
    p = write(workdir / "params.yaml", text)
    defs = defs_for(p, tmp_path / "s")

    def outcome(**kw: object) -> tuple[int, str]:
        result = run_job(defs, "params_demo", instance, res_key="osiris_params__params_demo",
                         **kw)
        assert result.success, failure_description(result)
        md = materialisations(result)["params-demo/gen"]
        return md["dagster/row_count"].value, table_rows(md["preview"])[0]["label"]

    assert outcome() == (3, "dev")  # profile dev applies by default
    monkeypatch.setenv("OSIRIS_PARAM_N", "4")
    assert outcome() == (4, "dev")  # env beats the OML default
    assert outcome(profile="prod") == (5, "prod")  # profile beats env
    assert outcome(profile="prod", params={"n": 2}) == (2, "prod")  # explicit beats all


def test_component_without_driver_fails_clearly(workdir: Path, tmp_path: Path,
                                                instance: dg.DagsterInstance,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from osiris_dagster import drivers

    monkeypatch.delitem(drivers._DRIVER_MODULES, "duckdb.processor")
    p = write(workdir / "gen.yaml", """\
oml_version: "0.1.0"
name: no-driver
steps:
  - id: gen
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT 1"}
""")
    result = run_job(defs_for(p, tmp_path / "s"), "no_driver", instance)
    assert not result.success
    message = failure_description(result)
    assert "component 'duckdb.processor' has no driver in osiris-dagster yet" in message
    assert "filesystem.csv_extractor" in message  # names what is supported


def test_connection_secrets_are_masked_in_session_files(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "S3cr3t-Zebra-4242"
    monkeypatch.setenv("FS_TOKEN", secret)
    conns = write(workdir / "osiris_connections.yaml", """\
version: 1
connections:
  filesystem:
    local:
      base_dir: data
      token: ${FS_TOKEN}
""")
    p = write(workdir / "fs.yaml", """\
oml_version: "0.1.0"
name: fs-demo
steps:
  - id: extract
    component: filesystem.csv_extractor
    mode: read
    config: {connection: "@filesystem.local", path: directors.csv}
""")
    sessions = tmp_path / "s"
    result = run_job(defs_for(p, sessions, conns), "fs_demo", instance)
    assert result.success, failure_description(result)
    mats = materialisations(result)
    assert mats["fs-demo/extract"]["dagster/row_count"].value == 12  # base_dir honoured
    for f in (sessions / result.run_id).rglob("*"):
        if f.is_file() and f.suffix in {".json", ".jsonl", ".yaml"}:
            assert secret not in f.read_text(), f
    cleaned = (sessions / result.run_id / "artifacts" / "extract" / "cleaned_config.json")
    assert "***MASKED***" in cleaned.read_text()


def test_launchpad_schema_has_param_defaults_and_descriptions(pipeline: Path) -> None:
    one = build_osiris_assets(pipeline)
    params = one.params_resource.config_schema.config_type.fields["params"]
    field = params.config_type.fields["min_movies"]
    assert field.default_value == 2
    assert field.description.startswith("Minimum movies per director")
    assert not one.params_resource.config_schema.config_type.fields["profile"].is_required


def test_run_config_value_equal_to_default_lets_env_apply(
        pipeline: Path, tmp_path: Path, instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSIRIS_PARAM_MIN_MOVIES", "20")
    defs = defs_for(pipeline, tmp_path / "s")
    result = run_job(defs, "movies_demo", instance, params={"min_movies": 2})
    assert result.success, failure_description(result)
    rows = materialisations(result)["movies-demo/join"]["dagster/row_count"].value
    assert rows == 0  # nobody directed 20 movies: the env value applied
