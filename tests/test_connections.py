"""osiris_connections.yaml: lookup order, @family.alias, defaults, ${VAR}, .env, masking."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from osiris_dagster.core.environment import environment, load_dotenv
from osiris_dagster.core.errors import ConnectionError_
from osiris_dagster.core.masking import MASK, Masker
from osiris_dagster.runtime.connections import FILE_NAME, Connections, find_connections_file

CONNS = """\
version: 1
connections:
  mysql:
    db_movies:
      host: ${MYSQL_HOST}
      port: 3306
      database: movies
      user: ${MYSQL_USER}
      password: ${MYSQL_PASSWORD}
    replica:
      default: true
      host: replica.internal
      database: movies
      user: reader
      password: ${MYSQL_REPLICA_PASSWORD}
  supabase:
    main:
      url: https://abcd.supabase.co
      service_role_key: ${SUPABASE_SERVICE_ROLE_KEY}
      pg_dsn: postgresql://postgres:${PG_PASSWORD}@db.abcd.supabase.co:5432/postgres
    default:
      url: https://default.supabase.co
      key: ${SUPABASE_KEY}
  posthog:
    eu:
      api_key: ${POSTHOG_KEY}
      project_id: "123"
      region: eu
    us:
      api_key: ${POSTHOG_KEY}
      project_id: "456"
  filesystem:
    local:
      base_dir: data/in
    absolute:
      base_dir: /srv/data
"""

ENV = {
    "MYSQL_HOST": "mysql.internal",
    "MYSQL_USER": "etl",
    "MYSQL_PASSWORD": "Sup3r-Secret-Pw",
    "MYSQL_REPLICA_PASSWORD": "replica-pw-123",
    "SUPABASE_SERVICE_ROLE_KEY": "srk-0123456789abcdef",
    "PG_PASSWORD": "pg-pass-987",
    "SUPABASE_KEY": "anon-key-abcdef",
    "POSTHOG_KEY": "phc_secretkey_42",
}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def conns_file(tmp_path: Path) -> Path:
    return write(tmp_path / "cfg" / FILE_NAME, CONNS)


def conns(path: Path, env: dict | None = None) -> Connections:
    return Connections(path, env=ENV if env is None else env)


# --- lookup order -------------------------------------------------------------------------------
@pytest.fixture
def four_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    places = {
        "explicit": write(tmp_path / "explicit" / "my_conns.yaml", CONNS),
        "env": write(tmp_path / "from_env" / FILE_NAME, CONNS),
        "cwd": write(tmp_path / "cwd" / FILE_NAME, CONNS),
        "pipeline_dir": write(tmp_path / "pipelines" / FILE_NAME, CONNS),
    }
    places["pipeline"] = write(tmp_path / "pipelines" / "p.yaml", "name: x\n")
    monkeypatch.chdir(tmp_path / "cwd")
    return places


def test_lookup_explicit_wins(four_places):
    got = find_connections_file(four_places["explicit"], four_places["pipeline"],
                                env={"OSIRIS_CONNECTIONS": str(four_places["env"])})
    assert got == four_places["explicit"].resolve()


def test_lookup_env_beats_cwd(four_places):
    got = find_connections_file(None, four_places["pipeline"],
                                env={"OSIRIS_CONNECTIONS": str(four_places["env"])})
    assert got == four_places["env"].resolve()


def test_lookup_cwd_beats_pipeline_dir(four_places):
    assert find_connections_file(None, four_places["pipeline"], env={}) == \
        four_places["cwd"].resolve()


def test_lookup_pipeline_dir_last(four_places, monkeypatch):
    four_places["cwd"].unlink()
    assert find_connections_file(None, four_places["pipeline"], env={}) == \
        four_places["pipeline_dir"].resolve()


def test_lookup_nothing_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_connections_file(None, tmp_path / "p.yaml", env={}) is None
    assert find_connections_file(None, None, env={}) is None


def test_lookup_uses_process_env_by_default(four_places, monkeypatch):
    monkeypatch.setenv("OSIRIS_CONNECTIONS", str(four_places["env"]))
    assert find_connections_file(None, four_places["pipeline"]) == four_places["env"].resolve()


def test_lookup_missing_explicit_or_env_file_is_an_error(tmp_path):
    with pytest.raises(ConnectionError_, match="does not exist"):
        find_connections_file(tmp_path / "nope.yaml", None, env={})
    with pytest.raises(ConnectionError_, match="OSIRIS_CONNECTIONS"):
        find_connections_file(None, None, env={"OSIRIS_CONNECTIONS": str(tmp_path / "no.yaml")})


# --- references ---------------------------------------------------------------------------------
def test_explicit_alias_resolves_with_env_substitution(conns_file):
    rc = conns(conns_file).resolve("mysql", "@mysql.db_movies")
    assert (rc.family, rc.alias, rc.ref) == ("mysql", "db_movies", "@mysql.db_movies")
    assert dict(rc.values) == {"host": "mysql.internal", "port": 3306, "database": "movies",
                               "user": "etl", "password": "Sup3r-Secret-Pw"}
    assert rc.source == conns_file


def test_substitution_inside_longer_string(conns_file):
    rc = conns(conns_file).resolve("supabase", "@supabase.main")
    assert rc.values["pg_dsn"] == \
        "postgresql://postgres:pg-pass-987@db.abcd.supabase.co:5432/postgres"


def test_repr_does_not_show_secrets(conns_file):
    rc = conns(conns_file).resolve("mysql", "@mysql.db_movies")
    assert "Sup3r-Secret-Pw" not in repr(rc)


def test_default_true_alias_is_chosen_and_flag_stripped(conns_file):
    rc = conns(conns_file).resolve("mysql", None)
    assert rc.alias == "replica"
    assert "default" not in rc.values
    assert rc.values["password"] == "replica-pw-123"


def test_alias_named_default_is_the_fallback(conns_file):
    rc = conns(conns_file).resolve("supabase", None)
    assert rc.alias == "default"
    assert rc.values["url"] == "https://default.supabase.co"


def test_default_true_beats_alias_named_default(tmp_path):
    path = write(tmp_path / FILE_NAME, """\
        connections:
          mysql:
            default: {host: a, database: d, user: u, password: p1234}
            primary: {default: true, host: b, database: d, user: u, password: p1234}
    """)
    assert Connections(path, env={}).resolve("mysql", None).alias == "primary"


def test_no_default_lists_aliases(conns_file):
    with pytest.raises(ConnectionError_) as info:
        conns(conns_file).resolve("posthog", None)
    msg = str(info.value)
    assert "posthog" in msg and "eu" in msg and "us" in msg
    assert "default" in msg


def test_family_mismatch(conns_file):
    with pytest.raises(ConnectionError_) as info:
        conns(conns_file).resolve("supabase", "@mysql.db_movies")
    msg = str(info.value)
    assert "'mysql'" in msg and "'supabase'" in msg


@pytest.mark.parametrize("ref", ["mysql.db_movies", "@mysql", "@mysql.db.x", "@.x"])
def test_bad_reference_format(conns_file, ref):
    with pytest.raises(ConnectionError_, match="@family.alias"):
        conns(conns_file).resolve("mysql", ref)


def test_unknown_alias_lists_aliases(conns_file):
    with pytest.raises(ConnectionError_) as info:
        conns(conns_file).resolve("mysql", "@mysql.nope")
    msg = str(info.value)
    assert "@mysql.nope" in msg and "db_movies" in msg and "replica" in msg


def test_unknown_family_lists_families(conns_file):
    with pytest.raises(ConnectionError_) as info:
        conns(conns_file).resolve("graphql", "@graphql.github")
    msg = str(info.value)
    assert "'graphql'" in msg and "mysql" in msg and "supabase" in msg


def test_no_connections_file(tmp_path):
    with pytest.raises(ConnectionError_) as info:
        Connections(None, env={}).resolve("mysql", "@mysql.db_movies")
    assert FILE_NAME in str(info.value)
    assert "@mysql.db_movies" in str(info.value)


def test_invalid_yaml_in_connections_file(tmp_path):
    path = write(tmp_path / FILE_NAME, "connections:\n  mysql:\n    a: [\n")
    with pytest.raises(ConnectionError_, match="invalid YAML"):
        Connections(path, env={}).resolve("mysql", "@mysql.a")


def test_missing_connections_key(tmp_path):
    path = write(tmp_path / FILE_NAME, "version: 1\nmysql: {}\n")
    with pytest.raises(ConnectionError_, match="connections"):
        Connections(path, env={}).resolve("mysql", "@mysql.a")


# --- ${VAR} errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [None, ""])
def test_unset_or_empty_variable(conns_file, value):
    env = dict(ENV)
    if value is None:
        del env["MYSQL_PASSWORD"]
    else:
        env["MYSQL_PASSWORD"] = value
    with pytest.raises(ConnectionError_) as info:
        conns(conns_file, env).resolve("mysql", "@mysql.db_movies")
    msg = str(info.value)
    assert "MYSQL_PASSWORD" in msg
    assert ("is not set" if value is None else "is set but empty") in msg
    assert "'password'" in msg
    assert "mysql" in msg and "db_movies" in msg
    for secret in ENV.values():
        assert secret not in msg


def test_missing_variable_error_does_not_leak_resolved_dsn_secret(conns_file):
    env = {k: v for k, v in ENV.items() if k != "SUPABASE_SERVICE_ROLE_KEY"}
    with pytest.raises(ConnectionError_) as info:
        conns(conns_file, env).resolve("supabase", "@supabase.main")
    msg = str(info.value)
    assert "SUPABASE_SERVICE_ROLE_KEY" in msg and "service_role_key" in msg
    assert "supabase" in msg and "main" in msg
    assert "pg-pass-987" not in msg


def test_only_the_selected_alias_needs_its_variables(conns_file):
    env = {"MYSQL_REPLICA_PASSWORD": "replica-pw-123"}
    rc = conns(conns_file, env).resolve("mysql", "@mysql.replica")
    assert rc.values["password"] == "replica-pw-123"


# --- .env ---------------------------------------------------------------------------------------
def test_dotenv_in_working_directory(tmp_path, monkeypatch, conns_file):
    for k in ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("MYSQL_HOST", "real-env-host")
    wd = tmp_path / "wd"
    write(wd / ".env", """\
        # comment
        export MYSQL_HOST=dotenv-host
        MYSQL_USER="dotenv user"
        MYSQL_PASSWORD='from-dotenv-pw'
        EMPTY=
    """)
    monkeypatch.chdir(wd)
    rc = Connections(conns_file).resolve("mysql", "@mysql.db_movies")
    assert rc.values["host"] == "real-env-host"  # the real environment wins
    assert rc.values["user"] == "dotenv user"
    assert rc.values["password"] == "from-dotenv-pw"


def test_load_dotenv_parsing(tmp_path):
    path = write(tmp_path / ".env", """\
        A=1
        export B=two
        C="quoted # not a comment"
        D=value # trailing comment
        # E=commented
        garbage line
        F = spaced
    """)
    assert load_dotenv(path) == {"A": "1", "B": "two", "C": "quoted # not a comment",
                                 "D": "value", "F": "spaced"}
    assert load_dotenv(tmp_path / "missing.env") == {}


def test_load_dotenv_quotes_escapes_and_multiline_values(tmp_path, monkeypatch):
    """What the old line-by-line reader got wrong: a comment after a quoted value kept the
    quotes, escaped quotes kept their backslashes, a multiline value was cut at its first line.
    `${VAR}` stays literal (the connections file expands it) and os.environ is not changed."""
    monkeypatch.delenv("OSIRIS_TEST_DOTENV_KEY", raising=False)
    path = write(tmp_path / ".env", """\
        G="quoted" # comment after the quotes
        H="say \\"hi\\""
        KEY="-----BEGIN KEY-----
        abc
        -----END KEY-----"
        K=${A}x
        NO_VALUE
        OSIRIS_TEST_DOTENV_KEY=set-by-file
    """)
    assert load_dotenv(path) == {
        "G": "quoted", "H": 'say "hi"',
        "KEY": "-----BEGIN KEY-----\nabc\n-----END KEY-----",
        "K": "${A}x", "OSIRIS_TEST_DOTENV_KEY": "set-by-file"}
    assert "OSIRIS_TEST_DOTENV_KEY" not in os.environ


def test_environment_never_overrides_real_env(tmp_path, monkeypatch):
    write(tmp_path / ".env", "OSIRIS_TEST_X=from-file\nOSIRIS_TEST_Y=only-file\n")
    monkeypatch.setenv("OSIRIS_TEST_X", "from-env")
    env = environment(tmp_path)
    assert env["OSIRIS_TEST_X"] == "from-env"
    assert env["OSIRIS_TEST_Y"] == "only-file"


# --- base_dir -----------------------------------------------------------------------------------
def test_relative_base_dir_is_relative_to_connections_file(conns_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = conns(conns_file).resolve("filesystem", "@filesystem.local")
    assert rc.base_dir == (conns_file.parent / "data" / "in").resolve()


def test_absolute_base_dir_kept(conns_file):
    rc = conns(conns_file).resolve("filesystem", "@filesystem.absolute")
    assert rc.base_dir == Path("/srv/data").resolve()


def test_no_base_dir(conns_file):
    assert conns(conns_file).resolve("mysql", "@mysql.db_movies").base_dir is None


# --- masking ------------------------------------------------------------------------------------
def test_resolved_secrets_are_registered_in_masker(conns_file):
    masker = Masker()
    conns(conns_file).resolve("mysql", "@mysql.db_movies", masker=masker)
    out = masker.text("login failed for etl with Sup3r-Secret-Pw on mysql.internal")
    assert "Sup3r-Secret-Pw" not in out
    assert MASK in out
    assert "mysql.internal" in out  # host is not a secret


def test_password_inside_dsn_is_masked(conns_file):
    masker = Masker()
    conns(conns_file).resolve("supabase", "@supabase.main", masker=masker)
    out = masker.text("could not connect: password pg-pass-987 rejected; "
                      "key srk-0123456789abcdef")
    assert "pg-pass-987" not in out
    assert "srk-0123456789abcdef" not in out


def test_dsn_password_masked_by_pattern_without_registration():
    out = Masker().text("error at postgresql://u:hunter22@db.example.com/app")
    assert "hunter22" not in out
    assert "postgresql://u:" in out and "@db.example.com/app" in out


def test_dsn_under_non_secret_field_is_masked(tmp_path):
    path = write(tmp_path / FILE_NAME, """\
        connections:
          supabase:
            main:
              url: https://x.supabase.co
              sql_url: postgresql://app:${PGPW}@h/db
    """)
    masker = Masker()
    Connections(path, env={"PGPW": "dsn-pw-5555"}).resolve("supabase", "@supabase.main",
                                                          masker=masker)
    assert "dsn-pw-5555" not in masker.text("server said: bad password dsn-pw-5555")


def test_masker_value_masks_secret_fields():
    masker = Masker(["tok-abcdef"])
    got = masker.value({"host": "h", "password": "x", "nested": {"api_key": "k"},
                        "note": "uses tok-abcdef", "primary_key": ["id"]})
    assert got == {"host": "h", "password": MASK, "nested": {"api_key": MASK},
                   "note": f"uses {MASK}", "primary_key": ["id"]}


def test_empty_secret_in_connection_does_not_garble_text(tmp_path):
    path = write(tmp_path / FILE_NAME, """\
        connections:
          mysql:
            local:
              host: localhost
              database: movies
              user: root
              password: ""
    """)
    masker = Masker()
    Connections(path, env={}).resolve("mysql", "@mysql.local", masker=masker)
    assert masker.text("step extract-movies finished") == "step extract-movies finished"



def test_every_query_value_of_a_url_in_a_connection_field_is_masked():
    """A self-review found a value past 4096 characters partly shown, and a URL inside a
    longer field (or after spaces) not masked at all."""
    from osiris_dagster.core.masking import mask_url_queries

    long = "A" * 5000
    got = mask_url_queries({"endpoint": f"  https://h/x?sas={long}&sig=s1",
                            "cs": "Server=h;Url=https://h/x?sig=abc", "host": "a?b=c",
                            "nested": ["https://x/y?code=1#frag"]})
    assert got == {"endpoint": f"  https://h/x?sas={MASK}&sig={MASK}",
                   "cs": f"Server=h;Url=https://h/x?sig={MASK}", "host": "a?b=c",
                   "nested": [f"https://x/y?code={MASK}#frag"]}
