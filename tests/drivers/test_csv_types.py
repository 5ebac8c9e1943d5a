"""Column types decided by every row, not by a sample: a value past DuckDB's 20,480-row sample
must never be changed silently (issue 17, item 1).

Each file has more rows than DuckDB's sample, with the contradicting value at several positions
after the first 20,480 rows (DuckDB's sniffer may sample from several places of a file). The
result must equal the result for the same rows with the contradicting ones first (inside any
sample), and the CSV written back must hold the contradicting values exactly.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.base import DriverResult
from osiris_dagster.drivers.csv import extractor as csv_extractor
from osiris_dagster.drivers.csv import types as ct
from osiris_dagster.drivers.csv import writer as csv_writer
from osiris_dagster.runtime.session import Session
from osiris_dagster.runtime.workspace import StepWorkspace

from .conftest import EXTRACTOR_DEFAULTS, WRITER_DEFAULTS, ExtractFn, Table

ROWS = 30_000
LATE = (20_481, 24_000, 27_777, ROWS)  # 1-based data rows holding the contradicting value


@dataclass(frozen=True)
class Case:
    name: str
    normal: Callable[[int], str]
    late: str
    kind: str  # the column type the whole file calls for
    late_value: Any  # the late value as read back from the table
    late_text: str  # the late value as csv_writer writes it
    parse_dates: bool = False


CASES = [
    Case("int_to_decimal", str, "19.99", "DOUBLE", 19.99, "19.99"),
    Case("leading_zeros", lambda i: str(i + 1000), "00501", "VARCHAR", "00501", "00501"),
    Case("boolean_spelling", lambda i: ("true", "False")[i % 2], "yes", "VARCHAR", "yes", "yes"),
    Case("hex_integer", str, "0x1F", "VARCHAR", "0x1F", "0x1F"),
    Case("exponent", str, "1e3", "DOUBLE", 1000.0, "1000.0"),
    # an integer past BIGINT that a double holds: text, never DOUBLE (which wrote 1e+20, 1.0)
    Case("integer_past_64_bits", str, "100000000000000000000", "VARCHAR",
         "100000000000000000000", "100000000000000000000"),
    # more significant digits than a double holds: a DOUBLE would round them
    Case("long_fraction", lambda i: f"{i}.25", "0.12345678901234567890", "VARCHAR",
         "0.12345678901234567890", "0.12345678901234567890"),
    Case("long_pi", lambda i: f"{i}.25", "3.14159265358979323846", "VARCHAR",
         "3.14159265358979323846", "3.14159265358979323846"),
    Case("long_both_sides", lambda i: f"{i}.25", "123456789.123456789", "VARCHAR",
         "123456789.123456789", "123456789.123456789"),
    Case("long_exponent", lambda i: f"{i}.25", "1.2345678901234567890e-5", "VARCHAR",
         "1.2345678901234567890e-5", "1.2345678901234567890e-5"),
    # 17 digits, but exactly the double's own shortest text: nothing is rounded
    Case("long_but_exact", lambda i: f"{i}.25", "0.30000000000000004", "DOUBLE",
         0.30000000000000004, "0.30000000000000004"),
    Case("date_to_timestamp", lambda i: f"2024-03-{1 + i % 28:02d}", "2024-03-05 17:45:00",
         "TIMESTAMP", dt.datetime(2024, 3, 5, 17, 45), "2024-03-05 17:45:00", True),
    Case("naive_to_aware", lambda i: f"2024-03-{1 + i % 28:02d} 10:00:00",
         "2024-06-01 12:00:00+02:00", "VARCHAR", "2024-06-01 12:00:00+02:00",
         "2024-06-01 12:00:00+02:00", True),
    Case("aware_to_naive", lambda i: f"2024-03-{1 + i % 28:02d} 10:00:00+01:00",
         "2024-06-01 12:00:00", "VARCHAR", "2024-06-01 12:00:00", "2024-06-01 12:00:00", True),
]


def rows_for(case: Case) -> list[tuple[int, str]]:
    return [(n, case.late if n in LATE else case.normal(n)) for n in range(1, ROWS + 1)]


def write_csv(path: Path, rows: list[tuple[int, str]]) -> Path:
    path.write_text("n,v\n" + "".join(f"{n},{v}\n" for n, v in rows), encoding="utf-8")
    return path


def by_n(table: Table) -> dict[int, Any]:
    return {row[0]: row[1] for row in table.rows}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_late_value_gives_the_type_of_the_whole_file(extract: ExtractFn, data_dir: Path,
                                                     case: Case) -> None:
    rows = rows_for(case)
    write_csv(data_dir / "late.csv", rows)
    late = extract(path="late.csv", parse_dates=case.parse_dates)
    assert late.types == {"n": "BIGINT", "v": case.kind}
    values = by_n(late)
    assert len(values) == ROWS
    assert all(values[n] == case.late_value for n in LATE)

    # the same rows with the contradicting ones first, where any sample sees them
    early = [r for r in rows if r[0] in LATE] + [r for r in rows if r[0] not in LATE]
    write_csv(data_dir / "early.csv", early)
    first = extract(path="early.csv", parse_dates=case.parse_dates)
    assert first.types == late.types
    assert by_n(first) == values


def run_extract_then_write(session: Session, source: Path, target: Path,
                           **config: Any) -> tuple[DriverResult, str]:
    """csv_extractor (step `up`) -> csv_writer, as a pipeline runs them."""
    with StepWorkspace(session, pipeline_name="p", step_id="up", output_table="up") as ws:
        csv_extractor.run(ws, {**EXTRACTOR_DEFAULTS, "path": str(source), **config}, [])
    with StepWorkspace(session, pipeline_name="p", step_id="w", output_table="w") as ws:
        inputs = [ws.add_upstream("up", "df_up", session.db_path, "up", ["input_df"])]
        result = csv_writer.run(ws, {**WRITER_DEFAULTS, "path": str(target)}, inputs)
    return result, target.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_written_csv_keeps_the_late_values(session: Session, data_dir: Path,
                                           case: Case) -> None:
    source = write_csv(data_dir / "late.csv", rows_for(case))
    result, text = run_extract_then_write(session, source, data_dir / "out.csv",
                                          parse_dates=case.parse_dates)
    assert result.rows_written == ROWS
    out = {int(r["n"]): r["v"] for r in csv.DictReader(io.StringIO(text))}
    assert all(out[n] == case.late_text for n in LATE)
    if case.kind == "VARCHAR":  # text columns come back byte for byte
        assert text == source.read_text(encoding="utf-8")


def test_every_value_kind_at_once_round_trips(session: Session, data_dir: Path) -> None:
    """The issue's file: 25,000 integer-looking rows, then `19.99,00501,yes,0x1F`."""
    body = "".join(f"{i},{i + 1000},{('true', 'false')[i % 2]},{i}\n" for i in range(25_000))
    source = data_dir / "mixed.csv"
    source.write_text("price,zip,flag,hex\n" + body + "19.99,00501,yes,0x1F\n")
    _, text = run_extract_then_write(session, source, data_dir / "out.csv")
    lines = text.splitlines()  # csv_writer sorts the columns by name, as Osiris does
    assert lines[0] == "flag,hex,price,zip"
    assert lines[-1] == "yes,0x1F,19.99,00501"
    assert lines[1:3] == ["true,0,0.0,1000", "false,1,1.0,1001"]


def test_several_columns_widen_at_different_rows_and_more_than_once(
        extract: ExtractFn, data_dir: Path, session: Session) -> None:
    """int -> DOUBLE -> text in one column, a sparse column typed by its first late value and
    widened by a later one, a date column made TIMESTAMP: the same result as a file with all
    those rows first."""
    head = "n,a,b,c,d\n"
    rows = {n: [str(n), str(n), "", f"2024-02-{1 + n % 28:02d}"] for n in range(1, ROWS + 1)}
    rows[21_000][0] = "2.5"
    rows[29_000][0] = "n/a?"
    rows[26_000][1] = "7.25"
    rows[23_000][2] = "7"
    rows[ROWS][3] = "2024-02-03 04:05:06"
    lines = {n: f"{n}," + ",".join(v) + "\n" for n, v in rows.items()}
    late_rows = sorted(lines)
    (data_dir / "late.csv").write_text(head + "".join(lines[n] for n in late_rows))
    moved = [21_000, 29_000, 22_000, 26_000, 23_000, ROWS]
    early_rows = moved + [n for n in late_rows if n not in moved]
    (data_dir / "early.csv").write_text(head + "".join(lines[n] for n in early_rows))
    late = extract(path="late.csv", parse_dates=True)
    assert late.types == {"n": "BIGINT", "a": "VARCHAR", "b": "DOUBLE", "c": "BIGINT",
                          "d": "TIMESTAMP"}
    early = extract(path="early.csv", parse_dates=True)
    assert early.types == late.types
    assert sorted(early.rows) == sorted(late.rows)
    assert {r[0]: r[1:] for r in late.rows}[21_000] == ("2.5", 21_000.0, None,
                                                        dt.datetime(2024, 2, 1))
    widened = [e for e in session.read_events() if e["event"] == "csv_type_widened"]
    assert {e["column"] for e in widened} == {"a", "b", "c", "d"}


def test_late_values_in_many_columns_cost_a_bounded_number_of_reads(
        extract: ExtractFn, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read stops at the first value that does not fit; after the third, the whole file is
    typed at once instead of once more per column (a file with 8 such columns took 9 reads)."""
    columns = 8
    late = ["2.5", "x", "00501", "1e3", "yes", "-", "0x1F", "7.25"]
    kinds = ["DOUBLE", "VARCHAR", "VARCHAR", "DOUBLE", "VARCHAR", "VARCHAR", "VARCHAR",
             "DOUBLE"]
    head = "n," + ",".join(f"c{k}" for k in range(columns)) + "\n"
    lines = [f"{n}," + ",".join(str(n + k) for k in range(columns)) + "\n"
             for n in range(1, ROWS)]
    last = f"{ROWS}," + ",".join(late) + "\n"
    (data_dir / "late.csv").write_text(head + "".join(lines) + last)
    (data_dir / "early.csv").write_text(head + last + "".join(lines))
    reads = []
    real = StepWorkspace.create_output

    def counted(self: StepWorkspace, select_sql: str, params: Any = None) -> int:
        reads.append(select_sql)
        return real(self, select_sql, params)

    monkeypatch.setattr(StepWorkspace, "create_output", counted)
    table = extract(path="late.csv")
    assert len(reads) == csv_extractor.WIDENINGS_BEFORE_WHOLE_FILE_TYPES + 1 == 4
    assert table.types == {"n": "BIGINT", **{f"c{k}": kinds[k] for k in range(columns)}}
    early = extract(path="early.csv")
    assert early.types == table.types
    assert sorted(early.rows) == sorted(table.rows)
    assert {r[0]: r[1:] for r in table.rows}[ROWS] == (
        2.5, "x", "00501", 1000.0, "yes", "-", "0x1F", 7.25)


def test_late_integer_too_precise_for_double_stays_text(extract: ExtractFn,
                                                        data_dir: Path) -> None:
    rows = [(n, f"{n}.5") for n in range(1, ROWS + 1)]
    rows[-1] = (ROWS, "9007199254740993")  # 2**53 + 1: a DOUBLE would make it ...992
    write_csv(data_dir / "p.csv", rows)
    table = extract(path="p.csv")
    assert table.types["v"] == "VARCHAR"
    assert by_n(table)[ROWS] == "9007199254740993"


def test_late_value_in_a_column_empty_in_the_sample(extract: ExtractFn, data_dir: Path) -> None:
    rows = [(n, "") for n in range(1, ROWS + 1)]
    rows[-1] = (ROWS, "42")
    write_csv(data_dir / "sparse.csv", rows)
    table = extract(path="sparse.csv")
    assert table.types == {"n": "BIGINT", "v": "BIGINT"}
    assert by_n(table)[ROWS] == 42


def test_all_empty_column_stays_text(extract: ExtractFn, data_dir: Path) -> None:
    write_csv(data_dir / "empty.csv", [(n, "") for n in range(1, 50)])
    assert extract(path="empty.csv").types == {"n": "BIGINT", "v": "VARCHAR"}


def test_limit_types_only_the_rows_read(extract: ExtractFn, data_dir: Path) -> None:
    rows = [(n, str(n)) for n in range(1, ROWS + 1)]
    rows[-1] = (ROWS, "oops")
    write_csv(data_dir / "lim.csv", rows)
    table = extract(path="lim.csv", limit=ROWS - 1)
    assert table.types == {"n": "BIGINT", "v": "BIGINT"}
    assert len(table.rows) == ROWS - 1


def test_parse_dates_column_with_a_late_non_date_names_file_line_and_column(
        extract: ExtractFn, data_dir: Path) -> None:
    rows = [(n, f"2024-01-{1 + n % 28:02d}") for n in range(1, ROWS + 1)]
    rows[LATE[1] - 1] = (LATE[1], "soon")
    write_csv(data_dir / "when.csv", rows)
    with pytest.raises(DriverError) as info:
        extract(path="when.csv", parse_dates=["v"])
    message = str(info.value)
    assert "when.csv" in message and f"line {LATE[1] + 1}" in message
    assert "'v'" in message and "'soon'" in message and "parse_dates" in message


def test_after_the_whole_file_typing_the_first_bad_value_is_still_the_one_named(
        extract: ExtractFn, data_dir: Path) -> None:
    """Three columns widened, then a dtype value that does not fit (line 22,001) before a
    parse_dates value that is no date (line 25,001): the error names the first, as it did
    when every late value cost a read of its own."""
    head = "n,a,b,c,d,e\n"
    rows = {n: [str(n), str(n), str(n), "2024-01-02", str(n)] for n in range(1, ROWS + 1)}
    for k, n in enumerate((21_000, 21_001, 21_002)):
        rows[n][k] = "x"
    rows[22_000][4] = "1.5"
    rows[25_000][3] = "bad"
    (data_dir / "bad.csv").write_text(
        head + "".join(f"{n}," + ",".join(v) + "\n" for n, v in rows.items()))
    with pytest.raises(DriverError) as info:
        extract(path="bad.csv", parse_dates=["d"], dtype={"e": "int64"})
    message = str(info.value)
    assert "line 22001" in message and "'e'" in message and "'1.5'" in message


def test_parse_dates_column_mixing_naive_and_aware_is_an_error(extract: ExtractFn,
                                                               data_dir: Path) -> None:
    rows = [(n, f"2024-01-{1 + n % 28:02d} 08:00:00") for n in range(1, ROWS + 1)]
    rows[LATE[2] - 1] = (LATE[2], "2024-01-02 08:00:00+05:30")
    write_csv(data_dir / "mixed.csv", rows)
    with pytest.raises(DriverError) as info:
        extract(path="mixed.csv", parse_dates=["v"])
    message = str(info.value)
    assert f"line {LATE[2] + 1}" in message and "'2024-01-02 08:00:00+05:30'" in message
    assert "offset" in message


def test_parse_dates_list_widens_date_to_timestamp(extract: ExtractFn, data_dir: Path) -> None:
    rows = [(n, f"2024-01-{1 + n % 28:02d}") for n in range(1, ROWS + 1)]
    rows[-1] = (ROWS, "2024-01-05 06:07:08.123456")
    write_csv(data_dir / "d.csv", rows)
    table = extract(path="d.csv", parse_dates=["v"])
    assert table.types["v"] == "TIMESTAMP"
    assert by_n(table)[ROWS] == dt.datetime(2024, 1, 5, 6, 7, 8, 123456)
    assert by_n(table)[1] == dt.datetime(2024, 1, 2)


def test_aware_values_keep_their_instant(extract: ExtractFn, data_dir: Path) -> None:
    rows = [(n, f"2024-03-{1 + n % 28:02d} 10:00:00Z") for n in range(1, ROWS + 1)]
    rows[-1] = (ROWS, "2024-06-01 12:00:00+02:00")
    write_csv(data_dir / "tz.csv", rows)
    table = extract(path="tz.csv", parse_dates=True)
    assert table.types["v"] == "TIMESTAMP WITH TIME ZONE"
    assert by_n(table)[ROWS] == dt.datetime(2024, 6, 1, 10, tzinfo=dt.UTC)


@pytest.mark.parametrize("odd", ["2024-12-31 24:00:00", "0000-01-01", "2024-06-01 12:00+12:99",
                                 "2024-06-01 12:00+99"])
def test_a_timestamp_the_cast_would_move_keeps_its_text_or_fails(
        extract: ExtractFn, data_dir: Path, odd: str) -> None:
    plain = "2024-06-01 12:00:00+02:00" if "+" in odd else "2024-06-01 12:00:00"
    write_csv(data_dir / "t.csv", [(1, plain), (2, odd)])
    table = extract(path="t.csv", parse_dates=True)
    assert table.types["v"] == "VARCHAR" and by_n(table)[2] == odd
    with pytest.raises(DriverError) as info:
        extract(path="t.csv", parse_dates=["v"])
    assert "line 3" in str(info.value) and repr(odd) in str(info.value)


# -- time zones (issue 17, item 2; the whole pipeline under several TZ values: test_timezones) --
def test_step_connection_time_zone_is_utc_whatever_the_host(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    with StepWorkspace(session, pipeline_name="p", step_id="s", output_table="s") as ws:
        assert ws.con.execute("SELECT current_setting('TimeZone')").fetchone()[0] == "UTC"


def test_writer_renders_instants_in_utc_whatever_the_connection_zone(
        session: Session, data_dir: Path, write: Any, upstream: Any) -> None:
    upstream("SELECT TIMESTAMPTZ '2024-06-01 12:00:00.5+02:00' AS at, "
             "CAST(NULL AS TIMESTAMPTZ) AS missing, TIMESTAMPTZ 'infinity' AS later")
    with StepWorkspace(session, pipeline_name="p", step_id="w", output_table="w") as ws:
        ws.con.execute("SET TimeZone = 'Asia/Kolkata'")  # a connection someone changed
        inputs = [ws.add_upstream("up", "df_up", session.db_path, "up", ["input_df"])]
        csv_writer.run(ws, {**WRITER_DEFAULTS, "path": str(data_dir / "tz.csv")}, inputs)
    assert (data_dir / "tz.csv").read_text() == (
        "at,later,missing\n2024-06-01 10:00:00.5+00:00,infinity,\n")


def test_column_names_like_the_internal_cast_columns(extract: ExtractFn, data_dir: Path) -> None:
    (data_dir / "names.csv").write_text("__osiris_cast_0,__OSIRIS_CAST_1\n1,2.5\n3,4\n")
    table = extract(path="names.csv")
    assert table.types == {"__osiris_cast_0": "BIGINT", "__OSIRIS_CAST_1": "DOUBLE"}
    assert table.rows == [(1, 2.5), (3, 4.0)]


def test_column_names_like_the_sample_typing_query_names(extract: ExtractFn,
                                                         data_dir: Path) -> None:
    # the sample is typed from one (name, v) row per value, casts named c0, c1, ...
    (data_dir / "names.csv").write_text("name,v,c0,c1,A,a\nx,1,2.5,true,,\ny,2,3,False,,7\n")
    table = extract(path="names.csv")
    assert table.types == {"name": "VARCHAR", "v": "BIGINT", "c0": "DOUBLE", "c1": "BOOLEAN",
                           "A": "VARCHAR", "a.1": "BIGINT"}
    assert table.rows == [("x", 1, 2.5, True, None, None), ("y", 2, 3.0, False, None, 7)]


def test_wide_file_gets_each_columns_own_type(extract: ExtractFn, data_dir: Path) -> None:
    kinds = [("BIGINT", "{}"), ("DOUBLE", "{}.5"), ("VARCHAR", "t{}"), ("BOOLEAN", "true"),
             ("DATE", "2024-01-{:02d}")]
    width = 300
    header = ",".join(f"c{i}" for i in range(width))
    rows = [",".join(kinds[i % 5][1].format(1 + r % 28) for i in range(width))
            for r in range(50)]
    (data_dir / "wide.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    table = extract(path="wide.csv", parse_dates=True)
    assert table.types == {f"c{i}": kinds[i % 5][0] for i in range(width)}


# Each rule's verdict on single values. The rules are CASE chains that test the cheap condition
# first; these pin what each accepts, so a reordering for speed cannot change a verdict.
VERDICTS = [
    ("BIGINT", "42", True), ("BIGINT", "-7", True), ("BIGINT", " 42 ", True),
    ("BIGINT", "0", True), ("BIGINT", "-0", False), ("BIGINT", "+5", False),
    ("BIGINT", "00501", False), ("BIGINT", "0x1F", False), ("BIGINT", "1_000", False),
    ("BIGINT", "19.99", False), ("BIGINT", "1e3", False), ("BIGINT", "abc", False),
    ("BIGINT", "9223372036854775807", True), ("BIGINT", "9223372036854775808", False),
    ("DOUBLE", "19.99", True), ("DOUBLE", " 0.5 ", True), ("DOUBLE", "+5", True),
    ("DOUBLE", ".5", True), ("DOUBLE", "1e3", True), ("DOUBLE", "-inf", True),
    ("DOUBLE", "Infinity", True), ("DOUBLE", "1e999", False), ("DOUBLE", "1e-400", False),
    ("DOUBLE", "0.30000000000000004", True), ("DOUBLE", "0.12345678901234567890", False),
    ("DOUBLE", "9007199254740993", False), ("DOUBLE", "007.5", False),
    ("DOUBLE", "1_0.5", False), ("DOUBLE", "0x10", False), ("DOUBLE", "nan", False),
    ("DOUBLE", "abc", False), ("DOUBLE", "-0", True),
    ("DOUBLE", "100000000000000000000", False), ("DOUBLE", " 10000000000000000000 ", False),
    ("DOUBLE", "-9223372036854775809", False), ("DOUBLE", "1e20", True),
    ("DOUBLE", "100000000000000000000.0", True), ("DOUBLE", "1000000000000000000", True),
    ("SMALLINT", "32767", True), ("SMALLINT", "32768", False), ("SMALLINT", " 12", True),
    ("DECIMAL(5,2)", "1.50", True), ("DECIMAL(5,2)", "1.239", False), ("DECIMAL(5,2)", "-.5", True),
    ("DATE", "2024-03-05", True), ("DATE", "0024-03-05", True), ("DATE", "10000-01-01", True),
    ("DATE", "0001-01-01 (BC)", True), ("DATE", "infinity", True), ("DATE", "-infinity", True),
    ("DATE", "2024-3-5", False), ("DATE", " 2024-03-05", False), ("DATE", "epoch", False),
    ("DATE", "2024-02-30", False), ("DATE", "2024-03-05 10:00", False), ("DATE", "20240305", False),
    ("TIMESTAMP", "2024-03-05 17:45", True), ("TIMESTAMP", "2024-03-05T17:45:00.5", True),
    ("TIMESTAMP", "2024-03-05", True), ("TIMESTAMP", "2024-03-05 17:45+02:00", False),
    ("TIMESTAMP", "epoch", False), ("TIMESTAMP", "12:00", False),
    ("TIMESTAMP", "2024-12-31 23:59:59.999999", True), ("TIMESTAMP", "0001-01-01 00:00", True),
    # what DuckDB's cast would move: hour 24 to the next day, year 0000 to 1 BC
    ("TIMESTAMP", "2024-12-31 24:00", False), ("TIMESTAMP", "2024-12-31 24:00:00", False),
    ("TIMESTAMP", "0000-01-01", False), ("TIMESTAMP", "0000-06-01 10:00", False),
    ("TIMESTAMP", "2024-03-05 17:60", False), ("TIMESTAMP", "2024-03-05 17:45:60", False),
    ("TIMESTAMPTZ", "2024-03-05 17:45+02:00", True), ("TIMESTAMPTZ", "2024-03-05 17:45Z", True),
    ("TIMESTAMPTZ", "2024-03-05 17:45", False), ("TIMESTAMPTZ", "now", False),
    ("TIMESTAMPTZ", "2024-03-05 17:45-23:59", True), ("TIMESTAMPTZ", "2024-03-05 17:45+0530", True),
    # offsets the cast reads as something else: +12:99 as +13:39, +99 as 99 hours
    ("TIMESTAMPTZ", "2024-03-05 17:45+12:99", False), ("TIMESTAMPTZ", "2024-03-05 17:45+99", False),
    ("TIMESTAMPTZ", "2024-03-05 17:45+24", False), ("TIMESTAMPTZ", "2024-03-05 17:45+24:00", False),
    ("TIMESTAMPTZ", "2024-03-05 17:45+00:60", False), ("TIMESTAMPTZ", "2024-12-31 24:00Z", False),
    ("TIMESTAMPTZ", "0000-01-01 10:00Z", False),
    ("BOOLEAN", "true", True), ("BOOLEAN", "False", True), ("BOOLEAN", "yes", False),
]


@pytest.mark.parametrize(("kind", "text", "expected"), VERDICTS,
                         ids=[f"{k}-{t.strip() or 'space'}" for k, t, _ in VERDICTS])
def test_each_rule_gives_its_verdict_value_by_value(kind: str, text: str,
                                                    expected: bool) -> None:
    inline = ct.faithful(kind, "v")
    precast = ct.faithful(kind, "v", cast="c")  # the typed read casts once, in an inner query
    gated = ct.gated_cast(kind, "v") or "NULL"  # the sample's typing skips casts bound to fail
    con = duckdb.connect()
    try:
        got = con.execute(
            f"SELECT {inline}, (SELECT {precast} FROM (SELECT v, TRY_CAST(v AS {kind}) AS c)), "
            f"(SELECT {precast} FROM (SELECT v, {gated} AS c)) FROM (SELECT ? AS v)",
            [text]).fetchone()
    finally:
        con.close()
    assert got == (expected, expected, expected)
