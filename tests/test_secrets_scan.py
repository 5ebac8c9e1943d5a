"""Planted secrets never appear in session files, DAGSTER_HOME, or any captured output."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pymysql
import pytest

from .helpers import write

MYSQL_PW = "Zq9-mysql-Secret-7781"
GQL_TOKEN = "tok-Ultra-Secret-5599-abcdef"
POSTHOG_KEY = "phx_SuperSecret_4411_zyxw"
SECRETS = (MYSQL_PW, GQL_TOKEN, POSTHOG_KEY)


class _GraphQL(BaseHTTPRequestHandler):
    """Answers with data for the right token; a wrong token gets a 401 that echoes it back."""

    def do_POST(self) -> None:  # noqa: N802
        auth = self.headers.get("Authorization", "")
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if auth == f"Bearer {GQL_TOKEN}" and self.path == "/ok":
            body, status = {"data": {"items": [{"id": 1, "name": "a"}]}}, 200
        else:
            body, status = {"errors": [{"message": f"bad credentials {auth}"}]}, 401
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def graphql_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GraphQL)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


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
    good: {{endpoint: "{graphql_url}/ok", auth_token: "${{GQL_TOKEN}}"}}
    bad: {{endpoint: "{graphql_url}/nope", auth_token: "${{GQL_TOKEN}}"}}
  posthog:
    main: {{api_key: "${{POSTHOG_KEY}}", project_id: "1", region: self_hosted,
           custom_base_url: "http://127.0.0.1:1"}}
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
