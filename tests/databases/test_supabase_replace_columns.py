"""supabase.writer ``replace`` with ``primary_key``: target columns the input lacks.

Over a SQL channel a keyed replace leaves the target with exactly the incoming rows: a row that
stays is updated in place (its key, and what references it, hold) and ends as a freshly
inserted row would, so a column the input lacks gets its default, not the value it had before
(it kept a stale value, silently). Counters and references keep theirs: an identity, a serial
or other sequence default, a column a foreign key references; a generated column is recomputed.
``upsert`` keeps every column the input lacks (that is what an upsert is), and so does a REST
replace (PostgREST's merge-duplicates updates only the columns sent)."""

from __future__ import annotations

from typing import Any

import pytest

from osiris_dagster.core.errors import DriverError

from .conftest import REST_KEY, Harness, PgTarget
from .postgrest_fake import PostgrestFake


def _rows(pg: PgTarget, table: str, columns: str = "*") -> list[tuple[Any, ...]]:
    return [tuple(r) for r in pg.query(f"SELECT {columns} FROM {pg.table(table)} ORDER BY 1")]


def _plain_target(pg: PgTarget, name: str) -> None:
    """(id pk, name, note without default, tag with a default, mood of a domain with a
    default), two old rows, and a child row whose foreign key deletes it with its parent."""
    t, child, mood = pg.table(name), pg.table(f"{name}_child"), pg.table(f"{name}_mood")
    pg.execute(f"DROP TABLE IF EXISTS {child}", f"DROP TABLE IF EXISTS {t}",
               f"DROP DOMAIN IF EXISTS {mood}",
               f"CREATE DOMAIN {mood} AS text DEFAULT 'calm'",
               f"CREATE TABLE {t} (id int PRIMARY KEY, name text, note text, "
               f"tag text NOT NULL DEFAULT 'fresh', mood {mood})",
               f"INSERT INTO {t} VALUES (1, 'a', 'stale', 'old tag', 'angry'), "
               "(2, 'gone', 'x', 'y', 'sad')",
               f"CREATE TABLE {child} (parent int REFERENCES {t} (id) ON DELETE CASCADE)",
               f"INSERT INTO {child} VALUES (1)")


def test_sql_replace_gives_columns_the_input_lacks_their_defaults(
        pg: PgTarget, harness: Harness) -> None:
    _plain_target(pg, "rc_plain")
    # "Name" is the target's name (matched as PostgreSQL folds it): not a lacking column
    harness.upstream("SELECT * FROM (VALUES (1, 'b'), (3, 'c')) t(id, \"Name\")")
    harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="rc_plain",
                  write_mode="replace", primary_key=["id"])
    assert _rows(pg, "rc_plain") == [(1, "b", None, "fresh", "calm"),
                                     (3, "c", None, "fresh", "calm")]
    # row 1 was updated, not deleted and inserted again: its child row is still there
    assert _rows(pg, "rc_plain_child") == [(1,)]
    (event,) = [e for e in harness.events() if e["event"] == "replace.columns_reset"]
    assert event["columns"] == ["note", "tag", "mood"] and event["kept"] == {}


def test_sql_replace_of_only_the_key_resets_every_other_column(
        pg: PgTarget, harness: Harness) -> None:
    """With no other input column the statement had nothing to update (DO NOTHING)."""
    _plain_target(pg, "rc_key_only")
    harness.upstream("SELECT * FROM (VALUES (1), (3)) t(id)")
    harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="rc_key_only",
                  write_mode="replace", primary_key="id")
    assert _rows(pg, "rc_key_only") == [(1, None, None, "fresh", "calm"),
                                        (3, None, None, "fresh", "calm")]


def test_sql_upsert_still_keeps_columns_the_input_lacks(pg: PgTarget, harness: Harness) -> None:
    _plain_target(pg, "rc_upsert")
    harness.upstream("SELECT * FROM (VALUES (1, 'b'), (3, 'c')) t(id, name)")
    harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="rc_upsert",
                  write_mode="upsert", primary_key="id")
    assert _rows(pg, "rc_upsert") == [(1, "b", "stale", "old tag", "angry"),
                                      (2, "gone", "x", "y", "sad"),
                                      (3, "c", None, "fresh", "calm")]


def test_sql_replace_keeps_counters_and_referenced_columns_and_recomputes_generated(
        pg: PgTarget, harness: Harness) -> None:
    """An identity, a serial, a sequence default and a column a foreign key references keep
    their value on a row that stays (a new value would renumber the row and break what points
    at it); a generated column is left to PostgreSQL, which recomputes it."""
    t, child = pg.table("rc_counters"), pg.table("rc_counters_child")
    seq = pg.table("rc_counters_seq")
    pg.execute(f"DROP TABLE IF EXISTS {child}", f"DROP TABLE IF EXISTS {t}",
               f"DROP SEQUENCE IF EXISTS {seq}",
               f"CREATE SEQUENCE {seq} START 500",
               f"CREATE TABLE {t} (id int PRIMARY KEY, name text, "
               "loud text GENERATED ALWAYS AS (upper(name)) STORED, "
               "ident bigint GENERATED ALWAYS AS IDENTITY (START 100), "
               "ident_d bigint GENERATED BY DEFAULT AS IDENTITY (START 200), "
               "ser serial, "
               f"counter text DEFAULT 'n-' || nextval('{pg.schema}.rc_counters_seq'), "
               "code int UNIQUE DEFAULT 0, "
               "note text)",
               f"INSERT INTO {t} (id, name, code, note) VALUES (1, 'a', 7, 'stale')",
               f"CREATE TABLE {child} (code int REFERENCES {t} (code) ON UPDATE CASCADE)",
               f"INSERT INTO {child} VALUES (7)")
    before = _rows(pg, "rc_counters")
    assert before == [(1, "a", "A", 100, 200, 1, "n-500", 7, "stale")]
    harness.upstream("SELECT * FROM (VALUES (1, 'b'), (2, 'c')) t(id, name)")
    harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="rc_counters",
                  write_mode="replace", primary_key="id")
    kept, new = _rows(pg, "rc_counters")
    assert kept == (1, "b", "B", 100, 200, 1, "n-500", 7, None)
    # a new row draws new numbers (how many the statement drew before it is PostgreSQL's)
    assert new[:3] == (2, "c", "C") and new[7:] == (0, None)
    assert all(n != k for n, k in zip(new[3:7], kept[3:7], strict=True)), new
    assert _rows(pg, "rc_counters_child") == [(7,)]
    (event,) = [e for e in harness.events() if e["event"] == "replace.columns_reset"]
    assert event["columns"] == ["note"]
    assert event["kept"] == {"loud": "generated", "ident": "identity", "ident_d": "identity",
                             "ser": "sequence default", "counter": "sequence default",
                             "code": "referenced by a foreign key"}


def test_rest_replace_keeps_columns_the_input_lacks(
        pg: PgTarget, rest: PostgrestFake, harness: Harness) -> None:
    """Documented limit: PostgREST's merge-duplicates updates only the columns sent."""
    _plain_target(pg, "rc_rest")
    harness.upstream("SELECT * FROM (VALUES (1, 'b'), (3, 'c')) t(id, name)")
    conn = {"url": rest.url, "service_role_key": REST_KEY}
    harness.write("supabase.writer", conn, schema=pg.schema, table="rc_rest",
                  write_mode="replace", primary_key="id")
    assert _rows(pg, "rc_rest") == [(1, "b", "stale", "old tag", "angry"),
                                    (3, "c", None, "fresh", "calm")]


def test_sql_replace_keeps_the_tables_own_keys_and_a_domains_sequence_default(
        pg: PgTarget, harness: Harness) -> None:
    """Replacing by another unique column (`primary_key: [code]`) reset the table's real
    PRIMARY KEY, `id uuid DEFAULT gen_random_uuid()`, to a new uuid on every run (the usual
    Supabase table shape); a domain whose default draws from a sequence was renumbered."""
    t, dom, seq = pg.table("rc_keys"), pg.table("rc_keys_dom"), pg.table("rc_keys_seq")
    pg.execute(f"DROP TABLE IF EXISTS {t}", f"DROP DOMAIN IF EXISTS {dom}",
               f"DROP SEQUENCE IF EXISTS {seq}", f"CREATE SEQUENCE {seq} START 1000",
               f"CREATE DOMAIN {dom} AS bigint DEFAULT nextval('{pg.schema}.rc_keys_seq')",
               f"CREATE TABLE {t} (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
               f"code text UNIQUE NOT NULL, other int UNIQUE, sd {dom}, v int, note text)",
               f"INSERT INTO {t} (code, other, v, note) VALUES ('a', 5, 1, 'stale')")
    (before,) = _rows(pg, "rc_keys")
    harness.upstream("SELECT * FROM (VALUES ('a', 10)) t(code, v)")
    harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="rc_keys",
                  write_mode="replace", primary_key="code")
    (after,) = _rows(pg, "rc_keys")
    assert after == (before[0], "a", 5, before[3], 10, None)
    (event,) = [e for e in harness.events() if e["event"] == "replace.columns_reset"]
    assert event["columns"] == ["note"]
    assert event["kept"] == {"id": "a key of the table", "other": "a key of the table",
                             "sd": "sequence default"}


def test_sql_replace_refuses_to_cascade_through_rows_that_come_back(
        pg: PgTarget, harness: Harness) -> None:
    """A review: a table referencing itself ON DELETE CASCADE (a tree) lost a row the input
    brings back, and that row's children in other tables, when the rows that go were deleted
    first; the upsert then inserted the row anew. Such a replace now fails, rolled back."""
    node, item = pg.table("rc_node"), pg.table("rc_item")
    pg.execute(f"DROP TABLE IF EXISTS {item}", f"DROP TABLE IF EXISTS {node}",
               f"CREATE TABLE {node} (id int PRIMARY KEY, parent int REFERENCES {node} (id) "
               "ON DELETE CASCADE, name text)",
               f"CREATE TABLE {item} (iid int PRIMARY KEY, node_id int REFERENCES {node} (id) "
               "ON DELETE CASCADE)",
               f"INSERT INTO {node} VALUES (2, NULL, 'root'), (1, 2, 'leaf')",
               f"INSERT INTO {item} VALUES (100, 1)")
    harness.upstream("SELECT 1 AS id, NULL::INTEGER AS parent, 'now-root' AS name")
    with pytest.raises(DriverError, match=r"also deleted 1 row\(s\) whose key it has.*rolled "
                                          r"back"):
        harness.write("supabase.writer", pg.connection(), schema=pg.schema, table="rc_node",
                      write_mode="replace", primary_key="id")
    assert _rows(pg, "rc_node") == [(1, 2, "leaf"), (2, None, "root")]
    assert _rows(pg, "rc_item") == [(100, 1)]


def test_sql_replace_without_a_not_null_column_says_it_must_be_in_the_input(
        pg: PgTarget, harness: Harness) -> None:
    """A review: a NOT NULL column without a default that the input lacks failed a replace of
    rows that all exist, with PostgreSQL's "null value in column" only, while the columns
    event said it was kept: PostgreSQL checks the row it would insert first."""
    t = pg.table("rc_required")
    pg.execute(f"DROP TABLE IF EXISTS {t}",
               f"CREATE TABLE {t} (code text PRIMARY KEY, ext text NOT NULL UNIQUE, note text)",
               f"INSERT INTO {t} VALUES ('a', 'E1', 'n')")
    harness.upstream("SELECT 'a' AS code, 'N1' AS note")
    with pytest.raises(DriverError, match=r"The input has no column 'ext', which .* declares "
                                          r"NOT NULL without a default"):
        harness.write("supabase.writer", pg.connection(), schema=pg.schema,
                      table="rc_required", write_mode="replace", primary_key="code")
    assert _rows(pg, "rc_required") == [("a", "E1", "n")]
