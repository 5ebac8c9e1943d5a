"""Data-quality checks, schema drift, external upstreams and a custom translator."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest

from osiris_dagster import OsirisStepData, OsirisTranslator, build_definitions, build_osiris_assets
from osiris_dagster.core.masking import MASK

from .helpers import (
    defs_for,
    failure_description,
    materialisations,
    run_job,
    table_columns,
    table_rows,
    write,
)

CHECKED = """\
oml_version: "0.1.0"
name: checked
params: {{limit: 60}}
x-dagster:
  steps:
    movies:
      checks:
        not_null: [movie_id, budget_usd]
        unique: [movie_id, [director_id, genre]]
        row_count: {{min: 1, max: 1000}}
        accepted_values: {{genre: [Drama, Comedy, Sci-Fi, Thriller, Documentary]}}
        expression: ["runtime_minutes > 0", "release_year < 2000"]
        freshness: {{column: seen_at, max_age_hours: 1}}
        blocking: {blocking}
      deps: ["raw/movie_feed"]
steps:
  - id: movies
    component: filesystem.csv_extractor
    mode: read
    config: {{path: data/movies.csv, limit: "${{params.limit}}"}}
  - id: stamped
    component: duckdb.processor
    mode: transform
    config: {{query: "SELECT *, now() AS seen_at FROM input_df"}}
"""


def test_checks_report_failing_rows_and_samples(workdir: Path, tmp_path: Path,
                                               instance: dg.DagsterInstance) -> None:
    text = CHECKED.format(blocking="false").replace("column: seen_at", "column: release_year")
    p = write(workdir / "checked.yaml", text)
    result = run_job(defs_for(p, tmp_path / "s"), "checked", instance)
    assert result.success, failure_description(result)
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evals) == {"not_null", "unique", "row_count", "accepted_values", "expression",
                          "expression_2", "freshness"}
    assert evals["row_count"].passed and evals["expression"].passed
    assert not evals["not_null"].passed  # movies with an empty budget
    assert evals["not_null"].metadata["failing_rows"].value == 5
    sample = evals["not_null"].metadata["sample"]
    assert ("movie_id", "BIGINT") in table_columns(sample)
    assert len(table_rows(sample)) == 5 and all(r["budget_usd"] is None for r in table_rows(sample))
    assert not evals["unique"].passed  # director+genre repeats
    assert not evals["accepted_values"].passed  # Animation is not accepted
    assert not evals["expression_2"].passed
    assert not evals["freshness"].passed  # release_year is not a timestamp
    assert "could not run" in evals["freshness"].metadata["detail"].value
    assert evals["not_null"].severity == dg.AssetCheckSeverity.WARN
    assert set(materialisations(result)) == {"checked/movies", "checked/stamped"}


def test_blocking_check_stops_downstream(workdir: Path, tmp_path: Path,
                                         instance: dg.DagsterInstance) -> None:
    p = write(workdir / "checked.yaml", CHECKED.format(blocking="true"))
    result = run_job(defs_for(p, tmp_path / "s"), "checked", instance)
    assert not result.success
    assert set(materialisations(result)) == {"checked/movies"}
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evals["not_null"].severity == dg.AssetCheckSeverity.ERROR
    # the step after it, run alone (`run --select`, one asset from the UI), took the refused
    # table as its upstream's latest and ran on it with success
    alone = run_job(defs_for(p, tmp_path / "s"), "checked", instance,
                    selection=[dg.AssetKey(["checked", "stamped"])])
    assert not alone.success
    assert f"upstream asset 'checked/movies' (step 'movies') made its table in session " \
           f"{result.run_id}, but the step then failed (blocking check(s) failed: not_null, " \
           "unique, accepted_values, expression_2, freshness), so the table is not passed on" \
           in failure_description(alone)
    assert set(materialisations(alone)) == set()
    # once the table passes its checks, the step alone reads it again
    write(workdir / "checked.yaml", CHECKED.format(blocking="false"))
    assert run_job(defs_for(p, tmp_path / "s"), "checked", instance,
                   selection=[dg.AssetKey(["checked", "movies"])]).success
    again = run_job(defs_for(p, tmp_path / "s"), "checked", instance,
                    selection=[dg.AssetKey(["checked", "stamped"])])
    assert again.success, failure_description(again)


def test_checks_on_a_writer_are_rejected(tmp_path: Path) -> None:
    from osiris_dagster.oml import validate_pipeline

    text = ("oml_version: \"0.1.0\"\nname: w\nx-dagster:\n  steps:\n    w:\n      checks: "
            "{not_null: [a]}\nsteps:\n  - {id: r, component: duckdb.processor, "
            "mode: transform, config: {query: 'SELECT 1 AS a'}}\n"
            "  - {id: w, component: filesystem.csv_writer, mode: write, config: {path: o.csv}}\n")
    result = validate_pipeline(write(tmp_path / "w.yaml", text))
    assert [d.line for d in result.errors] == [6]
    assert "writer produces no table" in str(result.errors[0])


def test_external_upstream_appears_in_lineage(workdir: Path, tmp_path: Path) -> None:
    p = write(workdir / "checked.yaml", CHECKED.format(blocking="false"))
    defs = defs_for(p, tmp_path / "s")
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key.path[-1] == "movies")
    assert dg.AssetKey(["raw", "movie_feed"]) in {d.asset_key for d in spec.deps}


def test_schema_drift_is_reported_and_strict_fails(workdir: Path, tmp_path: Path,
                                                    instance: dg.DagsterInstance) -> None:
    # a parameter is a value, never SQL: the column list changes in the pipeline file itself
    base = ("oml_version: \"0.1.0\"\nname: drift\nx-dagster:\n"
            "  steps:\n    gen: {{schema: {mode}}}\nsteps:\n  - id: gen\n"
            "    component: duckdb.processor\n    mode: transform\n    config: {{query: "
            "\"SELECT 1 AS a, 'x' AS b{extra}\"}}\n")
    p = write(workdir / "drift.yaml", base.format(mode="warn", extra=""))
    assert run_job(defs_for(p, tmp_path / "s"), "drift", instance).success
    p.write_text(base.format(mode="warn", extra=", 2.5 AS c"))
    second = run_job(defs_for(p, tmp_path / "s"), "drift", instance)
    assert second.success
    md = materialisations(second)["drift/gen"]
    assert "added c (DECIMAL(2,1))" in md["osiris/schema_changes"].value
    p.write_text(base.format(mode="strict", extra=", 'y' AS a2"))
    strict = run_job(defs_for(p, tmp_path / "s"), "drift", instance)
    assert not strict.success
    message = failure_description(strict)
    assert "schema: strict" in message and "removed c" in message and "added a2" in message
    assert "To accept the change, materialise the step once with x-dagster.steps.gen.schema " \
           "set to `warn`" in message


DRIFT3 = ("oml_version: \"0.1.0\"\nname: drift3\nsteps:\n"
          "  - {{id: a, component: duckdb.processor, mode: transform, "
          "config: {{query: \"SELECT 1 AS x{extra}\"}}}}\n"
          "  - {{id: b, component: duckdb.processor, mode: transform, "
          "config: {{query: \"SELECT * FROM input_df\"}}}}\n"
          "  - {{id: c, component: duckdb.processor, mode: transform, "
          "config: {{query: \"SELECT *, 2 AS y FROM input_df\"}}}}\n")


def test_schema_drift_on_a_first_run_reports_nothing(workdir: Path, tmp_path: Path,
                                                     instance: dg.DagsterInstance) -> None:
    p = write(workdir / "drift3.yaml", DRIFT3.format(extra=""))
    result = run_job(defs_for(p, tmp_path / "s"), "drift3", instance)
    assert result.success
    assert not any("osiris/schema_changes" in md for md in materialisations(result).values())


def test_schema_drift_of_every_step_against_its_own_previous_materialisation(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    p = write(workdir / "drift3.yaml", DRIFT3.format(extra=""))
    assert run_job(defs_for(p, tmp_path / "s"), "drift3", instance).success
    p.write_text(DRIFT3.format(extra=", 'new' AS z"))
    second = run_job(defs_for(p, tmp_path / "s"), "drift3", instance)
    assert second.success
    md = materialisations(second)
    for step in ("a", "b", "c"):
        assert md[f"drift3/{step}"]["osiris/schema_changes"].value == "- added z (VARCHAR)"


def test_schema_drift_compares_with_a_materialisation_made_while_the_run_went_on(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """Another run materialises step c while this run works on a and b: c's table replaces
    that one, so its change is judged against it, not against what c was when the run began."""
    text = DRIFT3.format(extra="").replace(
        'name: drift3\n', 'name: drift3\nx-dagster:\n  steps:\n    c: {deps: ["other/run"]}\n')
    p = write(workdir / "drift3.yaml", text)
    sessions = tmp_path / "s"
    assert run_job(defs_for(p, sessions), "drift3", instance).success

    @dg.asset(key=["other", "run"], deps=[dg.AssetKey(["drift3", "b"])])
    def other_run(context) -> dg.MaterializeResult:  # noqa: ANN001 (dagster reads it)
        context.instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=dg.AssetKey(["drift3", "c"]),
            metadata={"dagster/column_schema": dg.TableSchema(columns=[
                dg.TableColumn("x", "INTEGER"), dg.TableColumn("y", "INTEGER"),
                dg.TableColumn("z", "VARCHAR")])}))
        return dg.MaterializeResult()

    defs = dg.Definitions.merge(defs_for(p, sessions), dg.Definitions(
        assets=[other_run], jobs=[dg.define_asset_job("with_other", selection="*")]))
    result = defs.resolve_job_def("with_other").execute_in_process(instance=instance)
    assert result.success, failure_description(result)
    md = materialisations(result)
    assert "osiris/schema_changes" not in md["drift3/b"]
    assert md["drift3/c"]["osiris/schema_changes"].value == "- removed z (VARCHAR)"


class PrefixTranslator(OsirisTranslator):
    def get_asset_spec(self, data: OsirisStepData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        return spec.replace_attributes(key=spec.key.with_prefix("warehouse"),
                                       group_name="etl").merge_attributes(tags={"team": "bi"})


def test_custom_translator_is_used_for_keys_and_dependencies(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    p = write(workdir / "checked.yaml", CHECKED.format(blocking="false"))
    one = build_osiris_assets(p, translator=PrefixTranslator())
    specs = {s.key: s for a in one.assets for s in a.specs}
    stamped = specs[dg.AssetKey(["warehouse", "checked", "stamped"])]
    assert {d.asset_key for d in stamped.deps} == {dg.AssetKey(["warehouse", "checked",
                                                                "movies"])}
    assert stamped.group_name == "etl" and stamped.tags["team"] == "bi"
    defs = build_definitions([p], sessions_dir=str(tmp_path / "s"),
                             translator=PrefixTranslator())
    result = run_job(defs, "checked", instance)
    assert result.success, failure_description(result)
    assert "warehouse/checked/stamped" in materialisations(result)


@pytest.mark.parametrize("block, message", [
    ("checks: {not_null: a}", "must be a list of column names"),
    ("checks: {row_count: {min: x}}", "must be {min: N, max: N}"),
    ("checks: {nope: [a]}", "is not a check"),
    ("schema: loose", "must be 'strict' or 'warn'"),
    ("deps: [3]", "must be a list of asset keys"),
])
def test_invalid_step_settings(tmp_path: Path, block: str, message: str) -> None:
    from osiris_dagster.oml import validate_pipeline

    text = ("oml_version: \"0.1.0\"\nname: x\nx-dagster:\n  steps:\n    a:\n      " + block +
            "\nsteps:\n  - {id: a, component: duckdb.processor, mode: transform, "
            "config: {query: 'SELECT 1'}}\n")
    result = validate_pipeline(write(tmp_path / "x.yaml", text))
    assert result.errors and message in str(result.errors[0]), [str(d) for d in result.errors]


SNEAKY_CHECKS = """\
oml_version: "0.1.0"
name: sneaky
x-dagster:
  steps:
    movies:
      checks:
        expression:
          - "true)); DROP TABLE session.main.other; SELECT ((true"
          - "(SELECT count(*) FROM read_text('/etc/hostname')) > 0"
          - "movie_id > 0"
          - "(SELECT count(*) FROM session.main.other) > 0"
          - "NOT EXISTS (WITH a AS (FROM df_other), df_other AS (SELECT 1) SELECT 1 FROM a)"
          - "NOT EXISTS (SELECT 1 FROM __osiris_checked_table)"
steps:
  - id: movies
    component: filesystem.csv_extractor
    mode: read
    config: {path: data/movies.csv}
  - id: other
    component: duckdb.processor
    mode: transform
    needs: []
    config: {query: "SELECT 1 AS one"}
"""


def test_check_expressions_run_sealed_one_condition_each(tmp_path: Path) -> None:
    """Where the run meets an expression `validate` did not see (the checks module used on its
    own), it refuses the same, on a sealed connection: nothing else runs."""
    from osiris_dagster.core.settings import Settings
    from osiris_dagster.runtime.checks import run_checks, specs_from_config
    from osiris_dagster.runtime.session import Session
    from osiris_dagster.runtime.workspace import StepWorkspace

    session = Session(Settings.from_env(tmp_path / "s"), "s1").ensure()
    with StepWorkspace(session, pipeline_name="p", step_id="other", output_table="other") as ws:
        ws.create_output("SELECT 1 AS one")
    expressions = [line.strip()[3:-1] for line in SNEAKY_CHECKS.splitlines()
                   if line.strip().startswith('- "')]
    with StepWorkspace(session, pipeline_name="p", step_id="movies",
                       output_table="movies") as ws:
        ws.create_output("SELECT 1 AS movie_id")
        ws.seal_sql_access()
        outcomes = {o.spec.name: o for o in run_checks(
            ws.con, ws.output_relation, specs_from_config({"expression": expressions}))}
        assert ws.con.execute("SELECT * FROM session.main.other").fetchall() == [(1,)]
    assert not outcomes["expression"].passed
    assert "not several statements" in outcomes["expression"].detail
    assert "calls table function read_text()" in outcomes["expression_2"].detail
    assert outcomes["expression_3"].passed
    assert "reads 'session.main.other'" in outcomes["expression_4"].detail
    assert "reads 'df_other'" in outcomes["expression_5"].detail


def test_validate_refuses_check_expressions_that_reach_past_the_table(tmp_path: Path) -> None:
    """A check expression is one condition on the step's own columns, as DuckDB's parser reads
    it: another step's table, a file or SQL text, or a second statement is refused before any
    run, naming the line (before: the first two ran, the file read only refused by DuckDB)."""
    from osiris_dagster.oml import validate_pipeline

    errors = [str(d) for d in validate_pipeline(write(tmp_path / "s.yaml", SNEAKY_CHECKS)).errors]
    assert len(errors) == 5, errors
    assert all(":7: step 'movies': x-dagster.steps.movies.checks.expression refused" in e
               for e in errors), errors
    assert "not several statements" in errors[0]
    assert "calls table function read_text()" in errors[1]
    assert "reads 'session.main.other'" in errors[2]
    assert "reads 'df_other'" in errors[3]  # a CTE listed later is not in scope there
    assert "reads '__osiris_checked_table'" in errors[4]


def test_check_sample_and_preview_are_masked_tables(workdir: Path, tmp_path: Path,
                                                    instance: dg.DagsterInstance,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection's secret that turns up in the data is masked in the preview and in a
    failing check's sample (the sample was not masked when it was markdown)."""
    secret = "Zq7-sample-secret-41"
    monkeypatch.setenv("OSIRIS_SAMPLE_SECRET", secret)
    write(workdir / "data" / "leaky.csv", f"id,note\n1,{secret}\n2,\n")
    conns = write(workdir / "osiris_connections.yaml", """\
version: 1
connections:
  filesystem:
    local: {base_dir: data, password: "${OSIRIS_SAMPLE_SECRET}"}
""")
    p = write(workdir / "leaky.yaml", """\
oml_version: "0.1.0"
name: leaky
x-dagster:
  steps:
    rows:
      checks:
        expression: "note IS NULL"
steps:
  - id: rows
    component: filesystem.csv_extractor
    mode: read
    config: {connection: "@filesystem.local", path: leaky.csv}
""")
    result = run_job(defs_for(p, tmp_path / "s", conns), "leaky", instance)
    assert result.success, failure_description(result)
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert table_rows(check.metadata["sample"]) == [{"id": 1, "note": MASK}]
    preview = materialisations(result)["leaky/rows"]["preview"]
    assert table_rows(preview) == [{"id": 1, "note": MASK}, {"id": 2, "note": None}]


def test_a_checks_detail_is_masked(workdir: Path, tmp_path: Path,
                                   instance: dg.DagsterInstance,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB quotes the value it could not convert: a check that cannot run on a sensitive
    parameter's value must not show that value in its `detail`."""
    secret = "Zq7-detail-secret-58"
    monkeypatch.setenv("OSIRIS_PARAM_WHO", secret)
    p = write(workdir / "detail.yaml", """\
oml_version: "0.1.0"
name: detail
params:
  who: {default: nobody-at-all, sensitive: true}
x-dagster:
  steps:
    rows:
      checks:
        expression: "id = CAST(${params.who} AS INTEGER)"
steps:
  - id: rows
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT 1 AS id"}
""")
    result = run_job(defs_for(p, tmp_path / "s"), "detail", instance)
    assert result.success, failure_description(result)
    (check,) = result.get_asset_check_evaluations()
    detail = check.metadata["detail"].value
    assert not check.passed and "could not run" in detail
    assert secret not in detail and MASK in detail


CHECKS_IN_A_PROCESS = textwrap.dedent("""
    import duckdb
    from osiris_dagster.runtime.checks import CheckSpec, run_checks

    def threads():  # each DuckDB instance starts its worker threads when it opens
        with open("/proc/self/status") as fh:
            return int(next(l for l in fh if l.startswith("Threads:")).split()[1])

    con = duckdb.connect(":memory:")
    con.execute("CREATE TABLE t AS SELECT range AS x FROM range(3)")
    before = threads()
    [outcome] = run_checks(con, "t", [CheckSpec("expression", "expression", "x >= 0")])
    checked = threads()
    extra = duckdb.connect(":memory:")
    print(outcome.passed, threads() > checked, checked == before)
""")


def test_an_expression_check_parses_with_the_steps_connection() -> None:
    """Splitting an expression into statements used DuckDB's default instance, opened for the
    purpose (~12 ms, its memory and threads for the life of the process)."""
    done = subprocess.run([sys.executable, "-c", CHECKS_IN_A_PROCESS],
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["True", "True", "True"], done.stderr


def test_intervals_past_pythons_timedelta_are_previewed_and_sampled_as_text(
        tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """DuckDB keeps INTERVAL 2147483647 DAYS; Python's timedelta does not (999,999,999 days at
    most): the preview and a failing check's sample raised OverflowError, which failed the step
    after its table was written."""
    p = write(tmp_path / "iv.yaml", """\
oml_version: "0.1.0"
name: iv
x-dagster:
  steps:
    make:
      checks:
        expression: "n > 5"
steps:
  - id: make
    component: duckdb.processor
    mode: transform
    config:
      query: >-
        SELECT 1 AS n, INTERVAL 2147483647 DAYS AS iv, [INTERVAL '178000000 years'] AS ivs,
        INTERVAL 1 DAY AS small, MAP {DATE '2024-01-01': 1} AS by_date,
        MAP {1.5::DECIMAL(3,1): 'x'} AS by_decimal
""")
    result = run_job(defs_for(p, tmp_path / "s"), "iv", instance)
    assert result.success, failure_description(result)
    (row,) = table_rows(materialisations(result)["iv/make"]["preview"])
    assert row["iv"] == "2147483647 days" and row["small"] == "1 day"
    assert row["ivs"] == "[178000000 years]"
    # a MAP keyed by dates or decimals failed json.dumps (second review)
    assert row["by_date"] == '{"2024-01-01": 1}' and row["by_decimal"] == '{"1.5": "x"}'
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and table_rows(check.metadata["sample"])[0]["iv"] == "2147483647 days"
