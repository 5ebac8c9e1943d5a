"""A duckdb.processor step is sealed, and a parameter is a value, never SQL.

Every case runs the real CLI (many per subprocess) on a pipeline with two extracts, a processor
that needs only the first, and a CSV writer. A query that DuckDB's parser shows to reach past the
step is refused by `validate` before anything runs (exit 2); one that only DuckDB's own settings
can refuse (a file-reading function in a subquery) fails its step (exit 1). Either way the
message names the step and what was refused, nothing outside the step changes (the other step's
table, files, databases) and nothing runs: the checks look at the file system and the session
database, not at words.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime.session import Session
from osiris_dagster.runtime.workspace import StepWorkspace

from .conftest import BatchItem, CliResult, assert_no_traceback, db_tables, run_batch

PIPELINE = """\
oml_version: "0.1.0"
name: sealed
params:
  who: {default: nobody}
  n: {default: 1}
steps:
  - id: people
    component: filesystem.csv_extractor
    mode: read
    config: {path: people.csv}
  - id: secrets
    component: filesystem.csv_extractor
    mode: read
    needs: []
    config: {path: secrets.csv}
  - id: query
    component: duckdb.processor
    mode: transform
    needs: [people]
    config:
      query: %s
  - id: write
    component: filesystem.csv_writer
    mode: write
    config: {path: out.csv}
"""

PEOPLE = "id,name\n1,Ann\n2,Bob\n"
SECRETS = "token\ns3cr3t\n"


@dataclass(frozen=True)
class Case:
    id: str
    query: str
    rc: int
    says: tuple[str, ...] = ()
    params: Mapping[str, str] = field(default_factory=dict)
    rows: list[list[str]] | None = None  # output CSV (header, then rows) when rc == 0
    check: Callable[[Path, CliResult], None] | None = None


def _no_file(name: str) -> Callable[[Path, CliResult], None]:
    def check(cwd: Path, res: CliResult) -> None:
        assert not list(cwd.rglob(name)), f"{name} was written: {res.describe()}"
    return check


INJECTION = "x' AS who, 1 AS n; COPY (SELECT 1) TO 'pwned.csv'; SELECT '1"

CASES = [
    Case("plain-select-works", "SELECT id, upper(name) AS name FROM input_df ORDER BY id", 0,
         rows=[["id", "name"], ["1", "ANN"], ["2", "BOB"]]),
    Case("df-view-and-cte-work",
         "WITH p AS (SELECT * FROM df_people) SELECT count(*) AS n FROM p", 0,
         rows=[["n"], ["2"]]),
    Case("second-statement-drops-another-table",
         "SELECT * FROM input_df; DROP TABLE session.main.secrets", 2,
         ("step 'query'", "refused", "2 statements")),
    Case("copy-to-file", "COPY (SELECT 1) TO 'pwned.csv'", 2,
         ("step 'query'", "refused", "COPY"), check=_no_file("pwned.csv")),
    Case("attach-a-database", "ATTACH 'attached.duckdb' AS x", 2,
         ("step 'query'", "refused", "ATTACH"), check=_no_file("attached.duckdb")),
    Case("install-extension", "INSTALL httpfs", 2, ("step 'query'", "refused")),
    Case("load-extension", "LOAD httpfs", 2, ("step 'query'", "refused")),
    Case("change-a-setting", "SET enable_external_access = true", 2,
         ("step 'query'", "refused", "SET")),
    Case("read-another-step-by-name", "SELECT * FROM session.main.secrets", 2,
         ("step 'query'", "refused", "session.main.secrets", "df_people, input_df")),
    Case("read-another-step-unqualified", "SELECT * FROM secrets", 2,
         ("step 'query'", "refused", "'secrets'")),
    Case("query-table-function", "SELECT * FROM query_table('session.main.secrets')", 2,
         ("step 'query'", "refused", "query_table()")),
    Case("query-function", "SELECT * FROM query('SELECT * FROM session.main.secrets')", 2,
         ("step 'query'", "refused", "query()")),
    Case("catalog-listing", "SELECT * FROM duckdb_tables()", 2,
         ("step 'query'", "refused", "duckdb_tables()")),
    Case("file-by-replacement-scan", "SELECT * FROM 'secrets.csv'", 2,
         ("step 'query'", "refused", "secrets.csv")),
    # SQL text, a table named by a string, the catalog: another step's table without naming it
    Case("serialized-sql-function", "SELECT * FROM json_execute_serialized_sql("
         "json_serialize_sql('SELECT * FROM session.main.secrets'))", 2,
         ("step 'query'", "refused", "json_execute_serialized_sql()")),
    Case("histogram-table-macro", "SELECT * FROM histogram_values('session.main.secrets', token)",
         2, ("step 'query'", "refused", "histogram_values()")),
    Case("show-all-tables", "SHOW ALL TABLES", 2, ("step 'query'", "refused", "SHOW")),
    Case("show-tables", "SHOW TABLES", 2, ("step 'query'", "refused", "SHOW")),
    Case("describe-a-view-works", "SELECT column_name FROM (DESCRIBE input_df)", 0,
         rows=[["column_name"], ["id"], ["name"]]),
    Case("show-a-view-works", "SELECT column_name FROM (SHOW input_df)", 0,
         rows=[["column_name"], ["id"], ["name"]]),
    Case("show-another-table", "SHOW session.main.secrets", 2,
         ("step 'query'", "refused", "session.main.secrets")),
    # a CTE is seen where it is defined, not everywhere: named like a catalog view in a
    # subquery, it does not open that view to the query around it
    Case("cte-name-opens-a-catalog-view",
         "SELECT t.table_name FROM (WITH duckdb_tables AS (SELECT 1) SELECT 1) z, "
         "duckdb_tables t", 2, ("step 'query'", "refused", "'duckdb_tables'")),
    # a CTE's own body, or one listed before it, does not see it: DuckDB reads the catalog
    # view of that name there
    Case("cte-named-like-a-catalog-view-reads-it-in-its-body",
         "WITH duckdb_tables AS (SELECT * FROM duckdb_tables) SELECT table_name FROM "
         "duckdb_tables", 2, ("step 'query'", "refused", "CTE named 'duckdb_tables'")),
    Case("cte-forward-reference",
         "WITH a AS (SELECT * FROM sqlite_master), sqlite_master AS (SELECT 1) SELECT * FROM a",
         2, ("step 'query'", "refused", "'sqlite_master'")),
    Case("cte-name-folded-unlike-duckdb",  # U+212A KELVIN SIGN: DuckDB folds ASCII only
         'WITH "duc\u212adb_tables" AS (SELECT 1) SELECT table_name FROM duckdb_tables', 2,
         ("step 'query'", "refused", "'duckdb_tables'")),
    Case("show-of-a-dotted-cte-name",
         'WITH "session.main.secrets" AS (SELECT 1) SELECT column_name FROM '
         '(SHOW "session.main.secrets")', 2, ("step 'query'", "refused", "session.main.secrets")),
    Case("scalar-macro-reading-the-catalog",
         "SELECT pg_get_viewdef(i) AS v FROM range(0, 1000) t(i) WHERE pg_get_viewdef(i) "
         "IS NOT NULL", 2, ("step 'query'", "refused", "pg_get_viewdef()")),
    # DuckDB binds a CTE to an unqualified name only: main.secrets is not the CTE
    Case("qualified-name-like-a-cte", "WITH secrets AS (SELECT 1 AS token) SELECT token FROM "
         "main.secrets", 2, ("step 'query'", "refused", "'main.secrets'")),
    Case("using-key-recursive-cte-works",
         "WITH RECURSIVE t(k, v) USING KEY (k) AS (SELECT 1, 1 UNION SELECT k, v + 1 FROM "
         "recurring.t WHERE v < 3) SELECT v FROM t", 0, rows=[["v"], ["3"]]),
    Case("cte-named-like-information-schema-works",
         "WITH tables AS (SELECT id FROM input_df) SELECT count(*) AS n FROM tables", 0,
         rows=[["n"], ["2"]]),
    Case("cte-in-scope-works",
         "SELECT * FROM (WITH p AS (SELECT id FROM input_df) SELECT count(*) AS n FROM "
         "(SELECT * FROM p))", 0, rows=[["n"], ["2"]]),
    Case("recursive-cte-works",
         "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 3) "
         "SELECT max(i) AS n FROM r", 0, rows=[["n"], ["3"]]),
    Case("row-functions-work", "SELECT r.range AS n, u.unnest AS u FROM range(1) r, "
         "unnest(['a']) u", 0, rows=[["n", "u"], ["0", "a"]]),
    # DuckDB's summary() spins without end when its argument is not a subquery
    Case("summary-of-a-bare-name-spins", "SELECT * FROM summary(input_df)", 2,
         ("step 'query'", "refused", "summary()", "subquery")),
    Case("summary-of-a-subquery-works",
         "SELECT count(*) AS n FROM summary((SELECT id FROM input_df))", 0,
         rows=[["n"], ["2"]]),
    # only table functions that make rows: one that reads files is refused before the run, even
    # inside a subquery (DuckDB's own settings would refuse it too: the test below)
    Case("read-system-file", "SELECT * FROM input_df WHERE (SELECT count(*) FROM "
         "read_text('/etc/hostname')) > 0", 2, ("step 'query'", "refused", "read_text()",
                                                 "filesystem.csv_extractor")),
    Case("read-csv-of-any-file", "SELECT * FROM read_csv('/etc/passwd')", 2,
         ("step 'query'", "refused", "read_csv()")),
    Case("glob-home", "SELECT * FROM glob('~/*')", 2, ("step 'query'", "refused", "glob()")),
    Case("dynamic-pivot-gets-a-hint", "PIVOT input_df ON name USING count(*)", 2,
         ("step 'query'", "IN list")),
    Case("pivot-with-in-list-works",
         "SELECT id, Ann, Bob FROM (PIVOT input_df ON name IN ('Ann', 'Bob') USING count(*) "
         "GROUP BY id) ORDER BY id", 0,
         rows=[["id", "Ann", "Bob"], ["1", "1", "0"], ["2", "0", "1"]]),
    # parameters: values, never SQL
    Case("param-with-a-quote-is-one-value", "SELECT ${params.who} AS who, '${params.who}!' "
         "AS greeting, ${params.n} + 1 AS n", 0, params={"who": "O'Brien", "n": "41"},
         rows=[["who", "greeting", "n"], ["O'Brien", "O'Brien!", "42"]]),
    Case("param-injection-in-a-string-stays-a-value",
         "SELECT '${params.who}' AS who, ${params.n} AS n", 0, params={"who": INJECTION},
         rows=[["who", "n"], [INJECTION, "1"]], check=_no_file("pwned.csv")),
    Case("param-injection-in-code-stays-a-value", "SELECT ${params.who} AS who", 0,
         params={"who": INJECTION}, rows=[["who"], [INJECTION]], check=_no_file("pwned.csv")),
    Case("param-in-an-identifier-stays-an-identifier",
         'SELECT 1 AS "${params.who}"', 0, params={"who": 'a" , 2 AS "b'},
         rows=[['a" , 2 AS "b'], ["1"]]),
    Case("param-in-a-comment-runs-nothing",
         "SELECT 1 AS one -- ${params.who}", 0, params={"who": "x\nUNION ALL SELECT 2"},
         rows=[["one"], ["1"]]),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[dict[str, tuple[Path, CliResult]]]:
    root = tmp_path_factory.mktemp("sql_seal")
    items, dirs = [], {}
    for case in CASES:
        cwd = root / case.id
        cwd.mkdir()
        (cwd / "people.csv").write_text(PEOPLE, encoding="utf-8")
        (cwd / "secrets.csv").write_text(SECRETS, encoding="utf-8")
        (cwd / "pipeline.yaml").write_text(PIPELINE % json.dumps(case.query), encoding="utf-8")
        argv = ["run", "pipeline.yaml", "--sessions-dir", "sessions"]
        for name, value in case.params.items():
            argv += ["--param", f"{name}={value}"]
        items.append(BatchItem(case.id, argv, cwd))
        dirs[case.id] = cwd
    out = run_batch(items, root)
    yield {cid: (cwd, out[cid]) for cid, cwd in dirs.items()}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_sealed_sql_step(case: Case, results: dict[str, tuple[Path, CliResult]]) -> None:
    cwd, res = results[case.id]
    assert res.rc == case.rc, res.describe()
    assert_no_traceback(res.output)
    for fragment in case.says:
        assert fragment in res.stderr, f"{fragment!r} not in:\n{res.describe()}"
    if case.rc == 0:
        with open(cwd / "out.csv", newline="", encoding="utf-8") as fh:
            got = list(csv.DictReader(fh))  # the writer orders columns by name, as Osiris
        header, *rows = case.rows or [[]]
        assert got == [dict(zip(header, r, strict=True)) for r in rows]
    else:
        assert not (cwd / "out.csv").exists()
    session = res.session_dir
    if case.rc == 2:  # refused by validate: no run, no session
        assert session is None and not (cwd / "sessions").exists(), res.describe()
    else:
        assert session is not None, res.describe()
        tables = db_tables(session / "pipeline_data.duckdb")
        assert tables.get("secrets") == 1, f"another step's table was changed: {tables}"
        assert ("query" in tables) == (case.rc == 0), tables
    if case.check is not None:
        case.check(cwd, res)


def _session(tmp_path: Path) -> Session:
    return Session(Settings.from_env(tmp_path / "sessions"), "run-1")


def test_sealed_connection_has_duckdbs_own_settings_locked(tmp_path: Path) -> None:
    """The real settings on the step's connection, read back from DuckDB."""
    with StepWorkspace(_session(tmp_path), pipeline_name="p", step_id="s",
                       output_table="s") as ws:
        ws.seal_sql_access()
        settings = dict(ws.con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access',"
            " 'lock_configuration', 'python_enable_replacements', 'autoload_known_extensions',"
            " 'autoinstall_known_extensions', 'allow_community_extensions')").fetchall())
        assert settings == {"enable_external_access": "false", "lock_configuration": "true",
                            "python_enable_replacements": "false",
                            "autoload_known_extensions": "false",
                            "autoinstall_known_extensions": "false",
                            "allow_community_extensions": "false"}
        with pytest.raises(duckdb.Error, match="locked"):
            ws.con.execute("SET enable_external_access = true")
        # what the parse check refuses first, DuckDB refuses too
        for sql in ("SELECT * FROM read_text('/etc/hostname')", "SELECT * FROM glob('/etc/*')",
                    "SELECT * FROM read_csv('/etc/passwd')"):
            with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
                ws.con.execute(sql)
        # still able to write its own table (in the session) and spill to its temp directory
        assert ws.create_output("SELECT range AS x FROM range(5)") == 5


def test_a_sealed_step_can_still_be_retried_with_more_memory(tmp_path: Path) -> None:
    """Raising memory_limit needs a settings change; a sealed step gets a fresh connection
    with the same upstream views, sealed again by the retried driver."""
    session = _session(tmp_path)
    with StepWorkspace(session, pipeline_name="p", step_id="up", output_table="up") as ws:
        ws.create_output("SELECT range AS x FROM range(3)")
    with StepWorkspace(session, pipeline_name="p", step_id="s", output_table="s") as ws:
        ws.add_upstream("up", "df_up", session.db_path, "up", ["input_df"])
        ws.seal_sql_access()
        ws.set_memory_limit(512 * 1024 * 1024, "test")
        limit = ws.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        assert limit.replace(" ", "") in ("512.0MiB", "512MiB", "488.2MiB", "536.8MB")
        assert ws.con.execute("SELECT sum(x) FROM input_df").fetchone()[0] == 3
        ws.seal_sql_access()
        assert ws.con.execute("SELECT current_setting('lock_configuration')").fetchone()[0]


def test_validate_refuses_what_the_run_would_refuse(tmp_path: Path) -> None:
    """`osiris-dagster validate` reports a refused query with its line, before any run."""
    from osiris_dagster.oml import validate_pipeline

    text = PIPELINE % json.dumps("SELECT * FROM input_df; DROP TABLE session.main.secrets")
    text += ("  - id: peek\n    component: duckdb.processor\n    mode: transform\n"
             "    needs: [people]\n    config: {query: \"SELECT * FROM df_secrets\"}\n"
             "  - id: fine\n    component: duckdb.processor\n    mode: transform\n"
             "    needs: [people, secrets]\n"
             "    config: {query: \"SELECT * FROM df_people, df_secrets;\"}\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(text, encoding="utf-8")
    errors = [str(d) for d in validate_pipeline(path, env={}).errors]
    assert len(errors) == 2, errors
    assert ":21: step 'query': refused: the query holds 2 statements" in errors[0]
    assert "step 'peek': refused: the query reads 'df_secrets'" in errors[1]
    assert "tables visible: df_people, input_df" in errors[1]


def test_sql_nested_past_the_stack_is_refused_not_a_crash(tmp_path: Path) -> None:
    """The seal reads DuckDB's parse tree as JSON with a raised recursion limit; on a small
    stack (`ulimit -s 1024`) a query nested ~20,000 levels deep crashed `validate` (exit 139)
    before Python's RecursionError could fire. The limit now follows the stack."""
    import subprocess
    import sys

    query = "SELECT 1 AS id" + " UNION SELECT 1 EXCEPT SELECT 2" * 4950
    (tmp_path / "deep.yaml").write_text(PIPELINE % json.dumps(query), encoding="utf-8")
    cli = Path(sys.executable).with_name("osiris-dagster")
    done = subprocess.run(["bash", "-c", f"ulimit -s 1024 && exec {cli} validate deep.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "step 'query': refused: the SQL is nested too deeply" in done.stdout + done.stderr



def test_a_query_after_a_writer_is_told_why_it_sees_no_table(tmp_path: Path) -> None:
    """It said 'this step has no upstream' for a step whose upstream is a writer."""
    from osiris_dagster.oml import validate_pipeline

    path = tmp_path / "p.yaml"
    path.write_text(
        'oml_version: "0.1.0"\nname: p\nsteps:\n'
        "  - {id: r, component: duckdb.processor, mode: transform, config: {query: "
        "'SELECT 1 AS a'}}\n"
        "  - {id: w, component: filesystem.csv_writer, mode: write, needs: [r], config: "
        "{path: o.csv}}\n"
        "  - {id: q, component: duckdb.processor, mode: transform, needs: [w], config: "
        "{query: 'SELECT * FROM df_w'}}\n", encoding="utf-8")
    (error,) = [str(d) for d in validate_pipeline(path, env={}).errors]
    assert "step 'q': refused: the query reads 'df_w'" in error
    assert "none (no step it needs makes a table; a writer makes none)" in error
