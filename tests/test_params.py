"""Parameters and profiles: declaration forms, precedence, typed substitution, errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from osiris_dagster.oml import validate_pipeline
from osiris_dagster.oml.validate import ValidationResult

PIPELINE = """\
oml_version: "0.1.0"
name: params-demo
params:
  limit: 10
  table:
    default: movies
    description: source table
  ratio: {default: 0.5}
  flag: {default: true, type: boolean}
  label: plain
profiles:
  dev:
    params:
      table: dev_movies
  prod:
    params:
      table: prod_movies
      limit: 1000
steps:
  - id: extract
    component: filesystem.csv_extractor
    mode: read
    config:
      path: "data/${params.table}.csv"
      limit: ${params.limit}
      skip_blank_lines: ${params.flag}
  - id: stats
    component: duckdb.processor
    mode: transform
    config:
      query: "SELECT '${params.label}' AS l, ${params.ratio} AS r, ${params.flag} AS f FROM df_extract LIMIT ${params.limit}"
"""  # noqa: E501

NO_PROFILES = PIPELINE.split("profiles:")[0] + "steps:" + PIPELINE.split("steps:", 1)[1]


def write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run(tmp_path: Path, text: str = PIPELINE, **kwargs) -> ValidationResult:
    kwargs.setdefault("env", {})
    return validate_pipeline(write(tmp_path, text), **kwargs)


def cfg(result: ValidationResult, step: str = "extract") -> dict:
    assert [str(d) for d in result.errors] == []
    return dict(result.pipeline.step(step).config)


def test_defaults_plain_and_default_forms(tmp_path):
    result = run(tmp_path, NO_PROFILES)
    c = cfg(result)
    assert c["path"] == "data/movies.csv"
    assert c["limit"] == 10 and type(c["limit"]) is int
    assert c["skip_blank_lines"] is True
    assert dict(result.pipeline.params) == {"limit": 10, "table": "movies", "ratio": 0.5,
                                            "flag": True, "label": "plain"}
    assert result.pipeline.profile is None
    assert result.warnings == []


def test_references_inside_longer_strings_are_text(tmp_path):
    assert cfg(run(tmp_path, NO_PROFILES))["path"] == "data/movies.csv"


def test_references_in_sql_become_literals_of_their_value(tmp_path):
    q = cfg(run(tmp_path, NO_PROFILES), "stats")["query"]
    assert q == "SELECT 'plain' AS l, 0.5 AS r, TRUE AS f FROM df_extract LIMIT 10"


def test_dev_profile_applies_by_default(tmp_path):
    result = run(tmp_path)
    assert result.pipeline.profile == "dev"
    c = cfg(result)
    assert c["path"] == "data/dev_movies.csv"
    assert c["limit"] == 10


def test_explicit_profile(tmp_path):
    result = run(tmp_path, profile="prod")
    assert result.pipeline.profile == "prod"
    c = cfg(result)
    assert c["path"] == "data/prod_movies.csv"
    assert c["limit"] == 1000 and type(c["limit"]) is int
    assert cfg(result, "stats")["query"].endswith("LIMIT 1000")


def test_no_default_profile_without_dev(tmp_path):
    text = PIPELINE.replace("  dev:\n    params:\n      table: dev_movies\n", "")
    result = run(tmp_path, text)
    assert result.pipeline.profile is None
    assert cfg(result)["path"] == "data/movies.csv"


def test_env_beats_default_and_is_coerced(tmp_path):
    result = run(tmp_path, NO_PROFILES, env={"OSIRIS_PARAM_LIMIT": "25",
                                             "OSIRIS_PARAM_TABLE": "env_movies",
                                             "OSIRIS_PARAM_FLAG": "false",
                                             "OSIRIS_PARAM_RATIO": "0.25"})
    c = cfg(result)
    assert c["limit"] == 25 and type(c["limit"]) is int
    assert c["path"] == "data/env_movies.csv"
    assert c["skip_blank_lines"] is False
    assert result.pipeline.params["ratio"] == 0.25


def test_env_from_process_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("OSIRIS_PARAM_LIMIT", "33")
    result = validate_pipeline(write(tmp_path, NO_PROFILES))
    assert cfg(result)["limit"] == 33


def test_profile_beats_env(tmp_path):
    result = run(tmp_path, env={"OSIRIS_PARAM_TABLE": "env_movies", "OSIRIS_PARAM_LIMIT": "25"})
    c = cfg(result)
    assert c["path"] == "data/dev_movies.csv"  # dev profile sets table
    assert c["limit"] == 25  # dev profile does not set limit: env wins over the default


def test_explicit_beats_profile_and_env(tmp_path):
    result = run(tmp_path, profile="prod", params={"table": "cli_movies", "limit": "7"},
                 env={"OSIRIS_PARAM_TABLE": "env_movies", "OSIRIS_PARAM_LIMIT": "25"})
    c = cfg(result)
    assert c["path"] == "data/cli_movies.csv"
    assert c["limit"] == 7 and type(c["limit"]) is int


def test_explicit_typed_value(tmp_path):
    c = cfg(run(tmp_path, NO_PROFILES, params={"limit": 42, "flag": False}))
    assert c["limit"] == 42
    assert c["skip_blank_lines"] is False


def test_declared_type_coerces_string(tmp_path):
    text = """\
        oml_version: "0.1.0"
        name: typed
        params:
          n: {type: integer, default: "5"}
        steps:
          - id: e
            component: filesystem.csv_extractor
            mode: read
            config: {path: a.csv, limit: "${params.n}"}
    """
    c = cfg(run(tmp_path, text, params={"n": "12"}), "e")
    assert c["limit"] == 12


def test_structure_does_not_depend_on_params(tmp_path):
    a = run(tmp_path, NO_PROFILES).pipeline
    b = run(tmp_path, NO_PROFILES, params={"limit": "99", "table": "x"}).pipeline
    assert a.structure() == b.structure()
    assert a.step("extract").fingerprint != b.step("extract").fingerprint


def test_unresolved_parameter_names_it_with_line(tmp_path):
    text = """\
        oml_version: "0.1.0"
        name: unresolved
        params:
          limit: 10
        steps:
          - id: e
            component: filesystem.csv_extractor
            mode: read
            config:
              path: "data/${params.tabel}.csv"
              limit: ${params.limit}
    """
    result = run(tmp_path, text)
    assert len(result.errors) == 1, [str(d) for d in result.errors]
    d = result.errors[0]
    assert d.line == 10
    assert "'tabel'" in d.message
    assert "unresolved" in d.message
    assert result.pipeline is None


def test_unresolved_whole_value_reference(tmp_path):
    text = """\
        oml_version: "0.1.0"
        name: unresolved
        steps:
          - id: e
            component: filesystem.csv_extractor
            mode: read
            config:
              path: a.csv
              limit: ${params.limit}
    """
    result = run(tmp_path, text)
    assert [(d.line, "'limit'" in d.message) for d in result.errors] == [(9, True)]


def test_unresolved_parameter_in_a_step_names_the_step(tmp_path):
    # FILE:LINE: step 'ID': message whenever a step applies
    text = """\
        oml_version: "0.1.0"
        name: unresolved
        steps:
          - id: e
            component: filesystem.csv_extractor
            mode: read
            config: {path: "${params.missing}.csv"}
    """
    result = run(tmp_path, text)
    assert [(d.line, d.step) for d in result.errors] == [(7, "e")], \
        [str(d) for d in result.errors]


def test_parameter_resolved_from_env_without_declaration(tmp_path):
    text = """\
        oml_version: "0.1.0"
        name: env-only
        steps:
          - id: e
            component: filesystem.csv_extractor
            mode: read
            config: {path: "${params.file}"}
    """
    c = cfg(run(tmp_path, text, env={"OSIRIS_PARAM_FILE": "x.csv"}), "e")
    assert c["path"] == "x.csv"


def test_unknown_profile_is_an_error(tmp_path):
    result = run(tmp_path, profile="staging")
    assert len(result.errors) == 1
    d = result.errors[0]
    assert "'staging'" in d.message
    assert "dev" in d.message and "prod" in d.message
    assert d.line == 11  # the profiles: key
    assert result.pipeline is None


def test_profile_without_any_profiles_is_an_error(tmp_path):
    result = run(tmp_path, NO_PROFILES, profile="prod")
    assert len(result.errors) == 1
    assert "'prod'" in result.errors[0].message


def test_bad_explicit_coercion(tmp_path):
    result = run(tmp_path, NO_PROFILES, params={"limit": "abc"})
    assert len(result.errors) == 1, [str(d) for d in result.errors]
    d = result.errors[0]
    assert "'limit'" in d.message
    assert "'abc'" in d.message
    assert "int" in d.message
    assert d.line == 4  # where the parameter is declared
    assert result.pipeline is None


def test_bad_env_coercion(tmp_path):
    result = run(tmp_path, NO_PROFILES, env={"OSIRIS_PARAM_FLAG": "maybe"})
    assert len(result.errors) == 1
    d = result.errors[0]
    assert "'flag'" in d.message and "'maybe'" in d.message
    assert "OSIRIS_PARAM_FLAG" in d.message


def test_undeclared_explicit_param_is_an_error(tmp_path):
    """A misspelt `--param` was a warning and the run went on with the default value."""
    result = run(tmp_path, NO_PROFILES, params={"nope": "1"})
    assert [d.message for d in result.errors] == [
        "parameter 'nope' was given (--param, run config) but is not declared under 'params' "
        "(declared: flag, label, limit, ratio, table); check its spelling"]
    assert result.pipeline is None


def test_substituted_value_is_type_checked(tmp_path):
    # limit must be >= 1 for the csv extractor; the check runs after substitution
    result = run(tmp_path, NO_PROFILES, params={"limit": "0"})
    assert [(d.line, d.step) for d in result.errors] == [(17, "extract")]
    assert "'limit'" in result.errors[0].message


@pytest.mark.parametrize("value", ["${params.limit}", " ${params.limit} "])
def test_whole_reference_keeps_type(tmp_path, value):
    text = NO_PROFILES.replace("limit: ${params.limit}", f'limit: "{value}"')
    assert cfg(run(tmp_path, text))["limit"] == 10


QUERY_LANGUAGES = """\
oml_version: "0.1.0"
name: languages
params:
  who: {default: "O'Brien"}
steps:
  - id: from-mysql
    component: mysql.extractor
    mode: read
    config:
      host: db.example
      database: shop
      user: reader
      query: "SELECT * FROM people WHERE name = ${params.who} AND note = 'by ${params.who}'"
  - id: from-graphql
    component: graphql.extractor
    mode: read
    needs: []
    config:
      endpoint: https://api.example/graphql
      query: 'query { people(name: ${params.who}) { id } }'
  - id: keep
    component: duckdb.processor
    mode: transform
    needs: [from-mysql]
    config:
      query: "SELECT * FROM input_df"
x-dagster:
  steps:
    keep:
      checks:
        expression: ["name <> ${params.who}", "note <> 'x'"]
"""


def test_each_query_language_quotes_parameters_its_own_way(tmp_path):
    result = run(tmp_path, QUERY_LANGUAGES)
    assert cfg(result, "from-mysql")["query"] == (
        "SELECT * FROM people WHERE name = 'O''Brien' AND note = 'by O''Brien'")
    assert cfg(result, "from-graphql")["query"] == 'query { people(name: "O\'Brien") { id } }'
    checks = result.pipeline.dagster.steps["keep"].checks
    assert list(checks["expression"]) == ["name <> 'O''Brien'", "note <> 'x'"]


def test_a_parameter_that_cannot_be_one_value_is_an_error_with_its_line(tmp_path):
    result = run(tmp_path, QUERY_LANGUAGES, params={"who": "back\\slash"})
    messages = [str(d) for d in result.errors]
    assert any(":13: step 'from-mysql': parameter 'who'" in m and "backslash" in m
               for m in messages), messages


NO_DEFAULT = """\
oml_version: "0.1.0"
name: on-demand
params:
  region: {description: "Which region to report (given with each run)"}
steps:
  - id: pick
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT ${params.region} AS region, 1 AS n"}
"""


def test_a_parameter_without_default_gets_its_value_with_each_run(tmp_path, instance):
    """Definitions build without the value (dagster dev, the dg component, `run`); each run
    gives it, and a run without it fails naming the parameter."""
    import duckdb

    from osiris_dagster import build_definitions

    from .helpers import failure_description, run_job

    p = tmp_path / "on_demand.yaml"
    p.write_text(NO_DEFAULT)
    assert not validate_pipeline(p).ok  # validating a concrete run still needs the value
    defs = build_definitions([p], sessions_dir=str(tmp_path / "s"))
    result = run_job(defs, "on_demand", instance, params={"region": "EU'; DROP TABLE x; --"})
    assert result.success, failure_description(result)
    (db,) = (tmp_path / "s").glob(f"{result.run_id}/pipeline_data.duckdb")
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT region, n FROM pick").fetchall() == [
            ("EU'; DROP TABLE x; --", 1)]
    missing = run_job(defs, "on_demand", instance)
    assert not missing.success
    assert "parameter 'region' has no value: it is declared without a default" in \
        failure_description(missing)


def test_the_cli_runs_a_parameter_without_default_given_with_param(tmp_path, monkeypatch,
                                                                   capsys):
    from osiris_dagster.cli import main

    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(NO_DEFAULT)
    assert main(["run", "p.yaml", "--sessions-dir", "s", "--param", "region=EU"]) == 0
    assert main(["run", "p.yaml", "--sessions-dir", "s"]) != 0
    assert "parameter 'region' has no value: it is declared without a default" in \
        capsys.readouterr().err


@pytest.mark.parametrize(("name", "value", "rendered"), [
    ("limit", 2.0, "LIMIT 2"), ("ratio", 2, "2.0 AS r"),
    ("ratio", 2**53, "9007199254740992.0 AS r"),
])
def test_a_value_that_is_not_text_gets_its_parameter_type(tmp_path, name, value, rendered):
    """A run config's or profile's value was used as given (2.5 for an int parameter ran)."""
    result = run(tmp_path, NO_PROFILES, params={name: value})
    assert rendered in cfg(result, "stats")["query"]
    if name == "limit":
        assert type(cfg(result)["limit"]) is int


@pytest.mark.parametrize(("name", "value"), [
    ("limit", 2.5), ("limit", True), ("limit", [1]), ("limit", 12345678901234567.0),
    ("ratio", True), ("ratio", 2**53 + 1),
    ("flag", 1), ("flag", 0.0),
])
def test_a_value_its_parameter_type_cannot_hold_is_an_error(tmp_path, name, value):
    result = run(tmp_path, NO_PROFILES, params={name: value})
    assert [d.line for d in result.errors] == [PIPELINE.splitlines().index(
        next(line for line in PIPELINE.splitlines() if line.startswith(f"  {name}:"))) + 1]
    assert f"parameter '{name}' expects" in result.errors[0].message
    assert repr(value) in result.errors[0].message


def test_a_profile_value_its_parameter_type_cannot_hold_is_an_error(tmp_path):
    text = PIPELINE.replace("      limit: 1000", "      limit: 10.5")
    result = run(tmp_path, text, profile="prod")
    assert ["expects an integer, got 10.5 (float) from profile 'prod'" in d.message
            for d in result.errors] == [True]


def test_a_refused_value_of_a_parameter_without_default_is_one_error(tmp_path):
    """It also said 'unresolved parameter', as if no value had been given."""
    text = NO_PROFILES.replace("  limit: 10\n", "  limit: {type: integer}\n")
    result = run(tmp_path, text, params={"limit": 2.5})
    messages = [d.message for d in result.errors]
    assert messages[0] == ("parameter 'limit' expects an integer, got 2.5 (float) from an explicit "
                           "--param / run config value")
    assert not any("unresolved" in m for m in messages), messages


ENV_OPTIONS = """\
oml_version: "0.1.0"
name: env-options
params:
  src: {type: string}
steps:
  - id: fetch
    component: graphql.extractor
    mode: read
    config:
      endpoint: http://127.0.0.1:9/graphql
      query: "{ items { id } }"
      data_path: data.items
      auth_type: bearer
      auth_token: "tok-${params.src}"
      headers: {X-Request-Source: "${params.src}"}
"""


def test_a_parameter_holding_an_env_reference_is_refused_where_the_option_reads_env(
        tmp_path: Path) -> None:
    """graphql.extractor resolves `${VAR}` in `headers`, `auth_token` and `auth_username`
    after the parameters: `--param src='${OTHER_SECRET}'` sent that variable's value to the
    server (a review got it back in the output)."""
    result = run(tmp_path, ENV_OPTIONS, params={"src": "${OTHER_SECRET}"})
    assert not result.ok
    text = "\n".join(str(e) for e in result.errors)
    assert "parameter 'src' makes '${' in `headers.X-Request-Source`" in text, text
    assert "makes '${' in `auth_token`" in text, text
    ok = run(tmp_path, ENV_OPTIONS, params={"src": "batch $5 {x}"})
    assert ok.ok, ok.errors
    config = ok.pipeline.step("fetch").config
    assert config["headers"]["X-Request-Source"] == "batch $5 {x}"
    assert config["auth_token"] == "tok-batch $5 {x}"


@pytest.mark.parametrize(("template", "value"), [
    ('"${params.src}{OTHER_SECRET}"', "$"),  # `$` + `{VAR}` written around it
    ('"$${params.src}"', "{OTHER_SECRET}"),
    ('"${HOME}-${params.src}"', "${OTHER}"),  # beside a reference the pipeline writes
])
def test_a_parameter_making_an_env_reference_with_the_text_around_it_is_refused(
        tmp_path: Path, template: str, value: str) -> None:
    """A review sent `Authorization: Bearer <OTHER_SECRET>` with `auth_token:
    "${params.a}{OTHER_SECRET}"` and `--param a=$`: only a value holding `${` was refused."""
    text = ENV_OPTIONS.replace('headers: {X-Request-Source: "${params.src}"}',
                               f"headers: {{X-Request-Source: {template}}}")
    result = run(tmp_path, text, params={"src": value})
    assert not result.ok
    assert any("makes '${' in `headers.X-Request-Source`" in str(e) for e in result.errors)


def test_the_pipelines_own_env_reference_beside_a_parameter_is_kept(tmp_path: Path) -> None:
    text = ENV_OPTIONS.replace('headers: {X-Request-Source: "${params.src}"}',
                               'headers: {X-Request-Source: "${HOME}-${params.src}"}')
    result = run(tmp_path, text, params={"src": "batch"})
    assert result.ok, result.errors
    assert result.pipeline.step("fetch").config["headers"]["X-Request-Source"] == "${HOME}-batch"


def test_an_unknown_profile_says_where_it_was_asked_for(tmp_path: Path) -> None:
    """A review pasted the README's launchpad config (`profile: dev`) into a pipeline without
    profiles: the error blamed the pipeline file alone."""
    result = run(tmp_path, NO_PROFILES, profile="dev")
    assert any("profile 'dev' (asked for by --profile, or by `profile` in the run config) is "
               "not defined in this pipeline (profiles: none)" in str(e) for e in result.errors)


@pytest.mark.parametrize("text", ["05", "+5", " 5", "5 ", "1_0", "\uff15", "٥", "0x10", "-05",
                                  "-0"])
def test_integer_text_that_is_not_written_as_its_number_is_refused(tmp_path, text):
    """Python's int() read '05' as 5 (and '+5', ' 5', '1_0', a full-width '５' alike): a
    partition path `2024-${params.month}` became `2024-5` where Osiris writes `2024-05`."""
    result = run(tmp_path, NO_PROFILES, params={"limit": text})
    assert len(result.errors) == 1, [str(d) for d in result.errors]
    message = result.errors[0].message
    assert f"got {text!r}" in message and "type: string" in message, message
    result = run(tmp_path, NO_PROFILES, env={"OSIRIS_PARAM_LIMIT": text})
    assert len(result.errors) == 1 and "OSIRIS_PARAM_LIMIT" in result.errors[0].message


@pytest.mark.parametrize("text", ["1_000.5", " 1.5", "+1.5", "inf", "nan", "١.٥", "0x1p3"])
def test_number_text_that_is_not_a_plain_decimal_is_refused(tmp_path, text):
    result = run(tmp_path, NO_PROFILES, params={"ratio": text})
    assert len(result.errors) == 1, [str(d) for d in result.errors]
    assert f"got {text!r}" in result.errors[0].message


@pytest.mark.parametrize("name, text, value", [
    ("limit", "12", 12), ("limit", "9000000000000000000", 9 * 10**18),
    ("ratio", "1", 1.0), ("ratio", "-0.25", -0.25), ("ratio", "1e3", 1000.0),
    ("ratio", ".5", 0.5)])
def test_plain_number_text_is_parsed(tmp_path, name, text, value):
    result = run(tmp_path, NO_PROFILES, params={name: text})
    assert not result.errors, [str(d) for d in result.errors]
    assert result.pipeline.params[name] == value


def test_static_partition_keys_an_integer_partition_key_cannot_take_fail_validation(
        tmp_path):
    """Month keys '01'..'12' with `partition_key: {type: integer}` were valid, then every run
    of such a partition failed with "pass 5", which a partition key cannot do."""
    text = textwrap.dedent("""\
        oml_version: "0.1.0"
        name: parts
        params:
          partition_key: {type: integer, default: 0}
        x-dagster:
          partitions: {static: ["05", "6"]}
        steps:
          - id: q
            component: duckdb.processor
            mode: transform
            config: {query: "SELECT ${params.partition_key} AS k"}
    """)
    result = run(tmp_path, text)
    assert [(d.line, "'05'" in d.message and "type: string" in d.message)
            for d in result.errors] == [(6, True)], [str(d) for d in result.errors]
    assert not run(tmp_path, text.replace('"05", ', "")).errors


def test_a_parameter_name_yaml_reads_as_a_boolean_says_to_quote_it(tmp_path):
    """`off: 0` declared the parameter `False`: `${params.off}` was then 'unresolved' although
    it is declared, with no word about why."""
    result = run(tmp_path, """\
        oml_version: "0.1.0"
        name: offp
        params:
          off: 0
        steps:
          - id: q
            component: duckdb.processor
            mode: transform
            config: {query: "SELECT ${params.off} AS n"}
        """)
    (first,) = result.errors  # and no 'unresolved parameter' after it
    assert first.line == 4
    assert first.message.startswith("parameter name False is not text: YAML reads an unquoted "
                                    "`off`") and "quote the name (`'off': 0`)" in first.message
    digits = run(tmp_path, """\
        oml_version: "0.1.0"
        name: onep
        params:
          1: 5
        steps:
          - id: q
            component: duckdb.processor
            mode: transform
            config: {query: "SELECT ${params.1} AS n"}
        """)
    assert [d.message.split(":")[0] for d in digits.errors] == ["parameter name 1 is not text"]
    spec_form = run(tmp_path, """\
        oml_version: "0.1.0"
        name: offp
        params:
          off: {default: 1}
        steps:
          - id: q
            component: duckdb.processor
            mode: transform
            config: {query: "SELECT ${params.off} AS n"}
        """)
    assert [d.message.split(":")[0] for d in spec_form.errors] == [
        "parameter name False is not text"]
    quoted = run(tmp_path, """\
        oml_version: "0.1.0"
        name: offp
        params:
          'off': 0
        steps:
          - id: q
            component: duckdb.processor
            mode: transform
            config: {query: "SELECT ${params.off} AS n"}
        """)
    assert cfg(quoted, "q")["query"] == "SELECT 0 AS n"
