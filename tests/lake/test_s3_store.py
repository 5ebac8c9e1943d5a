"""DuckLake with its data on S3 (a real SeaweedFS with signature checks, the catalog in the
machine's PostgreSQL): the secret statement built from the AWS variables lets one process write a
session table and another read it, the files land in the bucket, and a step's seal (no file or
network access outside ``allowed_directories``) still lets the lake write, while everything else
stays refused. Also the unit behaviour of ``s3_secret_sql``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg
import pytest

from osiris_dagster.core.errors import OsirisError
from osiris_dagster.core.naming import quote_literal
from osiris_dagster.runtime.stores.s3 import s3_secret_sql
from osiris_dagster.runtime.workspace import SEALED_SETTINGS

from .s3_server import S3Server, s3_server  # noqa: F401 - the fixture

PG_DSN = "dbname=test host=127.0.0.1 user=postgres"
CATALOG = f"ducklake:postgres:{PG_DSN}"
EXTENSIONS = {"httpfs": "duckdb_extension_httpfs", "ducklake": "duckdb_extension_ducklake",
              "postgres_scanner": "duckdb_extension_postgres_scanner"}
ROWS = 1_000_000
TABLE_SQL = f"SELECT range AS id, 'row ' || range AS label FROM range({ROWS})"


def extension_file(name: str) -> Path:
    """The signed binary the PyPI wheel carries for this DuckDB version (no INSTALL offline)."""
    spec = importlib.util.find_spec(EXTENSIONS[name])
    assert spec is not None and spec.submodule_search_locations, (
        f"pip install {EXTENSIONS[name].replace('_', '-')}=={duckdb.__version__}")
    path = (Path(next(iter(spec.submodule_search_locations))) / "extensions" /
            f"v{duckdb.__version__}" / f"{name}.duckdb_extension")
    assert path.is_file(), f"{path} missing: the wheel does not match DuckDB {duckdb.__version__}"
    return path


def open_lake(env: Mapping[str, str], data_path: str, metadata_schema: str
              ) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name in EXTENSIONS:
        con.execute(f"LOAD {quote_literal(str(extension_file(name)))}")
    statement = s3_secret_sql(env)
    assert statement is not None
    con.execute(statement)
    con.execute(f"ATTACH {quote_literal(CATALOG)} AS lake (DATA_PATH {quote_literal(data_path)}, "
                f"METADATA_SCHEMA {quote_literal(metadata_schema)})")
    return con


def seal(con: duckdb.DuckDBPyConnection, allowed: list[str]) -> None:
    """What a step does before user SQL runs: only ``allowed`` paths, then the runtime's seal."""
    con.execute(f"SET allowed_directories = [{', '.join(quote_literal(p) for p in allowed)}]")
    for statement in SEALED_SETTINGS:
        con.execute(statement)


@dataclass(frozen=True)
class Lake:
    server: S3Server
    prefix: str  # inside the bucket, ends with '/'
    metadata_schema: str

    @property
    def data_path(self) -> str:
        return f"s3://{self.server.bucket}/{self.prefix}"

    def connect(self) -> duckdb.DuckDBPyConnection:
        return open_lake(self.server.env, self.data_path, self.metadata_schema)

    def keys(self, under: str = "") -> dict[str, int]:
        return self.server.client().list_keys(self.server.bucket, self.prefix + under)


@pytest.fixture
def lake(s3_server: S3Server) -> Iterator[Lake]:  # noqa: F811 - the imported fixture
    """A fresh data prefix and catalog schema per test; the catalog schema dropped after."""
    name = f"s3_{uuid.uuid4().hex[:10]}"
    yield Lake(s3_server, f"{name}/", name)
    with psycopg.connect(PG_DSN, autocommit=True) as pg:
        pg.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


# -- a session table on S3 ------------------------------------------------------------------------
READER = """
import json, sys
import duckdb
sys.path.insert(0, sys.argv[1])
from tests.lake.test_s3_store import open_lake
import os
con = open_lake(os.environ, sys.argv[2], sys.argv[3])
print(json.dumps(con.execute("SELECT count(*), sum(id), max(label) FROM lake.sess.t").fetchone()))
"""


def test_a_table_written_to_s3_is_read_by_another_process(lake: Lake) -> None:
    con = lake.connect()
    con.execute("CREATE SCHEMA lake.sess")
    con.execute(f"CREATE TABLE lake.sess.t AS {TABLE_SQL}")
    con.close()

    repo = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", READER, repo, lake.data_path,
                          lake.metadata_schema], env={**os.environ, **lake.server.env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [ROWS, ROWS * (ROWS - 1) // 2, "row 999999"]

    files = lake.keys("sess/t/")  # DuckLake's layout: <data path>/<schema>/<table>/
    assert files and all(k.endswith(".parquet") and size > 0 for k, size in files.items())


def test_a_wrong_secret_key_is_refused_by_the_server(lake: Lake) -> None:
    """The server checks signatures, so the secret statement is really what lets us in."""
    env = {**lake.server.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    con = open_lake(env, lake.data_path, lake.metadata_schema)
    con.execute("CREATE SCHEMA lake.sess")
    with pytest.raises(duckdb.Error, match="403"):
        con.execute("CREATE TABLE lake.sess.t AS SELECT range AS id FROM range(1000)")
    assert lake.keys() == {}


# -- the step seal on S3 --------------------------------------------------------------------------
def _other_session(lake: Lake) -> None:
    """Another session's schema with a table big enough to be a file (DuckLake keeps tables of
    up to 10 rows inline in the catalog, where no path check applies)."""
    con = lake.connect()
    con.execute("CREATE SCHEMA lake.other")
    con.execute("CREATE TABLE lake.other.t AS SELECT range AS id FROM range(1000)")
    con.execute("CREATE SCHEMA lake.sess")
    con.close()


@pytest.mark.parametrize("allowed", ["data path", "session prefix"])
def test_the_seal_lets_a_step_write_its_table_to_s3(lake: Lake, allowed: str) -> None:
    _other_session(lake)
    con = lake.connect()
    prefix = lake.data_path if allowed == "data path" else f"{lake.data_path}sess/"
    seal(con, [prefix])

    con.execute("CREATE TABLE lake.sess.t AS SELECT range AS id FROM range(100000)")
    assert con.execute("SELECT count(*), sum(id) FROM lake.sess.t").fetchone() == (
        100000, 100000 * 99999 // 2)
    assert any(k.endswith(".parquet") for k in lake.keys("sess/t/"))

    refused = "file system operations are disabled by configuration"
    with pytest.raises(duckdb.PermissionException, match=refused):
        con.execute("SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(duckdb.PermissionException, match=refused):
        con.execute("SELECT * FROM read_parquet('https://example.com/x.parquet')")
    with pytest.raises(duckdb.PermissionException, match=refused):  # the bucket past the prefix
        con.execute(f"SELECT * FROM glob('s3://{lake.server.bucket}/**')")
    with pytest.raises(duckdb.PermissionException, match=refused):  # the endpoint, over http
        con.execute(f"SELECT * FROM read_text('{lake.server.endpoint}/{lake.server.bucket}/x')")
    with pytest.raises(duckdb.InvalidInputException, match="configuration has been locked"):
        con.execute("SET allowed_directories = ['/']")

    if allowed == "data path":  # every session's files are reachable
        assert con.execute("SELECT count(*) FROM lake.other.t").fetchone() == (1000,)
    else:  # only this session's: another session's table can be neither read nor written
        with pytest.raises(duckdb.PermissionException, match=refused):
            con.execute("SELECT sum(id) FROM lake.other.t")
        with pytest.raises(duckdb.PermissionException, match=refused):
            con.execute("CREATE TABLE lake.other.t2 AS SELECT range AS id FROM range(100)")
        with pytest.raises(duckdb.PermissionException, match=refused):
            con.execute(f"SELECT * FROM read_parquet('{lake.data_path}other/t/*.parquet')")


def test_session_prefixes_need_their_trailing_slash(lake: Lake) -> None:
    """``allowed_directories`` matches by string prefix: 'sess/' keeps out 'sess10/'."""
    con = lake.connect()
    for schema in ("sess", "sess10"):
        con.execute(f"CREATE SCHEMA lake.{schema}")
    con.execute("CREATE TABLE lake.sess10.t AS SELECT range AS id FROM range(1000)")
    con.close()
    con = lake.connect()
    seal(con, [f"{lake.data_path}sess/"])
    with pytest.raises(duckdb.PermissionException):
        con.execute("SELECT sum(id) FROM lake.sess10.t")


# -- s3_secret_sql --------------------------------------------------------------------------------
FULL = {"AWS_ACCESS_KEY_ID": "AKIA123", "AWS_SECRET_ACCESS_KEY": "s3cr/et",
        "AWS_SESSION_TOKEN": "tok", "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:8333"}


def test_no_aws_variable_gives_no_secret() -> None:
    assert s3_secret_sql({}) is None
    assert s3_secret_sql({"AWS_ACCESS_KEY_ID": "", "AWS_REGION": "", "HOME": "/root"}) is None


def test_the_statement_from_every_variable() -> None:
    assert s3_secret_sql(FULL) == (
        "CREATE OR REPLACE TEMPORARY SECRET osiris_s3 (TYPE s3, PROVIDER config, "
        "KEY_ID 'AKIA123', SECRET 's3cr/et', SESSION_TOKEN 'tok', REGION 'eu-west-1', "
        "ENDPOINT '127.0.0.1:8333', USE_SSL false, URL_STYLE 'path')")


def test_the_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    assert s3_secret_sql() is None
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    assert s3_secret_sql() == ("CREATE OR REPLACE TEMPORARY SECRET osiris_s3 "
                               "(TYPE s3, PROVIDER config, REGION 'eu-north-1')")


def test_the_specific_variable_wins_as_in_the_aws_sdks() -> None:
    sql = s3_secret_sql({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-east-2",
                         "AWS_ENDPOINT_URL_S3": "https://s3.example.com",
                         "AWS_ENDPOINT_URL": "http://other:1"})
    assert sql is not None
    assert "REGION 'eu-west-1'" in sql
    assert "ENDPOINT 's3.example.com', USE_SSL true, URL_STYLE 'path'" in sql
    assert "KEY_ID" not in sql  # no credentials: anonymous requests to a public bucket


@pytest.mark.parametrize(("url", "endpoint", "ssl"), [
    ("http://127.0.0.1:8333", "127.0.0.1:8333", "false"),
    ("http://minio.local:9000/", "minio.local:9000", "false"),
    ("HTTPS://S3.Example.com", "s3.example.com", "true"),
    ("https://[::1]:9000", "[::1]:9000", "true"),
])
def test_endpoint_urls(url: str, endpoint: str, ssl: str) -> None:
    sql = s3_secret_sql({"AWS_ENDPOINT_URL": url})
    assert sql is not None
    assert f"ENDPOINT '{endpoint}', USE_SSL {ssl}, URL_STYLE 'path'" in sql


@pytest.mark.parametrize(("url", "why"), [
    ("127.0.0.1:8333", "no http"),
    ("s3.example.com", "no http"),
    ("ftp://host:21", "scheme must be http or https"),
    ("http://host:99999", "out of range"),
    ("http://host:port", "Port could not be cast"),
    ("http://:9000", "no host"),
    ("http://host:9000/bucket", "no path"),
    ("http://host:9000?x=1", "no path, query"),
    ("http://user:pw@host:9000", "credentials belong in"),
])
def test_a_malformed_endpoint_names_its_variable(url: str, why: str) -> None:
    with pytest.raises(OsirisError, match="AWS_ENDPOINT_URL_S3=") as err:
        s3_secret_sql({"AWS_ENDPOINT_URL_S3": url})
    assert why in str(err.value)
    assert "pw" not in str(err.value)  # a password in the URL is not repeated


def test_half_a_key_pair_is_an_error_naming_both_variables() -> None:
    with pytest.raises(OsirisError, match="AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY"):
        s3_secret_sql({"AWS_ACCESS_KEY_ID": "AKIA"})
    with pytest.raises(OsirisError, match="AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID"):
        s3_secret_sql({"AWS_SECRET_ACCESS_KEY": "x"})
    with pytest.raises(OsirisError, match="AWS_SESSION_TOKEN is set without"):
        s3_secret_sql({"AWS_SESSION_TOKEN": "t"})


def test_values_are_data_never_sql() -> None:
    """A quote, a backslash or an attempt to add options stays inside its value: DuckDB reads
    back exactly the key id given, and no option is added."""
    hostile = "AK'IA\\1', ENDPOINT 'evil.example.com"
    con = duckdb.connect()
    con.execute(f"LOAD {quote_literal(str(extension_file('httpfs')))}")
    sql = s3_secret_sql({"AWS_ACCESS_KEY_ID": hostile, "AWS_SECRET_ACCESS_KEY": "it's",
                         "AWS_REGION": "r'; DROP TABLE x; --"})
    assert sql is not None
    con.execute(sql)
    name, persistent, scope, text = con.execute(
        "SELECT name, persistent, scope, secret_string FROM duckdb_secrets()").fetchone()
    assert (name, persistent) == ("osiris_s3", False)  # temporary: never written to disk
    assert f"key_id={hostile};" in text
    assert "region=r'; DROP TABLE x; --" in text
    assert "endpoint=evil" not in text
    assert "it's" not in text  # DuckDB redacts the secret itself
