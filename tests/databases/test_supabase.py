"""supabase.writer and supabase.extractor: the SQL channel against a real PostgreSQL, the REST
channel against the PostgREST fake (backed by the same PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers import get_driver
from osiris_dagster.drivers.postgres import writer as supabase_writer
from osiris_dagster.oml.specs import get_spec
from osiris_dagster.runtime.workspace import StepWorkspace

from ..helpers import defs_for, events, failure_description, materialisations
from . import postgrest_fake
from .conftest import REST_KEY, Harness, MySQLTarget, PgTarget, PipelineRun
from .postgrest_fake import PostgrestFake
from .test_mysql import _seed

# The Osiris demo (docs/examples/mysql_duckdb_supabase_demo.yaml), as it runs here.
DEMO = """\
oml_version: "0.1.0"
name: mysql-duckdb-supabase-demo
steps:
  - id: extract-movies
    component: mysql.extractor
    mode: read
    config:
      connection: "@mysql.db_movies"
      query: |
        SELECT m.movie_id, m.title, m.release_year, m.genre, m.runtime_minutes,
               m.budget_usd, m.box_office_usd, d.director_id, d.name AS director_name,
               d.nationality AS director_nationality
        FROM movies m JOIN directors d ON d.director_id = m.director_id
  - id: compute-director-stats
    component: duckdb.processor
    mode: transform
    needs: [extract-movies]
    config:
      query: |
        SELECT director_id, director_name, director_nationality,
               count(*) AS movie_count,
               round(avg(runtime_minutes), 1) AS avg_runtime_minutes,
               sum(budget_usd) AS total_budget_usd,
               sum(box_office_usd) AS total_box_office_usd,
               round(sum(box_office_usd) / nullif(sum(budget_usd), 0), 2) AS roi_ratio,
               min(release_year) AS first_movie_year,
               max(release_year) AS latest_movie_year
        FROM input_df
        GROUP BY director_id, director_name, director_nationality
        ORDER BY director_id
  - id: write-director-stats
    component: supabase.writer
    mode: write
    needs: [compute-director-stats]
    config:
      connection: "@supabase.main"
      schema: {schema}
      table: director_stats
      write_mode: replace
      primary_key: [director_id]
      create_if_missing: true
"""

DEMO_CONNECTIONS = """\
version: 1
connections:
  mysql:
    db_movies:
      host: {mysql_host}
      port: {mysql_port}
      database: {mysql_database}
      user: {mysql_user}
      password: ${{MYSQL_TEST_PASSWORD}}
  supabase:
    main:
      url: https://unused-project.supabase.co
      service_role_key: ${{SUPABASE_TEST_KEY}}
      pg_host: {pg_host}
      pg_port: {pg_port}
      pg_database: {pg_database}
      pg_user: {pg_user}
      pg_password: ${{PG_TEST_PASSWORD}}
"""


def test_demo_pipeline_mysql_duckdb_supabase_through_dagster(
        mysql: MySQLTarget, pg: PgTarget, run_pipeline: PipelineRun,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from .conftest import PG_DATABASE, PG_HOST, PG_PORT, PG_USER

    _seed(mysql, monkeypatch, "--movies", "120", "--directors", "12")
    monkeypatch.setenv("MYSQL_TEST_PASSWORD", mysql.password)
    monkeypatch.setenv("SUPABASE_TEST_KEY", REST_KEY)
    monkeypatch.setenv("PG_TEST_PASSWORD", "pg-Secret-4711")
    pg.execute(f"DROP TABLE IF EXISTS {pg.table('director_stats')}")
    connections = DEMO_CONNECTIONS.format(
        mysql_host=mysql.host, mysql_port=mysql.port, mysql_database=mysql.database,
        mysql_user=mysql.user, pg_host=PG_HOST, pg_port=PG_PORT, pg_database=PG_DATABASE,
        pg_user=PG_USER)
    pipeline = DEMO.format(schema=pg.schema)
    result, session = run_pipeline(pipeline, connections, "mysql-duckdb-supabase-demo")
    assert result.success, failure_description(result)

    expected = mysql.query(
        "SELECT d.director_id, d.name, count(*), sum(m.box_office_usd) FROM movies m "
        "JOIN directors d USING (director_id) GROUP BY d.director_id, d.name ORDER BY 1")
    rows = pg.query(f"SELECT director_id, director_name, movie_count, total_box_office_usd "
                    f"FROM {pg.table('director_stats')} ORDER BY 1")
    assert [tuple(r) for r in rows] == [(a, b, c, int(d)) for a, b, c, d in expected]
    ddl = (session / "artifacts" / "write-director-stats" / "ddl_plan.sql").read_text()
    assert f'CREATE TABLE "{pg.schema}"."director_stats"' in ddl
    assert 'PRIMARY KEY ("director_id")' in ddl
    pk = pg.query("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = "
                  "i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indisprimary AND "
                  "i.indrelid = %s::regclass", (pg.table("director_stats"),))
    assert pk == [("director_id",)]
    write = materialisations(result)["mysql-duckdb-supabase-demo/write-director-stats"]
    text = json.dumps({k: str(v.value) for k, v in write.items()})
    assert f"postgresql://{PG_HOST}:{PG_PORT}/{PG_DATABASE}/{pg.schema}.director_stats" in text
    for path in session.rglob("*"):
        if path.is_file():
            content = path.read_text(errors="replace")
            assert "pg-Secret-4711" not in content and REST_KEY not in content, path

    # replace: directors that lost all their movies disappear from the target
    mysql.execute("DELETE FROM movies WHERE director_id IN (1, 2)")
    result, _ = run_pipeline(pipeline, connections, "mysql-duckdb-supabase-demo")
    assert result.success, failure_description(result)
    ids = [r[0] for r in pg.query(f"SELECT director_id FROM {pg.table('director_stats')} "
                                  "ORDER BY 1")]
    assert ids == [r[0] for r in mysql.query("SELECT DISTINCT director_id FROM movies "
                                             "ORDER BY 1")]
    assert 1 not in ids and 2 not in ids

    # and back: supabase.extractor over the SQL channel -> mysql.writer
    readback = READBACK.format(schema=pg.schema)
    result, _ = run_pipeline(readback, connections, "supabase-readback", "readback.yaml")
    assert result.success, failure_description(result)
    back = mysql.query("SELECT director_id, director_name, movie_count FROM stats_readback "
                       "ORDER BY 1")
    assert [tuple(r) for r in back] == [tuple(r) for r in pg.query(
        f"SELECT director_id, director_name, movie_count FROM {pg.table('director_stats')} "
        "ORDER BY 1")]
    read = materialisations(result)["supabase-readback/read-stats"]
    assert {c.name: c.type for c in read["dagster/column_schema"].schema.columns} == {
        "director_id": "INTEGER", "director_name": "VARCHAR", "movie_count": "BIGINT"}


READBACK = """\
oml_version: "0.1.0"
name: supabase-readback
steps:
  - id: read-stats
    component: supabase.extractor
    mode: read
    config:
      connection: "@supabase.main"
      schema: {schema}
      table: director_stats
      select: director_id, director_name, movie_count
      order: director_id
  - id: write-back
    component: mysql.writer
    mode: write
    config:
      connection: "@mysql.db_movies"
      table: stats_readback
      mode: replace
      create_table: true
"""


REST_PIPELINE = """\
oml_version: "0.1.0"
name: supabase-rest-copy
steps:
  - id: read-films
    component: supabase.extractor
    mode: read
    config:
      connection: "@supabase.api"
      schema: {schema}
      table: films
      select: id,title,price,released,tags
      filter: {{genre: drama}}
      order: id.desc
      limit: 2
  - id: write-copy
    component: supabase.writer
    mode: write
    config:
      connection: "@supabase.api"
      schema: {schema}
      table: films_copy
      write_mode: upsert
      primary_key: id
      batch_size: 2
"""


def test_rest_channel_pipeline_through_dagster(
        pg: PgTarget, rest: PostgrestFake, run_pipeline: PipelineRun,
        monkeypatch: pytest.MonkeyPatch) -> None:
    films, copy = pg.table("films"), pg.table("films_copy")
    pg.execute(f"DROP TABLE IF EXISTS {films}", f"DROP TABLE IF EXISTS {copy}",
               f"CREATE TABLE {films} (id int PRIMARY KEY, title text, genre text, "
               "price numeric(8,2), released date, tags text[])",
               f"INSERT INTO {films} VALUES (1, 'Ahoj', 'drama', 9.99, '2001-01-01', "
               "'{a,b}'), (2, 'Dva', 'comedy', 1, NULL, NULL), (3, 'Tři 🎬', 'drama', "
               "12345.67, '2003-03-03', '{}'), (4, 'Čtyři', 'drama', NULL, NULL, '{x}')",
               f"CREATE TABLE {copy} (id int PRIMARY KEY, title text, price numeric(8,2), "
               "released date, tags text[])",
               f"INSERT INTO {copy} (id, title) VALUES (3, 'stale title'), (99, 'kept')")
    monkeypatch.setenv("SUPABASE_TEST_KEY", REST_KEY)
    connections = ("version: 1\nconnections:\n  supabase:\n    api:\n"
                   f"      url: {rest.url}\n      service_role_key: ${{SUPABASE_TEST_KEY}}\n")
    result, session = run_pipeline(REST_PIPELINE.format(schema=pg.schema), connections,
                                   "supabase-rest-copy")
    assert result.success, failure_description(result)
    rows = pg.query(f"SELECT id, title, price, released, tags FROM {copy} ORDER BY id")
    assert rows == [(1, "Ahoj", Decimal("9.99"), dt.date(2001, 1, 1), ["a", "b"]),
                    (3, "Tři 🎬", Decimal("12345.67"), dt.date(2003, 3, 3), []),
                    (4, "Čtyři", None, None, ["x"]), (99, "kept", None, None, None)]
    gets = [r for r in rest.calls("GET") if r.path.endswith("/films")]
    assert [dict(r.query)["offset"] for r in gets] == ["0", "2", "3"]  # pages of 2: an empty
    # page ends (a short one may be the server's cap)
    assert all(dict(r.query)["genre"] == "eq.drama" for r in gets)
    assert all(r.headers.get("Accept-Profile") == pg.schema for r in gets)
    posts = rest.calls("POST")
    assert len(posts) == 2 and all("on_conflict=id" in "&".join(f"{k}={v}" for k, v in p.query)
                                   for p in posts)
    assert all("resolution=merge-duplicates" in p.headers["Prefer"] for p in posts)
    mats = materialisations(result)
    schema = {c.name: c.type for c in
              mats["supabase-rest-copy/read-films"]["dagster/column_schema"].schema.columns}
    # PostgREST's API description says `numeric` for numeric(8,2): DECIMAL(38, its scale)
    assert schema == {"id": "INTEGER", "title": "VARCHAR", "price": "DECIMAL(38,2)",
                      "released": "DATE", "tags": "VARCHAR[]"}
    assert all(REST_KEY not in p.read_text(errors="replace") for p in session.rglob("*")
               if p.is_file())


# -- SQL channel: writer --------------------------------------------------------------------------

ROWS = """
SELECT i AS id, 'name ' || i AS name, (i * 1.25)::DECIMAL(10,2) AS price
FROM range(1, 6) t(i)
"""


def _rows(pg: PgTarget, table: str) -> list[tuple]:
    return [tuple(r) for r in pg.query(f"SELECT * FROM {pg.table(table)} ORDER BY 1")]


def test_sql_writer_append_twice_duplicates_and_creates_the_table(
        pg: PgTarget, harness: Harness) -> None:
    pg.execute(f"DROP TABLE IF EXISTS {pg.table('s_append')}")
    harness.upstream(ROWS)
    conn = pg.connection()
    with pytest.raises(DriverError, match=r"s_append does not exist.*create_if_missing"):
        harness.write("supabase.writer", conn, schema=pg.schema, table="s_append",
                      create_if_missing=False)
    assert "CREATE TABLE" in (harness.artifacts() / "ddl_plan.sql").read_text()
    result = harness.write("supabase.writer", conn, schema=pg.schema, table="s_append")
    assert result.rows_written == 5 and result.table is None
    assert result.target.endswith(f"/{pg.schema}.s_append")
    assert "unused-with-trust-auth" not in result.target
    harness.write("supabase.writer", conn, schema=pg.schema, table="s_append")
    rows = _rows(pg, "s_append")
    assert len(rows) == 10 and rows[0] == rows[1] == (1, "name 1", Decimal("1.25"))
    types = dict(pg.query("SELECT column_name, data_type FROM information_schema.columns "
                          "WHERE table_schema = %s AND table_name = 's_append'", (pg.schema,)))
    assert types == {"id": "bigint", "name": "text", "price": "numeric"}


def test_sql_writer_upsert_and_replace_by_primary_key(pg: PgTarget, harness: Harness) -> None:
    t = pg.table("s_modes")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id bigint PRIMARY KEY, name text, price numeric(10,2), "
               "note text DEFAULT 'default note')",
               f"INSERT INTO {t} (id, name, price, note) VALUES (1, 'old', 0, 'kept note'), "
               "(50, 'other', 1, 'x')")
    harness.upstream(ROWS)
    conn = pg.connection()
    harness.write("supabase.writer", conn, schema=pg.schema, table="s_modes",
                  write_mode="upsert", primary_key="id")
    rows = _rows(pg, "s_modes")
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 50]
    assert rows[0] == (1, "name 1", Decimal("1.25"), "kept note")
    harness.upstream("SELECT * FROM (VALUES (2, 'two', 2.0), (7, 'seven', 7.0)) t(id, name, "
                     "price)")
    harness.write("supabase.writer", conn, schema=pg.schema, table="s_modes",
                  write_mode="replace", primary_key=["id"])
    assert _rows(pg, "s_modes") == [(2, "two", Decimal("2.00"), "default note"),
                                     (7, "seven", Decimal("7.00"), "default note")]
    harness.upstream("SELECT 1 AS id, 'a' AS name WHERE false")
    harness.write("supabase.writer", conn, schema=pg.schema, table="s_modes",
                  write_mode="replace", primary_key=["id"])
    assert _rows(pg, "s_modes") == []


def test_sql_writer_failure_leaves_the_target_exactly_as_it_was(
        pg: PgTarget, harness: Harness) -> None:
    t = pg.table("s_fragile")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id int PRIMARY KEY, name varchar(5))",
               f"INSERT INTO {t} VALUES (1, 'one'), (2, 'two')")
    before = _rows(pg, "s_fragile")
    harness.upstream("SELECT i AS id, CASE WHEN i = 60000 THEN 'far too long' ELSE 'ok' END "
                     "AS name FROM range(10, 100010) t(i)")
    for mode in ("append", "replace", "upsert"):
        with pytest.raises(DriverError) as info:
            harness.write("supabase.writer", pg.connection(), schema=pg.schema,
                          table="s_fragile", write_mode=mode, primary_key="id")
        msg = str(info.value)
        assert "value too long" in msg and "rolled back" in msg, msg
        assert _rows(pg, "s_fragile") == before
    harness.upstream("SELECT 5 AS id, 'x' AS name UNION ALL SELECT 5, 'y'")
    with pytest.raises(DriverError, match="duplicate"):
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_fragile",
                      write_mode="upsert", primary_key="id")
    with pytest.raises(DriverError, match="already exists"):
        harness.upstream("SELECT 1 AS id, 'x' AS name")
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_fragile")
    assert _rows(pg, "s_fragile") == before


def test_sql_writer_types_round_trip_through_postgresql(pg: PgTarget, harness: Harness) -> None:
    pg.execute(f"DROP TABLE IF EXISTS {pg.table('s_types')}")
    harness.upstream("""
        SELECT 1 AS id, 1234567.891::DECIMAL(12,3) AS amount, true AS flag,
               TIMESTAMP '2024-03-04 05:06:07.123456' AS ts,
               TIMESTAMPTZ '2024-03-04 05:06:07+02' AS tstz, DATE '2000-02-29' AS d,
               TIME '23:59:59' AS t, '{"k": [1, "ü"]}'::JSON AS doc,
               '\\x00\\xfe\\x22'::BLOB AS bin, 'a "quoted", text' || chr(10) || 'ü' AS txt,
               '' AS empty_text, [1, NULL, 3] AS ints, ['x,y', 'q"t', NULL] AS strs,
               {'a': 1} AS obj, 'nan'::DOUBLE AS nan_value, 'inf'::DOUBLE AS inf_value,
               18446744073709551615::UBIGINT AS big_u,
               '4c5f3b6e-3c1a-4f3b-9a0e-1d2c3b4a5f60'::UUID AS uid,
               INTERVAL '1 day 02:03:04' AS span
        UNION ALL
        SELECT 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               NULL, NULL, NULL, NULL, NULL
    """)
    harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_types",
                  primary_key="id")
    out = harness.extract("supabase.extractor", pg.connection(), schema=pg.schema,
                          table="s_types", order="id")
    assert out.types == {
        "id": "INTEGER", "amount": "DECIMAL(12,3)", "flag": "BOOLEAN", "ts": "TIMESTAMP",
        "tstz": "TIMESTAMP WITH TIME ZONE", "d": "DATE", "t": "TIME", "doc": "JSON",
        "bin": "BLOB", "txt": "VARCHAR", "empty_text": "VARCHAR", "ints": "INTEGER[]",
        "strs": "VARCHAR[]", "obj": "JSON", "nan_value": "DOUBLE", "inf_value": "DOUBLE",
        "big_u": "DECIMAL(20,0)", "uid": "UUID", "span": "INTERVAL"}
    first, second = out.rows
    row = dict(zip(out.columns, first, strict=True))
    assert row["amount"] == Decimal("1234567.891") and row["flag"] is True
    assert row["ts"] == dt.datetime(2024, 3, 4, 5, 6, 7, 123456)
    assert row["tstz"] == dt.datetime(2024, 3, 4, 3, 6, 7, tzinfo=dt.UTC)
    assert row["d"] == dt.date(2000, 2, 29) and row["t"] == dt.time(23, 59, 59)
    assert json.loads(row["doc"]) == {"k": [1, "ü"]} and json.loads(row["obj"]) == {"a": 1}
    assert row["bin"] == b'\x00\xfe"'
    assert row["txt"] == 'a "quoted", text\nü' and row["empty_text"] == ""
    assert row["ints"] == [1, None, 3] and row["strs"] == ["x,y", 'q"t', None]
    assert row["nan_value"] != row["nan_value"] and row["inf_value"] == float("inf")
    assert row["big_u"] == Decimal(18446744073709551615)
    assert row["uid"] == uuid.UUID("4c5f3b6e-3c1a-4f3b-9a0e-1d2c3b4a5f60")
    assert row["span"] == dt.timedelta(days=1, seconds=7384)
    assert second[0] == 2 and set(second[1:]) == {None}


def test_sql_writer_missing_schema_and_columns_are_reported(pg: PgTarget,
                                                            harness: Harness) -> None:
    harness.upstream(ROWS)
    with pytest.raises(DriverError, match="schema 'no_such_schema_x' does not exist"):
        harness.write("supabase.writer", pg.connection(), schema="no_such_schema_x",
                      table="t")
    pg.execute(f"DROP TABLE IF EXISTS {pg.table('s_narrow')}",
               f"CREATE TABLE {pg.table('s_narrow')} (id int)")
    with pytest.raises(DriverError, match=r"no column\(s\) 'name', 'price'"):
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_narrow")


def test_sql_writer_checks_the_values_against_the_table_it_creates(
        pg: PgTarget, harness: Harness) -> None:
    """A created table's columns are targets too: a nanosecond timestamp into the `timestamp`
    column it creates was rounded to microseconds without an error."""
    t = pg.table("s_new")
    pg.execute(f"DROP TABLE IF EXISTS {t}")
    harness.upstream("SELECT 1 AS id, TIMESTAMP_NS '2024-01-01 10:00:00.123456789' AS at")
    with pytest.raises(DriverError, match=r"holds '2024-01-01 10:00:00\.123456789', which "
                                          r"the column 'at' \(timestamp without time zone\) "
                                          r"this writer created in .*the table it created is "
                                          r"gone again\. Create the table beforehand") as info:
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_new")
    assert "Widen" not in str(info.value)
    assert pg.query(f"SELECT to_regclass('{t}')") == [(None,)]  # the creation rolled back
    harness.upstream("SELECT 1 AS id, TIMESTAMP_NS '2024-01-01 10:00:00.123456' AS at")
    harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_new")
    assert pg.query(f"SELECT at::text FROM {t}") == [("2024-01-01 10:00:00.123456",)]


def test_sql_writer_writes_infinity_into_timestamp_columns_of_any_precision(
        pg: PgTarget, harness: Harness) -> None:
    """PostgreSQL stores infinity in timestamp(0) exactly; the fractional-second check refused
    it ('cannot hold exactly')."""
    t = pg.table("s_inf")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (a timestamp(0), b timestamp(3), c timestamptz(0))")
    harness.upstream("SELECT 'infinity'::TIMESTAMP AS a, '-infinity'::TIMESTAMP_MS AS b, "
                     "'infinity'::TIMESTAMPTZ AS c")
    harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_inf")
    assert pg.query(f"SELECT a::text, b::text, c::text FROM {t}") == [
        ("infinity", "-infinity", "infinity")]


# -- SQL channel: extractor -----------------------------------------------------------------------


@pytest.fixture
def catalog_table(pg: PgTarget) -> str:
    t = pg.table("s_catalog")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"DROP TYPE IF EXISTS {pg.schema}.mood",
               f"DROP DOMAIN IF EXISTS {pg.schema}.positive",
               f"CREATE TYPE {pg.schema}.mood AS ENUM ('sad', 'happy')",
               f"CREATE DOMAIN {pg.schema}.positive AS numeric(6,1) CHECK (VALUE > 0)",
               f"CREATE TABLE {t} (id serial PRIMARY KEY, name text, mood {pg.schema}.mood, "
               f"score {pg.schema}.positive, ratio numeric, data jsonb, small smallint, "
               "seen timestamptz, grid int[][], addr inet, money_value money)",
               f"INSERT INTO {t} (name, mood, score, ratio, data, small, seen, grid, addr, "
               "money_value) VALUES "
               "('a', 'happy', 1.5, 0.25, '{\"x\": 1}', 7, '2024-01-01 00:00:00+00', "
               "'{{1,2},{3,4}}', '10.0.0.1', 12.5), "
               "('b', 'sad', 2.5, NULL, NULL, NULL, NULL, NULL, NULL, NULL), "
               "('c', NULL, NULL, 1e-3, '[1, 2]', -1, NULL, NULL, NULL, NULL)")
    return "s_catalog"


def test_sql_extractor_unconstrained_numeric_is_exact_or_fails(pg: PgTarget,
                                                              harness: Harness) -> None:
    """numeric without precision (any SUM() or AVG() in PostgreSQL) becomes DOUBLE only where
    a double holds the value; otherwise the step fails naming the column and the value
    (before, 9007199254740993 silently became 9007199254740992.0)."""
    t = pg.table("s_wide")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int, v numeric)",
               f"INSERT INTO {t} VALUES (1, 0.1), (2, 'NaN'), (3, -123456.000000000000000000), "
               "(4, NULL), (5, 1e-3)")
    out = harness.extract("supabase.extractor", pg.connection(), schema=pg.schema,
                          table="s_wide")
    assert out.types == {"id": "INTEGER", "v": "DOUBLE"}
    values = dict(out.rows)
    assert values[1] == 0.1 and values[2] != values[2] and values[3] == -123456.0
    assert values[4] is None and values[5] == 0.001
    pg.execute(f"INSERT INTO {t} VALUES (6, 9007199254740993)")
    with pytest.raises(DriverError) as info:
        harness.extract("supabase.extractor", pg.connection(), schema=pg.schema, table="s_wide")
    msg = str(info.value)
    assert "column 'v' holds '9007199254740993'" in msg and "A DOUBLE would not give back" in msg
    assert "(in a view of the table, which `table` can name)" in msg  # it has no `query`


def _as_text(harness: Harness, connection: dict[str, Any],
             select: str = "typeof(v), v::VARCHAR", **config: Any) -> list[tuple[Any, ...]]:
    """Extract, then read ``select`` of the table in DuckDB (by default each value as DuckDB
    prints it: Python's datetime has no BC year)."""
    spec = get_spec("supabase.extractor")
    driver = get_driver("supabase.extractor")
    assert spec is not None and driver is not None
    with StepWorkspace(harness.session, pipeline_name="p", step_id="x", output_table="x",
                       connection=connection) as ws:
        driver(ws, {**spec.defaults(), **config}, [])
        return ws.con.execute(f"SELECT {select} FROM {ws.output_relation} ORDER BY id"
                              ).fetchall()


def test_years_bc_keep_their_era(pg: PgTarget, rest: PostgrestFake, harness: Harness) -> None:
    """PostgreSQL writes a year BC as '0100-01-01 10:00:00 BC'; DuckDB's TIMESTAMP cast ignores
    the suffix (the value became 0100 AD without an error), and DATE/TIMESTAMPTZ failed."""
    t = pg.table("s_bc")
    for kind, value, printed in [
            ("timestamp", "0100-01-01 10:00:00 BC", "0100-01-01 (BC) 10:00:00"),
            ("timestamptz", "0100-01-01 10:00:00+00 BC", "0100-01-01 (BC) 10:00:00+00"),
            ("date", "4713-01-01 BC", "4713-01-01 (BC)"),
            ("timestamp", "2024-01-01 10:00:00", "2024-01-01 10:00:00")]:
        pg.execute(f"DROP TABLE IF EXISTS {t}",
                   f"CREATE TABLE {t} (id int PRIMARY KEY, v {kind})",
                   f"INSERT INTO {t} VALUES (1, '{value}'), (2, NULL)")
        for conn in (pg.connection(), _rest_conn(rest)):
            got = _as_text(harness, conn, schema=pg.schema, table="s_bc")
            assert [v for _, v in got] == [printed, None], (kind, conn)


def test_intervals_of_mixed_signs_are_read(pg: PgTarget, rest: PostgrestFake,
                                          harness: Harness) -> None:
    """PostgreSQL prints '-1 days +02:00:00' (each field signed where the signs are mixed),
    which DuckDB's INTERVAL cast refused: the step failed on a valid value."""
    t = pg.table("s_interval")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id int PRIMARY KEY, v interval, vs interval[])",
               f"INSERT INTO {t} VALUES (1, interval '-1 days' + interval '2 hours', "
               "ARRAY[interval '1 year -2 mons' + interval '3 days -04:05:06.789']), "
               "(2, interval '-178000000 years', NULL), (3, NULL, NULL)")
    parts = ("year", "month", "day", "hour", "minute", "microseconds")
    pg_parts = ", ".join(f"extract({p} FROM {{0}})::bigint" for p in parts)
    expected = [tuple(r) for r in pg.query(
        f"SELECT CASE WHEN v IS NOT NULL THEN ARRAY[{pg_parts.format('v')}] END, "
        f"(SELECT array_agg(ARRAY[{pg_parts.format('e')}]) FROM unnest(vs) e) "
        f"FROM {t} ORDER BY id")]
    duck_parts = ", ".join(f"datepart('{p}', {{0}})" for p in parts)
    select = (f"CASE WHEN v IS NOT NULL THEN [{duck_parts.format('v')}] END, "
              f"list_transform(vs, lambda e: [{duck_parts.format('e')}])")
    for conn in (pg.connection(), _rest_conn(rest)):
        got = _as_text(harness, conn, select, schema=pg.schema, table="s_interval")
        assert got == expected, conn


def test_char_keeps_its_padding(pg: PgTarget, rest: PostgrestFake, harness: Harness) -> None:
    """PostgreSQL's char(3) 'a' is 'a  ' (what it returns, and the REST channel gave); the SQL
    channel's ::text cut the padding."""
    t = pg.table("s_char")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id int PRIMARY KEY, v char(3), vs char(2)[])",
               f"INSERT INTO {t} VALUES (1, 'a', ARRAY['b', NULL]), (2, NULL, NULL)")
    for conn in (pg.connection(), _rest_conn(rest)):
        out = harness.extract("supabase.extractor", conn, schema=pg.schema, table="s_char",
                              order="id")
        assert out.rows == [(1, "a  ", ["b ", None]), (2, None, None)], conn


def test_sql_extractor_array_elements_are_exact_or_fail(pg: PgTarget, harness: Harness) -> None:
    """An array becomes a LIST whose elements are checked like single values. A plain cast of
    the array made a bad element NULL (a date BC, a timestamp past DuckDB's range) or rounded
    it (a numeric a double cannot hold) without an error."""
    t = pg.table("s_arrays")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id int PRIMARY KEY, v date[])",
               f"INSERT INTO {t} VALUES (1, ARRAY['0100-01-01 BC'::date, NULL, '2024-02-29']), "
               "(2, '{}'), (3, NULL)")
    assert _as_text(harness, pg.connection(), schema=pg.schema, table="s_arrays") == [
        ("DATE[]", "['0100-01-01 (BC)', NULL, 2024-02-29]"), ("DATE[]", "[]"),
        ("DATE[]", None)]
    for kind, value in [("numeric[]", "ARRAY[9007199254740993::numeric, 0.1]"),
                        ("timestamp[]", "ARRAY['294276-01-01'::timestamp]"),
                        ("int[]", "ARRAY[ARRAY[1, 2], ARRAY[3, 4]]"),  # 2-D in an int[] column
                        ("text[]", "'{{a,b},{c,d}}'"),  # was a list of JSON texts
                        # an index from 0: the LIST [7, 8, 9] moved every element
                        ("int[]", "'[0:2]={7,8,9}'"), ("text[]", "'[2:3]={a,b}'"),
                        ("jsonb[]", "'[0:0]={\"{}\"}'"), ("bytea[]", "'[0:0]={x}'"),
                        ("int[]", "'[1:1][0:1]={{1,2}}'")]:
        pg.execute(f"DROP TABLE IF EXISTS {t}",
                   f"CREATE TABLE {t} (id int PRIMARY KEY, v {kind})",
                   f"INSERT INTO {t} VALUES (1, {value})")
        with pytest.raises(DriverError, match="column 'v' holds .* cannot be converted") as err:
            _as_text(harness, pg.connection(), schema=pg.schema, table="s_arrays")
        assert ("does not start at 1" in str(err.value)) == ("]=" in value), err.value
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int PRIMARY KEY, v int[])",
               f"INSERT INTO {t} VALUES (1, ('[0:2]={{7,8,9}}'::int[])[:])")  # the hint's view
    assert _as_text(harness, pg.connection(), schema=pg.schema, table="s_arrays") == [
        ("INTEGER[]", "[7, 8, 9]")]
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id int PRIMARY KEY, v float8[])",
               f"INSERT INTO {t} VALUES (1, ARRAY['NaN', 'Infinity', '-Infinity', 1e100, 0.1, "
               "NULL]::float8[])")
    assert _as_text(harness, pg.connection(), schema=pg.schema, table="s_arrays") == [
        ("DOUBLE[]", "[nan, inf, -inf, 1e+100, 0.1, NULL]")]
    # numeric(p,s)[] keeps its elements' type, money[] reads like money
    for kind, value, printed in [
            ("numeric(20,2)[]", "ARRAY[123456789012345678.91, 1.10]",
             ("DECIMAL(20,2)[]", "[123456789012345678.91, 1.10]")),
            ("money[]", "ARRAY[12.5::money, NULL]", ("DECIMAL(19,2)[]", "[12.50, NULL]")),
            # PostgreSQL 15's scales below 0 and above the precision
            ("numeric(5,-2)[]", "ARRAY[1234500, NULL]", ("DECIMAL(7,0)[]", "[1234500, NULL]")),
            ("numeric(3,5)[]", "ARRAY[0.00123]", ("DECIMAL(5,5)[]", "[.00123]")),
            ("numeric(5,-2)", "1234500", ("DECIMAL(7,0)", "1234500")),
            ("numeric(3,5)", "0.00123", ("DECIMAL(5,5)", ".00123")),
            ("money", "'-92233720368547758.08'::money",
             ("DECIMAL(19,2)", "-92233720368547758.08"))]:
        pg.execute(f"DROP TABLE IF EXISTS {t}",
                   f"CREATE TABLE {t} (id int PRIMARY KEY, v {kind})",
                   f"INSERT INTO {t} VALUES (1, {value})")
        assert _as_text(harness, pg.connection(), schema=pg.schema, table="s_arrays") == [
            printed]


def test_numbers_past_a_doubles_range_fail_not_infinity(pg: PgTarget, rest: PostgrestFake,
                                                        harness: Harness) -> None:
    """A numeric too wide for DuckDB's DECIMAL becomes DOUBLE, exact or failing; one past a
    double's range was cast to infinity without an error. PostgreSQL's own 'Infinity' stays."""
    t = pg.table("s_huge")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id int PRIMARY KEY, v numeric, w numeric(400,-300))",
               f"INSERT INTO {t} VALUES (1, 'Infinity', NULL), (2, '-Infinity', NULL)")
    for conn in (pg.connection(), _rest_conn(rest)):
        assert _as_text(harness, conn, "v::VARCHAR", schema=pg.schema, table="s_huge") == [
            ("inf",), ("-inf",)], conn
    for column, value in [("v", "1e400"), ("w", "-1e350")]:
        pg.execute(f"UPDATE {t} SET {column} = {value} WHERE id = 1")
        for conn in (pg.connection(), _rest_conn(rest)):
            with pytest.raises(DriverError, match=f"column '{column}' holds"):
                _as_text(harness, conn, "v", schema=pg.schema, table="s_huge")
        pg.execute(f"UPDATE {t} SET {column} = NULL WHERE id = 1")


def test_rest_extractor_reads_money(pg: PgTarget, rest: PostgrestFake, harness: Harness) -> None:
    """Over REST money came as its text ('$1,234.50') and failed for every value."""
    t = pg.table("r_money")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int PRIMARY KEY, v money)",
               f"INSERT INTO {t} VALUES (1, 1234.5), (2, '-92233720368547758.08'), (3, NULL)")
    out = harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                          table="r_money", order="id")
    assert out.types["v"] == "DECIMAL(19,2)"
    assert [r[1] for r in out.rows] == [Decimal("1234.50"), Decimal("-92233720368547758.08"),
                                        None]


def test_rest_extractor_reads_past_pages_the_server_cuts_short(
        pg: PgTarget, rest: PostgrestFake, harness: Harness) -> None:
    """PostgREST's db-max-rows (Supabase's "Max rows") below `limit` made the first page short,
    and the extractor took a short page for the last one: 10 of 25 rows, and success."""
    t = pg.table("r_capped")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int PRIMARY KEY)",
               f"INSERT INTO {t} SELECT generate_series(1, 25)")
    rest.max_rows = 10
    out = harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                          table="r_capped", order="id", limit=20)
    assert [r[0] for r in out.rows] == list(range(1, 26))
    offsets = [dict(c.query).get("offset") for c in rest.calls("GET")
               if c.path.endswith("/r_capped")]
    assert offsets == ["0", "10", "20", "25"]  # a page of 5 is not the end; an empty one is


def test_rest_pages_of_a_table_changing_meanwhile_neither_repeat_nor_lose_a_row(
        pg: PgTarget, rest: PostgrestFake, harness: Harness,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages by offset: two rows inserted before the read's position after its first page
    shifted the rest, and ids 208-209 came twice (found by a review): a table with a repeated
    primary key went downstream, the step succeeded. Pages ordered by a one-column primary key
    now start after the last key read."""
    t = pg.table("r_moving")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int PRIMARY KEY, v text)",
               f"INSERT INTO {t} SELECT g, 'v' || g FROM generate_series(10, 509) g")
    original = postgrest_fake._Handler._get
    pages: list[int] = []

    def get_then_insert(self: Any, schema: str, table: str, query: Any, body: bytes) -> None:
        original(self, schema, table, query, body)
        if table == "r_moving":
            pages.append(1)
            if len(pages) == 1:  # another writer, between the first page and the second
                pg.execute(f"INSERT INTO {t} VALUES (1, 'new'), (2, 'new')",
                           f"DELETE FROM {t} WHERE id = 300")

    monkeypatch.setattr(postgrest_fake._Handler, "_get", get_then_insert)
    out = harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                          table="r_moving", limit=100)
    ids = [r[0] for r in out.rows]
    assert len(ids) == len(set(ids)) == 499  # none twice (300 was deleted before its page)
    assert set(ids) == set(range(10, 510)) - {300}
    keys = [dict(c.query).get("id") for c in rest.calls("GET") if c.path.endswith("/r_moving")]
    assert keys[:3] == [None, "gt.109", "gt.209"]


@pytest.mark.parametrize(("key", "pg_type", "values"), [
    ("k", "int[]", ["{1,2}", "{1,3}", "{2}", "{}"]),
    ("offset", "int", ["1", "2", "3", "4"]),
    ("limit", "int", ["1", "2", "3", "4"]),
    ("k", "numeric(30,10)", ["0.1000000000", "12345678901234567890.0000000001",
                             "12345678901234567890.0000000002", "2"])])
def test_rest_pages_by_a_key_that_cannot_be_followed_go_by_offset(
        pg: PgTarget, rest: PostgrestFake, harness: Harness, key: str, pg_type: str,
        values: list[str]) -> None:
    """Keyed pages broke on an array key (`gt.[1,2]`: 400), a key named `offset` (it replaced
    the page's offset: the first page again, for ever) or `limit` (found by a review), and a
    decimal key's JSON value is a double."""
    t = pg.table("r_oddkey")
    col = f'"{key}"'
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} ({col} {pg_type} PRIMARY KEY, v int)",
               *[f"INSERT INTO {t} VALUES ('{v}', {i})" for i, v in enumerate(values)])
    out = harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                          table="r_oddkey", limit=1)
    assert sorted(r[1] for r in out.rows) == [0, 1, 2, 3]


def test_rest_pages_without_order_follow_the_primary_key_or_fail(
        pg: PgTarget, rest: PostgrestFake, harness: Harness) -> None:
    """Without `order`, each page came from a query PostgreSQL may answer in another order
    (synchronized scans, a table being updated): a review read 25 rows with 3 missing and 3
    twice, and success."""
    t = pg.table("r_unordered")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int PRIMARY KEY, v text)",
               f"INSERT INTO {t} SELECT i, 'v' || i FROM generate_series(1, 25) AS i")
    rest.shuffle_unordered = True
    out = harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                          table="r_unordered", limit=10)
    assert sorted(r[0] for r in out.rows) == list(range(1, 26))  # by the described key
    assert {dict(c.query).get("order") for c in rest.calls("GET")
            if c.path.endswith("/r_unordered")} == {"id.asc"}
    # no key the API description names: one page is read as it comes, more fail
    pg.execute(f"ALTER TABLE {t} DROP CONSTRAINT r_unordered_pkey")
    one = harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                          table="r_unordered", limit=100)
    assert sorted(r[0] for r in one.rows) == list(range(1, 26))
    with pytest.raises(DriverError, match=r"takes more than one page \(more than 10 rows at "
                                          r"`limit` 10\), `order` is not set and the API "
                                          r"description names no primary key.*Set `order`"):
        harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                        table="r_unordered", limit=10)
    with pytest.raises(DriverError, match=r"is read from `offset` 5, `order` is not set"):
        harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                        table="r_unordered", limit=100, offset=5)
    rest.max_rows = 5  # the server's cap, not `limit`: raising `limit` cannot help
    with pytest.raises(DriverError, match=r"the server returns at most 5 rows a page"):
        harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                        table="r_unordered", limit=100)
    rest.max_rows = None
    ordered = harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                              table="r_unordered", limit=10, order="v.desc")
    assert len({r[0] for r in ordered.rows}) == 25


def test_a_table_without_columns_is_named_so_not_missing(pg: PgTarget,
                                                         harness: Harness) -> None:
    """`CREATE TABLE t ()` was reported as 'does not exist (or the user cannot see it)'."""
    pg.execute(f"DROP TABLE IF EXISTS {pg.table('s_nocols')}",
               f"CREATE TABLE {pg.table('s_nocols')} ()")
    with pytest.raises(DriverError, match=r"has no columns, so there is nothing to extract"):
        harness.extract("supabase.extractor", pg.connection(), schema=pg.schema,
                        table="s_nocols")


def test_sql_extractor_select_filter_order_offset(pg: PgTarget, harness: Harness,
                                                  catalog_table: str) -> None:
    conn = pg.connection()
    out = harness.extract("supabase.extractor", conn, schema=pg.schema, table=catalog_table)
    assert out.types == {"id": "INTEGER", "name": "VARCHAR", "mood": "VARCHAR",
                         "score": "DECIMAL(6,1)", "ratio": "DOUBLE", "data": "JSON",
                         "small": "SMALLINT", "seen": "TIMESTAMP WITH TIME ZONE",
                         "grid": "JSON", "addr": "VARCHAR", "money_value": "DECIMAL(19,2)"}
    first = dict(zip(out.columns, sorted(out.rows)[0], strict=True))
    assert first["grid"] == "[[1,2],[3,4]]" and first["addr"] == "10.0.0.1"
    assert first["money_value"] == Decimal("12.50") and first["score"] == Decimal("1.5")
    out = harness.extract("supabase.extractor", conn, schema=pg.schema, table=catalog_table,
                          select="name, score", filter={"mood": "sad"})
    assert out.rows == [("b", Decimal("2.5"))]
    out = harness.extract("supabase.extractor", conn, schema=pg.schema, table=catalog_table,
                          select="name", filter={"mood": None, "small": [-1, 5]})
    assert out.rows == [("c",)]
    out = harness.extract("supabase.extractor", conn, schema=pg.schema, table=catalog_table,
                          select="name", order="ratio desc nulls last, name", offset=1)
    assert out.rows == [("c",), ("b",)]
    out = harness.extract("supabase.extractor", conn, schema=pg.schema, table=catalog_table,
                          select="id,name", filter={"name": "nobody"})
    assert out.rows == [] and out.types == {"id": "INTEGER", "name": "VARCHAR"}
    with pytest.raises(DriverError, match=r"`filter` names column\(s\) 'nope'"):
        harness.extract("supabase.extractor", conn, schema=pg.schema, table=catalog_table,
                        filter={"nope": 1})
    with pytest.raises(DriverError, match="does not exist"):
        harness.extract("supabase.extractor", conn, schema=pg.schema, table="missing_table")


def test_sql_extractor_filter_values_are_not_rounded_to_the_column(
        pg: PgTarget, harness: Harness) -> None:
    """A filter value was cast to the column's type with its modifier: numeric(10,2) rounded
    1.005 to 1.01, varchar(3) cut 'abcdef' to 'abc', timestamp(0) rounded 10:00:00.6 to
    10:00:01, so the filter returned rows that do not equal the value (PostgreSQL's own
    WHERE returns none). Now cast to the type without its modifier (and a domain's base)."""
    table, domain = pg.table("f_typmod"), pg.table("f_cents")
    pg.execute(f"DROP TABLE IF EXISTS {table}", f"DROP DOMAIN IF EXISTS {domain}",
               f"CREATE DOMAIN {domain} AS numeric(10,2)",
               f"CREATE TABLE {table} (id int, price numeric(10,2), code varchar(3), "
               f"ts timestamp(0), c char(3), cents {domain})",
               f"INSERT INTO {table} VALUES (1, 1.01, 'abc', '2024-01-01 10:00:01', 'ab', 1.01),"
               " (2, 1.00, 'abd', '2024-01-01 10:00:00', 'xy', 1.00)")
    conn = pg.connection()

    def ids(**filters: object) -> list[int]:
        out = harness.extract("supabase.extractor", conn, schema=pg.schema, table="f_typmod",
                              select="id", filter=filters)
        return sorted(r[0] for r in out.rows)

    assert ids(price=1.005) == [] and ids(code="abcdef") == []
    assert ids(ts="2024-01-01 10:00:00.6") == [] and ids(cents=1.005) == []
    assert ids(price=[1.005, 1.0]) == [2] and ids(code=["abcdef", "abd"]) == [2]
    assert ids(price=1.01) == [1] and ids(code="abc") == [1] and ids(c="ab") == [1]
    assert ids(ts="2024-01-01 10:00:00") == [2] and ids(cents="1.00") == [2]
    with pytest.raises(DriverError, match=r"invalid input syntax for type integer.*A `filter` "
                                          r"value may not be a valid value.*id: pg_catalog.int4"):
        ids(id=1.5)
    # a date as the server reads one (its DateStyle's order, MDY here), not as YMD
    assert ids(ts="1/1/24 10:00:01") == [1]


def test_sql_errors_name_the_server_and_hide_the_password(pg: PgTarget,
                                                          harness: Harness) -> None:
    from .conftest import PG_HOST

    secret = "Very-Secret-pg-pw"
    harness.upstream(ROWS)
    dsn = f"postgresql://postgres:{secret}@{PG_HOST}:1/test"
    with pytest.raises(DriverError) as info:
        harness.write("supabase.writer", {"pg_dsn": dsn}, table="t")
    msg = str(info.value)
    assert f"PostgreSQL {PG_HOST}:1/test" in msg and "Check host and port" in msg
    assert secret not in msg
    with pytest.raises(DriverError) as info:
        harness.extract("supabase.extractor", pg.connection(database="no_such_db_x",
                                                            password=secret), table="t")
    msg = str(info.value)
    assert "no_such_db_x" in msg and "Check the database name" in msg and secret not in msg
    with pytest.raises(DriverError, match="neither a SQL channel"):
        harness.extract("supabase.extractor", {"url": "https://x.supabase.co"}, table="t")
    # a user the server does not know (this server trusts every password, so an unknown role is
    # how wrong credentials look here): the hint points at the credentials, not at the network
    with pytest.raises(DriverError) as info:
        harness.extract("supabase.extractor",
                        {"pg_dsn": f"postgresql://no_such_role_x:{secret}@{PG_HOST}:5432/test"},
                        table="t")
    msg = str(info.value)
    assert "no_such_role_x" in msg and "Check the user and password" in msg
    assert "Check host and port" not in msg and secret not in msg


# -- REST channel ---------------------------------------------------------------------------------


def _rest_conn(rest: PostgrestFake, key: str = REST_KEY) -> dict[str, str]:
    return {"url": rest.url, "anon_key": "ignored-anon-key-000000000000", "service_role_key": key}


def test_rest_writer_modes_and_replace_deletes(pg: PgTarget, rest: PostgrestFake,
                                               harness: Harness,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    t = pg.table("r_modes")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id bigint PRIMARY KEY, name text, price numeric(10,2), "
               "seen timestamptz, raw bytea)",
               f"INSERT INTO {t} (id, name) VALUES (1, 'old'), (40, 'stale'), (41, 'stale')")
    harness.upstream("SELECT i AS id, 'n' || i AS name, (i / 4)::DECIMAL(10,2) AS price, "
                     "TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_hours(i) AS seen, "
                     "'\\x01\\x02'::BLOB AS raw FROM range(1, 8) t(i)")
    conn = _rest_conn(rest)
    result = harness.write("supabase.writer", conn, schema=pg.schema, table="r_modes",
                           write_mode="upsert", primary_key="id", batch_size=3)
    assert result.rows_written == 7 and result.target == f"{rest.url}/rest/v1/r_modes"
    assert len(rest.calls("POST")) == 3
    assert [r[0] for r in _rows(pg, "r_modes")] == [1, 2, 3, 4, 5, 6, 7, 40, 41]
    assert pg.query(f"SELECT price, seen, raw FROM {t} WHERE id = 6") == [
        (Decimal("1.50"), dt.datetime(2024, 1, 1, 6, tzinfo=dt.UTC), b"\x01\x02")]

    harness.write("supabase.writer", conn, schema=pg.schema, table="r_modes",
                  write_mode="replace", primary_key="id", batch_size=100)
    assert [r[0] for r in _rows(pg, "r_modes")] == [1, 2, 3, 4, 5, 6, 7]
    delete = rest.calls("DELETE")[-1]
    assert dict(delete.query)["id"].startswith("not.in.(")

    # many keys: existing keys are read and the stale ones deleted in chunks
    pg.execute(f"INSERT INTO {t} (id, name) SELECT g, 'stale' FROM generate_series(100, 350) g")
    monkeypatch.setattr(supabase_writer, "_URL_BUDGET", 10)
    monkeypatch.setattr(supabase_writer, "_DELETE_CHUNK", 100)
    harness.write("supabase.writer", conn, schema=pg.schema, table="r_modes",
                  write_mode="replace", primary_key="id")
    assert [r[0] for r in _rows(pg, "r_modes")] == [1, 2, 3, 4, 5, 6, 7]
    deletes = [dict(d.query)["id"] for d in rest.calls("DELETE")[1:]]
    assert len(deletes) == 3 and all(d.startswith("in.(") for d in deletes)

    with pytest.raises(DriverError, match=r"HTTP 409.*duplicate key.*upsert or replace"):
        harness.write("supabase.writer", conn, schema=pg.schema, table="r_modes")


def test_rest_writer_sends_every_value_exactly(pg: PgTarget, rest: PostgrestFake,
                                               harness: Harness) -> None:
    """Each row was built as to_json(struct_pack(col := to_json(col))): DuckDB reads the inner
    JSON again, with doubles, so every DECIMAL past ~16 digits was rounded and the step
    succeeded (12345678901234567890.000000000000000001 became 12345678901234567000, found by a
    review). Nothing is parsed again now."""
    t = pg.table("r_exact")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id bigint PRIMARY KEY, d38 numeric(38,18), d18 numeric(18,9), "
               "free numeric, big bigint, nums numeric[], name text, doc jsonb, "
               "fl float8[])")
    harness.upstream(
        "SELECT 1 AS id, '12345678901234567890.000000000000000001'::DECIMAL(38,18) AS d38, "
        "'123456789.123456789'::DECIMAL(18,9) AS d18, "
        "'0.12345678901234567891'::DECIMAL(38,20) AS free, 9007199254740993::BIGINT AS big, "
        "['1.123456789012345678'::DECIMAL(20,18)] AS nums, "
        "'a \"q\" \\ é' AS name, "
        "'{\"amount\": 12345678901234567890.000000000000000001}'::JSON AS doc, "
        "[1.5, 'nan'::DOUBLE, 'inf'::DOUBLE, '-inf'::DOUBLE, NULL, 5e-324] AS fl "
        "UNION ALL SELECT 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL")
    harness.write("supabase.writer", _rest_conn(rest), schema=pg.schema, table="r_exact",
                  write_mode="upsert", primary_key="id")
    assert pg.query(f"SELECT d38::text, d18::text, free::text, big, nums::text, name, "
                    f"doc::text, fl::text FROM {t} ORDER BY id") == [
        ("12345678901234567890.000000000000000001", "123456789.123456789",
         "0.12345678901234567891", 9007199254740993, "{1.123456789012345678}",
         'a "q" \\ é', '{"amount": 12345678901234567890.000000000000000001}',
         "{1.5,NaN,Infinity,-Infinity,NULL,5e-324}"),
        (None, None, None, None, None, None, None, None)]


def test_rest_replace_finds_stale_numeric_keys_exactly(
        pg: PgTarget, rest: PostgrestFake, harness: Harness,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With more input keys than a URL holds, the table's keys are read and compared: read as
    floats, 123456789012345678.01 matched no key and stayed (found by a review)."""
    t = pg.table("r_numkeys")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (k numeric(20,2) PRIMARY KEY, v int)",
               f"INSERT INTO {t} VALUES (123456789012345678.01, 0), (123456789012345678.03, 0)")
    harness.upstream("SELECT CAST(123456789012345678.05 + i AS DECIMAL(20,2)) AS k, i::INT AS v "
                     "FROM range(20) t(i)")
    monkeypatch.setattr(supabase_writer, "_URL_BUDGET", 10)
    harness.write("supabase.writer", _rest_conn(rest), schema=pg.schema, table="r_numkeys",
                  write_mode="replace", primary_key="k")
    assert pg.query(f"SELECT count(*), min(k)::text FROM {t}") == [
        (20, "123456789012345678.05")]


def test_a_rest_append_refused_part_way_names_the_rows_not_sent(
        pg: PgTarget, rest: PostgrestFake, harness: Harness) -> None:
    """A 409 on the second batch said only that 3 rows were already written; a 413 said to
    check the configuration, not to send smaller batches (found by a review)."""
    from osiris_dagster.core.errors import NotRetryableError

    t = pg.table("r_partway")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int PRIMARY KEY)")
    harness.upstream("SELECT i AS id FROM range(1, 8) t(i)")
    rest.faults.append(postgrest_fake.Fault(409, {}, {"message": "duplicate key"}, "POST",
                                            skip=1))
    with pytest.raises(NotRetryableError) as err:
        harness.write("supabase.writer", _rest_conn(rest), schema=pg.schema, table="r_partway",
                      batch_size=3)
    assert "Rows 4-7 were not sent; rows 1-3 are in the table." in str(err.value)
    assert [r[0] for r in _rows(pg, "r_partway")] == [1, 2, 3]
    pg.execute(f"TRUNCATE {t}")
    rest.fail_next(413, method="POST")
    with pytest.raises(DriverError, match=r"HTTP 413.*lower the step's `batch_size`"):
        harness.write("supabase.writer", _rest_conn(rest), schema=pg.schema, table="r_partway")


def test_rest_replace_deletes_every_stale_row_when_the_server_caps_pages(
        pg: PgTarget, rest: PostgrestFake, harness: Harness,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading the existing keys took a short page (db-max-rows below 1000) for the last one,
    and stepped 1000 keys on: `replace` left stale rows in the table and succeeded."""
    t = pg.table("r_capped_replace")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int PRIMARY KEY, v text)",
               f"INSERT INTO {t} SELECT g, 'stale' FROM generate_series(1, 1200) g")
    harness.upstream("SELECT i AS id, 'new' AS v FROM range(1, 4) t(i)")
    rest.max_rows = 250
    monkeypatch.setattr(supabase_writer, "_URL_BUDGET", 10)  # read the keys, delete in chunks
    harness.write("supabase.writer", _rest_conn(rest), schema=pg.schema,
                  table="r_capped_replace", write_mode="replace", primary_key="id")
    assert pg.query(f"SELECT id, v FROM {t} ORDER BY id") == [(1, "new"), (2, "new"),
                                                              (3, "new")]


@pytest.mark.parametrize("channel,mode", [("sql", "upsert"), ("rest", "upsert"),
                                          ("rest", "replace")])
def test_keyed_writes_refuse_rows_with_a_null_key(channel: str, mode: str, pg: PgTarget,
                                                  rest: PostgrestFake, harness: Harness) -> None:
    """A NULL key matches no row (ON CONFLICT, on_conflict, a delete by key): every run and
    every retry of the 'safe to repeat' write inserted those rows again."""
    t = pg.table("r_nullkey")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id serial PRIMARY KEY, code text UNIQUE, v text)",
               f"INSERT INTO {t} (code, v) VALUES ('a', 'old')")
    harness.upstream("SELECT * FROM (VALUES ('a', 'new'), (NULL, 'x')) t(code, v)")
    conn = pg.connection() if channel == "sql" else _rest_conn(rest)
    with pytest.raises(DriverError, match=rf"1 input row\(s\) have NULL in `primary_key` "
                                          rf"\(code\)\. A NULL key matches no row, so "
                                          rf"write_mode {mode} would insert"):
        harness.write("supabase.writer", conn, schema=pg.schema, table="r_nullkey",
                      write_mode=mode, primary_key=["code"])
    assert pg.query(f"SELECT code, v FROM {t}") == [("a", "old")]


def test_an_upsert_key_with_nulls_not_distinct_takes_null_keys(pg: PgTarget,
                                                               harness: Harness) -> None:
    """UNIQUE NULLS NOT DISTINCT (PostgreSQL 15) makes ON CONFLICT match a NULL key: such an
    upsert repeats safely and must not be refused."""
    t = pg.table("r_nnd")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (a int, b text, v int, UNIQUE NULLS NOT DISTINCT (a, b))")
    harness.upstream("SELECT * FROM (VALUES (1, 'x', 1), (2, NULL, 2)) t(a, b, v)")
    for _ in range(2):
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="r_nnd",
                      write_mode="upsert", primary_key=["a", "b"])
    assert pg.query(f"SELECT a, b, v FROM {t} ORDER BY a") == [(1, "x", 1), (2, None, 2)]
    # a unique index with INCLUDE columns: its key is still (a, b)
    pg.execute(f"DROP TABLE {t}", f"CREATE TABLE {t} (a int, b text, v int)",
               f"CREATE UNIQUE INDEX ON {t} (a, b) INCLUDE (v) NULLS NOT DISTINCT")
    for _ in range(2):
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="r_nnd",
                      write_mode="upsert", primary_key=["a", "b"])
    assert pg.query(f"SELECT count(*) FROM {t}") == [(2,)]


def test_rest_writer_retries_429_and_500_then_succeeds(pg: PgTarget, rest: PostgrestFake,
                                                       harness: Harness) -> None:
    t = pg.table("r_retry")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int PRIMARY KEY)")
    harness.upstream("SELECT i AS id FROM range(1, 5) t(i)")
    # an append is retried after a 429 (rejected unprocessed), an upsert also after a 5xx
    rest.fail_next(429, method="POST", retry_after="0")
    result = harness.write("supabase.writer", _rest_conn(rest), schema=pg.schema,
                           table="r_retry", batch_size=2, retries=3)
    assert result.rows_written == 4
    rest.fail_next(500, method="POST")
    rest.fail_next(503, method="POST", retry_after="0")
    result = harness.write("supabase.writer", _rest_conn(rest), schema=pg.schema,
                           table="r_retry", batch_size=2, retries=3, write_mode="upsert",
                           primary_key="id")
    assert result.rows_written == 4
    assert [r[0] for r in _rows(pg, "r_retry")] == [1, 2, 3, 4]
    assert len(rest.calls("POST")) == 3 + 4
    retries = [e for e in harness.events() if e["event"] == "http_retry"]
    assert len(retries) == 3

    rest.fail_next(429, count=5, method="POST", retry_after="0")
    with pytest.raises(DriverError,
                       match=r"rate limit at http://127.0.0.1:\d+: HTTP 429 .*\(3 attempts\)"):
        harness.write("supabase.writer", _rest_conn(rest), schema=pg.schema, table="r_retry",
                      retries=2, write_mode="upsert", primary_key="id")
    rest.faults.clear()
    rest.fail_next(429, method="POST", retry_after="3600")
    with pytest.raises(DriverError, match=r"asks to wait 3600 s \(Retry-After\)"):
        harness.write("supabase.writer", _rest_conn(rest), schema=pg.schema, table="r_retry",
                      write_mode="upsert", primary_key="id")


def test_rest_errors_are_clear_and_never_show_the_key(pg: PgTarget, rest: PostgrestFake,
                                                      harness: Harness) -> None:
    harness.upstream(ROWS)
    wrong = "wrong-key-abcdefghijklmnopqrstuvwxyz"
    with pytest.raises(DriverError) as info:
        harness.write("supabase.writer", _rest_conn(rest, wrong), schema=pg.schema,
                      table="r_anything")
    msg = str(info.value)
    assert "HTTP 401" in msg and "Check the key" in msg and wrong not in msg
    with pytest.raises(DriverError) as info:
        harness.extract("supabase.extractor", _rest_conn(rest, wrong), schema=pg.schema,
                        table="r_anything")
    assert "HTTP 401" in str(info.value) and wrong not in str(info.value)

    pg.execute(f"DROP TABLE IF EXISTS {pg.table('r_missing')}")
    with pytest.raises(DriverError, match="REST API cannot create tables"):
        harness.write("supabase.writer", _rest_conn(rest), schema=pg.schema,
                      table="r_missing", write_mode="upsert", primary_key="id")
    assert 'PRIMARY KEY ("id")' in (harness.artifacts() / "ddl_plan.sql").read_text()
    with pytest.raises(DriverError, match="one-column `primary_key`"):
        harness.write("supabase.writer", _rest_conn(rest), schema=pg.schema, table="x",
                      write_mode="replace", primary_key=["id", "name"])
    closed = {"url": "http://127.0.0.1:1", "key": REST_KEY}
    with pytest.raises(DriverError, match=r"\(Supabase REST API\): .*cannot connect to "
                                          r"http://127.0.0.1:1 \(connection refused"):
        harness.write("supabase.writer", closed, table="t", retries=0)


def test_rest_extractor_pages_filters_and_types(pg: PgTarget, rest: PostgrestFake,
                                                harness: Harness) -> None:
    t = pg.table("r_read")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id int PRIMARY KEY, name text, amount numeric(30,10), "
               "ok boolean, at timestamptz, doc jsonb, raw bytea, ids bigint[])",
               f"INSERT INTO {t} SELECT g, 'n' || g, 12345678901234567890.0123456789 + g, "
               "g % 2 = 0, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 hour', "
               "jsonb_build_object('g', g), '\\x00ff'::bytea, ARRAY[g, g + 1] "
               "FROM generate_series(1, 7) g")
    conn = _rest_conn(rest)
    out = harness.extract("supabase.extractor", conn, schema=pg.schema, table="r_read",
                          order="id", limit=3)
    assert [dict(r.query)["offset"] for r in rest.calls("GET") if r.path.endswith("r_read")] \
        == ["0", "3", "6", "7"]
    assert out.types == {"id": "INTEGER", "name": "VARCHAR", "amount": "DECIMAL(38,10)",
                         "ok": "BOOLEAN", "at": "TIMESTAMP WITH TIME ZONE", "doc": "JSON",
                         "raw": "BLOB", "ids": "BIGINT[]"}
    assert len(out.rows) == 7
    first = dict(zip(out.columns, out.rows[0], strict=True))
    assert first["amount"] == Decimal("12345678901234567891.0123456789")  # no digit lost
    assert first["at"] == dt.datetime(2024, 1, 1, 1, tzinfo=dt.UTC)
    assert json.loads(first["doc"]) == {"g": 1} and first["raw"] == b"\x00\xff"
    assert first["ids"] == [1, 2] and first["ok"] is False

    out = harness.extract("supabase.extractor", conn, schema=pg.schema, table="r_read",
                          select="id,name", filter={"ok": True, "id": [2, 4, 5]},
                          order="id.desc", offset=0)
    assert out.rows == [(4, "n4"), (2, "n2")]

    rest.openapi = False  # no API description: types come from the JSON values
    out = harness.extract("supabase.extractor", conn, schema=pg.schema, table="r_read",
                          select="id,name,ok,doc", order="id", offset=5)
    assert out.types == {"id": "BIGINT", "name": "VARCHAR", "ok": "BOOLEAN", "doc": "JSON"}
    assert [r[0] for r in out.rows] == [6, 7]
    out = harness.extract("supabase.extractor", conn, schema=pg.schema, table="r_read",
                          filter={"name": "nobody"})
    assert out.rows == [] and out.columns == ["_empty"]


@pytest.mark.parametrize("channel", ["rest", "sql"])
def test_a_null_in_a_filters_list_is_refused_naming_it(pg: PgTarget, rest: PostgrestFake,
                                                       harness: Harness, channel: str) -> None:
    """Over REST it crashed with "AttributeError: 'NoneType' object has no attribute
    'replace'"; over SQL it silently matched no null row (= ANY never matches null)."""
    t = pg.table("r_nullin")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int PRIMARY KEY, v text)",
               f"INSERT INTO {t} VALUES (1, NULL), (2, 'a,b')")
    conn = _rest_conn(rest) if channel == "rest" else pg.connection()
    with pytest.raises(DriverError, match=r"`filter` v: a list of values cannot hold null .*"
                                          r"`v: null` in a step of their own"):
        harness.extract("supabase.extractor", conn, schema=pg.schema, table="r_nullin",
                        filter={"v": [None, "a,b"]})


def test_rest_extractor_keeps_json_numbers_exactly(pg: PgTarget, rest: PostgrestFake,
                                                   harness: Harness) -> None:
    """PostgreSQL returns a jsonb document with its numbers as written; DuckDB's JSON functions
    re-print numbers as doubles, so the staged rows held 0.12345678901234568 for
    0.12345678901234567890 and 1e+20 for 100000000000000000000. A JSON column is now asked
    for as its text, like numeric."""
    t = pg.table("r_json")
    doc = '{"amount": 0.12345678901234567890, "big": 100000000000000000000, "n": [1.10]}'
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id int PRIMARY KEY, doc jsonb, raw json)",
               f"INSERT INTO {t} VALUES (1, '{doc}', '{doc}'), (2, NULL, 'null')")
    out = harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                          table="r_json", order="id")
    assert out.types == {"id": "INTEGER", "doc": "JSON", "raw": "JSON"}
    expected = pg.query(f"SELECT doc::text, raw::text FROM {t} ORDER BY id")
    assert [(r[1], r[2]) for r in out.rows] == [expected[0], (None, "null")]


def test_rest_extractor_keeps_numeric_array_elements_exactly(
        pg: PgTarget, rest: PostgrestFake, harness: Harness) -> None:
    """numeric[] elements passed through DuckDB's JSON as doubles: 0.12345678901234567890 in a
    numeric(30,20)[] came out as 0.12345678901234568000. They are now asked for as text, and
    (the API description gives no precision) typed from their values."""
    t = pg.table("r_numarr")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id int PRIMARY KEY, v numeric(30,20)[], w numeric[])",
               f"INSERT INTO {t} VALUES (1, ARRAY[0.12345678901234567890, NULL], "
               "ARRAY[1.10, -2]), (2, '{}', NULL), (3, NULL, ARRAY[9007199254740993])")
    out = harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                          table="r_numarr", order="id")
    assert out.types["v"] == "DECIMAL(38,20)[]" and out.types["w"] == "DECIMAL(38,2)[]"
    assert out.rows == [(1, [Decimal("0.12345678901234567890"), None],
                         [Decimal("1.10"), Decimal(-2)]),
                        (2, [], None), (3, None, [Decimal(9007199254740993)])]
    # 42 digits are more than a DECIMAL holds: DOUBLE, which refuses what it would round
    pg.execute(f"INSERT INTO {t} VALUES (4, NULL, ARRAY[1e-30, 123456789012])")
    with pytest.raises(DriverError, match="column 'w' holds"):
        harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                        table="r_numarr", order="id")
    out = harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                          table="r_numarr", order="id", filter={"id": [1, 4]})
    assert out.types["w"] == "DOUBLE[]" and out.rows[1][2] == [1e-30, 123456789012.0]


def test_rest_numeric_columns_are_typed_from_their_values(pg: PgTarget, rest: PostgrestFake,
                                                          harness: Harness) -> None:
    """PostgREST's API description gives `numeric` for numeric(p,s) (no precision, no scale):
    such a column was DOUBLE, which refused every value of more than 15 digits (a
    numeric(20,2) total). Its values now decide the DECIMAL; NaN or more than 38 digits keep
    it DOUBLE."""
    t = pg.table("r_numeric")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id int PRIMARY KEY, total numeric(20,2), ratio numeric, "
               "odd numeric, none numeric)",
               f"INSERT INTO {t} VALUES (1, 123456789012345678.90, -0.00012, 'NaN', NULL), "
               "(2, -5.00, 2.5, 1.5, NULL)")
    conn = _rest_conn(rest)
    out = harness.extract("supabase.extractor", conn, schema=pg.schema, table="r_numeric",
                          order="id")
    assert out.types == {"id": "INTEGER", "total": "DECIMAL(38,2)", "ratio": "DECIMAL(38,5)",
                         "odd": "DOUBLE", "none": "DOUBLE"}
    assert [r[1:3] for r in out.rows] == [(Decimal("123456789012345678.90"),
                                           Decimal("-0.00012")), (Decimal("-5.00"),
                                                                  Decimal("2.50000"))]
    sql = harness.extract("supabase.extractor", pg.connection(), schema=pg.schema,
                          table="r_numeric", order="id")
    assert [r[1] for r in sql.rows] == [r[1] for r in out.rows]  # both channels agree


def test_postgrest_fake_speaks_postgrest(pg: PgTarget, rest: PostgrestFake) -> None:
    t = pg.table("r_fake")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int PRIMARY KEY, v text)",
               f"INSERT INTO {t} SELECT g, 'v' || g FROM generate_series(1, 5) g")
    url = f"{rest.url}/rest/v1/r_fake"
    auth = {"apikey": REST_KEY, "Authorization": f"Bearer {REST_KEY}",
            "Accept-Profile": pg.schema, "Content-Profile": pg.schema}
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={**auth, "Authorization": "Bearer x"},
                        timeout=5).status_code == 401
    resp = requests.get(url, params={"select": "id", "id": "gte.2", "order": "id.desc",
                                     "limit": "2", "offset": "1"}, headers=auth, timeout=5)
    assert resp.json() == [{"id": 4}, {"id": 3}]
    assert resp.headers["Content-Range"] == "1-2/*"
    resp = requests.get(url, params={"v": "eq.none"},
                        headers={**auth, "Prefer": "count=exact"}, timeout=5)
    assert resp.json() == [] and resp.headers["Content-Range"] == "*/0"
    resp = requests.post(url, params={"on_conflict": "id"}, json=[{"id": 1, "v": "new"}],
                         headers={**auth, "Prefer": "return=minimal,resolution=merge-duplicates"},
                         timeout=5)
    assert resp.status_code == 201
    assert requests.delete(url, headers=auth, timeout=5).status_code == 400  # needs a filter
    assert requests.delete(url, params={"id": 'not.in.(1,"2")'}, headers=auth,
                           timeout=5).status_code == 204
    assert pg.query(f"SELECT * FROM {t} ORDER BY id") == [(1, "new"), (2, "v2")]
    rest.fail_next(429, retry_after="7")
    resp = requests.get(url, headers=auth, timeout=5)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "7"


# -- REST writes whose outcome is unknown (issue 12, item 3) ---------------------------------------


def _keyless_table(pg: PgTarget, name: str) -> None:
    """A table without a key: nothing on the server stops a batch from landing twice."""
    pg.execute(f"DROP TABLE IF EXISTS {pg.table(name)}",
               f"CREATE TABLE {pg.table(name)} (id int, name text, price numeric(10,2))")


def test_rest_append_batch_committed_then_500_is_not_sent_again(
        pg: PgTarget, rest: PostgrestFake, harness: Harness) -> None:
    _keyless_table(pg, "r_unknown_500")
    harness.upstream(ROWS)  # ids 1..5
    rest.fail_after_commit(500, method="POST")  # batch 1 (rows 1-2) lands, the answer is 500
    with pytest.raises(DriverError) as info:
        harness.write("supabase.writer", _rest_conn(rest), schema=pg.schema,
                      table="r_unknown_500", batch_size=2, retries=3)
    assert [r[0] for r in _rows(pg, "r_unknown_500")] == [1, 2]  # exactly once
    assert len(rest.calls("POST")) == 1
    msg = str(info.value)
    assert "rows 1-2" in msg and "HTTP 500" in msg and "may have been written" in msg
    assert f"{pg.schema}.r_unknown_500" in msg and "not sent again" in msg
    assert "upsert" in msg and "primary_key" in msg and REST_KEY not in msg
    assert any(e["event"] == "write.outcome_unknown" for e in harness.events())


def test_rest_append_later_batch_committed_then_late_answer_is_not_sent_again(
        pg: PgTarget, rest: PostgrestFake, harness: Harness) -> None:
    _keyless_table(pg, "r_unknown_late")
    harness.upstream(ROWS)
    rest.fail_next(429, method="POST", retry_after="0")  # rejected unprocessed: safe to retry
    rest.answer_late(method="POST", skip=1)  # batch 2 (rows 3-4) lands, answered too late
    with pytest.raises(DriverError) as info:
        harness.write("supabase.writer", _rest_conn(rest), schema=pg.schema,
                      table="r_unknown_late", batch_size=2, timeout=0.5, retries=3)
    assert [r[0] for r in _rows(pg, "r_unknown_late")] == [1, 2, 3, 4]  # exactly once
    assert len(rest.calls("POST")) == 3  # 429 + batch 1 + batch 2, never batch 2 again
    msg = str(info.value)
    assert "rows 3-4" in msg and "no response within 0.5 s" in msg
    assert "may have been written" in msg and "rows 1-2 were written" in msg
    assert "upsert" in msg and "primary_key" in msg


def test_rest_upsert_is_idempotent_and_still_retried_after_commit(
        pg: PgTarget, rest: PostgrestFake, harness: Harness) -> None:
    t = pg.table("r_upsert_retry")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id int PRIMARY KEY, name text, price numeric(10,2))")
    harness.upstream(ROWS)
    rest.fail_after_commit(500, method="POST")  # batch 1 lands, answered 500
    rest.answer_late(method="POST", skip=1)  # batch 2 (after batch 1's retry) answered late
    result = harness.write("supabase.writer", _rest_conn(rest), schema=pg.schema,
                           table="r_upsert_retry", write_mode="upsert", primary_key="id",
                           batch_size=2, timeout=0.5, retries=3)
    assert result.rows_written == 5
    assert [r[0] for r in _rows(pg, "r_upsert_retry")] == [1, 2, 3, 4, 5]
    assert len(rest.calls("POST")) == 5  # batch 1 twice, batch 2 twice, batch 3
    assert len([e for e in harness.events() if e["event"] == "http_retry"]) == 2


def test_rest_replace_retries_its_idempotent_upserts_and_deletes(
        pg: PgTarget, rest: PostgrestFake, harness: Harness) -> None:
    t = pg.table("r_replace_retry")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id int PRIMARY KEY, name text, price numeric(10,2))",
               f"INSERT INTO {t} VALUES (1, 'old', 0), (77, 'stale', 0)")
    harness.upstream(ROWS)
    rest.fail_after_commit(502, method="POST")
    rest.fail_after_commit(504, method="DELETE")
    harness.write("supabase.writer", _rest_conn(rest), schema=pg.schema,
                  table="r_replace_retry", write_mode="replace", primary_key="id",
                  batch_size=10, retries=2)
    assert [r[:2] for r in _rows(pg, "r_replace_retry")] == [
        (i, f"name {i}") for i in range(1, 6)]
    assert len(rest.calls("POST")) == 2 and len(rest.calls("DELETE")) == 2


def test_rest_append_retries_a_refused_connection(pg: PgTarget, harness: Harness) -> None:
    """Nothing was sent when the connection is refused: retrying cannot write twice."""
    harness.upstream(ROWS)
    closed = {"url": "http://127.0.0.1:1", "key": REST_KEY}
    with pytest.raises(DriverError, match=r"\(Supabase REST API\): .*cannot connect to "
                                          r"http://127.0.0.1:1 \(connection refused"):
        harness.write("supabase.writer", closed, table="t", retries=2)
    assert len([e for e in harness.events() if e["event"] == "http_retry"]) == 2


REST_APPEND_PIPELINE = """\
oml_version: "0.1.0"
name: rest-append
x-dagster:
  steps:
    write-rows:
      retry: {{max_retries: 2}}
steps:
  - id: make-rows
    component: duckdb.processor
    mode: transform
    needs: []
    config:
      query: SELECT i AS id, 'name ' || i AS name, 1.5 AS price FROM range(1, 4) t(i)
  - id: write-rows
    component: supabase.writer
    mode: write
    needs: [make-rows]
    config:
      connection: "@supabase.api"
      schema: {schema}
      table: r_unknown_dagster
      batch_size: 10
"""


def test_rest_append_outcome_unknown_fails_the_step_without_dagster_retries(
        pg: PgTarget, rest: PostgrestFake, run_pipeline: PipelineRun,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    _keyless_table(pg, "r_unknown_dagster")
    rest.fail_after_commit(503, method="POST")
    monkeypatch.setenv("SUPABASE_TEST_KEY", REST_KEY)
    connections = ("version: 1\nconnections:\n  supabase:\n    api:\n"
                   f"      url: {rest.url}\n      service_role_key: ${{SUPABASE_TEST_KEY}}\n")
    result, _ = run_pipeline(REST_APPEND_PIPELINE.format(schema=pg.schema), connections,
                             "rest-append")
    assert not result.success
    assert [r[0] for r in _rows(pg, "r_unknown_dagster")] == [1, 2, 3]  # exactly once
    assert len(rest.calls("POST")) == 1  # neither the driver nor Dagster sent it again
    text = failure_description(result)
    assert "step 'write-rows'" in text and "rows 1-3" in text
    assert "may have been written" in text and "primary_key" in text
    # the writer materialised alone reads the same table again: not sent until settled
    alone = defs_for(tmp_path / "pipelines" / "pipeline.yaml", tmp_path / "sessions",
                     tmp_path / "osiris_connections.yaml").resolve_job_def(
        "rest_append").execute_in_process(instance=instance, raise_on_error=False,
                                          asset_selection=[dg.AssetKey(["rest-append",
                                                                        "write-rows"])])
    assert not alone.success and len(rest.calls("POST")) == 1
    assert "not run: an earlier attempt" in failure_description(alone)
    assert "may have been written" in failure_description(alone)


def test_rest_append_stopped_part_way_is_not_retried(
        pg: PgTarget, rest: PostgrestFake, run_pipeline: PipelineRun,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The step's timeout strikes between two batches of a REST append: the batches sent are
    written (each commits), so the step fails without a retry saying which rows are there
    (before: a retryable timeout, and the retry appended them again)."""
    _keyless_table(pg, "r_unknown_dagster")
    rest.post_delay = 0.4
    monkeypatch.setenv("SUPABASE_TEST_KEY", REST_KEY)
    connections = ("version: 1\nconnections:\n  supabase:\n    api:\n"
                   f"      url: {rest.url}\n      service_role_key: ${{SUPABASE_TEST_KEY}}\n")
    text = REST_APPEND_PIPELINE.format(schema=pg.schema).replace(
        "retry: {max_retries: 2}", "retry: {max_retries: 2}\n      timeout_seconds: 1").replace(
        "range(1, 4)", "range(1, 201)")
    result, session = run_pipeline(text, connections, "rest-append")
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    (stopped,) = [e for e in events(session) if e["event"] == "write.stopped_part_way"]
    written = stopped["rows_written"]
    assert 0 < written < 200 and len(rest.calls("POST")) == written // 10
    assert [r[0] for r in _rows(pg, "r_unknown_dagster")] == list(range(1, written + 1))
    assert f"rows {written + 1}-200 were not sent" in failure_description(result)


@pytest.mark.parametrize("target, good, bad, change", [
    ("numeric(10,2)", "1.25::DOUBLE", "1.239::DOUBLE", "rounded to 2 decimals"),
    ("real", "0.1::DOUBLE", "16777217::BIGINT", "as a 4-byte FLOAT"),
    ("double precision", "9007199254740992::BIGINT", "9007199254740993::BIGINT", "as a DOUBLE"),
    ("timestamp(0)", "TIMESTAMP '2024-12-31 23:59:59'", "TIMESTAMP '2024-12-31 23:59:59.9'",
     "with 0 fractional-second digits"),
    ("time(0)", "TIME '10:00:00'", "TIME '23:59:59.9'", "with 0 fractional-second digits"),
    ("date", "TIMESTAMP '2024-01-02 00:00:00'", "TIMESTAMP '2024-01-02 10:00:00'",
     "without its time of day"),
    ("double precision", "1::BIGINT", "9223372036854775807::BIGINT", "as a DOUBLE"),
    ("numeric(30,2)", "90235941196614.25::DOUBLE", "1e-7::DOUBLE", "rounded to 2 decimals"),
    ("numeric(10,2)", "'1.25'", "'1.239'", "rounded to 2 decimals"),
    ("time(0) with time zone", "TIMETZ '10:00:00+00'", "TIMETZ '10:00:00.7+00'",
     "with 0 fractional-second digits"),
    ("double precision", "8821227663.115190::DECIMAL(18,6)",
     "27241394055.599428::DECIMAL(18,6)", "as a DOUBLE"),
    ("timestamp", "TIMESTAMP_NS '2024-01-01 10:00:00.123456'",
     "TIMESTAMP_NS '2024-12-31 23:59:59.999999999'", "with 6 fractional-second digits"),
    ("numeric(30,3)", "'4.375576e+06'", "'1.2345e-2'", "rounded to 3 decimals"),
    ("numeric(60,40)", "0.5::DOUBLE", "1e-41::DOUBLE", "rounded to 40 decimals"),
    ("numeric(5,-2)", "1200::BIGINT", "1234::BIGINT", "rounded to -2 decimals"),
    # from the writers review: money rounds to 2 decimals, an interval to its fields and digits
    ("money", "1.25::DECIMAL(10,3)", "1.005::DECIMAL(10,3)", "rounded to 2 decimals"),
    ("money", "'1.25'", "'1.005'", "rounded to 2 decimals"),
    ("interval(0)", "INTERVAL '1 second'", "INTERVAL '0.7 seconds'",
     "with 0 fractional-second digits"),
    ("interval day to second(3)", "INTERVAL '1 day 00:00:01.5'",
     "INTERVAL '1 day 00:00:01.0005'", "with 3 fractional-second digits"),
    ("interval day", "INTERVAL '2 days'", "INTERVAL '1 day 00:00:01'", "below its days"),
    ("interval year", "INTERVAL '2 years'", "INTERVAL '1 year 2 months'", "below its years"),
    ("interval hour to minute", "INTERVAL '25 hours 5 minutes'",
     "INTERVAL '1 hour 5 minutes 3 seconds'", "below its minutes"),
    # other types into interval and time columns (the second review)
    ("interval(0)", "TIME '12:00:01'", "TIME '12:00:00.5'", "with 0 fractional-second digits"),
    ("interval day", "TIME '00:00:00'", "TIME '12:34:56'", "below its days"),
    ("interval", "1.5::DOUBLE", "1.2345678::DECIMAL(10,7)", "rounded to microseconds"),
    ("interval(0)", "NULL::DOUBLE", "1.5::DOUBLE", "cut to the column's fields or digits"),
    ("time(0)", "INTERVAL '12:00:00'", "INTERVAL '12:00:00.5'",
     "with 0 fractional-second digits"),
    # arrays: each element against the element's type; text cut to the column's length
    ("numeric(10,2)[]", "[1.25, NULL]::DOUBLE[]", "[1.25, 1.239]::DOUBLE[]",
     "rounded to 2 decimals, in an element of the array"),
    ("timestamp(0)[]", "[TIMESTAMP '2024-12-31 23:59:59']",
     "[TIMESTAMP '2024-12-31 23:59:59.9']", "with 0 fractional-second digits, in an element"),
    ("real[]", "[0.1]::DOUBLE[]", "[16777217]::BIGINT[]", "as a 4-byte FLOAT"),
    ("varchar(3)", "'ab '", "'ab   '", "cut to 3 characters"),
    ("char(3)", "'ab'", "'é   '", "cut to 3 characters"),
    ("varchar(2)[]", "['ab', 'c ']", "['ab', 'c   ']", "dropped), in an element"),
])
def test_sql_writer_refuses_values_the_existing_column_would_change(
        pg: PgTarget, harness: Harness, target: str, good: str, bad: str, change: str) -> None:
    """PostgreSQL stores these changed without an error (timestamp(0) rounds
    2024-12-31 23:59:59.9 into the next year): the writer checks every value first and fails
    naming it, writing nothing."""
    t = pg.table("s_fit")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int, v {target})",
               f"INSERT INTO {t} VALUES (0, NULL)")
    harness.upstream(f"SELECT 1 AS id, {good} AS v UNION ALL SELECT 2, NULL")
    harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_fit")
    assert len(_rows(pg, "s_fit")) == 3
    harness.upstream(f"SELECT 3 AS id, {good} AS v UNION ALL SELECT 4, {bad}")
    with pytest.raises(DriverError) as info:
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_fit",
                      write_mode="replace")
    msg = str(info.value)
    assert "column 'v' holds" in msg and f"of {pg.schema}.s_fit cannot hold exactly" in msg
    assert change in msg and "Nothing was written" in msg
    assert len(_rows(pg, "s_fit")) == 3  # the table is as it was


def test_sql_writer_domains_and_whole_numbers_into_integer_columns(
        pg: PgTarget, harness: Harness) -> None:
    """A domain over numeric(10,2) was not checked (1.239 was stored as 1.24); a whole DOUBLE
    or DECIMAL into an integer column was refused ('invalid input syntax for type integer:
    "1.0"'), and PostgreSQL's refusals named no column or row."""
    t, cents, cents2 = pg.table("s_dom"), pg.table("s_cents"), pg.table("s_cents2")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"DROP DOMAIN IF EXISTS {cents2}",
               f"DROP DOMAIN IF EXISTS {cents}", f"CREATE DOMAIN {cents} AS numeric(10,2)",
               f"CREATE DOMAIN {cents2} AS {cents}",  # a domain over a domain: its base
               f"CREATE TABLE {t} (id int, c {cents}, i integer, b bigint, c2 {cents2})")
    harness.upstream("SELECT 1 AS id, 1.5::DOUBLE AS c, 1.0::DOUBLE AS i, "
                     "5.00::DECIMAL(10,2) AS b, 2.5::DOUBLE AS c2 UNION ALL SELECT 2, NULL, "
                     "-3e9::DOUBLE / 1e9, 9007199254740992::DOUBLE, NULL")
    harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_dom")
    assert pg.query(f"SELECT id, c::text, i, b, c2::text FROM {t} ORDER BY id") == [
        (1, "1.50", 1, 5, "2.50"), (2, None, -3, 9007199254740992, None)]
    harness.upstream("SELECT 3 AS id, 1.239::DOUBLE AS c, 1 AS i, 1 AS b, 1 AS c2")
    with pytest.raises(DriverError, match=r"column 'c' holds '1.239'.*rounded to 2 decimals"):
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_dom")
    harness.upstream("SELECT 3 AS id, 1 AS c, 1 AS i, 1 AS b, 1.239::DOUBLE AS c2")
    with pytest.raises(DriverError, match=r"column 'c2' holds '1.239'.*rounded to 2 decimals"):
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_dom")
    out = harness.extract("supabase.extractor", pg.connection(), schema=pg.schema,
                          table="s_dom", filter={"c2": 2.505})  # was cast to numeric(10,2)
    assert out.rows == [] and out.types["c2"] == "DECIMAL(10,2)"
    harness.upstream("SELECT 3 AS id, 1 AS c, 1.0::DOUBLE AS i, 1 AS b UNION ALL "
                     "SELECT 4, 1, 1.5::DOUBLE, 1")
    with pytest.raises(DriverError, match=r'invalid input syntax for type integer: "1.5" \(in '
                                          r'COPY s_dom, line 2, column i: "1.5"'):
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_dom")
    with pytest.raises(DriverError, match=r'COPY s_dom \(its staging copy\), line 2, column i'):
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_dom",
                      write_mode="upsert", primary_key=["id"])
    assert len(_rows(pg, "s_dom")) == 2


def test_a_connection_lost_during_the_write_is_a_rolled_back_write_naming_the_table(
        pg: PgTarget, harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed during the COPY (pg_terminate_backend, a failover): the rollback in the error
    handler raised on the dead connection, so the step failed with a bare "OperationalError:
    the connection is lost" instead of the writer's message."""
    import psycopg

    from .conftest import PG_DSN

    t = pg.table("s_lost")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int, name text, "
                                            "price numeric(10,2))")
    harness.upstream(ROWS)
    original = supabase_writer._SqlWrite._write

    def lose_the_connection_then_write(self: Any, cur: Any) -> int:
        with psycopg.connect(PG_DSN, autocommit=True) as admin:  # the server drops the session
            admin.execute("SELECT pg_terminate_backend(%s)", (cur.connection.info.backend_pid,))
        return original(self, cur)

    monkeypatch.setattr(supabase_writer._SqlWrite, "_write", lose_the_connection_then_write)
    with pytest.raises(DriverError) as info:
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_lost")
    msg = str(info.value)
    assert msg.startswith("supabase.writer")
    assert f"Nothing was written: the transaction was rolled back and {pg.schema}.s_lost" in msg
    assert _rows(pg, "s_lost") == []


def test_sql_writer_commit_without_answer_is_reported_as_unknown(
        pg: PgTarget, harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection dies while the COMMIT is under way: the writer cannot know whether the
    rows landed. An append says so (and is not retryable); a deferred constraint that fails at
    COMMIT is a known rollback."""
    import psycopg

    from osiris_dagster.core.errors import NotRetryableError

    from .conftest import PG_DSN

    t = pg.table("s_commit")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id int, name text, price numeric(10,2))")
    harness.upstream(ROWS)
    original = supabase_writer._SqlWrite._write

    def write_then_lose_the_connection(self: Any, cur: Any) -> int:
        rows = original(self, cur)
        with psycopg.connect(PG_DSN, autocommit=True) as admin:  # the server drops the session
            admin.execute("SELECT pg_terminate_backend(%s)", (cur.connection.info.backend_pid,))
        return rows

    monkeypatch.setattr(supabase_writer._SqlWrite, "_write", write_then_lose_the_connection)
    with pytest.raises(NotRetryableError) as info:
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_commit")
    msg = str(info.value)
    assert "may or may not have been written" in msg and f"{pg.schema}.s_commit" in msg
    assert "SELECT count(*)" in msg and "upsert" in msg and "primary_key" in msg
    pg.execute(f"DROP TABLE {t}",
               f"CREATE TABLE {t} (id int PRIMARY KEY, name text, price numeric(10,2))")
    with pytest.raises(DriverError) as info:
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_commit",
                      write_mode="upsert", primary_key="id")
    assert not isinstance(info.value, NotRetryableError)  # an upsert may simply run again
    assert "may or may not have been written" in str(info.value)
    monkeypatch.undo()

    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id int UNIQUE DEFERRABLE INITIALLY DEFERRED, name text, "
               "price numeric(10,2))", f"INSERT INTO {t} VALUES (1, 'taken', 0)")
    with pytest.raises(DriverError) as info:
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="s_commit")
    assert "rolled back" in str(info.value) and "may or may not" not in str(info.value)
    assert _rows(pg, "s_commit") == [(1, "taken", 0)]


def test_floats_keep_their_sign_and_digits_on_both_channels(pg: PgTarget, rest: PostgrestFake,
                                                            harness: Harness) -> None:
    """PostgREST sends -0 as the JSON number -0, which DuckDB's JSON reads as the integer 0:
    the REST channel gave 0.0 for -0.0."""
    t = pg.table("s_float")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id int PRIMARY KEY, d float8, r real, ds float8[])",
               f"INSERT INTO {t} VALUES (1, '-0', '-0', ARRAY['-0', '0.1']::float8[]), "
               "(2, '0.1', '0.1', NULL), (3, '1e308', '3.4e38', NULL), "
               "(4, 'NaN', 'Infinity', ARRAY['-Infinity', 'NaN']::float8[]), "
               "(5, '2.2250738585072014e-308', '-1.17549435e-38', NULL), (6, NULL, NULL, NULL)")
    select = "d::VARCHAR, r::VARCHAR, ds::VARCHAR, signbit(d), signbit(r)"
    expected = _as_text(harness, pg.connection(), select, schema=pg.schema, table="s_float")
    assert expected[0] == ("-0.0", "-0.0", "[-0.0, 0.1]", True, True)
    assert _as_text(harness, _rest_conn(rest), select, schema=pg.schema,
                    table="s_float") == expected


@pytest.mark.parametrize(("column", "value", "says"), [
    ("amount", "0.12345678901234567890", "holds the JSON number 0.12345678901234567890, which "
                                         "DuckDB's JSON reader would make 0.12345678901234568"),
    ("big", "100000000000000000001", "holds '100000000000000000001', which the type its JSON "
                                     "values give it cannot hold exactly"),
    ("f", "'-0'", "holds the JSON number -0, which DuckDB's JSON reader would make 0"),
    ("doc", """'{"a": [1, 0.12345678901234567890]}'""", "holds the JSON number 0.1234567890"),
    ("arr", "ARRAY[0.12345678901234567890]", "holds the JSON number 0.12345678901234567890"),
    ("amount", "9007199254740993", "holds '9007199254740993', which the type its JSON values "
                                   "give it cannot hold exactly"),
])
def test_rest_without_the_api_description_refuses_numbers_it_would_change(
        pg: PgTarget, rest: PostgrestFake, harness: Harness, column: str, value: str,
        says: str) -> None:
    """Without the API description the REST channel cannot ask for numbers as text, and
    DuckDB's JSON reader keeps a double's digits only: such values were rounded (0.1234... to
    0.12345678901234568, 100000000000000000001 to 1e+20, inside documents too) and -0 lost its
    sign, without an error. Values a double holds still pass."""
    t = pg.table("r_nums")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (id int PRIMARY KEY, amount numeric, big numeric, f float8, "
               "doc jsonb, arr numeric[])",
               f"INSERT INTO {t} VALUES (1, 1.10, 100000000000000000000, 0.5, "
               """'{"a": 0.1}', ARRAY[1.10]), (2, 1.5, 2, 0.1, NULL, NULL)""")
    rest.openapi = False
    out = harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                          table="r_nums", order="id")
    assert out.rows == [(1, 1.1, 1e20, 0.5, '{"a":0.1}', "[1.1]"),
                        (2, 1.5, 2.0, 0.1, None, None)]
    pg.execute(f"UPDATE {t} SET {column} = {value} WHERE id = 2")
    with pytest.raises(DriverError, match=re.escape(says)) as info:
        harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                        table="r_nums", order="id")
    assert f"column '{column}'" in str(info.value)
    if "JSON number" in says:
        assert "(row 2)" in str(info.value) and "API description" in str(info.value)


def test_rest_jsonb_array_numbers_a_double_would_change_fail(pg: PgTarget, rest: PostgrestFake,
                                                             harness: Harness) -> None:
    """jsonb[] comes as JSON (the API cannot ask for its elements as text); a number in it
    that DuckDB's JSON reader would round was rounded without an error."""
    t = pg.table("r_jarr")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int PRIMARY KEY, j jsonb[])",
               f"""INSERT INTO {t} VALUES (1, ARRAY['{{"x": 1.5}}'::jsonb])""")
    out = harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                          table="r_jarr")
    assert out.rows == [(1, '[{"x":1.5}]')]
    pg.execute(f"""UPDATE {t} SET j = ARRAY['{{"y": 0.12345678901234567890}}'::jsonb]""")
    with pytest.raises(DriverError, match=r"column 'j' \(row 1\) holds the JSON number "
                                          r"0\.12345678901234567890.*Its type \(jsonb\[\]\)"):
        harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                        table="r_jarr")


def test_rest_numbers_duckdb_keeps_as_text_pass_and_types_fit_them(
        pg: PgTarget, rest: PostgrestFake, harness: Harness) -> None:
    """From a review: numbers past 64 bits or a double's range, which DuckDB's JSON reader
    keeps as their text, were refused (a 400-digit one crashed the check); a numeric(38,38)
    column got DOUBLE (the 0 before the point counted as a digit); without the API
    description, integers past BIGINT or beside negatives became JSON columns."""
    t = pg.table("r_kept")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"DROP TYPE IF EXISTS {pg.schema}.pair",
               f"CREATE TYPE {pg.schema}.pair AS (a numeric, b int)",
               f"CREATE TABLE {t} (id int PRIMARY KEY, j jsonb[], p {pg.schema}.pair, "
               "f numeric(38,38))",
               f"""INSERT INTO {t} VALUES (1, ARRAY['{{"a": 100000000000000000001}}'::jsonb,
               '{{"b": 1e400}}'::jsonb], ROW(1e400, 1), 0.12345678901234567890123456789012345678),
               (2, NULL, ROW({'9' * 400}, 2), -0.5)""")
    out = harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                          table="r_kept", order="id")
    assert out.types["f"] == "DECIMAL(38,38)"
    assert out.rows[0][3] == Decimal("0.12345678901234567890123456789012345678")
    assert json.loads(out.rows[0][1]) == [{"a": 100000000000000000001}, {"b": 10**400}]
    assert json.loads(out.rows[0][2]) == {"a": 10**400, "b": 1}  # as PostgreSQL prints it
    assert json.loads(out.rows[1][2]) == {"a": int("9" * 400), "b": 2}
    n = pg.table("r_ints")
    pg.execute(f"DROP TABLE IF EXISTS {n}", f"CREATE TABLE {n} (id int PRIMARY KEY, a int8, "
               "b numeric(20))",
               f"INSERT INTO {n} VALUES (1, 5, 18446744073709551615), "
               "(2, -7, 1), (3, 9223372036854775807, NULL)")
    rest.openapi = False
    out = harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                          table="r_ints", order="id")
    assert out.types == {"id": "BIGINT", "a": "BIGINT", "b": "DECIMAL(20,0)"}
    assert [r[1:] for r in out.rows] == [(5, Decimal(18446744073709551615)), (-7, Decimal(1)),
                                         (9223372036854775807, None)]


def test_rest_a_selected_column_the_api_description_lacks_is_checked(
        pg: PgTarget, rest: PostgrestFake, harness: Harness) -> None:
    """A column selected but not described (a PostgREST computed field) was taken for text and
    its page not checked: 0.12345678901234567890 came as '0.12345678901234568'."""
    t = pg.table("r_undescribed")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int PRIMARY KEY, v numeric)",
               f"INSERT INTO {t} VALUES (1, 0.12345678901234567890)")
    rest.undescribed = {"v"}
    with pytest.raises(DriverError, match=r"column 'v' \(row 1\) holds the JSON number "
                                          r"0\.12345678901234567890"):
        harness.extract("supabase.extractor", _rest_conn(rest), schema=pg.schema,
                        table="r_undescribed", select="id,v")


def test_sql_extractor_refuses_an_offset_without_an_order(pg: PgTarget, harness: Harness,
                                                          catalog_table: str) -> None:
    """Over SQL, `offset` without `order` skipped rows in whatever order PostgreSQL returned
    them (a review: ids 3 and 4 skipped, updated ids 1 and 2 read, exit 0)."""
    with pytest.raises(DriverError, match=r"is read from `offset` 2 without `order`"):
        harness.extract("supabase.extractor", pg.connection(), schema=pg.schema,
                        table=catalog_table, offset=2)
    out = harness.extract("supabase.extractor", pg.connection(), schema=pg.schema,
                          table=catalog_table, offset=2, order="id", select="id")
    assert out.rows == sorted(out.rows) and len(out.rows) >= 1


def test_a_nul_character_names_its_column_and_row(pg: PgTarget, harness: Harness) -> None:
    """PostgreSQL refuses a NUL in text with 'invalid byte sequence for encoding "UTF8": 0x00'
    and COPY's context names no column: the error said only to check the connection."""
    t = pg.table("t_nul")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id int, a text, b text)")
    harness.upstream("SELECT 1 AS id, 'x' AS a, 'y' AS b UNION ALL "
                     "SELECT 2, 'x', 'bad' || chr(0) || 'value'")
    with pytest.raises(DriverError, match=r"Input column 'b' holds a NUL character \(row 2\)"):
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="t_nul")
    assert pg.query(f"SELECT count(*) FROM {t}") == [(0,)]
