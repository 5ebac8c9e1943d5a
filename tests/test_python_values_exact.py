"""Values cross between steps and hand-written assets exactly, or fail naming the column."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime.python_values import (
    InexactValueError,
    UnsupportedTypeError,
    read_table,
    write_value,
)
from osiris_dagster.runtime.session import Session

from .helpers import failure_description
from .test_mixed_assets import (
    ENRICHED,
    ORDERS,
    materialise,
    mixed_defs,
    orders_asset,
    pipeline,  # noqa: F401 - a fixture
    session_rows,
)

HUGE_MAX = 2**127 - 1
UHUGE_MAX = 2**128 - 1
BIG = Decimal("12345678901234567890123456.1234567891")


@pytest.fixture
def session(tmp_path: Path) -> Session:
    return Session(Settings.from_env(str(tmp_path / "s")), "run1")


def _step_table(session: Session, query: str, table: str = "t") -> None:
    con = session.open_workspace_connection()
    try:
        con.execute(f'CREATE TABLE {session.table_prefix}."{table}" AS {query}')
    finally:
        con.close()


def _pandas(session: Session, table: str = "t") -> pd.DataFrame:
    return read_table(session.location, table, pd.DataFrame, session.settings)


def _rows(session: Session, table: str) -> list[tuple]:
    con = session.open_workspace_connection()
    try:
        return con.execute(f'SELECT * FROM {session.table_prefix}."{table}"').fetchall()
    finally:
        con.close()


# -- 1. a step's table as a pandas DataFrame ---------------------------------------------------
def test_pandas_gets_decimals_exactly_as_arrow_decimals(session: Session) -> None:
    _step_table(session, f"SELECT * FROM (VALUES (1, {BIG}::DECIMAL(38,10), 0.1::DECIMAL(4,1)),"
                         " (2, NULL, 2.5)) v(k, big, small)")
    frame = _pandas(session)
    assert list(frame.columns) == ["k", "big", "small"]
    assert frame["big"].dtype == pd.ArrowDtype(pa.decimal128(38, 10))
    assert frame["small"].dtype == pd.ArrowDtype(pa.decimal128(4, 1))
    assert frame["big"].tolist()[0] == BIG and pd.isna(frame["big"].tolist()[1])
    assert frame["small"].sum() == Decimal("2.6")  # exact, not 2.6000000000000001
    assert (frame["small"] > Decimal("1")).tolist() == [False, True]
    assert frame["k"].dtype == "int32"  # the common types stay as rel.df() gives them


def test_pandas_gets_hugeints_as_ints(session: Session) -> None:
    _step_table(session, f"SELECT * FROM (VALUES ({HUGE_MAX}::HUGEINT, 5::HUGEINT, "
                         f"{UHUGE_MAX}::UHUGEINT, 7::UHUGEINT, 1::HUGEINT), "
                         "(-3, NULL, NULL, 8, 2)) v(huge, small, uhuge, usmall, total)")
    frame = _pandas(session)
    assert frame["huge"].tolist() == [HUGE_MAX, -3]  # Python ints, not 1.7e38
    assert frame["uhuge"].tolist() == [UHUGE_MAX, None]
    assert frame["small"].dtype == "Int64" and frame["small"].tolist() == [5, pd.NA]
    assert frame["usmall"].dtype == "uint64" and frame["total"].dtype == "int64"


@pytest.mark.parametrize("kind", ["HUGEINT", "UHUGEINT"])
def test_arrow_and_polars_refuse_hugeints_of_39_digits(session: Session, kind: str) -> None:
    """DuckDB gives Arrow a (U)HUGEINT as decimal128(38, 0): a 39-digit value made an invalid
    decimal (HUGEINT) or came back negative (UHUGEINT above 2**127)."""
    import polars as pl

    big = 2**127 - 1 if kind == "HUGEINT" else 2**128 - 1
    _step_table(session, f"SELECT {big}::{kind} AS n UNION ALL SELECT 7::{kind}")
    for load_type in (pa.Table, pa.RecordBatchReader, pl.DataFrame):
        with pytest.raises(InexactValueError, match=rf"column 'n' \({kind}\) holds values of "
                                                    r"39 digits"):
            read_table(session.location, "t", load_type, session.settings)
    assert sorted(_pandas(session)["n"].tolist()) == [7, big]  # exact Python ints there
    _step_table(session, f"SELECT {10**37}::{kind} AS n", "t38")
    assert read_table(session.location, "t38", pa.Table, session.settings).column(
        "n").to_pylist() == [10**37]


def test_pandas_reads_nested_columns_of_plain_types(session: Session) -> None:
    """A LIST of VARCHAR or a STRUCT of INTEGER failed with DuckDB's 'This type is not nested
    so it doesn't have children' (the check for decimals inside nested columns)."""
    _step_table(session, "SELECT 1 AS id, ['a', 'b'] AS tags, {'k': 1} AS st, "
                         "MAP {'x': 2} AS m, [1, 2]::INTEGER[2] AS arr")
    frame = _pandas(session)
    assert list(frame["tags"][0]) == ["a", "b"] and frame["st"][0] == {"k": 1}
    assert frame["id"].tolist() == [1]


@pytest.mark.parametrize("query", [
    "SELECT [340282366920938463463374607431768211455::UHUGEINT] AS n",
    "SELECT {'x': 200000000000000000000000000000000000000::UHUGEINT} AS n",
    "SELECT [-170141183460469231731687303715884105727::HUGEINT] AS n"])
def test_arrow_refuses_hugeints_of_39_digits_inside_lists_and_structs(session: Session,
                                                                      query: str) -> None:
    """Only top-level (U)HUGEINT columns were checked: nested, [2**128-1] came back [-1]."""
    import polars as pl

    _step_table(session, query)
    for load_type in (pa.Table, pl.DataFrame):
        with pytest.raises(InexactValueError, match=r"column 'n' \(.*\) holds values of 39"):
            read_table(session.location, "t", load_type, session.settings)
    _step_table(session, "SELECT [5::HUGEINT, NULL] AS n, {'x': 7::UHUGEINT} AS s", "small")
    assert read_table(session.location, "small", pa.Table, session.settings).to_pylist() == [
        {"n": [Decimal(5), None], "s": {"x": Decimal(7)}}]


def test_a_bignum_column_is_named_for_pandas_arrow_and_polars(session: Session) -> None:
    """pandas failed with DuckDB's bare NotImplementedException; Arrow got opaque bytes."""
    import polars as pl

    _step_table(session, "SELECT 1 AS id, 123456789012345678901234567890123456789012::BIGNUM "
                         "AS big")
    for load_type in (pd.DataFrame, pa.Table, pa.RecordBatchReader, pl.DataFrame):
        with pytest.raises(UnsupportedTypeError, match=r"column\(s\) 'big' are BIGNUM"):
            read_table(session.location, "t", load_type, session.settings)


def test_polars_refuses_intervals_naming_the_column(session: Session) -> None:
    """polars failed with its own 'could not import from month_day_nano_interval type'."""
    import polars as pl

    _step_table(session, "SELECT 1 AS id, INTERVAL 3 DAY AS waited")
    with pytest.raises(UnsupportedTypeError, match=r"column\(s\) 'waited' are INTERVAL, which "
                                                   r"polars cannot take"):
        read_table(session.location, "t", pl.DataFrame, session.settings)
    # a name or an enum value that says INTERVAL is no interval
    _step_table(session, "SELECT 'INTERVAL'::ENUM('INTERVAL', 'x') AS e, {'INTERVAL': 1} AS s",
                "named")
    assert read_table(session.location, "named", pl.DataFrame, session.settings).shape == (1, 2)


def test_pandas_intervals_keep_months_or_fail_naming_the_column(session: Session) -> None:
    _step_table(session, "SELECT INTERVAL '2 days 3 hours' AS short, "
                         "INTERVAL '1 month 2 days' AS long")
    with pytest.raises(InexactValueError, match=r"column 'long' is an INTERVAL with months"):
        _pandas(session)
    _step_table(session, "SELECT INTERVAL '2 days 3 hours' AS short", "u")
    assert _pandas(session, "u")["short"].tolist() == [pd.Timedelta(days=2, hours=3)]
    assert read_table(session.location, "t", pa.Table, session.settings).column(
        "long").to_pylist()[0].months == 1


def test_pandas_gets_nested_decimals_exactly(session: Session) -> None:
    _step_table(session, "SELECT [0.1::DECIMAL(4,1), 0.2] AS xs, 1 AS k")
    frame = _pandas(session)
    assert list(frame.columns) == ["xs", "k"]
    assert list(frame["xs"].tolist()[0]) == [Decimal("0.1"), Decimal("0.2")]


# -- 2. a pandas index is data ------------------------------------------------------------------
def test_a_pandas_index_that_carries_data_becomes_columns(session: Session) -> None:
    orders = pd.DataFrame({"customer_id": [1, 2, 1], "region": ["n", "s", "n"],
                           "amount": [9.5, 3.0, 1.25]})
    assert write_value(session, "t", orders.groupby("customer_id")[["amount"]].sum())[1] == (
        ("customer_id", "BIGINT"), ("amount", "DOUBLE"))
    assert _rows(session, "t") == [(1, 10.75), (2, 3.0)]
    by_two = orders.groupby(["customer_id", "region"]).sum()
    assert [c for c, _ in write_value(session, "t", by_two)[1]] == [
        "customer_id", "region", "amount"]
    dated = pd.DataFrame({"v": [1, 2]}, index=pd.to_datetime(["2024-01-01", "2024-01-02"]))
    assert [c for c, _ in write_value(session, "t", dated)[1]] == ["index", "v"]
    # row labels are no data: an unnamed integer index, also after slicing, filtering, sorting
    for labels in (orders.iloc[1:], orders[orders.amount > 2], orders.sort_values("amount")):
        assert [c for c, _ in write_value(session, "t", labels)[1]] == [
            "customer_id", "region", "amount"]


def test_a_pandas_index_named_like_a_column_or_multiindex_columns_fail(
        session: Session) -> None:
    clash = pd.DataFrame({"customer_id": [1]}, index=pd.Index([5], name="customer_id"))
    with pytest.raises(InexactValueError, match=r"its index \(customer_id\) becomes columns, "
                                                r"but cannot insert customer_id"):
        write_value(session, "t", clash)
    wide = pd.DataFrame({"k": [1, 1], "amount": [1.0, 2.0]}).groupby("k").agg(
        {"amount": ["sum", "mean"]})
    with pytest.raises(InexactValueError, match=r"its columns are a MultiIndex \(\('amount', "
                                                r"'sum'\), \('amount', 'mean'\)\)"):
        write_value(session, "t", wide)


def test_a_step_reads_the_index_of_a_python_assets_dataframe(
        pipeline: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:  # noqa: F811
    indexed = orders_asset(lambda: pd.DataFrame(ORDERS).set_index("order_id"), False)
    result = materialise(mixed_defs(pipeline, tmp_path / "s", indexed), instance)
    assert result.success, failure_description(result)
    assert session_rows(tmp_path / "s", result.run_id, "enrich") == ENRICHED


# -- 3. a Python value's object columns are kept exactly, or refused ------------------------------
def test_object_decimals_are_stored_exactly(session: Session) -> None:
    write_value(session, "t", pd.DataFrame(
        {"c": [Decimal("NaN"), Decimal("0.1"), Decimal("12345678.9")]}))
    assert _rows(session, "t") == [(None,), (Decimal("0.1"),), (Decimal("12345678.9"),)]
    late = pd.DataFrame({"c": [None] * 3000 + [Decimal("0.1")]})  # beyond DuckDB's sample
    assert write_value(session, "t", late)[1] == (("c", "DECIMAL(1,1)"),)
    assert _rows(session, "t")[-1] == (Decimal("0.1"),)
    scales = [Decimal("0.1"), Decimal("12345678.123456789012345678901")]
    write_value(session, "t", pd.DataFrame({"c": scales}))
    assert [r[0] for r in _rows(session, "t")] == scales
    write_value(session, "t", pd.DataFrame({"c": [2**70, None, 3]}))  # as before: a HUGEINT
    assert _rows(session, "t") == [(2**70,), (None,), (3,)]


@pytest.mark.parametrize(("values", "error"), [
    ([9007199254740993, 0.5], r"column 'c' mixes float, int values .*outside of the range"),
    ([1, "two", 3.5, None], r"column 'c' mixes float, int, str values"),
    ([1.5, True], r"column 'c' would not be kept exactly: row 1 is True \(bool\), Arrow makes "
                  r"it 1.0"),
    ([Decimal("1234567890123456789012345678901234567890.5")],
     r"column 'c' holds decimals of 41 digits"),
])
def test_object_columns_that_would_change_fail_naming_the_column(
        session: Session, values: list, error: str) -> None:
    with pytest.raises(InexactValueError, match=error):
        write_value(session, "t", pd.DataFrame({"c": pd.Series(values, dtype=object)}))


def test_dicts_are_kept_or_refused_naming_the_column(session: Session) -> None:
    with pytest.raises(InexactValueError, match=r"column 'c' would not be kept exactly: row 0 is "
                                                r"\{'a': 1\} \(dict\), DuckDB makes it "
                                                r"\{'a': '1'\}"):
        write_value(session, "t", pd.DataFrame({"c": [{"a": 1}, {"a": "x"}]}))
    write_value(session, "t", pd.DataFrame({"c": [{"a": 1}, {"b": 2}]}))
    assert _rows(session, "t") == [({"a": 1, "b": None},), ({"a": None, "b": 2},)]


def test_nanoseconds_are_kept_or_refused(session: Session) -> None:
    stamps = pd.to_datetime(["2020-01-01 00:00:00.123456789"]).tz_localize("UTC")
    write_value(session, "t", pd.DataFrame({"ts": stamps, "k": [1]}))
    con = session.open_workspace_connection()
    try:
        assert con.execute(f"SELECT epoch_ns(ts) FROM {session.table_prefix}.t").fetchall() == [
            (1577836800123456789,)]
    finally:
        con.close()
    for value in (pd.DataFrame({"d": [pd.Timedelta(nanoseconds=1500)]}),
                  pa.table({"d": pa.array([1500], pa.duration("ns"))}),
                  pa.table({"d": pa.array([1500], pa.duration("ns"))}).to_reader()):
        with pytest.raises(InexactValueError, match=r"column 'd' holds durations with "
                                                    r"nanoseconds"):
            write_value(session, "t", value)
    write_value(session, "t", pd.DataFrame({"d": [pd.Timedelta(microseconds=15)]}))
    assert _rows(session, "t") == [(pd.Timedelta(microseconds=15).to_pytimedelta(),)]


def test_pandas_nan_is_null_and_arrow_nan_stays_nan(session: Session) -> None:
    write_value(session, "t", pd.DataFrame({"f": [1.0, np.nan]}))
    assert _rows(session, "t") == [(1.0,), (None,)]
    write_value(session, "t", pa.table({"f": [1.0, float("nan")]}))
    assert np.isnan(_rows(session, "t")[1][0])


# -- 4. names that differ only by case ----------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda names: pd.DataFrame([list(range(len(names)))], columns=names),
    lambda names: pa.table({n: [i] for i, n in enumerate(names)}),
    lambda names: pa.table({n: [i] for i, n in enumerate(names)}).to_reader(),
])
def test_column_names_differing_by_case_fail_naming_them(session: Session, make) -> None:
    with pytest.raises(InexactValueError, match=r"it has the columns 'Col' and 'col': DuckDB's "
                                                r"column names are case-insensitive"):
        write_value(session, "t", make(["x", "Col", "col"]))
    with pytest.raises(InexactValueError, match=r"it has the column 'x' twice"):
        write_value(session, "t", pd.DataFrame([[1, 2]], columns=["x", "x"]))


def test_a_step_fails_naming_the_asset_and_the_colliding_columns(
        pipeline: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:  # noqa: F811
    clashing = orders_asset(lambda: pd.DataFrame({**ORDERS, "Amount": [1, 2, 3]}), False)
    result = materialise(mixed_defs(pipeline, tmp_path / "s", clashing), instance)
    assert not result.success
    message = failure_description(result)
    assert "step 'enrich'" in message and "asset 'raw/orders' as df_orders" in message
    assert "it has the columns 'amount' and 'Amount'" in message


# -- times and dates that pandas, Arrow or polars would change ----------------------------------
def _every_type(session: Session) -> list:
    import polars as pl

    return [pd.DataFrame, pa.Table, pa.RecordBatchReader, pl.DataFrame]


def test_infinite_timestamps_and_dates_fail_naming_the_column(session: Session) -> None:
    """pandas got the largest timestamp (year 294247) for infinity, Arrow and polars its raw
    number; an infinite DATE failed in pandas naming no column."""
    for kind in ("TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMPTZ", "DATE"):
        _step_table(session, f"SELECT 1 AS id, 'infinity'::{kind} AS until, "
                             f"['-infinity'::{kind}] AS ends", f"inf_{kind}")
        for load_type in _every_type(session):
            with pytest.raises(InexactValueError, match=r"column 'until' .*infinit"):
                read_table(session.location, f"inf_{kind}", load_type, session.settings)
        _step_table(session, f"SELECT ['-infinity'::{kind}] AS ends", f"nested_{kind}")
        with pytest.raises(InexactValueError, match=r"column 'ends' .*infinit"):
            read_table(session.location, f"nested_{kind}", pd.DataFrame, session.settings)
    _step_table(session, "SELECT '2024-01-01'::DATE AS d, '2024-01-01 10:00'::TIMESTAMP AS t",
                "finite")
    assert _pandas(session, "finite")["t"].tolist() == [pd.Timestamp("2024-01-01 10:00")]


def test_time_ns_keeps_its_nanoseconds_in_pandas(session: Session) -> None:
    """rel.df() gave datetime.time, which has microseconds only: .123456789 became .123456."""
    _step_table(session, "SELECT '10:00:00.123456789'::TIME_NS AS at, "
                         "['10:00:00.000000001'::TIME_NS] AS ats")
    frame = _pandas(session)
    assert pa.array(frame["at"]).cast(pa.int64()).to_pylist() == [36_000_123_456_789]
    nested = pa.array(frame["ats"])
    assert nested.flatten().cast(pa.int64()).to_pylist() == [36_000_000_000_001]


def test_time_24_00_fails_where_arrow_or_polars_would_read_midnight(session: Session) -> None:
    """Arrow read TIME '24:00:00' as 00:00:00, polars as NULL."""
    import polars as pl

    _step_table(session, "SELECT '24:00:00'::TIME AS closes, '10:00'::TIME AS opens")
    for load_type in (pa.Table, pa.RecordBatchReader, pl.DataFrame):
        with pytest.raises(InexactValueError, match=r"column 'closes' .*24:00:00"):
            read_table(session.location, "t", load_type, session.settings)
    assert _pandas(session)["closes"].tolist() == ["24:00:00"]  # pandas keeps its text
    _step_table(session, "SELECT '24:00:00'::TIME_NS AS closes", "ns")
    with pytest.raises(InexactValueError, match=r"column 'closes' .*24:00:00"):
        _pandas(session, "ns")


def test_time_with_time_zone_and_bit_fail_naming_the_column(session: Session) -> None:
    """Arrow and polars dropped a TIMETZ's offset (10:00+02 became 10:00), pandas failed naming
    no column; a BIT reached all three as DuckDB's internal bytes."""
    _step_table(session, "SELECT '10:00:00+02'::TIMETZ AS at, '0101'::BIT AS flags")
    for load_type in _every_type(session):
        with pytest.raises(InexactValueError, match=r"column\(s\) 'at' .*TIME WITH TIME ZONE"):
            read_table(session.location, "t", load_type, session.settings)
    _step_table(session, "SELECT '0101'::BIT AS flags", "bits")
    for load_type in _every_type(session):
        with pytest.raises(InexactValueError, match=r"column\(s\) 'flags' .*BIT"):
            read_table(session.location, "bits", load_type, session.settings)
