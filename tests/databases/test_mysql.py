"""mysql.extractor and mysql.writer against a real MariaDB/MySQL server."""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from osiris_dagster.core.errors import DriverError

from ..helpers import events, failure_description, materialisations
from .commit_proxy import CommitProxy
from .conftest import Harness, MySQLTarget, PipelineRun

SEED = Path(__file__).resolve().parents[2] / "examples" / "movies_db" / "seed_movies.py"


def _seed(mysql: MySQLTarget, monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    """Run examples/movies_db/seed_movies.py into the test database (as root)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("seed_movies", SEED)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("MYSQL_HOST", mysql.host)
    monkeypatch.setenv("MYSQL_PORT", str(mysql.port))
    monkeypatch.setenv("MYSQL_USER", "root")
    monkeypatch.setenv("MYSQL_PASSWORD", "")
    assert module.main(["--database", mysql.database, *args]) == 0


PIPELINE = """\
oml_version: "0.1.0"
name: mysql-director-stats
steps:
  - id: extract-movies
    component: mysql.extractor
    mode: read
    config:
      connection: "@mysql.db_movies"
      batch_size: 100
      query: |
        SELECT m.movie_id, m.title, m.release_year, m.genre, m.runtime_minutes,
               m.budget_usd, m.box_office_usd, d.director_id, d.name AS director_name,
               d.nationality
        FROM movies m JOIN directors d ON d.director_id = m.director_id
        WHERE m.title LIKE '%'
        ORDER BY m.movie_id
  - id: compute-director-stats
    component: duckdb.processor
    mode: transform
    config:
      query: |
        SELECT director_id, director_name, count(*) AS movie_count,
               sum(box_office_usd) AS total_box_office_usd,
               round(avg(runtime_minutes), 1) AS avg_runtime_minutes
        FROM input_df GROUP BY ALL ORDER BY director_id
  - id: write-director-stats
    component: mysql.writer
    mode: write
    config:
      connection: "@mysql.db_movies"
      table: director_stats
      mode: replace
      create_table: true
"""

CONNECTIONS = """\
version: 1
connections:
  mysql:
    db_movies:
      host: {host}
      port: {port}
      database: {database}
      user: {user}
      password: ${{MYSQL_TEST_PASSWORD}}
"""


def test_pipeline_extract_transform_write_through_dagster(
        mysql: MySQLTarget, run_pipeline: PipelineRun, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(mysql, monkeypatch, "--movies", "250", "--directors", "15")
    monkeypatch.setenv("MYSQL_TEST_PASSWORD", mysql.password)
    mysql.execute("DROP TABLE IF EXISTS director_stats")
    connections = CONNECTIONS.format(host=mysql.host, port=mysql.port, database=mysql.database,
                                     user=mysql.user)
    result, session = run_pipeline(PIPELINE, connections, "mysql-director-stats")
    assert result.success, failure_description(result)

    expected = mysql.query(
        "SELECT d.director_id, d.name, count(*), sum(m.box_office_usd) FROM movies m "
        "JOIN directors d USING (director_id) GROUP BY d.director_id, d.name ORDER BY 1")
    got = mysql.query("SELECT director_id, director_name, movie_count, total_box_office_usd "
                      "FROM director_stats ORDER BY director_id")
    assert [tuple(r) for r in got] == [tuple(r) for r in expected]

    mats = materialisations(result)
    extract = mats["mysql-director-stats/extract-movies"]
    assert extract["dagster/row_count"].value == 250
    schema = {c.name: c.type for c in extract["dagster/column_schema"].schema.columns}
    assert schema["movie_id"] == "INTEGER" and schema["budget_usd"] == "BIGINT"
    assert schema["director_name"] == "VARCHAR" and schema["release_year"] == "SMALLINT"
    write = mats["mysql-director-stats/write-director-stats"]
    target = f"mysql://{mysql.host}:{mysql.port}/{mysql.database}.director_stats"
    assert target in json.dumps({k: str(v.value) for k, v in write.items()})

    evs = events(session)
    assert any(e["event"] == "progress" and e.get("step_id") == "extract-movies" for e in evs)
    complete = [e for e in evs if e["event"] == "step_complete"]
    assert {e["step_id"]: e["rows_written"] for e in complete}["write-director-stats"] == 15
    for path in session.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".yaml", ".sql"):
            assert mysql.password not in path.read_text(), path

    # idempotent seed + replace: a second run gives the same table, not duplicated rows
    result2, _ = run_pipeline(PIPELINE, connections, "mysql-director-stats")
    assert result2.success, failure_description(result2)
    assert mysql.query("SELECT count(*) FROM director_stats")[0][0] == 15


def test_pipeline_failure_names_host_and_hides_the_password(
        mysql: MySQLTarget, run_pipeline: PipelineRun, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "Wr0ng-pa55word-xyz"
    monkeypatch.setenv("MYSQL_TEST_PASSWORD", wrong)
    connections = CONNECTIONS.format(host=mysql.host, port=mysql.port, database=mysql.database,
                                     user=mysql.user)
    pipeline = PIPELINE.split("  - id: compute-director-stats")[0]
    result, session = run_pipeline(pipeline, connections, "mysql-director-stats")
    assert not result.success
    text = failure_description(result)
    assert f"{mysql.host}:{mysql.port}/{mysql.database}" in text
    assert "Check the user and password" in text
    assert wrong not in text
    assert all(wrong not in p.read_text() for p in session.rglob("*") if p.is_file()
               and p.suffix in (".json", ".jsonl", ".yaml"))


# -- extractor: types -----------------------------------------------------------------------------

TYPES_DDL = """
CREATE TABLE {t} (
  id INT PRIMARY KEY,
  price DECIMAL(10,2), price_u DECIMAL(12,4) UNSIGNED, huge DECIMAL(65,10),
  created DATETIME(6), stamped TIMESTAMP NULL, born DATE, at_time TIME,
  flag TINYINT(1), tiny_u TINYINT UNSIGNED, small SMALLINT, medium_u MEDIUMINT UNSIGNED,
  int_u INT UNSIGNED, big BIGINT, big_u BIGINT UNSIGNED, yr YEAR, bits BIT(12),
  ratio FLOAT, score DOUBLE, doc JSON, payload BLOB, raw VARBINARY(16), code BINARY(3),
  name VARCHAR(50), body TEXT, initials CHAR(3), kind ENUM('a','b'), tags SET('x','y')
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""

EXPECTED_TYPES = {
    "id": "INTEGER", "price": "DECIMAL(10,2)", "price_u": "DECIMAL(12,4)", "huge": "DOUBLE",
    "created": "TIMESTAMP", "stamped": "TIMESTAMP", "born": "DATE", "at_time": "TIME",
    "flag": "TINYINT", "tiny_u": "UTINYINT", "small": "SMALLINT", "medium_u": "UINTEGER",
    "int_u": "UINTEGER", "big": "BIGINT", "big_u": "UBIGINT", "yr": "SMALLINT",
    "bits": "UBIGINT", "ratio": "FLOAT", "score": "DOUBLE", "doc": "JSON", "payload": "BLOB",
    "raw": "BLOB", "code": "BLOB", "name": "VARCHAR", "body": "VARCHAR", "initials": "VARCHAR",
    "kind": "VARCHAR", "tags": "VARCHAR",
}


@pytest.fixture
def types_table(mysql: MySQLTarget) -> str:
    mysql.execute("DROP TABLE IF EXISTS types_src", TYPES_DDL.format(t="types_src"))
    conn = mysql.connect()
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO types_src VALUES (1, 12345678.91, 99999999.9999, "
            "1234567.5, '2024-02-29 23:59:58.123456', "
            "'2024-01-02 03:04:05', '1969-07-20', '13:37:00', 1, 255, -32768, 16777215, "
            "4294967295, -9223372036854775808, 18446744073709551615, 2024, b'101010101010', "
            "1.5, 2.718281828459045, '{\"a\": [1, 2], \"ü\": null}', x'00ff10', x'0102', "
            "'ab', 'Žluťoučký kůň 🐎', 'line1\\nline2 \"quoted\"', 'é', 'b', 'x,y')")
        cur.execute("INSERT INTO types_src (id) VALUES (2)")
    conn.close()
    return "types_src"


def test_extract_maps_mysql_types_faithfully(mysql: MySQLTarget, harness: Harness,
                                             types_table: str) -> None:
    out = harness.extract("mysql.extractor", mysql.connection(), table=types_table)
    assert out.types == EXPECTED_TYPES
    assert out.result.rows_read == 2 and out.result.table == "x"
    full, empty = sorted(out.rows, key=lambda r: r[0])
    row = dict(zip(out.columns, full, strict=True))
    assert row["price"] == Decimal("12345678.91")
    assert row["price_u"] == Decimal("99999999.9999")
    assert row["huge"] == 1234567.5  # DECIMAL(65,10): a DOUBLE, the value held exactly
    assert row["created"] == dt.datetime(2024, 2, 29, 23, 59, 58, 123456)
    assert row["stamped"] == dt.datetime(2024, 1, 2, 3, 4, 5)
    assert row["born"] == dt.date(1969, 7, 20)
    assert row["at_time"] == dt.time(13, 37)
    assert row["flag"] == 1 and row["tiny_u"] == 255 and row["small"] == -32768
    assert row["medium_u"] == 16777215 and row["int_u"] == 4294967295
    assert row["big"] == -9223372036854775808 and row["big_u"] == 18446744073709551615
    assert row["yr"] == 2024 and row["bits"] == 0b101010101010
    assert row["ratio"] == 1.5 and row["score"] == 2.718281828459045
    assert json.loads(row["doc"]) == {"a": [1, 2], "ü": None}
    assert row["payload"] == b"\x00\xff\x10" and row["raw"] == b"\x01\x02"
    assert row["code"] == b"ab\x00"
    assert row["name"] == "Žluťoučký kůň 🐎"
    assert row["body"] == 'line1\nline2 "quoted"'
    assert row["initials"] == "é" and row["kind"] == "b" and row["tags"] == "x,y"
    assert empty[0] == 2 and all(v is None for v in empty[1:])
    assert any(m["metric"] == "rows_read" and m["value"] == 2 for m in harness.metrics())


def test_extract_wider_decimal_than_duckdb_holds_is_exact_or_fails(
        mysql: MySQLTarget, harness: Harness) -> None:
    """MySQL decimals wider than DuckDB's 38 digits (any SUM() of a BIGINT is DECIMAL(41,0))
    become DOUBLE only where a double holds the value; otherwise the step fails naming the
    column and the value (before, 9007199254740993 silently became 9007199254740992.0)."""
    mysql.execute("DROP TABLE IF EXISTS wide_sums",
                  "CREATE TABLE wide_sums (v BIGINT)", "INSERT INTO wide_sums VALUES (3), (4)")
    query = ("SELECT SUM(v) AS s, CAST(0.1 AS DECIMAL(65,30)) AS d, "
             "CAST(NULL AS DECIMAL(65,0)) AS n FROM wide_sums")
    out = harness.extract("mysql.extractor", mysql.connection(), query=query)
    assert out.types == {"s": "DOUBLE", "d": "DOUBLE", "n": "DOUBLE"}
    assert out.rows == [(7.0, 0.1, None)]
    mysql.execute("INSERT INTO wide_sums VALUES (9007199254740986)")
    with pytest.raises(DriverError) as info:
        harness.extract("mysql.extractor", mysql.connection(), query=query)
    msg = str(info.value)
    assert "column 's' holds '9007199254740993'" in msg and "DECIMAL(41,0)" in msg
    assert "A DOUBLE would not give back its digits" in msg and "(in `query`, or in" in msg


def test_extract_empty_result_keeps_typed_columns(mysql: MySQLTarget, harness: Harness,
                                                  types_table: str) -> None:
    out = harness.extract("mysql.extractor", mysql.connection(),
                          query="SELECT id, price, created, doc FROM types_src WHERE 1 = 0")
    assert out.rows == []
    assert out.types == {"id": "INTEGER", "price": "DECIMAL(10,2)", "created": "TIMESTAMP",
                         "doc": "VARCHAR"}  # a query's MariaDB JSON is LONGTEXT: VARCHAR


def test_zero_dates_fail_naming_the_column_or_become_null_on_request(
        mysql: MySQLTarget, harness: Harness) -> None:
    conn = mysql.connect()
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("DROP TABLE IF EXISTS zero_dates")
        cur.execute("CREATE TABLE zero_dates (id INT PRIMARY KEY, d DATE, ts DATETIME)")
        cur.execute("INSERT INTO zero_dates VALUES (1, '2024-05-01', '2024-05-01 10:00:00'), "
                    "(2, '0000-00-00', '0000-00-00 00:00:00'), (3, NULL, NULL)")
    conn.close()
    with pytest.raises(DriverError) as info:
        harness.extract("mysql.extractor", mysql.connection(), table="zero_dates")
    msg = str(info.value)
    assert "column 'd'" in msg and "0000-00-00" in msg and "zero_dates: null" in msg
    assert f"{mysql.host}:{mysql.port}/{mysql.database}" in msg

    out = harness.extract("mysql.extractor", mysql.connection(), table="zero_dates",
                          zero_dates="null")
    assert sorted(out.rows) == [(1, dt.date(2024, 5, 1), dt.datetime(2024, 5, 1, 10)),
                                (2, None, None), (3, None, None)]


def test_time_values_outside_a_day_fail_clearly(mysql: MySQLTarget, harness: Harness) -> None:
    with pytest.raises(DriverError, match=r"column 't' holds '-01:30:00'.*TIME_TO_SEC"):
        harness.extract("mysql.extractor", mysql.connection(),
                        query="SELECT CAST('-01:30:00' AS TIME) AS t")


# -- extractor: options, streaming ----------------------------------------------------------------


@pytest.fixture
def numbers(mysql: MySQLTarget) -> str:
    mysql.execute("DROP TABLE IF EXISTS numbers",
                  "CREATE TABLE numbers (n INT PRIMARY KEY, label VARCHAR(20), `odd col` INT)")
    conn = mysql.connect()
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO numbers VALUES (%s, %s, %s)",
                        [(i, f"n{i}", i % 2) for i in range(1, 2501)])
    conn.close()
    return "numbers"


def test_extract_streams_batches_with_progress(mysql: MySQLTarget, harness: Harness,
                                               numbers: str) -> None:
    out = harness.extract("mysql.extractor", mysql.connection(), table=numbers,
                          batch_size=100)
    assert out.result.rows_read == 2500 and len(out.rows) == 2500
    assert sorted(r[0] for r in out.rows) == list(range(1, 2501))
    progress = [e for e in out.events if e["event"] == "progress"]
    assert progress and progress[-1]["rows"] == 2500
    assert out.types == {"n": "INTEGER", "label": "VARCHAR", "odd col": "INTEGER"}


def test_extract_table_with_columns_limit_offset(mysql: MySQLTarget, harness: Harness,
                                                 numbers: str) -> None:
    out = harness.extract("mysql.extractor", mysql.connection(), table=numbers,
                          columns=["odd col", "n"], limit=5)
    assert out.columns == ["odd col", "n"] and len(out.rows) == 5
    # a table has no order: the rows an offset skipped were arbitrary (a review: a secondary
    # index's order skipped the last ids, exit 0)
    with pytest.raises(DriverError, match=r"`offset` 10 on `table` .*Write a `query` with "
                                          r"ORDER BY"):
        harness.extract("mysql.extractor", mysql.connection(), table=numbers,
                        columns=["odd col", "n"], limit=5, offset=10)


def test_extract_query_with_columns_limit_offset_and_duplicate_names(
        mysql: MySQLTarget, harness: Harness, numbers: str) -> None:
    out = harness.extract("mysql.extractor", mysql.connection(),
                          query="SELECT n, label, n FROM numbers WHERE label LIKE 'n1%' "
                                "ORDER BY n DESC;",
                          limit=3, offset=2, batch_size=100)
    assert out.columns == ["n", "label", "n_1"]
    assert out.rows == [(1997, "n1997", 1997), (1996, "n1996", 1996), (1995, "n1995", 1995)]
    out = harness.extract("mysql.extractor", mysql.connection(),
                          query="SELECT n, label FROM numbers ORDER BY n", columns=["label"],
                          limit=2)
    assert out.rows == [("n1",), ("n2",)]
    # a repeated name never takes a name the query gave another column: `n_1` was `n * 10`
    # and the query's own `n_1` (label) became `n_1_1`
    out = harness.extract("mysql.extractor", mysql.connection(),
                          query="SELECT n, n * 10 AS n, label AS n_1, 0 AS N FROM numbers "
                                "ORDER BY n LIMIT 1")
    assert out.columns == ["n", "n_2", "n_1", "N_3"]
    assert out.rows == [(1, 10, "n1", 0)]


def test_extract_connection_values_win_over_step_config(mysql: MySQLTarget, harness: Harness,
                                                        numbers: str) -> None:
    # a stale step-level host/port (Osiris pipelines often carry `host: localhost`) is ignored
    out = harness.extract("mysql.extractor", mysql.connection(), host="203.0.113.1", port=1,
                          query="SELECT count(*) AS c FROM numbers")
    assert out.rows == [(2500,)]


# -- extractor: errors ----------------------------------------------------------------------------


def test_extract_errors_are_clear_and_never_show_the_password(
        mysql: MySQLTarget, harness: Harness, numbers: str) -> None:
    secret = "N0t-the-Right-One!"
    with pytest.raises(DriverError) as info:
        harness.extract("mysql.extractor", mysql.connection(password=secret), table=numbers)
    msg = str(info.value)
    assert "1045" in msg and f"user '{mysql.user}'" in msg and secret not in msg
    assert "Check the user and password" in msg

    with pytest.raises(DriverError) as info:
        harness.extract("mysql.extractor", mysql.connection(port=1, password=secret),
                        table=numbers)
    msg = str(info.value)
    assert f"{mysql.host}:1/{mysql.database}" in msg and "Check host and port" in msg
    assert secret not in msg

    with pytest.raises(DriverError, match=r"1146.*doesn't exist.*Check `table`"):
        harness.extract("mysql.extractor", mysql.connection(), table="no_such_table")
    with pytest.raises(DriverError, match=r"1064.*Check the SQL syntax"):
        harness.extract("mysql.extractor", mysql.connection(), query="SELEC nothing")
    with pytest.raises(DriverError, match="does not return"):
        harness.extract("mysql.extractor", mysql.connection(), query="SELECT 1 AS a",
                        columns=["b"])


# -- writer ---------------------------------------------------------------------------------------

ROWS = """
SELECT i AS id, 'name ' || i AS name, (i * 1.5)::DECIMAL(10,2) AS price,
       TIMESTAMP '2024-01-01 10:00:00' + to_days(i) AS updated
FROM range(1, 6) t(i)
"""


def _table(mysql: MySQLTarget, table: str) -> list[tuple]:
    return [tuple(r) for r in mysql.query(f"SELECT * FROM `{table}` ORDER BY 1, 2")]


def test_writer_append_twice_duplicates_rows_and_creates_the_table(
        mysql: MySQLTarget, harness: Harness) -> None:
    mysql.execute("DROP TABLE IF EXISTS w_append")
    harness.upstream(ROWS)
    conn = mysql.connection()
    with pytest.raises(DriverError, match=r"w_append does not exist.*create_table: true"):
        harness.write("mysql.writer", conn, table="w_append")
    first = harness.write("mysql.writer", conn, table="w_append", create_table=True)
    assert first.rows_written == 5 and first.table is None
    assert first.target == f"mysql://{mysql.host}:{mysql.port}/{mysql.database}.w_append"
    assert "CREATE TABLE `w_append`" in (harness.artifacts() / "ddl_plan.sql").read_text()
    harness.write("mysql.writer", conn, table="w_append", create_table=True)
    rows = _table(mysql, "w_append")
    assert len(rows) == 10 and rows[0] == rows[1]
    assert rows[0] == (1, "name 1", Decimal("1.50"), dt.datetime(2024, 1, 2, 10))


def test_writer_replace_and_truncate_before_leave_exactly_the_input(
        mysql: MySQLTarget, harness: Harness) -> None:
    mysql.execute("DROP TABLE IF EXISTS w_replace",
                  "CREATE TABLE w_replace (id BIGINT, name TEXT, price DECIMAL(10,2), "
                  "updated DATETIME, extra INT DEFAULT 7)",
                  "INSERT INTO w_replace (id, name) VALUES (99, 'old'), (1, 'older')")
    harness.upstream(ROWS)
    result = harness.write("mysql.writer", mysql.connection(), table="w_replace",
                           mode="replace")
    assert result.rows_written == 5
    rows = _table(mysql, "w_replace")
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5] and rows[0][4] == 7
    harness.upstream("SELECT 42 AS id, 'answer' AS name")
    harness.write("mysql.writer", mysql.connection(), table="w_replace", truncate_before=True)
    assert [(r[0], r[1]) for r in _table(mysql, "w_replace")] == [(42, "answer")]


def test_writer_upsert_updates_by_key_and_inserts_new_rows(
        mysql: MySQLTarget, harness: Harness) -> None:
    mysql.execute("DROP TABLE IF EXISTS w_upsert",
                  "CREATE TABLE w_upsert (id BIGINT PRIMARY KEY, name TEXT, price DECIMAL(10,2),"
                  " updated DATETIME)",
                  "INSERT INTO w_upsert VALUES (1, 'keep?', 0, NULL), (50, 'untouched', 1, NULL)")
    harness.upstream(ROWS)
    conn = mysql.connection()
    with pytest.raises(DriverError, match="needs `upsert_keys`"):
        harness.write("mysql.writer", conn, table="w_upsert", mode="upsert")
    with pytest.raises(DriverError, match=r"UNIQUE index on exactly \(name\)"):
        harness.write("mysql.writer", conn, table="w_upsert", mode="upsert",
                      upsert_keys=["name"])
    result = harness.write("mysql.writer", conn, table="w_upsert", mode="upsert",
                           upsert_keys=["id"], batch_size=2)
    assert result.rows_written == 5
    rows = _table(mysql, "w_upsert")
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 50]
    assert rows[0][1] == "name 1" and rows[-1][1] == "untouched"

    mysql.execute("DROP TABLE IF EXISTS w_upsert_new")
    harness.write("mysql.writer", conn, table="w_upsert_new", mode="upsert",
                  upsert_keys=["id"], create_table=True)
    harness.write("mysql.writer", conn, table="w_upsert_new", mode="upsert",
                  upsert_keys=["id"])
    assert len(_table(mysql, "w_upsert_new")) == 5
    pk = mysql.query("SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE "
                     "TABLE_SCHEMA = %s AND TABLE_NAME = 'w_upsert_new' AND "
                     "CONSTRAINT_NAME = 'PRIMARY'", (mysql.database,))
    assert pk == [("id",)]


def test_writer_failure_in_the_middle_leaves_the_target_as_it_was(
        mysql: MySQLTarget, harness: Harness) -> None:
    mysql.execute("DROP TABLE IF EXISTS w_fragile",
                  "CREATE TABLE w_fragile (id INT PRIMARY KEY, name VARCHAR(5))",
                  "INSERT INTO w_fragile VALUES (1, 'one'), (2, 'two')")
    before = _table(mysql, "w_fragile")
    harness.upstream("SELECT i AS id, CASE WHEN i = 130 THEN 'far too long' ELSE 'ok' END "
                     "AS name FROM range(100, 150) t(i)")
    for mode in ("replace", "append"):
        with pytest.raises(DriverError) as info:
            harness.write("mysql.writer", mysql.connection(), table="w_fragile", mode=mode,
                          batch_size=10)
        msg = str(info.value)
        assert "1406" in msg and "rolled back" in msg and "input rows 31-40" in msg
        assert "counts the rows of one INSERT statement" in msg  # 'at row 1' is not the input's
        assert _table(mysql, "w_fragile") == before

    harness.upstream("SELECT i % 3 + 10 AS id, 'dup' AS name FROM range(0, 20) t(i)")
    with pytest.raises(DriverError, match=r"1062.*Duplicate entry"):
        harness.write("mysql.writer", mysql.connection(), table="w_fragile", batch_size=1)
    assert _table(mysql, "w_fragile") == before

    # a table created by the failing step is dropped again
    mysql.execute("DROP TABLE IF EXISTS w_created")
    harness.upstream("SELECT 1 AS id, 1.5::DOUBLE AS v UNION ALL SELECT 2, 'inf'::DOUBLE")
    with pytest.raises(DriverError, match="holds .inf., and MySQL cannot store infinity"):
        harness.write("mysql.writer", mysql.connection(), table="w_created", create_table=True,
                      batch_size=1)
    assert _table(mysql, "w_fragile") == before
    assert not mysql.query("SHOW TABLES LIKE 'w_created'")


WRITE_WITH_RETRIES = """\
oml_version: "0.1.0"
name: commit-lost
steps:
  - id: load
    component: filesystem.csv_extractor
    mode: read
    config: {{path: {csv}}}
  - id: append
    component: mysql.writer
    mode: write
    needs: [load]
    config: {{connection: "@mysql.main", table: w_commit_lost, mode: append}}
x-dagster:
  steps:
    append:
      retry: {{max_retries: 2, delay_seconds: 0}}
"""


def test_writer_commit_that_landed_without_an_answer_is_never_written_twice(
        mysql: MySQLTarget, run_pipeline: PipelineRun, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, instance: dg.DagsterInstance) -> None:
    """The server applies the COMMIT and its answer is lost: the rows are there, the writer
    cannot know it. An append must fail without any retry (the step's own `retry` included),
    saying how to check; before, every retry wrote the rows again."""
    mysql.execute("DROP TABLE IF EXISTS w_commit_lost",
                  "CREATE TABLE w_commit_lost (id INT, name VARCHAR(10))")
    csv = tmp_path / "rows.csv"
    csv.write_text("id,name\n1,a\n2,b\n3,c\n")
    monkeypatch.setenv("MYSQL_TEST_PASSWORD", mysql.password)
    with CommitProxy(mysql.host, mysql.port) as proxy:
        connections = ("version: 1\nconnections:\n  mysql:\n    main:\n"
                       f"      host: 127.0.0.1\n      port: {proxy.port}\n"
                       f"      database: {mysql.database}\n      user: {mysql.user}\n"
                       "      password: ${MYSQL_TEST_PASSWORD}\n")
        result, _ = run_pipeline(WRITE_WITH_RETRIES.format(csv=csv), connections, "commit-lost")
    assert not result.success
    assert _table(mysql, "w_commit_lost") == [(1, "a"), (2, "b"), (3, "c")]  # exactly once
    assert proxy.commits_dropped == 1  # one attempt: neither the driver nor Dagster retried
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    text = failure_description(result)
    assert "step 'append'" in text and "may or may not have been written" in text
    assert "SELECT count(*) FROM" in text and "upsert_keys" in text
    # nor by Dagster's run retries (run_retries in dagster.yaml), which read this run tag
    tags = instance.get_run_by_id(result.run_id).tags
    assert tags.get("dagster/retry_on_asset_or_op_failure") == "false"


def _commit_lost_job() -> dg.JobDefinition:
    """The commit-lost job, reconstructable in Dagster's re-execution (paths from the env)."""
    from ..helpers import defs_for

    env = __import__("os").environ
    return defs_for(Path(env["COMMIT_LOST_PIPELINE"]), Path(env["COMMIT_LOST_SESSIONS"]),
                    Path(env["COMMIT_LOST_CONNECTIONS"])).resolve_job_def("commit_lost")


def test_a_write_that_may_have_landed_is_not_written_again_on_the_same_input(
        mysql: MySQLTarget, run_pipeline: PipelineRun, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, instance: dg.DagsterInstance) -> None:
    """The append's COMMIT landed and its answer was lost. Dagster's retries skip it; a
    person's "Re-execute from failure", or a materialisation of the writer alone, read the same
    upstream table and wrote the rows again. Now they fail naming the earlier attempt, until
    `osiris-dagster unsettled settle` says the target was checked."""
    from osiris_dagster.cli import main

    monkeypatch.setenv("MYSQL_TEST_PASSWORD", mysql.password)
    with CommitProxy(mysql.host, mysql.port) as proxy:
        first, session = _commit_lost_run(mysql, run_pipeline, tmp_path, proxy, "")
        assert not first.success and proxy.commits_dropped == 1
        assert "Recorded as an unsettled write: running this step again on the same input is " \
               "refused until `osiris-dagster unsettled settle commit-lost append`" in \
               failure_description(first)
        assert _table(mysql, "w_commit_lost") == [(1, "a"), (2, "b"), (3, "c")]
        for name, path in (("PIPELINE", "pipelines/pipeline.yaml"), ("SESSIONS", "sessions"),
                           ("CONNECTIONS", "osiris_connections.yaml")):
            monkeypatch.setenv(f"COMMIT_LOST_{name}", str(tmp_path / path))

        def reexecute(parent: str) -> dg.DagsterRun:
            with dg.execute_job(
                    dg.reconstructable(_commit_lost_job), instance=instance,
                    reexecution_options=dg.ReexecutionOptions.from_failure(parent, instance)
            ) as result:
                run = instance.get_run_by_id(result.run_id)
                assert run is not None
                return run

        again = reexecute(first.run_id)
        assert again.status == dg.DagsterRunStatus.FAILURE
        assert proxy.commits_dropped == 1  # not even sent
        assert _table(mysql, "w_commit_lost") == [(1, "a"), (2, "b"), (3, "c")]
        failure = next(e for e in instance.all_logs(again.run_id)
                       if e.dagster_event and e.dagster_event.is_step_failure)
        text = failure.dagster_event.step_failure_data.error.message  # type: ignore[union-attr]
        assert "not run: an earlier attempt of this step on the same input" in text
        assert f"session {session.name}" in text and "may or may not have been written" in text
        assert "osiris-dagster unsettled settle commit-lost append" in text
        assert instance.get_run_by_id(again.run_id).tags.get(  # type: ignore[union-attr]
            "dagster/retry_on_asset_or_op_failure") == "false"
        # another batch size (or another alias of the database) is still the same input
        pipeline = tmp_path / "pipelines" / "pipeline.yaml"
        pipeline.write_text(pipeline.read_text().replace("mode: append}",
                                                         "mode: append, batch_size: 7}"))
        alone = _commit_lost_job().execute_in_process(
            instance=instance, raise_on_error=False,
            asset_selection=[dg.AssetKey(["commit-lost", "append"])])
        assert not alone.success and "not run: an earlier" in failure_description(alone)
        assert proxy.commits_dropped == 1
        assert _table(mysql, "w_commit_lost") == [(1, "a"), (2, "b"), (3, "c")]
        # a new run reads the file again into its own session: new input, written
        new = _commit_lost_job().execute_in_process(instance=instance, raise_on_error=False)
        assert "not run:" not in failure_description(new) and proxy.commits_dropped == 2
        assert len(_table(mysql, "w_commit_lost")) == 6

    sessions = ["--sessions-dir", str(tmp_path / "sessions")]
    assert main(["unsettled", *sessions, "list"]) == 0
    assert main(["unsettled", *sessions, "settle", "commit-lost", "append"]) == 0
    assert main(["unsettled", *sessions, "settle", "commit-lost", "append"]) == 2
    # checked: the user decides to write the rows again (directly, without the proxy)
    (tmp_path / "osiris_connections.yaml").write_text(
        (tmp_path / "osiris_connections.yaml").read_text().replace(
            f"port: {proxy.port}", f"port: {mysql.port}"))
    assert reexecute(first.run_id).status == dg.DagsterRunStatus.SUCCESS
    assert len(_table(mysql, "w_commit_lost")) == 9


def _commit_lost_run(mysql: MySQLTarget, run_pipeline: PipelineRun, tmp_path: Path,
                     proxy: CommitProxy, steps: str) -> tuple[Any, Path]:
    mysql.execute("DROP TABLE IF EXISTS w_commit_lost",
                  "CREATE TABLE w_commit_lost (id INT, name VARCHAR(10))")
    csv = tmp_path / "rows.csv"
    csv.write_text("id,name\n1,a\n2,b\n3,c\n")
    connections = ("version: 1\nconnections:\n  mysql:\n    main:\n"
                   f"      host: 127.0.0.1\n      port: {proxy.port}\n"
                   f"      database: {mysql.database}\n      user: {mysql.user}\n"
                   "      password: ${MYSQL_TEST_PASSWORD}\n")
    text = WRITE_WITH_RETRIES.format(csv=csv).split("x-dagster:")[0] + steps
    return run_pipeline(text, connections, "commit-lost")


def test_writer_whose_commit_outlasts_its_timeout_is_not_run_again(
        mysql: MySQLTarget, run_pipeline: PipelineRun, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The step's timeout strikes while MySQL's COMMIT, which nothing interrupts, is under
    way: the COMMIT lands, so the step's outcome is its own (success), not a timeout that a
    retry would write again (before: "stopped" twice, 6 rows for 3)."""
    monkeypatch.setenv("MYSQL_TEST_PASSWORD", mysql.password)
    steps = ("x-dagster:\n  steps:\n    append:\n      timeout_seconds: 1\n"
             "      retry: {max_retries: 1, delay_seconds: 0}\n")
    with CommitProxy(mysql.host, mysql.port, hold_answer_s=3) as proxy:
        result, session = _commit_lost_run(mysql, run_pipeline, tmp_path, proxy, steps)
    assert result.success, failure_description(result)
    assert _table(mysql, "w_commit_lost") == [(1, "a"), (2, "b"), (3, "c")]
    assert [e["step_id"] for e in events(session) if e["event"] == "step_timeout_too_late"] \
        == ["append"]


def test_writer_that_does_not_stop_after_its_timeout_is_not_retried(
        mysql: MySQLTarget, run_pipeline: PipelineRun, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Still in COMMIT when the time to stop is over: whether the rows land is unknown, so
    the step fails without a retry and says to check the target."""
    from osiris_dagster.runtime import runner

    monkeypatch.setattr(runner, "STOP_GRACE_SECONDS", 0.5)
    monkeypatch.setenv("MYSQL_TEST_PASSWORD", mysql.password)
    steps = ("x-dagster:\n  steps:\n    append:\n      timeout_seconds: 1\n"
             "      retry: {max_retries: 1, delay_seconds: 0}\n")
    with CommitProxy(mysql.host, mysql.port, hold_answer_s=5) as proxy:
        result, session = _commit_lost_run(mysql, run_pipeline, tmp_path, proxy, steps)
        assert not result.success
        assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        text = failure_description(result)
        assert "did not stop when told to" in text and "Check its target" in text
        (error,) = [e for e in events(session) if e["event"] == "step_error"]
        assert error["timed_out"] is True
        assert proxy.commits_answered.acquire(timeout=120)  # the COMMIT ends: it landed once
        _wait_for_step_threads()
    assert _table(mysql, "w_commit_lost") == [(1, "a"), (2, "b"), (3, "c")]


def _slow_read(mysql: MySQLTarget, run_pipeline: PipelineRun, query: str) -> tuple[Any, Path]:
    text = ('oml_version: "0.1.0"\nname: slow-read\nsteps:\n  - id: read\n'
            "    component: mysql.extractor\n    mode: read\n    config:\n"
            f'      connection: "@mysql.main"\n      query: "{query}"\n'
            "x-dagster:\n  steps:\n    read:\n      timeout_seconds: 1\n"
            "      retry: {max_retries: 1, delay_seconds: 0}\n")
    connections = CONNECTIONS.format(host=mysql.host, port=mysql.port, database=mysql.database,
                                     user=mysql.user).replace("db_movies", "main")
    return run_pipeline(text, connections, "slow-read")


def test_a_read_that_does_not_stop_after_its_timeout_is_still_retried(
        mysql: MySQLTarget, run_pipeline: PipelineRun, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a write that was committing is refused a retry after a timeout; a read that did
    not stop in time (pymysql waiting for a slow query: a DECIMAL(65,30) column keeps
    connectorx out, and the stop cannot reach the server, as in a network partition) is a
    plain timeout, retried."""
    from osiris_dagster.drivers.mysql import extractor
    from osiris_dagster.runtime import runner

    monkeypatch.setattr(runner, "STOP_GRACE_SECONDS", 0.5)
    monkeypatch.setattr(extractor, "query_killer", lambda params, conn: lambda: None)
    monkeypatch.setenv("MYSQL_TEST_PASSWORD", mysql.password)
    result, session = _slow_read(mysql, run_pipeline,
                                 "SELECT SLEEP(3) AS s, CAST(1 AS DECIMAL(65,30)) AS d")
    assert not result.success
    assert [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    text = failure_description(result)
    assert "told to stop, it had not ended" in text and "may still land" not in text
    assert all(e["timed_out"] for e in events(session) if e["event"] == "step_error")
    _wait_for_step_threads()


def test_a_timeout_ends_the_connectorx_child_of_a_read(
        mysql: MySQLTarget, run_pipeline: PipelineRun, monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB's interrupt cannot reach the connectorx child DuckDB reads from: the stop ends
    the child, so the step stops at once instead of waiting for the query (before: it had not
    ended when the grace period was over, 45 s for a 2 s timeout)."""
    from osiris_dagster.runtime import runner

    monkeypatch.setattr(runner, "STOP_GRACE_SECONDS", 20)
    monkeypatch.setenv("MYSQL_TEST_PASSWORD", mysql.password)
    result, session = _slow_read(mysql, run_pipeline, "SELECT SLEEP(120) AS s")
    assert not result.success
    assert [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    text = failure_description(result)
    assert "and was stopped" in text and "had not ended" not in text
    assert all(e["timed_out"] for e in events(session) if e["event"] == "step_error")
    _wait_for_step_threads()


def test_a_timeout_ends_the_server_query_of_a_pymysql_read(
        mysql: MySQLTarget, run_pipeline: PipelineRun, monkeypatch: pytest.MonkeyPatch) -> None:
    """pymysql waits for a slow query where DuckDB's interrupt cannot reach (a DECIMAL(65,30)
    column keeps connectorx out): the stop ends the query on the server, so the step stops at
    once and the query does not run on (before: it had not ended when the grace period was
    over, and the query ran its 120 s on the server)."""
    from osiris_dagster.runtime import runner

    monkeypatch.setattr(runner, "STOP_GRACE_SECONDS", 20)
    monkeypatch.setenv("MYSQL_TEST_PASSWORD", mysql.password)
    marker = f"slow_exact_{mysql.user}"
    result, session = _slow_read(mysql, run_pipeline, f"SELECT SLEEP(120) AS {marker}, "
                                 "CAST(1 AS DECIMAL(65,30)) AS d")
    assert not result.success
    assert [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    text = failure_description(result)
    assert "and was stopped" in text and "had not ended" not in text
    assert any(e["event"] == "mysql_extract_path" for e in events(session))  # pymysql read it
    admin = MySQLTarget(database=mysql.database, user="root", password="")
    running = ("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE "
               f"'%{marker}%' AND ID <> CONNECTION_ID()")
    # the killed query leaves at once; unkilled, it would run on for two minutes
    gone = time.monotonic() + 60
    while admin.query(running)[0][0] and time.monotonic() < gone:
        time.sleep(0.1)
    assert admin.query(running)[0][0] == 0
    _wait_for_step_threads()


def _wait_for_step_threads() -> None:
    """The steps left running end with their query (a thread still in DuckDB when the
    interpreter exits would crash it)."""
    import threading

    for thread in [t for t in threading.enumerate() if t.name.startswith("osiris-step-")]:
        thread.join(120)
        assert thread not in threading.enumerate()


STOP_DURING_COMMIT = """\
import json, sys
import dagster as dg
from osiris_dagster import build_definitions

defs = build_definitions([sys.argv[1]], sessions_dir=sys.argv[2], connections_file=sys.argv[3])
print("ready", flush=True)
result = defs.resolve_job_def("commit_lost").execute_in_process(
    instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
print(json.dumps({"success": result.success}), flush=True)
"""


def test_a_run_stopped_during_commit_says_the_rows_were_written(
        mysql: MySQLTarget, tmp_path: Path) -> None:
    """Ctrl-C while MySQL's COMMIT is under way (nothing interrupts it): the run stops, and
    the step's error says its rows were written, not just "cancelled" (a user would run it
    again and write them twice)."""
    import signal
    import subprocess
    import sys

    mysql.execute("DROP TABLE IF EXISTS w_commit_lost",
                  "CREATE TABLE w_commit_lost (id INT, name VARCHAR(10))")
    csv = tmp_path / "rows.csv"
    csv.write_text("id,name\n1,a\n2,b\n3,c\n")
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(WRITE_WITH_RETRIES.format(csv=csv).split("x-dagster:")[0])
    script = tmp_path / "run.py"
    script.write_text(STOP_DURING_COMMIT)
    with CommitProxy(mysql.host, mysql.port, hold_answer_s=3) as proxy:
        connections = tmp_path / "conn.yaml"
        connections.write_text(
            "version: 1\nconnections:\n  mysql:\n    main:\n"
            f"      host: 127.0.0.1\n      port: {proxy.port}\n"
            f"      database: {mysql.database}\n      user: {mysql.user}\n"
            f"      password: {mysql.password}\n")
        sessions = tmp_path / "sessions"
        child = subprocess.Popen([sys.executable, str(script), str(pipeline), str(sessions),
                                  str(connections)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            assert proxy.commits_seen.acquire(timeout=120)
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
    assert json.loads(out.strip().splitlines()[-1]) == {"success": False}, err[-2000:]
    assert _table(mysql, "w_commit_lost") == [(1, "a"), (2, "b"), (3, "c")]
    (session,) = [d for d in sessions.iterdir() if d.is_dir() and d.name[0] != "."]
    (error,) = [e for e in events(session) if e["event"] == "step_error"]
    assert error["cancelled"] is True and "its 3 rows were written" in error["error"]
    (record,) = sessions.glob(".state/*/append/unsettled_writes.json")  # not written again
    assert "its 3 rows were written" in record.read_text()


@pytest.mark.parametrize("mode", ["append", "replace", "upsert", "truncate_before"])
def test_writer_commit_without_an_answer_says_whether_running_again_is_safe(
        mysql: MySQLTarget, harness: Harness, mode: str) -> None:
    from osiris_dagster.core.errors import NotRetryableError

    table = f"w_lost_{mode}"
    mysql.execute(f"DROP TABLE IF EXISTS {table}",
                  f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(10))",
                  f"INSERT INTO {table} VALUES (9, 'old')")
    harness.upstream("SELECT i AS id, 'new' AS name FROM range(1, 4) t(i)")
    config = {"table": table, "mode": mode, "upsert_keys": ["id"] if mode == "upsert" else None}
    if mode == "truncate_before":
        config.update(mode="append", truncate_before=True)
    with CommitProxy(mysql.host, mysql.port) as proxy, \
            pytest.raises(DriverError) as info:
        harness.write("mysql.writer", mysql.connection(host="127.0.0.1", port=proxy.port),
                      **{k: v for k, v in config.items() if v is not None})
    msg = str(info.value)
    assert "(2013)" in msg and "may or may not have been written" in msg
    assert f"SELECT count(*) FROM `{mysql.database}`.`{table}` gives 3 more" in msg
    landed = [(i, "new") for i in (1, 2, 3)]
    if mode == "append":  # a second run would write the rows twice: nothing may repeat it
        assert isinstance(info.value, NotRetryableError)
        assert "writes them twice" in msg
        assert _table(mysql, table) == [*landed, (9, "old")]
    else:
        assert not isinstance(info.value, NotRetryableError)
        assert "Running the step again is safe" in msg
        assert _table(mysql, table) == (landed + [(9, "old")] if mode == "upsert" else landed)


def test_writer_keeps_the_table_it_created_when_the_commit_may_have_landed(
        mysql: MySQLTarget, harness: Harness) -> None:
    mysql.execute("DROP TABLE IF EXISTS w_lost_created")
    harness.upstream("SELECT i AS id FROM range(1, 4) t(i)")
    with CommitProxy(mysql.host, mysql.port) as proxy, \
            pytest.raises(DriverError, match="may or may not have been written"):
        harness.write("mysql.writer", mysql.connection(host="127.0.0.1", port=proxy.port),
                      table="w_lost_created", create_table=True)
    assert mysql.query("SELECT id FROM w_lost_created ORDER BY id") == [(1,), (2,), (3,)]


@pytest.mark.parametrize("target, good, bad, change", [
    ("DECIMAL(10,2)", "1.25::DOUBLE", "1.239::DOUBLE", "rounded to 2 decimals"),
    ("DECIMAL(10,2)", "2.10::DECIMAL(10,3)", "2.005::DECIMAL(10,3)", "rounded to 2 decimals"),
    ("INT", "2.0::DOUBLE", "1.5::DOUBLE", "rounded to an integer"),
    ("FLOAT", "0.1::DOUBLE", "16777217::BIGINT", "as a 4-byte FLOAT"),
    ("DOUBLE", "9007199254740992::BIGINT", "9007199254740993::BIGINT", "as a DOUBLE"),
    ("DATETIME", "TIMESTAMP '2024-12-31 23:59:59'", "TIMESTAMP '2024-12-31 23:59:59.7'",
     "with 0 fractional-second digits"),
    ("TIME(3)", "TIME '10:00:00.123'", "TIME '10:00:00.1234'",
     "with 3 fractional-second digits"),
    ("DATE", "TIMESTAMP '2024-01-02 00:00:00'", "TIMESTAMP '2024-01-02 10:00:00'",
     "without its time of day"),
    ("YEAR", "2024::INTEGER", "24::INTEGER", "1-99 become 1970-2069"),
    ("YEAR", "2024.0::DOUBLE", "5.0::DOUBLE", "1-99 become 1970-2069"),
    ("DOUBLE", "1::BIGINT", "9223372036854775807::BIGINT", "as a DOUBLE"),  # rounds past int64
    ("DECIMAL(30,2)", "90235941196614.25::DOUBLE", "1e-7::DOUBLE", "rounded to 2 decimals"),
    ("DECIMAL(10,2)", "'1.25'", "'1.239'", "rounded to 2 decimals"),
    ("FLOAT(12,2)", "1.5::DOUBLE", "1234567.89::DOUBLE", "as a 4-byte FLOAT"),
    ("FLOAT", "0.1::DOUBLE", "1e39::DOUBLE", "as a 4-byte FLOAT"),
    ("TIME", "NULL::TIMESTAMP", "TIMESTAMP '2024-05-05 10:11:12'", "without its date"),
    ("DOUBLE", "8821227663.115190::DECIMAL(18,6)", "27241394055.599428::DECIMAL(18,6)",
     "as a DOUBLE"),
    ("DATETIME(6)", "TIMESTAMP_NS '2024-01-01 10:00:00.123456'",
     "TIMESTAMP_NS '2024-12-31 23:59:59.999999999'", "with 6 fractional-second digits"),
    ("DECIMAL(30,3)", "'-6.500000e-01'", "'1.2345e-2'", "rounded to 3 decimals"),
    ("DECIMAL(65,30)", "1e10::DOUBLE", "1e-31::DOUBLE", "rounded to 30 decimals"),
    ("DECIMAL(20,0)", "'100e-2'", "'1.5e-3000000000'", "rounded to 0 decimals"),
    ("DOUBLE", "674675363454156288::DECIMAL(38,0)", "674675363454156289::DECIMAL(38,0)",
     "as a DOUBLE"),
    ("FLOAT(12,2)", "'1.25'", "'1.234'", "rounded to 2 decimals"),
    ("DECIMAL(10,2)", "0.1::FLOAT", "0.125::FLOAT", "rounded to 2 decimals"),  # as its text
    ("DECIMAL(65,0)", "'1e2'", "'0.' || repeat('0', 79) || '1e80'", "rounded to 0 decimals"),
    ("DECIMAL(30,3)", "'1.5'", "'1.5e-9223372036854775807'", "rounded to 3 decimals"),
    ("INT", "'2.0'", "'1.5'", "rounded to an integer"),  # MariaDB: not even a note
    ("INT", "2.0::FLOAT", "1.5::FLOAT", "rounded to an integer"),  # a FLOAT is sent as text
    # spaces past the length are cut with a note, even in strict mode
    ("VARCHAR(3)", "'ab '", "'ab   '", "cut to 3 characters"),
    ("CHAR(3)", "'ab'", "'é   '", "cut to 3 characters"),
])
def test_writer_refuses_values_the_existing_column_would_change(
        mysql: MySQLTarget, harness: Harness, target: str, good: str, bad: str,
        change: str) -> None:
    """MySQL stores these changed without an error, even in strict mode (at most a note):
    the writer checks every value first and fails naming it, writing nothing (before: the
    step was ok with 1.239 stored as 1.24, 1.5 as 2, ...)."""
    mysql.execute("DROP TABLE IF EXISTS w_fit",
                  f"CREATE TABLE w_fit (id INT, v {target})", "INSERT INTO w_fit VALUES (0, NULL)")
    harness.upstream(f"SELECT 1 AS id, {good} AS v UNION ALL SELECT 2, NULL")
    harness.write("mysql.writer", mysql.connection(), table="w_fit")
    assert len(mysql.query("SELECT * FROM w_fit")) == 3
    harness.upstream(f"SELECT 3 AS id, {good} AS v UNION ALL SELECT 4, {bad}")
    with pytest.raises(DriverError) as info:
        harness.write("mysql.writer", mysql.connection(), table="w_fit", mode="replace")
    msg = str(info.value)
    assert "column 'v' holds" in msg and f"of {mysql.database}.w_fit cannot hold exactly" in msg
    assert change in msg and "Nothing was written" in msg
    assert len(mysql.query("SELECT * FROM w_fit")) == 3  # the table is as it was


@pytest.mark.parametrize(("target", "value", "shown", "what"), [
    ("DOUBLE", "'inf'::DOUBLE", "'inf'", "infinity"),
    ("FLOAT", "'-inf'::FLOAT", "'-inf'", "infinity"),
    ("DATE", "DATE '0000-01-01'", "'0001-01-01 (BC)'", "a date outside years 1-9999"),
    ("DATE", "DATE '10000-01-01'", "'10000-01-01'", "a date outside years 1-9999"),
    ("DATETIME", "TIMESTAMP '0100-01-01 (BC) 10:00'", "'0100-01-01 (BC) 10:00:00'",
     "a date outside years 1-9999"),
    ("DATETIME", "'infinity'::TIMESTAMP", "'infinity'", "infinity"),
])
@pytest.mark.parametrize("existing", [True, False], ids=["existing", "created"])
def test_writer_names_a_value_mysql_cannot_store(mysql: MySQLTarget, harness: Harness,
                                                 target: str, value: str, shown: str,
                                                 what: str, existing: bool) -> None:
    """MySQL has no infinity and no year outside 1-9999: the step failed with a bare
    OverflowError (Python has no such date) or pymysql's "inf can not be used with MySQL" with
    a hint about the connection, naming no column."""
    mysql.execute("DROP TABLE IF EXISTS w_unstorable")
    if existing:
        mysql.execute(f"CREATE TABLE w_unstorable (id INT, v {target})")
    harness.upstream(f"SELECT 1 AS id, NULL AS v UNION ALL SELECT 2, {value}")
    with pytest.raises(DriverError) as info:
        harness.write("mysql.writer", mysql.connection(), table="w_unstorable",
                      create_table=True)
    msg = str(info.value)
    assert f"column 'v' holds {shown}, and MySQL cannot store {what}" in msg, msg
    assert "Nothing was written" in msg
    tables = mysql.query("SHOW TABLES LIKE 'w_unstorable'")
    assert (mysql.query("SELECT COUNT(*) FROM w_unstorable") == [(0,)]) if existing \
        else tables == []


def test_writer_shows_the_value_as_it_is(mysql: MySQLTarget, harness: Harness) -> None:
    """A misfit is named as DuckDB holds it: a nanosecond timestamp was shown cut to
    microseconds (datetime.datetime(..., 123456)), infinity as year 9999."""
    mysql.execute("DROP TABLE IF EXISTS w_shown", "CREATE TABLE w_shown (id INT, v DATETIME(6))")
    harness.upstream("SELECT 1 AS id, TIMESTAMP_NS '2024-01-01 10:00:00.123456789' AS v")
    with pytest.raises(DriverError, match=r"column 'v' holds '2024-01-01 10:00:00\.123456789', "
                                          r"which column 'v' \(datetime\(6\)\)"):
        harness.write("mysql.writer", mysql.connection(), table="w_shown")


def test_writer_checks_the_values_against_the_table_it_creates(mysql: MySQLTarget,
                                                                harness: Harness) -> None:
    """A created table's columns are targets too: a nanosecond timestamp into the DATETIME(6)
    it creates was cut to microseconds, and TIME 24:00:00 was written as 00:00:00 (Python's
    time has no 24:00), without an error."""
    mysql.execute("DROP TABLE IF EXISTS w_new")
    harness.upstream("SELECT 1 AS id, TIMESTAMP_NS '2024-01-01 10:00:00.123456789' AS at")
    with pytest.raises(DriverError, match=r"holds '2024-01-01 10:00:00\.123456789', which "
                                          r"the column 'at' \(datetime\(6\)\) this writer "
                                          r"created in .*the table it created is gone again\. "
                                          r"Create the table beforehand") as info:
        harness.write("mysql.writer", mysql.connection(), table="w_new", create_table=True)
    assert "Widen" not in str(info.value)
    assert not mysql.query("SHOW TABLES LIKE 'w_new'")  # the table it created is gone again
    harness.upstream("SELECT 1 AS id, TIMESTAMP_NS '2024-01-01 10:00:00.123456' AS at, "
                     "TIME '24:00:00' AS t")
    harness.write("mysql.writer", mysql.connection(), table="w_new", create_table=True)
    assert mysql.query("SELECT CAST(at AS CHAR), CAST(t AS CHAR) FROM w_new") == [
        ("2024-01-01 10:00:00.123456", "24:00:00.000000")]
    # seconds and milliseconds outside 1677-2262 (DuckDB reads their parts through nanoseconds)
    mysql.execute("DROP TABLE IF EXISTS w_new")
    harness.upstream("SELECT TIMESTAMP_S '2500-01-01 10:00:00' AS s, "
                     "TIMESTAMP_MS '1500-01-01 00:00:00.123' AS ms")
    harness.write("mysql.writer", mysql.connection(), table="w_new", create_table=True)
    assert mysql.query("SELECT CAST(s AS CHAR), CAST(ms AS CHAR) FROM w_new") == [
        ("2500-01-01 10:00:00", "1500-01-01 00:00:00.123")]
    mysql.execute("DROP TABLE w_new", "CREATE TABLE w_new (s DATETIME, ms DATETIME(2))")
    with pytest.raises(DriverError, match=r"holds '1500-01-01 00:00:00\.123', which column "
                                          r"'ms' \(datetime\(2\)\)"):
        harness.write("mysql.writer", mysql.connection(), table="w_new")


def test_writer_rejects_input_columns_the_target_lacks(mysql: MySQLTarget,
                                                       harness: Harness) -> None:
    mysql.execute("DROP TABLE IF EXISTS w_narrow", "CREATE TABLE w_narrow (id INT)")
    harness.upstream("SELECT 1 AS id, 'x' AS surprise")
    with pytest.raises(DriverError, match=r"no column\(s\) 'surprise'"):
        harness.write("mysql.writer", mysql.connection(), table="w_narrow")


def test_writer_types_round_trip_through_mysql(mysql: MySQLTarget, harness: Harness) -> None:
    mysql.execute("DROP TABLE IF EXISTS w_types")
    harness.upstream("""
        SELECT 1 AS id, 12345.678::DECIMAL(12,3) AS amount,
               TIMESTAMP '2024-03-04 05:06:07.123456' AS ts, DATE '2000-02-29' AS d,
               TIME '23:59:59' AS t, 18446744073709551615::UBIGINT AS big_u,
               '{"k": [1, "ü"]}'::JSON AS doc, '\\x00\\xfe'::BLOB AS bin, true AS flag,
               'Ünïcødé ✓' AS txt, 'nan'::DOUBLE AS nan_value, 2.5::DOUBLE AS dbl,
               [1, 2] AS list_value, TIMESTAMPTZ '2024-01-01 12:00:00+02' AS tstz
        UNION ALL
        SELECT 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    """)
    harness.write("mysql.writer", mysql.connection(), table="w_types", create_table=True)
    out = harness.extract("mysql.extractor", mysql.connection(), table="w_types")
    assert out.types == {
        "id": "INTEGER", "amount": "DECIMAL(12,3)", "ts": "TIMESTAMP", "d": "DATE",
        "t": "TIME", "big_u": "UBIGINT", "doc": "JSON", "bin": "BLOB", "flag": "TINYINT",
        "txt": "VARCHAR", "nan_value": "DOUBLE", "dbl": "DOUBLE", "list_value": "JSON",
        "tstz": "TIMESTAMP"}
    first, second = sorted(out.rows, key=lambda r: r[0])
    assert first == (1, Decimal("12345.678"), dt.datetime(2024, 3, 4, 5, 6, 7, 123456),
                     dt.date(2000, 2, 29), dt.time(23, 59, 59), 18446744073709551615,
                     '{"k": [1, "ü"]}', b"\x00\xfe", 1, "Ünïcødé ✓", None, 2.5, "[1,2]",
                     dt.datetime(2024, 1, 1, 10))
    assert second[0] == 2 and set(second[1:]) == {None}
    # the session table is a real DuckDB table with those types
    con = duckdb.connect(str(harness.session.db_path), read_only=True)
    try:
        assert con.execute("SELECT big_u FROM x WHERE id = 1").fetchall() == [
            (18446744073709551615,)]
    finally:
        con.close()


def test_upsert_never_updates_another_row_nor_merges_input_rows(
        mysql: MySQLTarget, harness: Harness) -> None:
    """From the writers review, each silent before (exit 0, rows lost): ON DUPLICATE KEY UPDATE
    fires on any unique index, so a row whose email matched another existing row updated that
    row; a _ci collation made 'x' and 'X' one key, and two input rows with one key kept the
    last. The input now goes through a staging copy of the target first."""
    conn = mysql.connection()
    mysql.execute("DROP TABLE IF EXISTS w_other_unique",
                  "CREATE TABLE w_other_unique (id INT PRIMARY KEY, email VARCHAR(50) UNIQUE, "
                  "name VARCHAR(20))", "INSERT INTO w_other_unique VALUES (1, 'a@x', 'old')")
    harness.upstream("SELECT * FROM (VALUES (2, 'a@x', 'new'), (3, 'b@x', 'three')) "
                     "v(id, email, name)")
    with pytest.raises(DriverError, match=r"Duplicate entry 'a@x' for key 'email'.*unique "
                                          r"index other than `upsert_keys`.*Nothing was written"):
        harness.write("mysql.writer", conn, table="w_other_unique", mode="upsert",
                      upsert_keys=["id"])
    assert _table(mysql, "w_other_unique") == [(1, "a@x", "old")]
    harness.upstream("SELECT * FROM (VALUES (1, 'a@x', 'same row'), (3, 'b@x', 'three')) "
                     "v(id, email, name)")
    harness.write("mysql.writer", conn, table="w_other_unique", mode="upsert",
                  upsert_keys=["id"])
    assert _table(mysql, "w_other_unique") == [(1, "a@x", "same row"), (3, "b@x", "three")]

    mysql.execute("DROP TABLE IF EXISTS w_ci_key",
                  "CREATE TABLE w_ci_key (k VARCHAR(10) COLLATE utf8mb4_general_ci PRIMARY KEY, "
                  "n INT)", "INSERT INTO w_ci_key VALUES ('q', 0)")
    for rows in ("('x', 1), ('X', 2)", "('x', 1), ('x', 2)"):
        harness.upstream(f"SELECT * FROM (VALUES {rows}) v(k, n)")
        with pytest.raises(DriverError, match=r"the input holds 2 rows with the key k='x' as "
                                              r".*w_ci_key compares it.*Nothing was written"):
            harness.write("mysql.writer", conn, table="w_ci_key", mode="upsert",
                          upsert_keys=["k"])
        assert _table(mysql, "w_ci_key") == [("q", 0)]

    mysql.execute("DROP TABLE IF EXISTS w_created_keys")  # keys compared as their bytes
    harness.upstream("SELECT * FROM (VALUES ('a', 1), ('A', 2), ('a ', 3), ('ä', 4)) v(k, n)")
    harness.write("mysql.writer", conn, table="w_created_keys", mode="upsert",
                  upsert_keys=["k"], create_table=True)
    assert sorted(_table(mysql, "w_created_keys")) == [("A", 2), ("a", 1), ("a ", 3), ("ä", 4)]


@pytest.mark.parametrize("engine, mode", [("MyISAM", "append"), ("Aria", "replace"),
                                          ("MyISAM", "upsert")])
def test_a_non_transactional_table_is_not_left_half_written(
        mysql: MySQLTarget, harness: Harness, engine: str, mode: str) -> None:
    """MyISAM and Aria cannot roll back: a bad fifth row left rows 1-4 in the table (a replace
    had deleted the old row first), and the error said the table was as it was. The rows now
    go through a staging copy first, so the bad value fails before the table is touched."""
    mysql.execute("DROP TABLE IF EXISTS w_myisam",
                  f"CREATE TABLE w_myisam (i INT PRIMARY KEY, s VARCHAR(3)) ENGINE={engine}",
                  "INSERT INTO w_myisam VALUES (0, 'old')")
    harness.upstream("SELECT i, CASE WHEN i = 5 THEN 'toolong' ELSE 'ok' END AS s "
                     "FROM range(1, 6) t(i)")
    with pytest.raises(DriverError, match="Data too long.*Nothing was written"):
        harness.write("mysql.writer", mysql.connection(), table="w_myisam", mode=mode,
                      batch_size=1, upsert_keys=["i"] if mode == "upsert" else None)
    assert _table(mysql, "w_myisam") == [(0, "old")]
    harness.upstream("SELECT i, 'ok' AS s FROM range(1, 3) t(i)")
    harness.write("mysql.writer", mysql.connection(), table="w_myisam", mode=mode,
                  upsert_keys=["i"] if mode == "upsert" else None)
    assert _table(mysql, "w_myisam") == ([(1, "ok"), (2, "ok")] if mode == "replace" else
                                         [(0, "old"), (1, "ok"), (2, "ok")])


@pytest.mark.parametrize("ddl, existing, rows", [
    # a prefix index, an index column the input leaves to its default, a generated column:
    # the first fix compared only whole values of columns the input sends
    ("id INT PRIMARY KEY, name VARCHAR(50), v INT, UNIQUE KEY u (name(5))",
     "(1, 'abcdeOLD', 1)", "SELECT 2 AS id, 'abcdeNEW' AS name, 20 AS v"),
    ("id INT PRIMARY KEY, email VARCHAR(20), tenant INT NOT NULL DEFAULT 1, v INT, "
     "UNIQUE KEY u (email, tenant)", "(1, 'a@x', 1, 1)", "SELECT 2 AS id, 'a@x' AS email, 20 AS v"),
    ("id INT PRIMARY KEY, email VARCHAR(20), email_l VARCHAR(20) AS (lower(email)) PERSISTENT, "
     "UNIQUE KEY u (email_l)", "(1, 'A@x', DEFAULT)", "SELECT 2 AS id, 'a@x' AS email"),
])
def test_upsert_never_updates_a_row_another_unique_index_matches(
        mysql: MySQLTarget, harness: Harness, ddl: str, existing: str, rows: str) -> None:
    mysql.execute("DROP TABLE IF EXISTS w_upsert_u", f"CREATE TABLE w_upsert_u ({ddl})",
                  f"INSERT INTO w_upsert_u VALUES {existing}")
    before = _table(mysql, "w_upsert_u")
    harness.upstream(rows)
    with pytest.raises(DriverError, match=r"Duplicate entry .*for key 'u'.*Nothing was written"):
        harness.write("mysql.writer", mysql.connection(), table="w_upsert_u", mode="upsert",
                      upsert_keys=["id"])
    assert _table(mysql, "w_upsert_u") == before


@pytest.mark.parametrize("ddl, extra", [
    # a temporary table may not be partitioned or hold a FULLTEXT index: CREATE TEMPORARY
    # TABLE ... LIKE failed where the write worked before
    ("id INT PRIMARY KEY, v VARCHAR(10)) PARTITION BY HASH (id) PARTITIONS 2 -- ", ""),
    ("id INT PRIMARY KEY, v VARCHAR(10), FULLTEXT KEY f (v)", ""),
    # a BEFORE INSERT trigger on another column
    ("id INT PRIMARY KEY, v VARCHAR(10), who VARCHAR(10)",
     "CREATE TRIGGER w_stage_who BEFORE INSERT ON w_stage_ok FOR EACH ROW "
     "SET NEW.who = 'etl'"),
])
def test_upsert_works_on_tables_a_temporary_copy_could_not_be(
        mysql: MySQLTarget, harness: Harness, ddl: str, extra: str) -> None:
    mysql.execute("DROP TABLE IF EXISTS w_stage_ok", f"CREATE TABLE w_stage_ok ({ddl})",
                  *([extra] if extra else []), "INSERT INTO w_stage_ok (id, v) VALUES (1, 'a')")
    harness.upstream("SELECT * FROM (VALUES (1, 'b'), (2, 'c')) t(id, v)")
    harness.write("mysql.writer", mysql.connection(), table="w_stage_ok", mode="upsert",
                  upsert_keys=["id"])
    assert [r[:2] for r in _table(mysql, "w_stage_ok")] == [(1, "b"), (2, "c")]


def test_truncate_before_with_upsert_replaces_rows_another_index_matched(
        mysql: MySQLTarget, harness: Harness) -> None:
    """The first fix refused an input row whose email matched an existing row that the
    truncate deletes anyway."""
    mysql.execute("DROP TABLE IF EXISTS w_trunc_u",
                  "CREATE TABLE w_trunc_u (id INT PRIMARY KEY, email VARCHAR(20) UNIQUE)",
                  "INSERT INTO w_trunc_u VALUES (1, 'a@x')")
    harness.upstream("SELECT 2 AS id, 'a@x' AS email")
    harness.write("mysql.writer", mysql.connection(), table="w_trunc_u", mode="upsert",
                  upsert_keys=["id"], truncate_before=True)
    assert _table(mysql, "w_trunc_u") == [(2, "a@x")]


def test_a_non_transactional_table_failing_part_way_is_not_retried(
        mysql: MySQLTarget, harness: Harness) -> None:
    """MyISAM keeps the rows a failing INSERT ... SELECT wrote before the failure: a retry
    added them again (rows 1-3 three times with two retries)."""
    from osiris_dagster.core.errors import NotRetryableError

    mysql.execute("DROP TABLE IF EXISTS w_myisam_sig", "DROP TRIGGER IF EXISTS w_myisam_neg",
                  "CREATE TABLE w_myisam_sig (i INT, v INT) ENGINE=MyISAM",
                  "CREATE TRIGGER w_myisam_neg BEFORE INSERT ON w_myisam_sig FOR EACH ROW "
                  "BEGIN IF NEW.v < 0 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'neg'; "
                  "END IF; END")
    harness.upstream("SELECT i, CASE WHEN i = 4 THEN -1 ELSE i END AS v FROM range(1, 6) t(i)")
    with pytest.raises(NotRetryableError, match=r"non-transactional table.*some of the 5 rows "
                                                r"may be in it\. Check it"):
        harness.write("mysql.writer", mysql.connection(), table="w_myisam_sig")
    assert len(_table(mysql, "w_myisam_sig")) == 3


@pytest.mark.parametrize("engine, mode, ddl, rows", [
    # a CHECK constraint (and MariaDB's json_valid() of a JSON column) was not on the staging
    # table: a MyISAM/Aria target kept the rows before the refused one (a replace had emptied
    # it first)
    ("Aria", "replace", "id INT PRIMARY KEY, v INT CHECK (v > 0)",
     "(VALUES (1, 6), (2, 7), (3, -1), (4, 8)) t(id, v)"),
    ("MyISAM", "upsert", "id INT PRIMARY KEY, v INT CHECK (v > 0)",
     "(VALUES (1, 6), (2, 7), (3, -1), (4, 8)) t(id, v)"),
    ("MyISAM", "append", "id INT, v JSON",
     "(VALUES (1, '{}'), (2, '{}'), (3, 'not json'), (4, '{}')) t(id, v)"),
])
def test_a_check_constraint_refuses_before_a_non_transactional_table_is_touched(
        mysql: MySQLTarget, harness: Harness, engine: str, mode: str, ddl: str,
        rows: str) -> None:
    mysql.execute("DROP TABLE IF EXISTS w_checked",
                  f"CREATE TABLE w_checked ({ddl}) ENGINE={engine}",
                  "INSERT INTO w_checked VALUES (1, 5)" if "JSON" not in ddl else "SELECT 1")
    before = _table(mysql, "w_checked")
    harness.upstream(f"SELECT * FROM {rows}")
    with pytest.raises(DriverError, match=r"staging table.*Nothing was written"):
        harness.write("mysql.writer", mysql.connection(), table="w_checked", mode=mode,
                      upsert_keys=["id"] if mode == "upsert" else None)
    assert _table(mysql, "w_checked") == before


def test_upsert_leaves_an_auto_increment_id_the_input_gives_as_null_to_the_target(
        mysql: MySQLTarget, harness: Harness) -> None:
    """The staging table refused NULL in the id column (NOT NULL there), which the target
    itself numbers."""
    mysql.execute("DROP TABLE IF EXISTS w_auto",
                  "CREATE TABLE w_auto (id INT AUTO_INCREMENT PRIMARY KEY, code VARCHAR(5) "
                  "UNIQUE, v TEXT)", "INSERT INTO w_auto VALUES (1, 'c1', 'x')")
    harness.upstream("SELECT * FROM (VALUES (NULL::INTEGER, 'c1', 'a'), (NULL, 'c2', 'b')) "
                     "t(id, code, v)")
    harness.write("mysql.writer", mysql.connection(), table="w_auto", mode="upsert",
                  upsert_keys=["code"])
    assert _table(mysql, "w_auto") == [(1, "c1", "a"), (2, "c2", "b")]


def test_a_writer_killed_while_its_commit_lands_is_not_written_again(
        mysql: MySQLTarget, tmp_path: Path) -> None:
    """The process running an append is killed (kill -9: out of memory, a lost machine) after
    its COMMIT reached the server: the rows are in the table, and nothing had recorded the
    attempt, so `run --select` (or the next run of an incremental extractor) wrote them again.
    A writer's attempt is now recorded before it writes and cleared when it ends."""
    import os
    import signal
    import subprocess
    import sys

    mysql.execute("DROP TABLE IF EXISTS w_killed", "CREATE TABLE w_killed (id INT, name TEXT)")
    (tmp_path / "rows.csv").write_text("id,name\n1,a\n2,b\n3,c\n")
    pipeline = tmp_path / "killed.yaml"
    pipeline.write_text(WRITE_WITH_RETRIES.format(csv=tmp_path / "rows.csv").split(
        "x-dagster:")[0].replace("w_commit_lost", "w_killed").replace("commit-lost", "killed"))
    env = {**os.environ, "MYSQL_TEST_PASSWORD": mysql.password,
           "OSIRIS_SESSIONS_DIR": str(tmp_path / "sessions")}
    env.pop("DAGSTER_HOME", None)

    def connections(port: int) -> Path:
        path = tmp_path / f"conn_{port}.yaml"
        path.write_text("version: 1\nconnections:\n  mysql:\n    main:\n      host: 127.0.0.1\n"
                        f"      port: {port}\n      database: {mysql.database}\n"
                        f"      user: {mysql.user}\n      password: ${{MYSQL_TEST_PASSWORD}}\n")
        return path

    def cli(*args: str, port: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "osiris_dagster.cli", "run", str(pipeline), "--connections",
             str(connections(port)), *args], cwd=tmp_path, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)

    with CommitProxy(mysql.host, mysql.port, hold_answer_s=120) as proxy:
        run = cli(port=proxy.port)
        try:
            assert proxy.commits_seen.acquire(timeout=300), "the COMMIT never came"
            while mysql.query("SELECT count(*) FROM w_killed") != [(3,)]:
                assert run.poll() is None, run.communicate()[0]
                time.sleep(0.05)  # (polling the condition, not timing it)
        finally:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    again = cli("--select", "append", port=mysql.port)
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 1, out
    assert "not run: an earlier attempt of this step on the same input" in out
    assert "ended before it could say how the write went" in out
    assert mysql.query("SELECT count(*) FROM w_killed") == [(3,)]


def test_upsert_refuses_rows_with_a_null_key(mysql: MySQLTarget, harness: Harness) -> None:
    """A NULL key matches no row: such rows were inserted again by every run and by a Dagster
    retry after a lost COMMIT (which counted the upsert as safe to repeat): 13 rows from 10,
    and the run said ok (an independent review)."""
    mysql.execute("DROP TABLE IF EXISTS w_nullkey",
                  "CREATE TABLE w_nullkey (id INT AUTO_INCREMENT PRIMARY KEY, code VARCHAR(5) "
                  "NULL UNIQUE, v TEXT)", "INSERT INTO w_nullkey (code, v) VALUES ('a', 'old')")
    harness.upstream("SELECT * FROM (VALUES ('a', 'new'), (NULL, 'x'), (NULL, 'y')) t(code, v)")
    with pytest.raises(DriverError, match=r"2 input row\(s\) have NULL in `upsert_keys` "
                                          r"\(code\)\. A NULL key matches no row, so mode upsert "
                                          r"would insert those rows again on every run"):
        harness.write("mysql.writer", mysql.connection(), table="w_nullkey", mode="upsert",
                      upsert_keys=["code"])
    assert [r[1:] for r in _table(mysql, "w_nullkey")] == [("a", "old")]  # nothing written


SHAPED = """\
oml_version: "0.1.0"
name: commit-lost
steps:
  - {{id: load, component: filesystem.csv_extractor, mode: read, config: {{path: {csv}}}}}
  - id: shape
    component: duckdb.processor
    mode: transform
    needs: [load]
    config: {{query: "SELECT id, name FROM input_df"}}
  - id: append
    component: mysql.writer
    mode: write
    needs: [shape]
    config: {{connection: "@mysql.main", table: w_commit_lost, mode: append}}
"""


def test_a_lost_write_is_refused_when_its_input_is_made_again_from_the_same_extract(
        mysql: MySQLTarget, run_pipeline: PipelineRun, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, instance: dg.DagsterInstance) -> None:
    """The append's COMMIT landed unseen; materialising the SQL step and the writer again
    (same extract) made a new table of the same rows, a new key: the rows were written twice
    (an independent review). The key is now what the input was made from."""
    from ..helpers import defs_for

    monkeypatch.setenv("MYSQL_TEST_PASSWORD", mysql.password)
    mysql.execute("DROP TABLE IF EXISTS w_commit_lost",
                  "CREATE TABLE w_commit_lost (id INT, name VARCHAR(10))")
    csv = tmp_path / "rows.csv"
    csv.write_text("id,name\n1,a\n2,b\n3,c\n")
    with CommitProxy(mysql.host, mysql.port) as proxy:
        connections = ("version: 1\nconnections:\n  mysql:\n    main:\n"
                       f"      host: 127.0.0.1\n      port: {proxy.port}\n"
                       f"      database: {mysql.database}\n      user: {mysql.user}\n"
                       "      password: ${MYSQL_TEST_PASSWORD}\n")
        first, _ = run_pipeline(SHAPED.format(csv=csv), connections, "commit-lost")
        assert not first.success and proxy.commits_dropped == 1
        defs = defs_for(tmp_path / "pipelines" / "pipeline.yaml", tmp_path / "sessions",
                        tmp_path / "osiris_connections.yaml")
        again = defs.resolve_job_def("commit_lost").execute_in_process(
            instance=instance, raise_on_error=False, asset_selection=[
                dg.AssetKey(["commit-lost", "shape"]), dg.AssetKey(["commit-lost", "append"])])
        assert not again.success
        assert "not run: an earlier attempt of this step on the same input" in \
            failure_description(again)
        assert "may have written it already into @mysql.main, table w_commit_lost," in \
            failure_description(again)  # what to check
        assert proxy.commits_dropped == 1  # not even sent
        assert _table(mysql, "w_commit_lost") == [(1, "a"), (2, "b"), (3, "c")]
        # a new run reads the file again into its own session: new input, written
        new = defs.resolve_job_def("commit_lost").execute_in_process(instance=instance,
                                                                      raise_on_error=False)
        assert "not run:" not in failure_description(new) and proxy.commits_dropped == 2


@pytest.mark.parametrize("where", ["driver", "bookkeeping"])
def test_a_failure_after_the_commit_succeeded_is_never_written_again(
        mysql: MySQLTarget, run_pipeline: PipelineRun, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, instance: dg.DagsterInstance, where: str) -> None:
    """The COMMIT succeeded, then a session log write failed (a full disk): an ordinary,
    retryable error, so the step's retry appended the rows again (6 rows); without a retry it
    was not recorded and `run --select` wrote them again."""
    import errno

    from osiris_dagster.runtime import runner
    from osiris_dagster.runtime.workspace import StepWorkspace

    mysql.execute("DROP TABLE IF EXISTS w_commit_lost",
                  "CREATE TABLE w_commit_lost (id INT, name VARCHAR(10))")
    csv = tmp_path / "rows.csv"
    csv.write_text("id,name\n1,a\n2,b\n3,c\n")
    monkeypatch.setenv("MYSQL_TEST_PASSWORD", mysql.password)
    full = OSError(errno.ENOSPC, "No space left on device")
    if where == "driver":
        log_event = StepWorkspace.log_event

        def failing(self: StepWorkspace, name: str, **fields: object) -> None:
            if name == "mysql_write_complete":
                raise full
            log_event(self, name, **fields)
        monkeypatch.setattr(StepWorkspace, "log_event", failing)
    else:
        log_success = runner._log_success

        def failing_success(session: object, step: Any, *args: Any, **kwargs: Any) -> None:
            if step.id == "append":
                raise full
            log_success(session, step, *args, **kwargs)
        monkeypatch.setattr(runner, "_log_success", failing_success)
    connections = ("version: 1\nconnections:\n  mysql:\n    main:\n"
                   f"      host: {mysql.host}\n      port: {mysql.port}\n"
                   f"      database: {mysql.database}\n      user: {mysql.user}\n"
                   "      password: ${MYSQL_TEST_PASSWORD}\n")
    result, session = run_pipeline(WRITE_WITH_RETRIES.format(csv=csv), connections,
                                   "commit-lost")
    assert not result.success
    assert _table(mysql, "w_commit_lost") == [(1, "a"), (2, "b"), (3, "c")]  # exactly once
    # the failure is in the session's log too (the bookkeeping path logged none)
    (error,) = [e for e in events(session) if e["event"] == "step_error"]
    assert "COMMIT succeeded" in error["error"] and "will_retry" not in error
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    text = failure_description(result)
    assert "No space left on device" in text and "COMMIT succeeded" in text, text
    assert "Recorded as an unsettled write" in text, text
    tags = instance.get_run_by_id(result.run_id).tags
    assert tags.get("dagster/retry_on_asset_or_op_failure") == "false"


@pytest.mark.parametrize("engine", ["MyISAM", "Aria"])
@pytest.mark.parametrize("mode, ddl, rows, refused", [
    # a NULL into a NOT NULL column, and a key twice in the input, failed in the final
    # INSERT ... SELECT, after the replace's DELETE: the table held some new rows, none of
    # the old ones, and the README said such writes fail before the table is touched
    ("replace", "id INT PRIMARY KEY, v INT NOT NULL",
     "(VALUES (1, 1), (2, 2), (3, NULL), (4, 4)) t(id, v)",
     r"1 input row holds NULL in column 'v', which .* declares NOT NULL"),
    ("replace", "id INT PRIMARY KEY, v INT", "(VALUES (1, 1), (2, 2), (2, 3)) t(id, v)",
     r"2 input rows share the value id=2 of the unique index PRIMARY"),
    ("replace", "id INT, name VARCHAR(20), UNIQUE KEY u_name (name(3))",
     "(VALUES (1, 'abcX'), (2, 'abcY')) t(id, name)",
     r"2 input rows share the value name\(3\)='abc' of the unique index u_name"),
    ("replace", "id INT PRIMARY KEY, code VARCHAR(5) NOT NULL, v INT",
     "(VALUES (1, 1), (2, 2)) t(id, v)",
     r"has no column 'code', which .* declares NOT NULL without a default"),
    # an append whose key an existing row holds stopped at that row, keeping those before
    ("append", "id INT PRIMARY KEY, v INT", "(VALUES (5, 1), (6, 2), (0, 3)) t(id, v)",
     r"an input row has the value id=0 of the unique index PRIMARY, which a row of .* holds"),
    ("truncate", "id INT PRIMARY KEY, v INT NOT NULL",
     "(VALUES (1, 1), (2, NULL)) t(id, v)", r"declares NOT NULL"),
    ("upsert", "id INT PRIMARY KEY, email VARCHAR(20), UNIQUE KEY u_email (email)",
     "(VALUES (5, 'new@x'), (7, 'old@x')) t(id, email)",
     r"the value email='old@x' of the unique index u_email, which a row of .* holds"),
    # a second review: two input rows with one non-key unique value (an upsert), a prefix
    # index over the upsert's own key, a TIMESTAMP NOT NULL without a default the input
    # lacks (explicit_defaults_for_timestamp is on), an upsert that only updates while the
    # input lacks a NOT NULL column (MariaDB refuses the empty INSERT ... SELECT)
    ("upsert", "id INT PRIMARY KEY, email VARCHAR(20) UNIQUE, v INT",
     "(VALUES (2, 'q', 20), (3, 'q', 30)) t(id, email, v)",
     r"2 input rows share the value email='q' of the unique index email"),
    ("upsert", "name VARCHAR(20) PRIMARY KEY, v INT, UNIQUE KEY p3 (name(3))",
     "(VALUES ('zzz1', 5), ('oldY', 6)) t(name, v)",
     r"the value name\(3\)='old' of the unique index p3, which a row of .* holds"),
    ("replace", "id INT PRIMARY KEY, ts TIMESTAMP NOT NULL", "(VALUES (5), (6)) t(id)",
     r"has no column 'ts', which .* declares NOT NULL without a default"),
    ("upsert", "id INT PRIMARY KEY, code VARCHAR(5) NOT NULL, v INT",
     "(VALUES (0, 10)) t(id, v)",
     r"has no column 'code', which .* declares NOT NULL without a default"),
])
def test_a_non_transactional_table_is_not_touched_by_a_write_it_would_refuse(
        mysql: MySQLTarget, harness: Harness, engine: str, mode: str, ddl: str, rows: str,
        refused: str) -> None:
    mysql.execute("DROP TABLE IF EXISTS w_guard",
                  f"CREATE TABLE w_guard ({ddl}) ENGINE={engine}")
    columns = [r[0] for r in mysql.query(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = 'w_guard' ORDER BY ORDINAL_POSITION")]
    old = {"id": 0, "v": 9, "name": "old", "code": "c", "email": "old@x",
           "ts": "2024-01-01 00:00:00"}
    mysql.execute(f"INSERT INTO w_guard ({', '.join(columns)}) VALUES "
                  f"({', '.join(repr(old[c]) for c in columns)})")
    before = _table(mysql, "w_guard")
    harness.upstream(f"SELECT * FROM {rows}")
    options: dict[str, Any] = {"mode": "append" if mode == "truncate" else mode,
                               "truncate_before": mode == "truncate", "batch_size": 1}
    if mode == "upsert":
        options["upsert_keys"] = ["name"] if "name VARCHAR(20) PRIMARY" in ddl else ["id"]
    with pytest.raises(DriverError, match=refused) as failure:
        harness.write("mysql.writer", mysql.connection(), table="w_guard", **options)
    assert "Nothing was written" in str(failure.value)
    assert _table(mysql, "w_guard") == before


@pytest.mark.parametrize("engine", ["MyISAM", "Aria"])
def test_a_non_transactional_replace_takes_what_the_table_allows(
        mysql: MySQLTarget, harness: Harness, engine: str) -> None:
    """NULLs in a nullable unique column, an AUTO_INCREMENT id left NULL, and a column the
    input leaves to its default are not refused by the checks before a MyISAM write."""
    mysql.execute("DROP TABLE IF EXISTS w_guard_ok",
                  "CREATE TABLE w_guard_ok (id INT AUTO_INCREMENT PRIMARY KEY, "
                  "email VARCHAR(20) UNIQUE, tenant INT NOT NULL DEFAULT 1, v INT NOT NULL, "
                  f"UNIQUE KEY u (v, tenant)) ENGINE={engine}",
                  "INSERT INTO w_guard_ok (email, v) VALUES ('a@x', 1)")
    harness.upstream("SELECT * FROM (VALUES (NULL::INTEGER, NULL::VARCHAR, 1), "
                     "(NULL, NULL, 2), (NULL, 'a@x', 3)) t(id, email, v)")
    harness.write("mysql.writer", mysql.connection(), table="w_guard_ok", mode="replace")
    assert sorted((r[1:] for r in _table(mysql, "w_guard_ok")), key=repr) == [
        ("a@x", 1, 3), (None, 1, 1), (None, 1, 2)]
    harness.upstream("SELECT * FROM (VALUES ('b@x', 5), ('c@x', 2)) t(email, v)")
    with pytest.raises(DriverError, match=r"the value v=2 of the unique index u, which a row "
                                          r".* holds.*Nothing was written"):  # tenant 1 too
        harness.write("mysql.writer", mysql.connection(), table="w_guard_ok", batch_size=1)
    assert len(_table(mysql, "w_guard_ok")) == 3


@pytest.mark.parametrize("rule", ["CASCADE", "SET NULL", "RESTRICT"])
def test_replace_keeps_the_rows_that_reference_keys_that_come_back(
        mysql: MySQLTarget, harness: Harness, rule: str) -> None:
    """A replace deleted every row first: with ON DELETE CASCADE the child rows went too
    (SET NULL lost their references), although the same keys came back, and RESTRICT made a
    replace impossible. Rows whose key comes back are now updated in place (a column the input
    lacks gets its default, as a fresh row would); only the others are deleted, and their
    references' rules apply to them as the schema says."""
    mysql.execute("DROP TABLE IF EXISTS w_child", "DROP TABLE IF EXISTS w_parent",
                  "CREATE TABLE w_parent (id INT PRIMARY KEY, name VARCHAR(10), "
                  "note VARCHAR(10) DEFAULT 'fresh', seq INT AUTO_INCREMENT UNIQUE)",
                  "CREATE TABLE w_child (id INT PRIMARY KEY, parent_id INT, FOREIGN KEY "
                  f"(parent_id) REFERENCES w_parent (id) ON DELETE {rule})",
                  "INSERT INTO w_parent (id, name, note) VALUES (1, 'a', 'stale'), (2, 'b', 'x')",
                  "INSERT INTO w_child VALUES (10, 1), (20, 2)")
    harness.upstream("SELECT * FROM (VALUES (1, 'a2'), (2, 'b2'), (3, 'c')) t(id, name)")
    harness.write("mysql.writer", mysql.connection(), table="w_parent", mode="replace")
    assert _table(mysql, "w_parent") == [(1, "a2", "fresh", 1), (2, "b2", "fresh", 2),
                                         (3, "c", "fresh", 3)]
    assert _table(mysql, "w_child") == [(10, 1), (20, 2)]
    harness.upstream("SELECT * FROM (VALUES (1, 'a3')) t(id, name)")  # 2 and 3 go
    if rule == "RESTRICT":
        with pytest.raises(DriverError, match=r"Cannot delete .*w_child.*keep the referenced "
                                              r"keys in the input.*Nothing was written"):
            harness.write("mysql.writer", mysql.connection(), table="w_parent", mode="replace")
        assert len(_table(mysql, "w_parent")) == 3
        return
    harness.write("mysql.writer", mysql.connection(), table="w_parent", mode="replace")
    assert _table(mysql, "w_parent") == [(1, "a3", "fresh", 1)]
    assert _table(mysql, "w_child") == ([(10, 1)] if rule == "CASCADE" else
                                        [(10, 1), (20, None)])


def test_a_keyed_replace_orders_its_statements_so_rows_that_stay_stay(
        mysql: MySQLTarget, harness: Harness) -> None:
    """A review: the stale rows were deleted first, and a table's own ON DELETE CASCADE took a
    row that comes back with them (and that row's children); a row may also come to reference
    a new row. An input row that still points at a row that goes fails the step."""
    mysql.execute("DROP TABLE IF EXISTS w_item", "DROP TABLE IF EXISTS w_node",
                  "CREATE TABLE w_node (id INT PRIMARY KEY, parent INT, name VARCHAR(10), "
                  "FOREIGN KEY (parent) REFERENCES w_node (id) ON DELETE CASCADE)",
                  "CREATE TABLE w_item (iid INT PRIMARY KEY, node_id INT, FOREIGN KEY "
                  "(node_id) REFERENCES w_node (id) ON DELETE CASCADE)",
                  "INSERT INTO w_node VALUES (2, NULL, 'root'), (1, 2, 'leaf')",
                  "INSERT INTO w_item VALUES (100, 1)")
    harness.upstream("SELECT 1 AS id, NULL::INTEGER AS parent, 'now-root' AS name")
    harness.write("mysql.writer", mysql.connection(), table="w_node", mode="replace")
    assert _table(mysql, "w_node") == [(1, None, "now-root")]
    assert _table(mysql, "w_item") == [(100, 1)]
    harness.upstream("SELECT * FROM (VALUES (5, NULL::INTEGER, 'new'), (1, 5, 'under-new')) "
                     "t(id, parent, name)")  # a row that stays points at a new one: the rows
    with pytest.raises(DriverError, match=r"\(1452\).*Nothing was written"):  # that stay
        harness.write("mysql.writer", mysql.connection(), table="w_node",  # come first
                      mode="replace")
    assert _table(mysql, "w_node") == [(1, None, "now-root")]
    harness.upstream("SELECT * FROM (VALUES (5, NULL::INTEGER, 'new'), (1, 5, 'under-new')) "
                     "t(id, parent, name)")
    mysql.execute("INSERT INTO w_node VALUES (5, NULL, 'new')")  # there before: it works
    harness.write("mysql.writer", mysql.connection(), table="w_node", mode="replace")
    assert _table(mysql, "w_node") == [(1, 5, "under-new"), (5, None, "new")]
    harness.upstream("SELECT 1 AS id, 5 AS parent, 'orphan' AS name")  # 5 goes, 1 points at it
    with pytest.raises(DriverError, match=r"also deleted 1 of the input's rows.*Nothing was "
                                          r"written"):
        harness.write("mysql.writer", mysql.connection(), table="w_node", mode="replace")
    assert _table(mysql, "w_node") == [(1, 5, "under-new"), (5, None, "new")]
    assert _table(mysql, "w_item") == [(100, 1)]


def test_a_keyed_replace_takes_the_inputs_auto_increment_values_and_a_referenced_unique_key(
        mysql: MySQLTarget, harness: Harness) -> None:
    mysql.execute("DROP TABLE IF EXISTS w_ref_child", "DROP TABLE IF EXISTS w_ref",
                  "CREATE TABLE w_ref (id INT PRIMARY KEY AUTO_INCREMENT, code VARCHAR(5) "
                  "NOT NULL UNIQUE, seq INT, v INT)",
                  "CREATE TABLE w_ref_child (id INT PRIMARY KEY, code VARCHAR(5), FOREIGN KEY "
                  "(code) REFERENCES w_ref (code) ON DELETE CASCADE)",
                  "INSERT INTO w_ref (code, v) VALUES ('a', 1), ('b', 2)",
                  "INSERT INTO w_ref_child VALUES (10, 'a'), (20, 'b')")
    harness.upstream("SELECT * FROM (VALUES ('a', 10), ('c', 30)) t(code, v)")  # no id
    harness.write("mysql.writer", mysql.connection(), table="w_ref", mode="replace")
    assert _table(mysql, "w_ref") == [(1, "a", None, 10), (3, "c", None, 30)]
    assert _table(mysql, "w_ref_child") == [(10, "a")]


def test_a_replace_that_would_cascade_without_a_key_in_the_input_is_refused(
        mysql: MySQLTarget, harness: Harness) -> None:
    """It deleted every row silently, and the referencing rows with them."""
    mysql.execute("DROP TABLE IF EXISTS w_child", "DROP TABLE IF EXISTS w_parent",
                  "CREATE TABLE w_parent (id INT PRIMARY KEY, name VARCHAR(10))",
                  "CREATE TABLE w_child (id INT PRIMARY KEY, parent_id INT, FOREIGN KEY "
                  "(parent_id) REFERENCES w_parent (id) ON DELETE CASCADE)",
                  "INSERT INTO w_parent VALUES (1, 'a')", "INSERT INTO w_child VALUES (10, 1)")
    harness.upstream("SELECT 'b' AS name")
    with pytest.raises(DriverError, match=r"referenced by .*w_child.* ON DELETE CASCADE.*"
                                          r"Nothing was written"):
        harness.write("mysql.writer", mysql.connection(), table="w_parent", mode="replace")
    assert _table(mysql, "w_child") == [(10, 1)]


@pytest.mark.parametrize("engine", ["MyISAM", "Aria"])
def test_a_non_transactional_write_the_table_takes_is_not_refused(
        mysql: MySQLTarget, harness: Harness, engine: str) -> None:
    """False refusals a review found: a unique index with a per-row default (uuid()), an
    AUTO_INCREMENT 0 given twice (numbered, as NULL is), and an upsert moving a unique
    value from a row it updates to a row it inserts."""
    mysql.execute("DROP TABLE IF EXISTS w_ok1", "DROP TABLE IF EXISTS w_ok2",
                  "CREATE TABLE w_ok1 (id INT AUTO_INCREMENT PRIMARY KEY, a INT, "
                  f"u VARCHAR(40) DEFAULT (uuid()), UNIQUE KEY au (a, u)) ENGINE={engine}",
                  "CREATE TABLE w_ok2 (id INT PRIMARY KEY, email VARCHAR(10) UNIQUE) "
                  f"ENGINE={engine}", "INSERT INTO w_ok2 VALUES (1, 'a')")
    harness.upstream("SELECT * FROM (VALUES (0, 1), (0, 1)) t(id, a)")
    harness.write("mysql.writer", mysql.connection(), table="w_ok1", mode="replace")
    assert [r[:2] for r in _table(mysql, "w_ok1")] == [(1, 1), (2, 1)]
    harness.upstream("SELECT * FROM (VALUES (1, 'z'), (3, 'a')) t(id, email)")
    harness.write("mysql.writer", mysql.connection(), table="w_ok2", mode="upsert",
                  upsert_keys=["id"])
    assert _table(mysql, "w_ok2") == [(1, "z"), (3, "a")]


def test_a_keyed_replace_keeps_new_rows_with_null_keys_and_refuses_a_set_null_change(
        mysql: MySQLTarget, harness: Harness) -> None:
    """A second review: new rows whose AUTO_INCREMENT key the input leaves NULL were inserted
    and then deleted with the rows that go (exit 0); a row's own ON DELETE SET NULL changed
    an input row's reference silently; a unique value moving from a row that goes to a new row
    was refused."""
    mysql.execute("DROP TABLE IF EXISTS w_ai_child", "DROP TABLE IF EXISTS w_ai",
                  "CREATE TABLE w_ai (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20), "
                  "email VARCHAR(20) UNIQUE)",
                  "CREATE TABLE w_ai_child (cid INT PRIMARY KEY, pid INT, FOREIGN KEY (pid) "
                  "REFERENCES w_ai (id) ON DELETE CASCADE)",
                  "INSERT INTO w_ai VALUES (1, 'a', 'x'), (2, 'b', 'y')",
                  "INSERT INTO w_ai_child VALUES (10, 1)")
    harness.upstream("SELECT * FROM (VALUES (1, 'a2', 'z'), (NULL, 'new1', 'y'), "
                     "(NULL, 'new2', NULL)) t(id, name, email)")  # 2 goes, 'y' moves
    harness.write("mysql.writer", mysql.connection(), table="w_ai", mode="replace")
    assert [r[1:] for r in _table(mysql, "w_ai")] == [("a2", "z"), ("new1", "y"),
                                                      ("new2", None)]
    assert _table(mysql, "w_ai_child") == [(10, 1)]
    mysql.execute("DROP TABLE IF EXISTS w_tree",
                  "CREATE TABLE w_tree (id INT PRIMARY KEY, parent INT, label VARCHAR(10), "
                  "FOREIGN KEY (parent) REFERENCES w_tree (id) ON DELETE SET NULL)",
                  "INSERT INTO w_tree VALUES (1, NULL, 'root'), (2, 1, 'kid'), (3, 2, 'gk')")
    harness.upstream("SELECT * FROM (VALUES (2, 1, 'kid2'), (3, 2, 'gk2')) t(id, parent, label)")
    with pytest.raises(DriverError, match=r"changed 1 of the input's rows .*SET NULL.*cleared "
                                          r"their parent.*Nothing was written"):
        harness.write("mysql.writer", mysql.connection(), table="w_tree", mode="replace")
    assert _table(mysql, "w_tree") == [(1, None, "root"), (2, 1, "kid"), (3, 2, "gk")]


def test_a_keyed_replace_goes_by_the_key_references_point_at_and_sees_set_null_cycles(
        mysql: MySQLTarget, harness: Harness) -> None:
    """A third review: matched by the PRIMARY KEY while children point at a unique code, a
    row whose id the input leaves NULL was a new row and the old one went, with the child of
    its code (exit 0); a SET NULL through a cycle of two tables cleared an input row's
    reference silently."""
    mysql.execute("DROP TABLE IF EXISTS w_code_child", "DROP TABLE IF EXISTS w_code",
                  "CREATE TABLE w_code (id INT AUTO_INCREMENT PRIMARY KEY, code VARCHAR(10) "
                  "NOT NULL UNIQUE, name VARCHAR(20))",
                  "CREATE TABLE w_code_child (id INT PRIMARY KEY, p_code VARCHAR(10), FOREIGN "
                  "KEY (p_code) REFERENCES w_code (code) ON DELETE CASCADE)",
                  "INSERT INTO w_code VALUES (1, 'X', 'x'), (2, 'Y', 'y')",
                  "INSERT INTO w_code_child VALUES (100, 'Y')")
    harness.upstream("SELECT * FROM (VALUES (1, 'X', 'x'), (NULL, 'Y', 'y2')) "
                     "t(id, code, name)")
    harness.write("mysql.writer", mysql.connection(), table="w_code", mode="replace")
    assert _table(mysql, "w_code") == [(1, "X", "x"), (2, "Y", "y2")]
    assert _table(mysql, "w_code_child") == [(100, "Y")]
    mysql.execute("SET foreign_key_checks = 0", "DROP TABLE IF EXISTS w_cyc_b",
                  "DROP TABLE IF EXISTS w_cyc_a", "SET foreign_key_checks = 1",
                  "CREATE TABLE w_cyc_a (id INT PRIMARY KEY, b_id INT NULL, name VARCHAR(20))",
                  "CREATE TABLE w_cyc_b (id INT PRIMARY KEY, a_id INT NOT NULL, FOREIGN KEY "
                  "(a_id) REFERENCES w_cyc_a (id) ON DELETE CASCADE)",
                  "INSERT INTO w_cyc_a VALUES (1, NULL, 'one'), (2, NULL, 'two')",
                  "INSERT INTO w_cyc_b VALUES (10, 1)",
                  "UPDATE w_cyc_a SET b_id = 10 WHERE id = 2",
                  "ALTER TABLE w_cyc_a ADD FOREIGN KEY (b_id) REFERENCES w_cyc_b (id) "
                  "ON DELETE SET NULL")
    harness.upstream("SELECT 2 AS id, 10 AS b_id, 'two' AS name")  # 1 goes, and b.10 with it
    with pytest.raises(DriverError, match=r"changed 1 of the input's rows .*cleared their b_id"):
        harness.write("mysql.writer", mysql.connection(), table="w_cyc_a", mode="replace")
    assert _table(mysql, "w_cyc_a") == [(1, None, "one"), (2, 10, "two")]


def test_a_keyed_replace_refuses_to_delete_a_row_whose_other_referenced_value_comes_back(
        mysql: MySQLTarget, harness: Harness) -> None:
    """A fourth review: referenced by its id and by a unique code, a row matched by id went
    (the input gave another id, or none) and took the children of its code with it, though
    the code came back in a new row (exit 0). Such a replace now fails, rolled back. An
    AUTO_INCREMENT 0 kept a row's id as 0 (a new row's 0 is numbered): it keeps the row's id,
    as NULL does."""
    mysql.execute("DROP TABLE IF EXISTS w_two_ci", "DROP TABLE IF EXISTS w_two_cc",
                  "DROP TABLE IF EXISTS w_two",
                  "CREATE TABLE w_two (id INT AUTO_INCREMENT PRIMARY KEY, code VARCHAR(10) "
                  "NOT NULL UNIQUE, name VARCHAR(20))",
                  "CREATE TABLE w_two_ci (x INT PRIMARY KEY, pid INT, FOREIGN KEY (pid) "
                  "REFERENCES w_two (id) ON DELETE CASCADE)",
                  "CREATE TABLE w_two_cc (x INT PRIMARY KEY, pcode VARCHAR(10), FOREIGN KEY "
                  "(pcode) REFERENCES w_two (code) ON DELETE CASCADE)",
                  "INSERT INTO w_two VALUES (1, 'A', 'a'), (2, 'B', 'b')",
                  "INSERT INTO w_two_ci VALUES (10, 1), (20, 2)",
                  "INSERT INTO w_two_cc VALUES (100, 'A'), (200, 'B')")
    harness.upstream("SELECT * FROM (VALUES (5, 'A', 'new'), (2, 'B', 'b')) t(id, code, name)")
    with pytest.raises(DriverError, match=r"holds code='A', which an input row brings back.*"
                                          r"Nothing was written"):
        harness.write("mysql.writer", mysql.connection(), table="w_two", mode="replace")
    assert _table(mysql, "w_two_cc") == [(100, "A"), (200, "B")]
    harness.upstream("SELECT * FROM (VALUES (1, 'A', 'a2'), (2, 'B', 'b2')) t(id, code, name)")
    harness.write("mysql.writer", mysql.connection(), table="w_two", mode="replace")
    assert _table(mysql, "w_two") == [(1, "A", "a2"), (2, "B", "b2")]
    assert _table(mysql, "w_two_ci") == [(10, 1), (20, 2)]
    assert _table(mysql, "w_two_cc") == [(100, "A"), (200, "B")]
    mysql.execute("DROP TABLE w_two_ci")  # referenced by its code only: matched by code
    harness.upstream("SELECT * FROM (VALUES (0, 'A', 'a3'), (0, 'C', 'c')) t(id, code, name)")
    harness.write("mysql.writer", mysql.connection(), table="w_two", mode="replace")
    assert _table(mysql, "w_two") == [(1, "A", "a3"), (3, "C", "c")]  # 0 numbered, as NULL
