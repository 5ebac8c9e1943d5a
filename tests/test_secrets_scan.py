"""Planted secrets never appear in session files, DAGSTER_HOME, or any captured output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pymysql
import pytest

from osiris_dagster.core.masking import NOT_SECRET, SECRET_NAMES

from .helpers import json_endpoint, write

MYSQL_PW = "Zq9-mysql-Secret-7781"
GQL_TOKEN = "tok-Ultra-Secret-5599-abcdef"
POSTHOG_KEY = "phx_SuperSecret_4411_zyxw"
URL_SIGNATURE = "sig-Secret-3377-qwerty"  # in an endpoint's query string, under no secret name
SECRETS = (MYSQL_PW, GQL_TOKEN, POSTHOG_KEY, URL_SIGNATURE)


def _graphql(path: str, headers: Mapping[str, str]) -> tuple[int, Any]:
    """Answers with data for the right token; a wrong token gets a 401 that echoes it back."""
    auth = headers.get("Authorization", "")
    if auth == f"Bearer {GQL_TOKEN}" and path.split("?")[0] == "/ok":
        return 200, {"data": {"items": [{"id": 1, "name": "a"}]}}
    if path.split("?")[0] == "/echo":  # quotes the signed URL back, and its signature alone
        signature = path.split("sig=")[1]
        return 400, {"errors": [{"message": f"bad request at {path}, signature {signature}"}]}
    return 401, {"errors": [{"message": f"bad credentials {auth}"}]}


@pytest.fixture
def graphql_url() -> Iterator[str]:
    with json_endpoint(_graphql) as url:
        yield url


@pytest.fixture
def mysql_user() -> Iterator[tuple[str, str]]:
    """A real MariaDB user whose password is the planted secret, and a database of its own."""
    user = f"osiris_scan_{uuid.uuid4().hex[:8]}"
    root = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="",
                           autocommit=True)
    with root.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{user}`")
        cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (MYSQL_PW,))
        cur.execute(f"GRANT ALL ON `{user}`.* TO '{user}'@'%'")
        cur.execute(f"CREATE TABLE `{user}`.t (id INT)")
        cur.execute(f"INSERT INTO `{user}`.t VALUES (1), (2)")
    try:
        yield user, user
    finally:
        with root.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
            cur.execute(f"DROP DATABASE IF EXISTS `{user}`")
        root.close()


PIPELINES = {
    "mysql_ok": ("mysql.extractor", "@mysql.good", "query: SELECT * FROM t"),
    "mysql_bad_sql": ("mysql.extractor", "@mysql.good", "query: SELECT nope FROM missing"),
    "mysql_wrong_password": ("mysql.extractor", "@mysql.wrong", "query: SELECT 1"),
    "mysql_unreachable": ("mysql.extractor", "@mysql.unreachable", "query: SELECT 1"),
    "graphql_ok": ("graphql.extractor", "@graphql.good",
                   "query: '{ items { id name } }'\n      data_path: data.items\n"
                   "      auth_type: bearer"),
    "graphql_401": ("graphql.extractor", "@graphql.bad",
                    "query: '{ items { id } }'\n      auth_type: bearer\n      max_retries: 0"),
    "graphql_echoes_its_url": ("graphql.extractor", "@graphql.echo",
                               "query: '{ items { id } }'\n      max_retries: 0"),
    "posthog_unreachable": ("posthog.extractor", "@posthog.main", "data_type: events"),
}


def test_no_secret_anywhere(tmp_path: Path, graphql_url: str, mysql_user: tuple[str, str],
                            monkeypatch: pytest.MonkeyPatch,
                            capfd: pytest.CaptureFixture[str]) -> None:
    from osiris_dagster.cli import main

    user, database = mysql_user
    home = tmp_path / "dagster_home"
    write(home / "dagster.yaml", "telemetry:\n  enabled: false\n")
    for key, value in {"MYSQL_PW": MYSQL_PW, "GQL_TOKEN": GQL_TOKEN,
                       "POSTHOG_KEY": POSTHOG_KEY, "DAGSTER_HOME": str(home)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    connections = write(tmp_path / "osiris_connections.yaml", f"""\
version: 1
connections:
  mysql:
    good: {{host: 127.0.0.1, port: 3306, database: {database}, user: {user},
           password: "${{MYSQL_PW}}"}}
    wrong: {{host: 127.0.0.1, port: 3306, database: {database}, user: root,
            password: "${{MYSQL_PW}}"}}
    unreachable: {{host: 127.0.0.1, port: 1, database: x, user: u, password: "${{MYSQL_PW}}"}}
  graphql:
    good: {{endpoint: "{graphql_url}/ok?sig={URL_SIGNATURE}", auth_token: "${{GQL_TOKEN}}"}}
    bad: {{endpoint: "{graphql_url}/nope", auth_token: "${{GQL_TOKEN}}"}}
    echo: {{endpoint: "{graphql_url}/echo?sig={URL_SIGNATURE}", auth_token: "${{GQL_TOKEN}}"}}
  posthog:
    main: {{api_key: "${{POSTHOG_KEY}}", project_id: "1", region: self_hosted,
           custom_base_url: "http://127.0.0.1:1", max_retries: 1}}
""")
    expected = {"mysql_ok": 0, "graphql_ok": 0}
    output = ""
    for name, (component, ref, extra) in PIPELINES.items():
        p = write(tmp_path / f"{name}.yaml", f"""\
oml_version: "0.1.0"
name: {name.replace('_', '-')}
steps:
  - id: step
    component: {component}
    mode: read
    config:
      connection: "{ref}"
      {extra}
""")
        for debug in ([], ["--debug"]):
            code = main(["run", str(p), "--connections", str(connections), "--sessions-dir",
                         str(tmp_path / "sessions"), *debug])
            captured = capfd.readouterr()
            assert code == expected.get(name, 1), (name, captured.out, captured.err)
            output += captured.out + captured.err

    for secret in SECRETS:
        assert secret not in output
    scanned = 0
    for root in (tmp_path / "sessions", home):
        for f in root.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                scanned += 1
                for secret in SECRETS:
                    assert secret.encode() not in data, f"{secret!r} found in {f}"
    assert scanned > 20


# -- one list of secret names: a secret planted under EVERY name never shows anywhere ------------
# Parametrised over masking.SECRET_NAMES itself, so a name added to the list later is covered
# without touching this test. One pipeline carries every name (a step pair per name) so the
# whole list costs one run: each name gets its own @filesystem connection whose `base_dir`
# contains the secret (so the secret reaches error messages, paths, targets and Dagster
# metadata) and whose field of that name holds the same secret: only the name tells the masker
# that the value is a secret.
SECRET_NAMES_SORTED = sorted(SECRET_NAMES)


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    import dagster as dg

    tmp = tmp_path_factory.mktemp("planted")
    home = tmp / "dagster_home"
    write(home / "dagster.yaml", "telemetry:\n  enabled: false\n")
    secrets = {name: f"Sv{i:02d}x{uuid.uuid4().hex[:14]}"
               for i, name in enumerate(SECRET_NAMES_SORTED)}
    env = {f"OSIRIS_SCAN_SECRET_{i}": secrets[name]
           for i, name in enumerate(SECRET_NAMES_SORTED)}
    aliases, steps = [], []
    for i, name in enumerate(SECRET_NAMES_SORTED):
        data = tmp / "data" / secrets[name]
        write(data / "in.csv", "id,label\n1,a\n2,b\n")
        aliases.append(f"    n{i}: {{base_dir: \"{tmp}/data/${{OSIRIS_SCAN_SECRET_{i}}}\", "
                       f"{name}: \"${{OSIRIS_SCAN_SECRET_{i}}}\"}}")
        for sid, component, extra in ((f"ok-{i}", "filesystem.csv_extractor", "path: in.csv"),
                                      (f"bad-{i}", "filesystem.csv_extractor",
                                       "path: missing.csv"),
                                      (f"out-{i}", "filesystem.csv_writer", "path: out.csv")):
            needs = f"\n    needs: [ok-{i}]" if sid.startswith("out") else ""
            mode = "write" if sid.startswith("out") else "read"
            steps.append(f"  - id: {sid}\n    component: {component}\n    mode: {mode}{needs}\n"
                         f"    config:\n      connection: \"@filesystem.n{i}\"\n      {extra}")
    connections = write(tmp / "osiris_connections.yaml",
                        "version: 1\nconnections:\n  filesystem:\n" + "\n".join(aliases) + "\n")
    pipeline = write(tmp / "planted.yaml", 'oml_version: "0.1.0"\nname: planted\nsteps:\n'
                     + "\n".join(steps) + "\n")
    # the real CLI in its own process: its stdout/stderr (logs and tracebacks included) whole
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from osiris_dagster.cli import main; "
         "sys.exit(main(sys.argv[1:]))", "run", str(pipeline), "--connections", str(connections),
         "--sessions-dir", str(tmp / "sessions"), "--debug"],
        cwd=tmp, env={**os.environ, **env, "DAGSTER_HOME": str(home)}, capture_output=True,
        text=True, check=False)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        metadata = {}
        for i in range(len(SECRET_NAMES_SORTED)):
            ev = instance.get_latest_materialization_event(dg.AssetKey(["planted", f"ok-{i}"]))
            mat = ev.asset_materialization if ev else None
            metadata[i] = {k: str(v.value) for k, v in mat.metadata.items()} if mat else {}
    files = {f: f.read_bytes() for root in (tmp / "sessions", home)
             for f in root.rglob("*") if f.is_file()}
    return {"code": proc.returncode, "secrets": secrets, "output": proc.stdout + proc.stderr,
            "files": files,
            "sessions": tmp / "sessions", "metadata": metadata}


@pytest.mark.parametrize("name", SECRET_NAMES_SORTED)
def test_secret_under_every_name_is_masked_on_every_path(planted_run: dict, name: str) -> None:
    from osiris_dagster.core.masking import MASK

    i = SECRET_NAMES_SORTED.index(name)
    secret = planted_run["secrets"][name]
    assert planted_run["code"] == 1  # the bad-* steps fail, as planned
    # masked on every path: CLI output, session files (logs, events, metrics, artifacts,
    # manifest, database), the Dagster instance (event log, metadata, failures) ...
    assert secret not in planted_run["output"], f"secret under {name!r} in the CLI output"
    for path, data in planted_run["files"].items():
        assert secret.encode() not in data, f"secret under {name!r} found in {path}"
    # ... which it really reached (else this test could not fail)
    session = next(p for p in planted_run["sessions"].iterdir() if not p.name.startswith("."))
    cleaned = json.loads((session / "artifacts" / f"ok-{i}" / "cleaned_config.json").read_text())
    assert cleaned["resolved_connection"][name] == MASK
    assert MASK in cleaned["resolved_connection"]["base_dir"]
    errors = [e["error"] for e in _events(session) if e["event"] == "step_error"
              and e["step_id"] == f"bad-{i}"]
    assert errors and MASK in errors[0] and "missing.csv" in errors[0]
    assert f"step 'bad-{i}' failed" in planted_run["output"]
    assert MASK in planted_run["metadata"][i].get("source_path", ""), planted_run["metadata"][i]


def _events(session: Path) -> list[dict]:
    lines = (session / "logs" / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# -- the same list everywhere else: validator, key=value text, driver channels ------------------
@pytest.mark.parametrize("name", SECRET_NAMES_SORTED)
def test_validator_rejects_a_literal_under_every_secret_name(tmp_path: Path, name: str) -> None:
    """A key the masker would hide in every output must not hold a literal in the pipeline (it
    is in git); a `${VAR}` reference under it is fine."""
    from osiris_dagster.oml import validate_pipeline

    value = "Lit3ral-Secret-Value-99"
    for literal, flagged in ((value, True), ("${SOME_VAR}", False)):
        p = write(tmp_path / f"{name}.yaml", f"""\
oml_version: "0.1.0"
name: inline
steps:
  - id: s
    component: duckdb.processor
    mode: transform
    config:
      query: SELECT 1 AS x
      x-extra:
        {name}: "{literal}"
""")
        result = validate_pipeline(p)
        found = [d for d in result.errors if "inline secret" in d.message]
        assert bool(found) is flagged, (name, literal, [str(d) for d in result.diagnostics])
        assert not any(value in str(d) for d in result.diagnostics)


@pytest.mark.parametrize("name", sorted(NOT_SECRET))
def test_secret_looking_configuration_is_neither_masked_nor_rejected(tmp_path: Path,
                                                                     name: str) -> None:
    from osiris_dagster.core.masking import Masker
    from osiris_dagster.oml import validate_pipeline

    assert Masker().value({name: ["id"]}) == {name: ["id"]}
    p = write(tmp_path / "p.yaml", f"""\
oml_version: "0.1.0"
name: plain
steps:
  - id: s
    component: duckdb.processor
    mode: transform
    config:
      query: SELECT 1 AS x
      x-extra: {{{name}: "plain-config-value"}}
""")
    assert not [d for d in validate_pipeline(p).errors if "inline secret" in d.message]


def test_every_spec_secret_is_on_the_one_list() -> None:
    from osiris_dagster.core.masking import is_secret_key
    from osiris_dagster.oml.specs import SPECS

    for spec in SPECS.values():
        for name in spec.secrets:
            assert is_secret_key(name), (spec.name, name)


@pytest.mark.parametrize("name", SECRET_NAMES_SORTED)
def test_key_value_text_under_every_secret_name_is_masked(name: str) -> None:
    """`name=value` in any message (DSN keywords, query strings) masks the value for every
    name on the list, known value or not."""
    from osiris_dagster.core.masking import MASK, Masker

    for spelled in (name, name.upper()):
        text = Masker().text(f"connect failed: host=db {spelled}=Kv-Secret-1234 sslmode=require")
        assert "Kv-Secret-1234" not in text and f"{spelled}={MASK}" in text
        assert "host=db" in text and "sslmode=require" in text


@pytest.mark.parametrize("name", SECRET_NAMES_SORTED)
def test_supabase_channels_mask_a_secret_under_every_name(name: str) -> None:
    """The Supabase driver's own error texts hide every secret-named connection field (it kept
    a list of eight names of its own before)."""
    from osiris_dagster.core.masking import scrub
    from osiris_dagster.drivers.postgres.connection import supabase_channels

    secret = "Sb-Secret-Value-4242"
    value = f"postgresql://u:{secret}@127.0.0.1:1/db" if "dsn" in name else secret
    conn = {"url": "http://127.0.0.1:1", name: value}
    if name not in ("service_role_key", "anon_key", "key"):
        conn["service_role_key"] = "a-service-role-key"
    channels = supabase_channels("supabase.writer", conn, {})
    assert secret in channels.secrets
    assert secret not in scrub(f"server said: bad {value}", channels.secrets)


def test_malformed_supabase_dsn_is_a_secret_free_driver_error() -> None:
    """psycopg echoes an unparsable DSN (password and all) in its error; the channel builder
    used to catch a non-existent `conninfo.ProgrammingError` and died with an AttributeError."""
    from osiris_dagster.core.errors import DriverError
    from osiris_dagster.drivers.postgres.connection import supabase_channels

    with pytest.raises(DriverError, match="pg_dsn") as err:
        supabase_channels("supabase.writer", {"pg_dsn": "Sb-Secret-Value-4242 nonsense"}, {})
    assert "Sb-Secret-Value-4242" not in str(err.value)


@pytest.mark.parametrize("declaration", ["{default: NOT-SET, sensitive: true}",
                                         "{description: given at run time}"])
def test_a_sensitive_parameter_is_masked_in_every_session_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
        declaration: str) -> None:
    """`sensitive: true` (or a secret-looking name) masks the parameter's value in what a run
    writes: events, cleaned configs, manifest, CLI output. The table still holds the data."""
    from osiris_dagster.cli import main

    secret = f"pw-{uuid.uuid4().hex[:12]}"
    name = "customer" if "sensitive" in declaration else "customer_password"
    home = tmp_path / "dagster_home"
    write(home / "dagster.yaml", "telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "p.yaml", f"""\
oml_version: "0.1.0"
name: sensitive-param
params:
  {name}: {declaration}
steps:
  - id: pick
    component: duckdb.processor
    mode: transform
    config:
      query: "SELECT ${{params.{name}}} AS who, 'x' AS note"
""")
    monkeypatch.setenv(f"OSIRIS_PARAM_{name.upper()}", secret)
    assert main(["run", "p.yaml", "--sessions-dir", "sessions"]) == 0
    output = capfd.readouterr()
    assert secret not in output.out + output.err
    files = [f for f in (tmp_path / "sessions").rglob("*")
             if f.is_file() and f.suffix in (".json", ".jsonl", ".yaml")]
    assert any(f.name == "manifest.yaml" for f in files)
    for f in files:
        assert secret not in f.read_text(encoding="utf-8"), f


def test_a_later_steps_secret_is_masked_in_an_earlier_steps_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
        ) -> None:
    """Only the running step's connection was registered: the first step's error (here a query
    literal DuckDB repeats; a server echoing a request the same way) and the manifest showed
    the password of the writer's connection, resolved only when the writer ran."""
    from osiris_dagster.cli import main

    secret = f"pw-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("LATER_DB_PASSWORD", secret)
    home = tmp_path / "dagster_home"
    write(home / "dagster.yaml", "telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "osiris_connections.yaml", """\
connections:
  mysql:
    later:
      host: 127.0.0.1
      database: test
      user: nobody
      password: ${LATER_DB_PASSWORD}
""")
    write(tmp_path / "p.yaml", f"""\
oml_version: "0.1.0"
name: later-secret
steps:
  - id: first
    component: duckdb.processor
    mode: transform
    config:
      query: "SELECT CAST('{secret}' AS INTEGER) AS n"
  - id: store
    component: mysql.writer
    mode: write
    needs: [first]
    config:
      connection: "@mysql.later"
      table: t
""")
    assert main(["run", "p.yaml", "--sessions-dir", "sessions"]) != 0
    output = capfd.readouterr()
    assert "first" in output.out + output.err
    assert secret not in output.out + output.err
    files = [f for f in (tmp_path / "sessions").rglob("*") if f.is_file() and f.suffix in
             (".json", ".jsonl", ".yaml")]
    assert any(f.name == "manifest.yaml" for f in files)
    for f in files:
        assert secret not in f.read_text(encoding="utf-8"), f


def test_a_dsn_password_is_masked_where_it_shows_alone() -> None:
    """A connection's DSN string registers its `password=` value, so a server echoing the
    password without its name (a quoted literal, a log line) is masked too."""
    from osiris_dagster.core.masking import MASK, Masker

    masker = Masker()
    masker.add_from_connection({"catalog": "postgres:dbname=lake host=db password=Dsn-Pw-8812"})
    assert masker.text("login failed for 'Dsn-Pw-8812'") == f"login failed for '{MASK}'"


def test_a_connection_urls_query_values_are_masked_where_a_server_quotes_them() -> None:
    """Credentials ride in a URL's query string under any name; a value alone is masked when
    it looks like a credential, never an ordinary word, number or date."""
    from osiris_dagster.core.masking import MASK, Masker

    masker = Masker()
    masker.add_from_connection({"endpoint": "https://h/api?sig=Ab12Cd34Ef56Gh&format=json"
                                            "&since=2024-01-01&X-Amz-Signature=f00d"})
    assert masker.text("GET /api?sig=Ab12Cd34Ef56Gh&format=json failed") == \
        f"GET /api?sig={MASK}&format={MASK} failed"
    assert masker.text("X-Amz-Signature=f00d; signature Ab12Cd34Ef56Gh") == \
        f"X-Amz-Signature={MASK}; signature {MASK}"
    assert masker.text("json since 2024-01-01, f00d") == "json since 2024-01-01, f00d"
    masker.add_from_connection({"endpoint": "https://h/api?since=2024-01-01T00:00:00Z"})
    assert masker.text("(at since=2024-01-01T00:00:00Z) 2024-01-01T00:00:00Z") == \
        f"(at since={MASK}) 2024-01-01T00:00:00Z"


def test_a_step_endpoints_query_values_are_masked_too() -> None:
    """A `?sig=` in a step's own `endpoint` (not its connection's) showed in the CLI output,
    events, manifest, cleaned config and Dagster's run storage when the server quoted it."""
    from osiris_dagster.core.masking import MASK, Masker

    masker = Masker()
    masker.add_url_queries([{"endpoint": "http://h/bad?sig=Qm9vYXJ0aGlz1234Kx&format=json",
                             "query": "{ items { id } }"}])
    assert masker.text("400 at /bad?sig=Qm9vYXJ0aGlz1234Kx&format=json (sig Qm9vYXJ0aGlz1234Kx)"
                       ) == f"400 at /bad?sig={MASK}&format={MASK} (sig {MASK})"
    assert masker.text("json { items { id } }") == "json { items { id } }"


@pytest.mark.parametrize("catalog", ["postgres:dbname=lake host=db password=Qz7-Pw-8812",
                                     "postgresql://lake:Qz7-Pw-8812@db:5432/lake"])
def test_a_ducklake_error_is_masked_before_it_is_cut(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, catalog: str) -> None:
    """The DuckLake store's error texts are cut to 400 characters; cut before masking, a
    password across the cut showed its first characters."""
    import duckdb

    from osiris_dagster.core.settings import Settings
    from osiris_dagster.runtime.stores.ducklake import DuckLakeStore

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "S3-Secret-Key-5521")
    store = DuckLakeStore(Settings.from_env(tmp_path, session_store="ducklake",
                                            ducklake_catalog=catalog,
                                            ducklake_data_path=str(tmp_path / "data")))
    for echoed in ("Qz7-Pw-8812", "S3-Secret-Key-5521"):
        for before in range(400 - len(echoed), 400):  # the secret across the 400th character
            text = f"could not connect to {store.data_path}: " + "x" * 400
            text = text[:before] + echoed + " in " + catalog
            exc = duckdb.IOException(text)
            for error in (store._attach_error(exc), store.write_error(exc)):
                shown = str(error)
                assert not any(echoed[:n] in shown for n in range(4, len(echoed) + 1)), shown
