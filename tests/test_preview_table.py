"""Previews and check samples as Dagster table metadata: typed, JSON-safe, masked, cut."""

from __future__ import annotations

import dagster as dg
import duckdb
from dagster._serdes import deserialize_value, serialize_value

from osiris_dagster.core.masking import MASK, Masker
from osiris_dagster.dagster_layer.assets import PREVIEW_CELL_CHARS, rows_table

SECRET = "Kp3-preview-secret-77"


def _preview(sql: str, masker: Masker) -> dg.TableMetadataValue:
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS {sql}")
    types = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() "
                             "WHERE table_name = 't'").fetchall())
    cur = con.execute("SELECT * FROM t LIMIT 10")
    names = [d[0] for d in cur.description]
    return rows_table(names, cur.fetchall(), types, masker)


def test_every_duckdb_type_becomes_a_json_safe_typed_record() -> None:
    value = _preview("""
        SELECT 12.50::DECIMAL(18,2) AS amount, DATE '2026-01-03' AS d,
               TIMESTAMP '2026-01-03 04:05:06' AS ts, TIME '07:08:09' AS t,
               '\\x00\\xFFab'::BLOB AS b, [1, 2] AS l, {'k': 'v', 'n': 1} AS s,
               MAP {'a': 1} AS m, 18446744073709551615::UBIGINT AS big, 7::INTEGER AS i,
               'nan'::DOUBLE AS nan, 1.5::DOUBLE AS f, true AS ok, NULL::VARCHAR AS none,
               uuid '00000000-0000-0000-0000-000000000001' AS u, INTERVAL 2 DAY AS iv
    """, Masker())
    (row,) = [r.data for r in value.records]
    assert row["amount"] == "12.50" and row["d"] == "2026-01-03"
    assert row["ts"] == "2026-01-03T04:05:06" and row["t"] == "07:08:09"
    assert row["b"] == "\\x00\\xFFab"
    assert row["l"] == "[1, 2]" and row["s"] == '{"k": "v", "n": 1}'
    assert row["big"] == "18446744073709551615"  # beyond what a JSON number keeps
    assert (row["i"], row["f"], row["ok"], row["none"]) == (7, 1.5, True, None)
    assert row["nan"] == "nan" and row["u"].endswith("0001") and isinstance(row["iv"], str)
    assert isinstance(row["m"], str)
    assert [(c.name, c.type) for c in value.schema.columns][:3] == [
        ("amount", "DECIMAL(18,2)"), ("d", "DATE"), ("ts", "TIMESTAMP")]
    assert deserialize_value(serialize_value(value)) == value  # storable in the event log


def test_secrets_are_masked_before_long_text_is_cut() -> None:
    masker = Masker()
    masker.add([SECRET])
    pad = "x" * (PREVIEW_CELL_CHARS - 10)  # the secret straddles the cut
    value = _preview(f"SELECT '{pad}{SECRET}' AS long, '{SECRET}' AS plain, "
                     f"{{'password': 'abcd1234', 'user': 'u'}} AS creds, "
                     f"['{SECRET}'] AS l", masker)
    (row,) = [r.data for r in value.records]
    assert row["long"].startswith(pad) and SECRET[:6] not in row["long"]
    assert len(row["long"]) <= PREVIEW_CELL_CHARS
    assert row["plain"] == MASK and SECRET not in row["l"]
    assert "abcd1234" not in row["creds"] and '"user": "u"' in row["creds"]


def test_dates_and_times_are_shown_as_duckdb_keeps_them() -> None:
    """Python's types showed infinity as 9999-12-31 / 0001-01-01 and cut nanoseconds: the
    preview and check samples showed other values than the table holds."""
    from osiris_dagster.runtime.python_rows import first_rows

    con = duckdb.connect()
    con.execute("""CREATE TABLE t AS SELECT 'infinity'::DATE AS d,
                   '-infinity'::TIMESTAMP AS ts, TIMESTAMP_NS '2026-01-03 04:05:06.123456789'
                   AS ns, TIME '24:00:00' AS t, DATE '0044-03-15' - INTERVAL 100 YEAR AS bc""")
    types = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() "
                             "WHERE table_name = 't'").fetchall())
    names, rows = first_rows(con, "SELECT * FROM t", 10, shown=True)
    (row,) = [r.data for r in rows_table(names, rows, types, Masker()).records]
    assert row == {"d": "infinity", "ts": "-infinity", "ns": "2026-01-03 04:05:06.123456789",
                   "t": "24:00:00", "bc": "0057-03-15 (BC) 00:00:00"}
