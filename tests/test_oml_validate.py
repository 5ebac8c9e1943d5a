"""OML validation rules: every problem is reported with its line (and step where one applies)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from osiris_dagster.core.errors import PipelineInvalidError
from osiris_dagster.oml import load_pipeline, validate_pipeline
from osiris_dagster.oml.diagnostics import Diagnostic
from osiris_dagster.oml.validate import ValidationResult

HEAD = 'oml_version: "0.1.0"\nname: test-pipeline\nsteps:\n'  # steps start on line 4


def write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def check(tmp_path: Path, text: str, **kwargs) -> ValidationResult:
    kwargs.setdefault("env", {})
    return validate_pipeline(write(tmp_path, text), **kwargs)


MACROS = {
    "TP": "component: duckdb.processor, mode: transform, config: {query: SELECT 1}",
    "CSV_IN": "component: filesystem.csv_extractor, mode: read",
    "CSV_OUT": "component: filesystem.csv_writer, mode: write",
}


def steps(body: str) -> str:
    """HEAD + the dedented step list (its first line is line 4 of the file); expands MACROS."""
    text = textwrap.dedent(body).lstrip("\n")
    for name, value in MACROS.items():
        text = re.sub(rf"\b{name}\b", value, text)
    return HEAD + text


def errors_at(result: ValidationResult, line: int) -> list[Diagnostic]:
    return [d for d in result.errors if d.line == line]


def one_error(result: ValidationResult, line: int, *fragments: str,
              step: str | None = None) -> Diagnostic:
    """Exactly one error in the result, on `line`, naming every fragment."""
    assert len(result.errors) == 1, [str(d) for d in result.errors]
    d = result.errors[0]
    assert d.line == line, str(d)
    for f in fragments:
        assert f in d.message, (f, str(d))
    assert d.step == step, str(d)
    assert result.pipeline is None
    return d


# --- the published Osiris example --------------------------------------------------------------
DEMO = """\
oml_version: "0.1.0"
name: mysql-duckdb-supabase-demo
description: Movies from MySQL, director stats in DuckDB, result to Supabase
steps:
  - id: extract-movies
    component: mysql.extractor
    mode: read
    config:
      connection: "@mysql.db_movies"
      query: |
        SELECT m.id, m.title, m.director_id, d.name AS director_name
        FROM movies m JOIN directors d ON m.director_id = d.id
  - id: compute-director-stats
    component: duckdb.processor
    mode: transform
    needs: [extract-movies]
    config:
      query: |
        SELECT director_id, director_name, COUNT(*) AS movie_count
        FROM df_extract_movies
        GROUP BY director_id, director_name
  - id: write-director-stats
    component: supabase.writer
    mode: write
    needs: [compute-director-stats]
    config:
      connection: "@supabase.main"
      table: director_stats_replace
      write_mode: replace
      primary_key: [director_id]
      create_if_missing: true
"""


def test_published_demo_pipeline_is_valid(tmp_path):
    result = check(tmp_path, DEMO)
    assert result.errors == []
    assert result.warnings == []
    assert result.ok
    p = result.pipeline
    assert p is not None
    assert p.name == "mysql-duckdb-supabase-demo"
    assert p.oml_version == "0.1.0"
    assert [s.id for s in p.steps] == ["extract-movies", "compute-director-stats",
                                       "write-director-stats"]
    assert [s.component for s in p.steps] == ["mysql.extractor", "duckdb.processor",
                                              "supabase.writer"]
    assert [s.needs for s in p.steps] == [(), ("extract-movies",), ("compute-director-stats",)]
    assert p.steps[0].connection_ref == "@mysql.db_movies"
    assert p.steps[2].config["primary_key"] == ("director_id",)
    assert p.steps[0].line == 5
    assert p.steps[2].line == 22


def test_load_pipeline_raises_with_every_error(tmp_path):
    path = write(tmp_path, steps("""
        - id: a
          component: nope.extractor
          mode: read
        - id: b
          component: duckdb.processor
          mode: read
          config: {query: SELECT 1}
    """))
    with pytest.raises(PipelineInvalidError) as info:
        load_pipeline(path, env={})
    assert len(info.value.diagnostics) == 2
    text = str(info.value)
    assert f"{path}:5: step 'a': unknown component 'nope.extractor'" in text
    assert f"{path}:9: step 'b': mode 'read' is not allowed" in text


# --- all nine components with realistic configs -----------------------------------------------
SOURCE = """\
  - id: source
    component: filesystem.csv_extractor
    mode: read
    config:
      path: data/movies.csv
"""

COMPONENT_STEPS = {
    "duckdb.processor": """\
  - id: subject
    component: duckdb.processor
    mode: transform
    needs: [source]
    config:
      query: SELECT director_id, COUNT(*) AS n FROM df_source GROUP BY director_id
""",
    "filesystem.csv_extractor": """\
  - id: subject
    component: filesystem.csv_extractor
    mode: read
    needs: []
    config:
      connection: "@filesystem.local"
      path: data/directors.csv
      delimiter: ";"
      encoding: utf-8
      header: true
      skip_rows: 0
      chunk_size: 5000
""",
    "filesystem.csv_writer": """\
  - id: subject
    component: filesystem.csv_writer
    mode: write
    needs: [source]
    config:
      path: ./output/movies.csv
      delimiter: ","
      header: true
      encoding: utf-8
      newline: crlf
""",
    "graphql.extractor": """\
  - id: subject
    component: graphql.extractor
    mode: read
    needs: []
    config:
      connection: "@graphql.github"
      endpoint: https://api.github.com/graphql
      query: "query($after: String) { viewer { repositories(after: $after) { nodes { id } } } }"
      auth_type: bearer
      data_path: data.viewer.repositories.nodes
      pagination_enabled: true
      pagination_path: data.viewer.repositories.pageInfo
      max_pages: 10
      timeout: 60
""",
    "mysql.extractor": """\
  - id: subject
    component: mysql.extractor
    mode: read
    needs: []
    config:
      connection: "@mysql.db_movies"
      query: SELECT * FROM actors
""",
    "mysql.writer": """\
  - id: subject
    component: mysql.writer
    mode: write
    needs: [source]
    config:
      connection: "@mysql.warehouse"
      table: movies_copy
      mode: upsert
      upsert_keys: [id]
      batch_size: 500
""",
    "posthog.extractor": """\
  - id: subject
    component: posthog.extractor
    mode: read
    needs: []
    config:
      connection: "@posthog.main"
      data_type: events
      event_types: [$pageview, $autocapture]
      lookback_window_minutes: 15
      page_size: 1000
""",
    "supabase.extractor": """\
  - id: subject
    component: supabase.extractor
    mode: read
    needs: []
    config:
      connection: "@supabase.main"
      table: movies
      select: "id,title"
      limit: 500
""",
    "supabase.writer": """\
  - id: subject
    component: supabase.writer
    mode: write
    needs: [source]
    config:
      connection: "@supabase.main"
      table: director_stats_append
      write_mode: upsert
      primary_key: [director_id]
      create_if_missing: true
      batch_size: 200
""",
}


@pytest.mark.parametrize("component", sorted(COMPONENT_STEPS))
def test_every_component_validates_with_a_realistic_config(tmp_path, component):
    result = check(tmp_path, HEAD + SOURCE + COMPONENT_STEPS[component])
    assert [str(d) for d in result.errors] == []
    assert [str(d) for d in result.warnings] == []
    assert result.pipeline is not None
    assert result.pipeline.step("subject").component == component


def test_nine_components_are_covered():
    from osiris_dagster.oml.specs import SPECS

    assert set(COMPONENT_STEPS) == set(SPECS)
    assert len(SPECS) == 9


def test_mysql_extractor_with_connection_needs_no_user_or_password(tmp_path):
    result = check(tmp_path, steps("""
        - id: extract-movies
          component: mysql.extractor
          mode: read
          config:
            connection: "@mysql.db_movies"
            query: SELECT * FROM movies
    """))
    assert result.errors == []
    assert result.pipeline.steps[0].config == {"connection": "@mysql.db_movies",
                                               "query": "SELECT * FROM movies"}


def test_mysql_extractor_offset_on_a_table_is_refused_at_validate(tmp_path):
    """`run` refused it (a table's row order is arbitrary) while `validate` passed it."""
    result = check(tmp_path, steps("""
        - id: extract-movies
          component: mysql.extractor
          mode: read
          config:
            connection: "@mysql.db_movies"
            table: movies
            offset: 1
    """))
    (error,) = result.errors
    assert error.message.startswith("`offset` 1 on `table` movies: a table is read in no set "
                                    "order") and "ORDER BY" in error.message
    assert check(tmp_path, steps("""
        - id: extract-movies
          component: mysql.extractor
          mode: read
          config:
            connection: "@mysql.db_movies"
            query: SELECT * FROM movies ORDER BY id
            offset: 1
    """)).errors == []


# --- top-level keys -----------------------------------------------------------------------------
def test_missing_required_top_level_keys_all_reported(tmp_path):
    result = check(tmp_path, "description: nothing else\n")
    messages = sorted(d.message for d in result.errors)
    assert len(messages) == 3
    assert all(d.line == 1 and d.step is None for d in result.errors)
    assert any("'oml_version'" in m for m in messages)
    assert any("'name'" in m for m in messages)
    assert any("'steps'" in m for m in messages)


@pytest.mark.parametrize("missing", ["oml_version", "name", "steps"])
def test_each_required_key_is_named(tmp_path, missing):
    lines = {"oml_version": 'oml_version: "0.1.0"', "name": "name: p",
             "steps": "steps:\n  - {id: a, component: duckdb.processor, mode: transform, "
                      "config: {query: SELECT 1}}"}
    text = "\n".join(v for k, v in lines.items() if k != missing) + "\n"
    result = check(tmp_path, text)
    d = one_error(result, 1, f"missing required key '{missing}'")
    assert d.step is None


def test_steps_must_be_a_non_empty_list(tmp_path):
    result = check(tmp_path, 'oml_version: "0.1.0"\nname: p\nsteps: []\n')
    one_error(result, 3, "'steps' must be a non-empty list")


def test_unquoted_oml_version_is_an_error(tmp_path):
    result = check(tmp_path, "name: p\noml_version: 0.1\nsteps:\n"
                             "  - {id: a, component: duckdb.processor, mode: transform, "
                             "config: {query: SELECT 1}}\n")
    one_error(result, 2, "'oml_version' must be a string")


def test_oml_version_not_starting_with_zero_is_an_error(tmp_path):
    result = check(tmp_path, 'name: p\noml_version: "1.0.0"\nsteps:\n'
                             "  - {id: a, component: duckdb.processor, mode: transform, "
                             "config: {query: SELECT 1}}\n")
    one_error(result, 2, "1.0.0")


def test_other_zero_oml_version_is_only_a_warning(tmp_path):
    result = check(tmp_path, 'name: p\noml_version: "0.2.0"\nsteps:\n'
                             "  - {id: a, component: duckdb.processor, mode: transform, "
                             "config: {query: SELECT 1}}\n")
    assert result.errors == []
    assert result.pipeline is not None
    assert len(result.warnings) == 1
    assert result.warnings[0].line == 2
    assert "0.2.0" in result.warnings[0].message


@pytest.mark.parametrize("key", ["version", "connectors", "tasks", "outputs"])
def test_forbidden_legacy_top_level_keys(tmp_path, key):
    result = check(tmp_path, steps("""
        - {id: a, TP}
    """) + f"{key}: something\n")
    d = one_error(result, 5, f"'{key}'", "legacy")
    assert d.step is None


def test_x_keys_are_silent_and_unknown_top_level_keys_warn(tmp_path):
    result = check(tmp_path, steps("""
        - {id: a, TP}
    """) + "x-team: {anything: [1, 2]}\nx-other: 3\nfoo: bar\n")
    assert result.errors == []
    assert len(result.warnings) == 1
    w = result.warnings[0]
    assert w.line == 7
    assert "foo" in w.message
    assert result.pipeline is not None


def test_name_must_be_a_non_empty_string(tmp_path):
    result = check(tmp_path, 'oml_version: "0.1.0"\nname: "  "\nsteps:\n'
                             "  - {id: a, component: duckdb.processor, mode: transform, "
                             "config: {query: SELECT 1}}\n")
    one_error(result, 2, "'name'")


# --- steps and dependencies ---------------------------------------------------------------------
def test_duplicate_step_id(tmp_path):
    result = check(tmp_path, steps("""
        - id: extract
          component: filesystem.csv_extractor
          mode: read
          config: {path: a.csv}
        - id: extract
          component: filesystem.csv_extractor
          mode: read
          config: {path: b.csv}
    """))
    d = one_error(result, 8, "duplicate step id", "line 4", step="extract")
    assert str(d).endswith(":8: step 'extract': duplicate step id (first defined on line 4)")


def test_step_ids_that_become_one_name(tmp_path):
    """Ids that differ only in case or in characters other than letters, digits and '_' give
    one Dagster op name (`coll__a_b`), state directory or (ignoring case) file name: an error
    on the later id naming both ids and lines, never a Dagster traceback at run time."""
    result = check(tmp_path, steps("""
        - {id: a-b, TP, needs: []}
        - {id: a_b, TP, needs: []}
        - {id: A-B, TP, needs: []}
        - {id: x.y, TP, needs: []}
        - {id: 1a, TP, needs: []}
        - {id: _1a, TP, needs: []}
        - {id: ok, TP, needs: [a-b, a_b, A-B]}
    """))
    assert [(d.line, d.step) for d in result.errors] == [
        (5, "a_b"), (6, "A-B"), (9, "_1a")]
    assert str(result.errors[0]).endswith(
        ":5: step 'a_b': step id 'a_b' and step id 'a-b' (line 4) become the same name 'a_b' "
        "in Dagster and in file names: ids must differ in more than case and characters "
        "other than letters, digits and '_'")
    assert "step id 'A-B' and step id 'a-b' (line 4) become the names 'A_B' and 'a_b', the " \
        "same ignoring case, in Dagster" in result.errors[1].message
    assert "'_1a' and step id '1a' (line 8) become the same name '_1a'" in \
        result.errors[2].message


def test_every_id_pair_validate_accepts_gets_its_own_names(tmp_path):
    """The names compared are those the Dagster layer and the session derive from an id."""
    from osiris_dagster.core.naming import dagster_name, safe_dir_name, sanitise
    ids = ["a-b", "a_b", "A-B", "a.b", "ab", "1a", "_1a", ".x", "_.x", "x y", "x_y", "é", "_"]
    for a in ids:
        for b in ids:
            if a >= b:
                continue
            result = check(tmp_path, steps(f"""
                - {{id: "{a}", TP, needs: []}}
                - {{id: "{b}", TP, needs: []}}
            """))
            if not result.errors:
                assert dagster_name("p", a) != dagster_name("p", b)
                assert sanitise(a).lower() != sanitise(b).lower()
                assert safe_dir_name(a).lower() != safe_dir_name(b).lower()
            else:
                assert [d.line for d in result.errors] == [5], (a, b)


def test_run_refuses_step_ids_that_become_one_name(tmp_path):
    path = write(tmp_path, steps("""
        - {id: a-b, TP, needs: []}
        - {id: a_b, TP, needs: []}
    """))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OSIRIS_") and k != "DAGSTER_HOME"}
    done = subprocess.run([sys.executable, "-m", "osiris_dagster.cli", "run", str(path)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "step 'a_b': step id 'a_b' and step id 'a-b' (line 4)" in done.stderr
    assert "Traceback" not in done.stderr and "DagsterInvalidDefinitionError" not in done.stderr


def test_duplicate_yaml_keys_top_level_and_in_config(tmp_path):
    result = check(tmp_path, steps("""
        - id: t
          component: duckdb.processor
          mode: transform
          config:
            query: SELECT 1
            query: SELECT 2
    """) + "name: again\n")
    assert sorted((d.line, d.message.split("'")[1]) for d in result.errors) == [
        (9, "query"), (10, "name")]
    assert all("duplicate key" in d.message for d in result.errors)


MERGE_DEFAULTS = """\
oml_version: "0.1.0"
name: merged
x-defaults:
  proc: &proc
    component: duckdb.processor
    mode: transform
  sql: &sql {query: "SELECT 1 AS a"}
  more: &more {query: "SELECT 2 AS b"}
steps:
"""


def test_merge_key_with_an_override_is_not_a_duplicate(tmp_path):
    result = check(tmp_path, MERGE_DEFAULTS + """\
  - id: first
    <<: *proc
    mode: transform
    config:
      <<: *sql
      query: "SELECT 42 AS answer"
""")
    assert result.errors == [], [str(d) for d in result.errors]
    step = result.pipeline.steps[0]
    assert step.component == "duckdb.processor"
    assert step.config["query"] == "SELECT 42 AS answer"


def test_merged_list_of_maps_and_override_are_not_duplicates(tmp_path):
    text = MERGE_DEFAULTS + """\
  - id: listed
    <<: *proc
    config:
      <<: [*sql, *more]
  - id: overridden
    <<: *proc
    config:
      <<: [*more, *sql]
      query: "SELECT 3 AS c"
"""
    result = check(tmp_path, text)
    assert result.errors == [], [str(d) for d in result.errors]
    listed, overridden = result.pipeline.steps
    assert listed.config["query"] == "SELECT 1 AS a"  # the first map in the list wins
    assert overridden.config["query"] == "SELECT 3 AS c"
    # two merged maps give 'query' and the step sets none: PyYAML (Osiris) may differ
    assert [(d.line, d.message.split("'")[1]) for d in result.warnings
            if "merged map" in d.message] == [(13, "query")]


def test_real_duplicates_next_to_a_merge_key_are_still_reported(tmp_path):
    result = check(tmp_path, MERGE_DEFAULTS + """\
  - id: twice
    <<: *proc
    config:
      <<: *sql
      query: "SELECT 3"
      query: "SELECT 4"
""")
    assert [(d.line, d.message) for d in result.errors] == [
        (15, "duplicate key 'query' (the earlier value would be lost)")]


def test_duplicate_inside_an_anchored_map_is_reported_once(tmp_path):
    text = MERGE_DEFAULTS.replace('{query: "SELECT 1 AS a"}',
                                  '{query: "SELECT 0", query: "SELECT 1 AS a"}') + """\
  - id: one
    <<: *proc
    config:
      <<: *sql
  - id: two
    <<: *proc
    config:
      <<: *sql
"""
    result = check(tmp_path, text)
    assert [(d.line, d.message) for d in result.errors] == [
        (7, "duplicate key 'query' (the earlier value would be lost)")]


def test_needs_unknown_step(tmp_path):
    result = check(tmp_path, steps("""
        - id: a
          component: filesystem.csv_extractor
          mode: read
          config: {path: a.csv}
        - id: b
          component: filesystem.csv_writer
          mode: write
          needs:
            - a
            - ghost
          config: {path: out.csv}
    """))
    one_error(result, 13, "unknown step 'ghost'", step="b")


def test_self_dependency(tmp_path):
    result = check(tmp_path, steps("""
        - id: a
          component: duckdb.processor
          mode: transform
          needs: [a]
          config: {query: SELECT 1}
    """))
    one_error(result, 7, "itself", step="a")


def test_two_step_cycle(tmp_path):
    result = check(tmp_path, steps("""
        - id: a
          component: duckdb.processor
          mode: transform
          needs: [b]
          config: {query: SELECT * FROM df_b}
        - id: b
          component: duckdb.processor
          mode: transform
          needs: [a]
          config: {query: SELECT * FROM df_a}
    """))
    assert len(result.errors) == 1, [str(d) for d in result.errors]
    d = result.errors[0]
    assert "cycle" in d.message
    assert "a -> b -> a" in d.message or "b -> a -> b" in d.message
    assert d.line in (4, 9)
    assert d.step in ("a", "b")
    assert result.pipeline is None


def test_three_step_cycle(tmp_path):
    result = check(tmp_path, steps("""
        - {id: a, needs: [c], TP}
        - {id: b, needs: [a], TP}
        - {id: c, needs: [b], TP}
        - {id: d, needs: [c], TP}
    """))
    assert len(result.errors) == 1, [str(d) for d in result.errors]
    d = result.errors[0]
    assert "cycle" in d.message
    path = d.message.split("cycle: ", 1)[1].split(" -> ")
    assert path[0] == path[-1]
    assert sorted(path[:-1]) == ["a", "b", "c"]
    assert d.line == {"a": 4, "b": 5, "c": 6}[d.step]


def test_cycle_through_an_implicit_dependency(tmp_path):
    # b has no `needs`, so it implicitly needs a; a needs b -> a cycle
    result = check(tmp_path, steps("""
        - {id: a, needs: [b], TP}
        - {id: b, TP}
    """))
    assert len(result.errors) == 1, [str(d) for d in result.errors]
    assert "cycle" in result.errors[0].message


def test_cycle_reported_together_with_errors_in_other_steps(tmp_path):
    # "report ALL errors at once": an invalid step elsewhere must not hide the cycle
    result = check(tmp_path, steps("""
        - {id: a, needs: [b], TP}
        - {id: b, needs: [a], TP}
        - {id: c, component: no.such, mode: read, needs: [], config: {}}
    """))
    messages = [str(d) for d in result.errors]
    assert any(d.line == 6 and "unknown component" in d.message for d in result.errors), messages
    assert any("cycle" in d.message for d in result.errors), messages
    assert len(result.errors) == 2, messages


def test_implicit_needs_on_previous_step(tmp_path):
    result = check(tmp_path, steps("""
        - {id: extract-movies, CSV_IN, config: {path: m.csv}}
        - {id: extract-directors, CSV_IN, needs: [], config: {path: d.csv}}
        - {id: write-directors, CSV_OUT, config: {path: o.csv}}
        - {id: extract-reviews, CSV_IN, config: {path: r.csv}}
        - id: join
          component: duckdb.processor
          mode: transform
          needs: [extract-movies, extract-directors]
          config: {query: SELECT 1}
    """))
    assert result.errors == []
    s = result.pipeline.steps
    assert [x.needs for x in s] == [(), (), ("extract-directors",), ("write-directors",),
                                    ("extract-movies", "extract-directors")]
    assert [x.implicit_needs for x in s] == [True, False, True, True, False]


@pytest.mark.parametrize("body, line, fragment", [
    # the first step has no previous step to depend on
    ("- {id: save, CSV_OUT, config: {path: o.csv}}\n", 4, "it is the first step"),
    ("- {id: read, CSV_IN, config: {path: i.csv}}\n"
     "- {id: save, CSV_OUT, needs: [], config: {path: o.csv}}\n", 5, "needs: []"),
    # without needs a step depends on the previous one, here another writer (no table)
    ("- {id: read, CSV_IN, config: {path: i.csv}}\n"
     "- {id: save, CSV_OUT, config: {path: o.csv}}\n"
     "- {id: save-again, CSV_OUT, config: {path: p.csv}}\n", 6, "'save' (a writer"),
    ("- {id: read, CSV_IN, config: {path: i.csv}}\n"
     "- {id: save, CSV_OUT, config: {path: o.csv}}\n"
     "- {id: db, component: mysql.writer, mode: write, needs: [save],\n"
     "   config: {connection: '@mysql.main', table: t}}\n", 6, "'save' (a writer"),
])
def test_writer_without_an_upstream_table_is_an_error(tmp_path, body, line, fragment):
    result = check(tmp_path, steps(body))
    d = one_error(result, line, "writes the rows of an upstream step", fragment,
                  step=str(result.errors[0].step))
    assert d.step in ("save", "save-again", "db")
    assert "needs" in d.message


def test_writer_with_a_table_among_its_needs_is_valid(tmp_path):
    result = check(tmp_path, steps("""
        - {id: read, CSV_IN, config: {path: i.csv}}
        - {id: save, CSV_OUT, config: {path: o.csv}}
        - {id: save-again, CSV_OUT, needs: [save, read], config: {path: p.csv}}
    """))
    assert result.errors == [], [str(d) for d in result.errors]


def test_needs_must_be_a_list_of_strings(tmp_path):
    result = check(tmp_path, steps("""
        - {id: a, TP}
        - {id: b, component: duckdb.processor, mode: transform, needs: a, config: {query: SELECT 1}}
    """))
    one_error(result, 5, "'needs' must be a list", step="b")


def test_unknown_component(tmp_path):
    result = check(tmp_path, steps("""
        - id: a
          component: mysql.extractorr
          mode: read
          config: {query: SELECT 1}
    """))
    one_error(result, 5, "unknown component 'mysql.extractorr'", "mysql.extractor", step="a")


def test_mode_not_allowed_for_component(tmp_path):
    result = check(tmp_path, steps("""
        - id: t
          component: duckdb.processor
          mode: read
          config: {query: SELECT 1}
    """))
    one_error(result, 6, "mode 'read'", "duckdb.processor", "transform", step="t")


@pytest.mark.parametrize("mode", ["extract", "load", "Read"])
def test_mode_must_be_read_transform_or_write(tmp_path, mode):
    result = check(tmp_path, steps(f"""
        - id: t
          component: filesystem.csv_extractor
          mode: {mode}
          config: {{path: a.csv}}
    """))
    one_error(result, 6, f"mode '{mode}'", "read, transform, write", step="t")


def test_missing_step_keys(tmp_path):
    result = check(tmp_path, steps("""
        - id: t
          config: {query: SELECT 1}
        - component: duckdb.processor
          mode: transform
          config: {query: SELECT 1}
    """))
    got = sorted((d.line, d.step, d.message.split(" (")[0]) for d in result.errors)
    assert got == [
        (4, "t", "missing required key 'component'"),
        (4, "t", "missing required key 'mode'"),
        (6, None, "steps[1] is missing required key 'id'"),
    ]


# --- config rules -------------------------------------------------------------------------------
def test_unknown_config_key(tmp_path):
    result = check(tmp_path, steps("""
        - id: src
          component: filesystem.csv_extractor
          mode: read
          config:
            path: a.csv
            quotechar: '"'
    """))
    one_error(result, 9, "unknown config key 'quotechar'", "filesystem.csv_extractor",
              step="src")


def test_missing_required_config_key(tmp_path):
    result = check(tmp_path, steps("""
        - {id: src, CSV_IN, config: {path: a.csv}}
        - id: out
          component: filesystem.csv_writer
          mode: write
          config:
            delimiter: ";"
    """))
    one_error(result, 8, "missing required config key 'path'", step="out")


def test_missing_required_config_when_config_absent(tmp_path):
    result = check(tmp_path, steps("""
        - id: t
          component: duckdb.processor
          mode: transform
    """))
    one_error(result, 4, "missing required config key 'query'", step="t")


def test_mysql_writer_requires_table_even_with_connection(tmp_path):
    result = check(tmp_path, steps("""
        - {id: src, CSV_IN, config: {path: a.csv}}
        - id: w
          component: mysql.writer
          mode: write
          config:
            connection: "@mysql.dwh"
    """))
    one_error(result, 9, "missing required config key 'table'", step="w")


def test_mysql_extractor_needs_query_or_table(tmp_path):
    result = check(tmp_path, steps("""
        - id: e
          component: mysql.extractor
          mode: read
          config:
            connection: "@mysql.db"
    """))
    one_error(result, 7, "'query' or 'table'", step="e")


@pytest.mark.parametrize("write_mode", ["replace", "upsert"])
def test_supabase_writer_replace_or_upsert_needs_primary_key(tmp_path, write_mode):
    result = check(tmp_path, steps(f"""
        - {{id: src, CSV_IN, config: {{path: a.csv}}}}
        - id: w
          component: supabase.writer
          mode: write
          config:
            connection: "@supabase.main"
            table: stats
            write_mode: {write_mode}
    """))
    one_error(result, 11, f"write_mode '{write_mode}'", "primary_key", step="w")


def test_supabase_writer_append_needs_no_primary_key(tmp_path):
    result = check(tmp_path, steps("""
        - {id: src, CSV_IN, config: {path: a.csv}}
        - id: w
          component: supabase.writer
          mode: write
          config: {connection: "@supabase.main", table: stats, write_mode: append}
    """))
    assert result.errors == []


def test_mysql_writer_upsert_needs_upsert_keys(tmp_path):
    result = check(tmp_path, steps("""
        - {id: src, CSV_IN, config: {path: a.csv}}
        - id: w
          component: mysql.writer
          mode: write
          config:
            connection: "@mysql.dwh"
            table: movies
            mode: upsert
    """))
    one_error(result, 11, "upsert", "upsert_keys", step="w")


@pytest.mark.parametrize("ref", ["mysql.db_movies", "@mysql", "@mysql.", "@my sql.x", "@a.b.c"])
def test_connection_reference_format(tmp_path, ref):
    result = check(tmp_path, steps(f"""
        - id: e
          component: mysql.extractor
          mode: read
          config:
            connection: "{ref}"
            query: SELECT 1
    """))
    one_error(result, 8, "@family.alias", step="e")


def test_connection_family_mismatch(tmp_path):
    result = check(tmp_path, steps("""
        - {id: src, CSV_IN, config: {path: a.csv}}
        - id: w
          component: supabase.writer
          mode: write
          config:
            connection: "@mysql.x"
            table: stats
    """))
    one_error(result, 9, "'@mysql.x'", "'mysql'", "supabase", step="w")


def test_forbidden_override_of_connection_field(tmp_path):
    result = check(tmp_path, steps("""
        - id: e
          component: mysql.extractor
          mode: read
          config:
            connection: "@mysql.db_movies"
            query: SELECT 1
            password: ${MYSQL_PASSWORD}
    """))
    one_error(result, 10, "'password'", "@mysql.db_movies", step="e")


def test_allowed_override_of_connection_field(tmp_path):
    result = check(tmp_path, steps("""
        - id: e
          component: mysql.extractor
          mode: read
          config: {connection: "@mysql.db_movies", query: SELECT 1, host: replica.local}
    """))
    assert result.errors == []
    assert result.warnings == []


def test_literal_password_with_connection_is_rejected(tmp_path):
    result = check(tmp_path, steps("""
        - id: e
          component: mysql.extractor
          mode: read
          config:
            connection: "@mysql.db_movies"
            query: SELECT 1
            password: hunter2hunter2
    """))
    assert result.errors
    assert all(d.line == 10 and d.step == "e" for d in result.errors)
    assert any("osiris_connections.yaml" in d.message for d in result.errors)
    assert not any("hunter2hunter2" in str(d) for d in result.diagnostics)


# --- inline secrets -----------------------------------------------------------------------------
INLINE = {
    "password": ("mysql.extractor", "read",
                 "{connection: '@mysql.db', query: SELECT 1, password: s3cr3t-pw}", "password"),
    "api_key": ("posthog.extractor", "read",
                "{connection: '@posthog.main', data_type: events, api_key: phc_abcdefgh12345}",
                "api_key"),
    "key": ("supabase.extractor", "read",
            "{connection: '@supabase.main', table: t, key: eyJhbGciOiJIUzI1NiJ9.abcdefgh}",
            "key"),
    "auth_token": ("graphql.extractor", "read",
                   "{endpoint: 'https://x.test/graphql', query: '{ a }', auth_type: bearer, "
                   "auth_token: ghp_abcdefgh12345678}", "auth_token"),
    "Authorization": ("graphql.extractor", "read",
                      "{endpoint: 'https://x.test/graphql', query: '{ a }', "
                      "headers: {Authorization: Bearer-ghp_abcdefgh12345678}}", "Authorization"),
}
SECRET_VALUES = ["s3cr3t-pw", "phc_abcdefgh12345", "eyJhbGciOiJIUzI1NiJ9.abcdefgh",
                 "ghp_abcdefgh12345678"]


@pytest.mark.parametrize("case", sorted(INLINE))
def test_inline_secret_is_rejected_with_hint(tmp_path, case):
    component, mode, config, key = INLINE[case]
    result = check(tmp_path, steps(f"""
        - id: s
          component: {component}
          mode: {mode}
          needs: []
          config: {config}
    """))
    secret_errors = [d for d in result.errors if "inline secret" in d.message]
    assert len(secret_errors) == 1, [str(d) for d in result.errors]
    d = secret_errors[0]
    assert d.line == 8
    assert d.step == "s"
    assert key in d.message
    assert "osiris_connections.yaml" in d.message
    for value in SECRET_VALUES:
        assert not any(value in str(x) for x in result.diagnostics)
    assert result.pipeline is None


def test_inline_secret_in_block_style_reports_key_line(tmp_path):
    result = check(tmp_path, steps("""
        - id: gql
          component: graphql.extractor
          mode: read
          config:
            endpoint: https://api.example.test/graphql
            query: "{ viewer { login } }"
            headers:
              Accept: application/json
              Authorization: Bearer abcdef123456
    """))
    d = one_error(result, 12, "inline secret", "Authorization", "osiris_connections.yaml",
                  step="gql")
    assert "abcdef123456" not in str(d)


def test_env_references_are_not_inline_secrets(tmp_path):
    result = check(tmp_path, steps("""
        - id: gql
          component: graphql.extractor
          mode: read
          config:
            endpoint: https://api.example.test/graphql
            query: "{ viewer { login } }"
            auth_type: bearer
            auth_token: ${GITHUB_TOKEN}
            headers:
              Authorization: ${GITHUB_AUTH_HEADER}
        - id: e
          component: mysql.extractor
          mode: read
          needs: []
          config:
            query: SELECT 1
            user: ${MYSQL_USER}
            password: ${MYSQL_PASSWORD}
    """))
    assert [str(d) for d in result.errors] == []


# --- value checks -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line_text", "fragments"),
    [
        ("newline: cr", ("'newline'", "lf", "crlf", "'cr'")),
        ("delimiter: ';;'", ("'delimiter'", "1 character")),
        ("header: 'yes'", ("'header'", "boolean")),
        ("chunk_size: 0", ("'chunk_size'", ">= 1")),
        ("chunk_size: 100001", ("'chunk_size'", "<= 100000")),
        ("chunk_size: '1000'", ("'chunk_size'", "integer")),
        ("encoding: ebcdic", ("'encoding'", "utf-8")),
        ("create_dirs: 1", ("'create_dirs'", "boolean")),
    ],
)
def test_csv_writer_value_checks(tmp_path, line_text, fragments):
    result = check(tmp_path, steps(f"""
        - {{id: src, CSV_IN, config: {{path: a.csv}}}}
        - id: out
          component: filesystem.csv_writer
          mode: write
          config:
            path: out.csv
            {line_text}
    """))
    one_error(result, 10, *fragments, step="out")


@pytest.mark.parametrize(
    ("line_text", "fragments"),
    [
        ("port: 70000", ("'port'", "<= 65535")),
        ("port: 0", ("'port'", ">= 1")),
        ("batch_size: true", ("'batch_size'", "integer")),
        ("limit: 0", ("'limit'", ">= 1")),
    ],
)
def test_mysql_extractor_value_checks(tmp_path, line_text, fragments):
    result = check(tmp_path, steps(f"""
        - id: e
          component: mysql.extractor
          mode: read
          config:
            connection: "@mysql.db"
            query: SELECT 1
            {line_text}
    """))
    one_error(result, 10, *fragments, step="e")


def test_graphql_number_minimum(tmp_path):
    result = check(tmp_path, steps("""
        - id: g
          component: graphql.extractor
          mode: read
          config:
            endpoint: https://x.test/graphql
            query: "{ a }"
            retry_delay: 0.05
    """))
    one_error(result, 10, "'retry_delay'", ">= 0.1", step="g")


def test_all_errors_reported_at_once(tmp_path):
    result = check(tmp_path, """\
        oml_version: 0.1
        name: many-problems
        tasks: []
        steps:
          - id: a
            component: duckdb.processor
            mode: read
            config: {query: SELECT 1}
          - id: b
            component: filesystem.csv_writer
            mode: write
            needs: [zzz]
            config:
              path: out.csv
              newline: cr
              sep: ";"
          - id: b
            component: what.ever
            mode: transform
    """)
    got = sorted((d.line, d.step) for d in result.errors)
    assert got == [(1, None), (3, None), (7, "a"), (12, "b"), (15, "b"), (16, "b"),
                   (17, "b"), (18, "b")]
    assert result.pipeline is None


def test_step_keys_without_effect_warn(tmp_path):
    result = check(tmp_path, steps("""
        - id: a
          component: duckdb.processor
          mode: transform
          retry: 3
          config: {query: SELECT 1}
    """))
    assert result.errors == []
    assert [(w.line, w.step) for w in result.warnings] == [(7, "a")]
    assert "retry" in result.warnings[0].message


# --- x-dagster ----------------------------------------------------------------------------------
X_STEPS = """\
  - id: extract-movies
    component: filesystem.csv_extractor
    mode: read
    config: {path: data/movies.csv}
  - id: stats
    component: duckdb.processor
    mode: transform
    config: {query: SELECT * FROM df_extract_movies}
"""  # lines 4-11


def test_x_dagster_block_is_parsed(tmp_path):
    result = check(tmp_path, HEAD + X_STEPS + textwrap.dedent("""\
        x-dagster:
          group: movies_demo
          owners: [data@example.com, "team:analytics"]
          tags: {domain: movies, tier: gold}
          steps:
            stats:
              description: Director statistics
              owners: ["team:bi"]
              tags: {pii: false}
    """))
    assert [str(d) for d in result.diagnostics] == []
    dg = result.pipeline.dagster
    assert dg.group == "movies_demo"
    assert dg.owners == ("data@example.com", "team:analytics")
    assert dict(dg.tags) == {"domain": "movies", "tier": "gold"}
    assert set(dg.steps) == {"stats"}
    st = dg.for_step("stats")
    assert st.description == "Director statistics"
    assert st.owners == ("team:bi",)
    assert dict(st.tags) == {"pii": "false"}
    empty = dg.for_step("extract-movies")
    assert empty.description is None and empty.owners == () and dict(empty.tags) == {}


def test_no_x_dagster_block_gives_empty_settings(tmp_path):
    result = check(tmp_path, HEAD + X_STEPS)
    dg = result.pipeline.dagster
    assert dg.group is None and dg.owners == () and dict(dg.tags) == {} and dict(dg.steps) == {}


def test_x_dagster_unknown_keys_are_errors(tmp_path):
    result = check(tmp_path, HEAD + X_STEPS + textwrap.dedent("""\
        x-dagster:
          group: movies
          schedule: "0 * * * *"
          steps:
            stats:
              description: ok
              retries: 3
    """))
    got = sorted((d.line, d.step) for d in result.errors)
    assert got == [(14, None), (18, "stats")]
    by_line = {d.line: d.message for d in result.errors}
    assert "schedule" in by_line[14]
    assert "retries" in by_line[18]


def test_x_dagster_unknown_step_id(tmp_path):
    result = check(tmp_path, HEAD + X_STEPS + textwrap.dedent("""\
        x-dagster:
          steps:
            stats: {description: ok}
            statz: {description: typo}
    """))
    one_error(result, 15, "unknown step 'statz'")


@pytest.mark.parametrize(
    ("block", "line", "fragment", "step"),
    [
        ("  group: my group\n", 13, "group", None),
        ("  group: [a]\n", 13, "group", None),
        ("  owners: [bob]\n", 13, "bob", None),
        ("  owners: data@example.com\n", 13, "owners", None),
        ("  tags: {'bad key!': x}\n", 13, "bad key!", None),
        ("  tags: {env: 'has space'}\n", 13, "has space", None),
        ("  tags: [a, b]\n", 13, "tags", None),
        ("  steps:\n    stats:\n      owners: [nobody]\n", 15, "nobody", "stats"),
        ("  steps:\n    stats:\n      description: [x]\n", 15, "description", "stats"),
        ("  steps:\n    stats:\n      tags: {k: 'a b'}\n", 15, "a b", "stats"),
        ("  steps: [stats]\n", 13, "steps", None),
    ],
)
def test_x_dagster_invalid_values(tmp_path, block, line, fragment, step):
    result = check(tmp_path, HEAD + X_STEPS + "x-dagster:\n" + block)
    one_error(result, line, fragment, step=step)


def test_x_dagster_step_settings_for_an_invalid_step_are_not_unknown(tmp_path):
    # the step exists (it only has a bad mode): x-dagster.steps must not call it unknown
    result = check(tmp_path, steps("""
        - {id: a, CSV_IN, config: {path: a.csv}}
        - {id: b, component: duckdb.processor, mode: read, config: {query: SELECT 1}}
    """) + "x-dagster:\n  steps:\n    b: {description: stats}\n")
    assert [(d.line, d.step) for d in result.errors] == [(5, "b")], \
        [str(d) for d in result.errors]
    assert "mode 'read'" in result.errors[0].message


def test_x_dagster_must_be_a_mapping(tmp_path):
    result = check(tmp_path, HEAD + X_STEPS + "x-dagster: [group]\n")
    one_error(result, 12, "x-dagster")


def test_x_dagster_column_descriptions_are_parsed(tmp_path):
    result = check(tmp_path, HEAD + X_STEPS + textwrap.dedent("""\
        x-dagster:
          steps:
            stats:
              columns:
                director: "  Who directed it  "
                "Movie Count": Number of movies
                2024: Released in 2024
    """))
    assert [str(d) for d in result.diagnostics] == []
    columns = result.pipeline.dagster.for_step("stats").columns
    assert dict(columns) == {"director": "Who directed it", "Movie Count": "Number of movies",
                             "2024": "Released in 2024"}
    assert dict(result.pipeline.dagster.for_step("extract-movies").columns) == {}


@pytest.mark.parametrize(
    ("columns", "line", "fragment"),
    [
        ("      columns:\n        director: 3\n", 16, "columns.director: the description must "
                                                     "be a string, got int 3"),
        ("      columns:\n        a: ok\n        director:\n", 17, "got nothing"),
        ("      columns:\n        director: [a, b]\n", 16, "got a list"),
        ("      columns: [director]\n", 15, "must map column names to descriptions"),
        ("      columns:\n        true: yes\n", 16, "not a column name"),
    ],
)
def test_x_dagster_column_descriptions_errors_name_the_line(tmp_path, columns, line, fragment):
    result = check(tmp_path, HEAD + X_STEPS + "x-dagster:\n  steps:\n    stats:\n" + columns)
    one_error(result, line, fragment, step="stats")


def test_x_dagster_column_descriptions_on_a_writer_are_an_error(tmp_path):
    result = check(tmp_path, steps("""
        - {id: a, CSV_IN, config: {path: a.csv}}
        - {id: w, CSV_OUT, config: {path: b.csv}}
    """) + "x-dagster:\n  steps:\n    w:\n      columns: {x: y}\n")
    one_error(result, 9, "writer produces no table", step="w")


# --- bad input never raises ---------------------------------------------------------------------
def test_bad_yaml_syntax(tmp_path):
    result = check(tmp_path, 'oml_version: "0.1.0"\nname: p\nsteps:\n  - id: a\n   bad: [\n')
    assert len(result.errors) == 1
    d = result.errors[0]
    assert d.message.startswith("invalid YAML")
    assert d.line >= 4
    assert result.pipeline is None


def test_bad_yaml_unclosed_quote_reports_a_line(tmp_path):
    result = check(tmp_path, 'oml_version: "0.1.0"\nname: "p\nsteps: []\n')
    assert len(result.errors) == 1
    assert "invalid YAML" in result.errors[0].message
    assert result.errors[0].line > 0


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "", "42\n"])
def test_non_mapping_document(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    result = validate_pipeline(path, env={})
    assert len(result.errors) == 1
    assert result.errors[0].line == 1
    assert "mapping" in result.errors[0].message
    assert result.pipeline is None


def test_missing_file(tmp_path):
    result = validate_pipeline(tmp_path / "nope.yaml", env={})
    assert len(result.errors) == 1
    assert "not found" in result.errors[0].message
    assert str(result.errors[0]).startswith(str(tmp_path / "nope.yaml"))


def test_binary_file(tmp_path):
    path = tmp_path / "blob.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    result = validate_pipeline(path, env={})
    assert len(result.errors) == 1
    assert result.pipeline is None


def test_nul_bytes_in_valid_utf8(tmp_path):
    path = tmp_path / "nul.yaml"
    path.write_bytes(b'oml_version: "0.1.0"\nname: p\x00\n')
    result = validate_pipeline(path, env={})
    assert len(result.errors) == 1
    assert result.pipeline is None


def test_directory_instead_of_file(tmp_path):
    result = validate_pipeline(tmp_path, env={})
    assert len(result.errors) == 1
    assert result.pipeline is None


def test_diagnostic_format():
    assert str(Diagnostic("error", "p.yaml", 7, "boom", "s1")) == "p.yaml:7: step 's1': boom"
    assert str(Diagnostic("error", "p.yaml", 3, "boom")) == "p.yaml:3: boom"
    assert str(Diagnostic("error", "p.yaml", 0, "file not found")) == "p.yaml: file not found"


def test_unknown_step_setting_lists_every_known_key(tmp_path):
    """The hint lists what is accepted (it once said only description, owners, tags)."""
    p = tmp_path / "p.yaml"
    p.write_text(
        "oml_version: '0.1.0'\nname: p\nsteps:\n"
        "  - id: a\n    component: duckdb.processor\n    mode: transform\n"
        "    config: {query: 'SELECT 1'}\n"
        "x-dagster:\n  steps:\n    a:\n      colour: red\n")
    result = validate_pipeline(p)
    message = next(d.message for d in result.errors if "colour" in d.message)
    for key in ("description", "owners", "tags", "timeout_seconds", "retry", "checks", "deps"):
        assert key in message


ONE_INSTANCE_FOR_SQL_CHECKS = textwrap.dedent("""
    import sys
    import duckdb
    from osiris_dagster.oml import validate_pipeline

    def threads():  # each DuckDB instance starts its worker threads when it opens
        with open("/proc/self/status") as fh:
            return int(next(l for l in fh if l.startswith("Threads:")).split()[1])

    before = threads()
    result = validate_pipeline(sys.argv[1])
    assert result.pipeline is not None, result.errors
    validated = threads()
    extra = duckdb.connect(":memory:")
    one_instance = threads() - validated
    print(one_instance > 0, validated - before == one_instance)
""")


def test_checking_a_pipelines_sql_opens_one_duckdb_instance() -> None:
    """The query checks parse with one private instance, never also DuckDB's default one
    (~12 ms, its memory and its threads for the life of the process)."""
    done = subprocess.run([sys.executable, "-c", ONE_INSTANCE_FOR_SQL_CHECKS,
                           "pipelines/director_stats.yaml"],
                          capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.stdout.split() == ["True", "True"], done.stderr


def test_a_lone_parameter_in_an_in_list_is_warned_about(tmp_path: Path) -> None:
    """A migrated Osiris pipeline with `IN (${params.ids})` and `ids: "C01,C02"` ran and
    matched nothing (the value is one literal here, a list of two in Osiris), without a word."""
    p = tmp_path / "p.yaml"
    p.write_text(textwrap.dedent("""\
        oml_version: "0.1.0"
        name: p
        params:
          ids: {default: "C01,C02"}
        steps:
          - {id: o, component: filesystem.csv_extractor, mode: read, config: {path: o.csv}}
          - id: q
            component: duckdb.processor
            mode: transform
            needs: [o]
            config:
              query: "SELECT * FROM df_o WHERE id in ( ${params.ids} ) OR id IN (${params.ids}, 1)"
        """))
    result = validate_pipeline(p)
    assert not result.errors
    (warning,) = result.warnings
    assert warning.line == 12 and warning.step == "q"
    assert "`IN (${params.ids})` compares with one value" in warning.message
    assert "IN (SELECT unnest(string_split(${params.ids}, ',')))" in warning.message


# --- x-dagster.sensor values that validated and then never ran -----------------------------------
@pytest.mark.parametrize("settings, fragments", [
    ("watch: in/*.csv, settle_seconds: .nan", ("settle_seconds must be a number >= 0", "nan")),
    ("watch: in/*.csv, settle_seconds: .inf", ("settle_seconds must be a number >= 0", "inf")),
    ("watch: incoming/", ("names a directory", "'incoming/*.csv'")),
    ("watch: /data/in/", ("names a directory", "'/data/in/*.csv'")),
])
def test_a_sensor_that_would_never_run_a_file_is_refused(
        tmp_path: Path, settings: str, fragments: tuple[str, ...]) -> None:
    result = check(tmp_path, f"""\
        oml_version: "0.1.0"
        name: s
        params: {{p: a.csv}}
        x-dagster:
          sensor: {{param: p, {settings}}}
        steps:
          - {{id: a, component: filesystem.csv_extractor, mode: read, config: {{path: x.csv}}}}
        """)
    one_error(result, 5, *fragments)


@pytest.mark.parametrize("watch", ["data/export.cs[v]", "data/export.csv"])
def test_a_sensor_watching_one_named_file_validates(tmp_path: Path, watch: str) -> None:
    """One file by name (an export dropped again and again) is fine; without a wildcard it is
    warned about, in case it names a directory."""
    result = check(tmp_path, f"""\
        oml_version: "0.1.0"
        name: s
        params: {{p: a.csv}}
        x-dagster:
          sensor: {{watch: "{watch}", param: p, settle_seconds: 0.5}}
        steps:
          - {{id: a, component: filesystem.csv_extractor, mode: read, config: {{path: x.csv}}}}
        """)
    assert not result.errors, [str(d) for d in result.errors]
    assert [("has no wildcard" in w.message) for w in result.warnings] == (
        [] if "[" in watch else [True])


@pytest.mark.parametrize("watch,warned", [("in/**/*.csv", True), ("in/*/orders_*.csv", True),
                                          ("in/*.csv", False), ("/data/in/*.csv", False)])
def test_a_name_param_over_several_directories_is_warned_about(tmp_path: Path, watch: str,
                                                               warned: bool) -> None:
    """`in/shop_a/orders.csv` and `in/shop_b/orders.csv` got one `name_param` value: an output
    named by it kept the second file's rows only, and validate said nothing."""
    result = check(tmp_path, f"""\
        oml_version: "0.1.0"
        name: s
        params: {{p: a.csv, n: a.csv}}
        x-dagster:
          sensor: {{watch: "{watch}", param: p, name_param: n}}
        steps:
          - {{id: a, component: filesystem.csv_extractor, mode: read, config: {{path: x.csv}}}}
        """)
    assert not result.errors, [str(d) for d in result.errors]
    found = [w for w in result.warnings if "name_param" in w.message]
    assert bool(found) is warned, [str(w) for w in result.warnings]
    if warned:
        assert found[0].line == 5 and "(a/orders.csv, b/orders.csv) get the same value" in \
            found[0].message and "`p`" in found[0].message


def test_step_headers_beside_a_connection_are_said_to_merge(tmp_path: Path) -> None:
    """The warning said the step's headers override the connection's, also for a connection
    without headers (validate does not read the connections file)."""
    p = tmp_path / "g.yaml"
    p.write_text(textwrap.dedent("""\
        oml_version: "0.1.0"
        name: g
        steps:
          - id: a
            component: graphql.extractor
            mode: read
            config:
              connection: "@graphql.g"
              query: "{ items { id } }"
              data_path: data.items
              headers: {X-Source: etl}
        """), encoding="utf-8")
    result = validate_pipeline(p, env={})
    assert [w.message for w in result.warnings] == [
        "'headers' is merged over the connection's, if '@graphql.g' sets it too: a name set in "
        "both takes the step's value"]


@pytest.mark.parametrize("text, where, hint", [
    ('name: off', "'name'", "quote it"),
    ('name: 2024', "'name'", "quote it"),
    ('name: p\nsteps:\n  - id: no', "steps[0].id", "quote it"),
    ('name: p\nsteps:\n  - id: ex\n    config: {path: a.csv, delimiter: no}', "'delimiter'",
     "quote it"),
])
def test_a_yaml_boolean_or_number_where_text_belongs_says_to_quote_it(
        tmp_path: Path, text: str, where: str, hint: str) -> None:
    """`name: off` or `id: no` said only "must be a non-empty string": YAML had read the word
    as the boolean false, which nobody sees in the file."""
    body = 'oml_version: "0.1.0"\n' + text
    if "steps" not in text:
        body += ("\nsteps:\n  - id: ex\n    component: filesystem.csv_extractor\n"
                 "    mode: read\n    config: {path: a.csv}")
    else:
        body = body.replace("  - id: ex\n", "  - id: ex\n    component: "
                            "filesystem.csv_extractor\n    mode: read\n")
        if "id: no" in body:
            body += ("\n    component: filesystem.csv_extractor\n    mode: read\n"
                     "    config: {path: a.csv}")
    path = tmp_path / "p.yaml"
    path.write_text(body, encoding="utf-8")
    messages = [d.message for d in validate_pipeline(path).errors]
    assert any(where in m and hint in m for m in messages), messages
