"""Defects an independent review found in the CSV extractor and writer, each run on real files:
integers past 64 bits made DOUBLE, ``header: N`` past the end of the file, delimiters that
pandas' NA strings contain, ``~name`` paths, header names that differ only in case, and an
output ``path`` that names a directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.csv import extractor as csv_extractor
from osiris_dagster.drivers.csv import writer as csv_writer
from osiris_dagster.drivers.csv.extractor import PANDAS_NA_VALUES
from osiris_dagster.runtime.session import Session

from .conftest import EXTRACTOR_DEFAULTS, ExtractFn, Table, WorkspaceFactory, WriteFn
from .test_csv_extractor import put
from .test_csv_na_values import assert_reads_like_pandas
from .test_csv_types import run_extract_then_write

Upstream = Callable[..., None]


# -- 1. integers past 64 bits ---------------------------------------------------------------------
@pytest.mark.parametrize("big", [
    "100000000000000000000", "10000000000000000000", "9223372036854775808",
    "-9223372036854775809", "123456789012345678901234567890123456789012",
])
def test_an_integer_past_64_bits_keeps_its_column_text_and_is_written_as_read(
        session: Session, data_dir: Path, extract: ExtractFn, big: str) -> None:
    """pandas keeps such a column exactly (object or uint64) and writes it back as read; a
    DOUBLE column wrote `1.0` and `1e+20`."""
    source = put(data_dir, "big.csv", f"amt,id\n5,1\n7,{big}\n")
    table = extract(path="big.csv")
    assert table.types == {"amt": "BIGINT", "id": "VARCHAR"}
    assert table.rows == [(5, "1"), (7, big)]
    _, text = run_extract_then_write(session, source, data_dir / "out.csv")
    assert text == source.read_text()


def test_a_float_column_with_such_an_integer_keeps_it_too(extract: ExtractFn,
                                                          data_dir: Path) -> None:
    """Beside decimals, the integer's text is kept as well (pandas: `1e+20`); written in
    decimal or exponent form it is a double's number and the column stays DOUBLE."""
    put(data_dir, "f.csv",
        "a,b,c\n1.5,1.5,1.5\n100000000000000000000,1e20,100000000000000000000.0\n")
    table = extract(path="f.csv")
    assert table.types == {"a": "VARCHAR", "b": "DOUBLE", "c": "DOUBLE"}
    assert table.rows[1] == ("100000000000000000000", 1e20, 1e20)


def test_a_float64_dtype_still_takes_an_integer_a_double_holds(extract: ExtractFn,
                                                               data_dir: Path) -> None:
    put(data_dir, "d.csv", "a\n1\n100000000000000000000\n")
    table = extract(path="d.csv", dtype={"a": "float64"})
    assert table.types == {"a": "DOUBLE"}
    assert table.rows == [(1.0,), (1e20,)]


def test_minus_zero_makes_an_integer_column_double_like_plus_five(
        session: Session, data_dir: Path, extract: ExtractFn) -> None:
    """`-0` (like `+5`) is an integer that BIGINT would not print back as written (`0`); a
    DOUBLE holds it, sign included, as it holds `+5`. pandas reads int 0 and writes `0`."""
    source = put(data_dir, "z.csv", "a\n1\n-0\n+5\n")
    table = extract(path="z.csv")
    assert table.types == {"a": "DOUBLE"}
    assert [str(r[0]) for r in table.rows] == ["1.0", "-0.0", "5.0"]
    _, text = run_extract_then_write(session, source, data_dir / "out.csv")
    assert text == "a\n1.0\n-0.0\n5.0\n"


# -- 2. header: N and skip_rows past the end of the file ------------------------------------------
@pytest.mark.parametrize(("config", "lines"), [
    ({"header": 10}, 4), ({"header": 4}, 4), ({"header": 2, "skip_rows": 2}, 2),
])
def test_a_header_row_past_the_end_of_the_file_fails(extract: ExtractFn, data_dir: Path,
                                                     config: dict[str, Any],
                                                     lines: int) -> None:
    """pandas: "Passed header=10 but only 4 lines in file"; an empty table would make a
    writer downstream replace its output with an empty file."""
    put(data_dir, "s.csv", "a,b\n1,2\n\n3,4\n5,6\n")
    with pytest.raises(DriverError) as err:
        extract(path="s.csv", **config)
    text = str(err.value)
    assert "s.csv" in text and f"`header: {config['header']}`" in text
    assert f"only {lines} rows" in text


def test_the_last_row_as_header_gives_its_columns_and_no_rows(extract: ExtractFn,
                                                              data_dir: Path) -> None:
    put(data_dir, "s.csv", "a,b\n1,2\n3,4\n5,6\n")
    table = extract(path="s.csv", header=3)
    assert table.columns == ["5", "6"] and table.rows == []


@pytest.mark.parametrize("skip_rows", [4, 10])
def test_skip_rows_past_the_end_is_an_empty_file_as_in_osiris(extract: ExtractFn,
                                                              data_dir: Path,
                                                              skip_rows: int) -> None:
    """pandas raises EmptyDataError ("No columns to parse from file"), as for a 0-byte file,
    and Osiris turns that into an empty DataFrame: the table of an empty file."""
    put(data_dir, "s.csv", "a,b\n1,2\n3,4\n5,6\n")
    table = extract(path="s.csv", skip_rows=skip_rows)
    assert table.columns == ["_empty"] and table.rows == []


# -- 3. delimiters that pandas' NA strings contain ------------------------------------------------
@pytest.mark.parametrize("delimiter", [" ", "/", ".", "-", "#", "N"])
def test_delimiters_inside_default_na_strings_read_like_pandas(extract: ExtractFn,
                                                               data_dir: Path,
                                                               delimiter: str) -> None:
    """An NA string holding the delimiter can only be a quoted field, which pandas reads as
    NA too; DuckDB refused such a NULL string ("DELIMITER must not appear in the NULL
    specification")."""
    d = delimiter
    rows = "".join(f'{i}{d}{"x" if d in m else m}{d}"{m}"{d}{i}\n'
                   for i, m in enumerate(PANDAS_NA_VALUES))
    content = f"i{d}bare{d}quoted{d}k\n{rows}99{d}x{d}x{d}99\n"
    assert_reads_like_pandas(extract, data_dir, content, delimiter=d)
    table = extract(path="f.csv", delimiter=d)
    assert table.types == {"i": "BIGINT", "bare": "VARCHAR", "quoted": "VARCHAR", "k": "BIGINT"}


@pytest.mark.parametrize("keep_default_na", [True, False])
def test_a_na_values_entry_holding_the_delimiter_is_null_quoted_as_pandas_reads_it(
        extract: ExtractFn, data_dir: Path, keep_default_na: bool) -> None:
    """As the defaults are: a self-review found `N/A` NULL as a default but an error when
    written in `na_values`."""
    content = 'a/b\n1/"x/y"\n2/z\n'
    assert_reads_like_pandas(extract, data_dir, content, delimiter="/", na_values=["x/y"],
                             keep_default_na=keep_default_na)
    assert extract(path="f.csv", delimiter="/", na_values=["x/y"],
                   keep_default_na=keep_default_na).rows == [(1, None), (2, "z")]


# -- 4. paths starting with ~ ---------------------------------------------------------------------
def test_a_file_named_with_a_leading_tilde_is_read_and_written(
        extract: ExtractFn, upstream: Upstream, write: WriteFn, data_dir: Path,
        workspace: WorkspaceFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """`~tilde.csv` names no user's home: the file of that name (pathlib raised "Could not
    determine home directory")."""
    put(data_dir, "~tilde.csv", "a\n1\n")
    assert extract(path="~tilde.csv").rows == [(1,)]
    upstream("SELECT 2 AS a")
    write(path="~out.csv")
    assert (data_dir / "~out.csv").read_text() == "a\n2\n"
    monkeypatch.chdir(data_dir)  # no base_dir: the working directory
    ws = workspace()
    csv_extractor.run(ws, {**EXTRACTOR_DEFAULTS, "path": "~tilde.csv"}, [])
    with pytest.raises(DriverError, match="CSV file not found: .*~missing.csv"):
        csv_extractor.run(ws, {**EXTRACTOR_DEFAULTS, "path": "~missing.csv"}, [])


def test_a_path_in_the_home_directory_still_expands(extract: ExtractFn, data_dir: Path,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    put(home, "x.csv", "a\n3\n")
    assert extract(path="~/x.csv").rows == [(3,)]


# -- 5. header names that differ only in case -----------------------------------------------------
def test_names_differing_only_in_case_are_renamed_in_file_order_and_reported(
        extract: ExtractFn, data_dir: Path, session: Session) -> None:
    put(data_dir, "c.csv", "id,ID,Name,name\n1,2,3,4\n")
    table = extract(path="c.csv")
    assert table.columns == ["id", "ID.1", "Name", "name.1"]  # the file's order
    assert table.rows == [(1, 2, 3, 4)]
    renamed = {"ID": "ID.1", "name": "name.1"}
    assert table.result.extra_metadata["columns_renamed"] == renamed
    events = [e["renamed"] for e in session.read_events() if e["event"] == "columns_renamed"]
    assert events == [renamed]


def test_a_header_only_file_reports_its_renamed_columns_too(extract: ExtractFn,
                                                            data_dir: Path) -> None:
    put(data_dir, "h.csv", "a,A\n")
    table: Table = extract(path="h.csv")
    assert table.columns == ["a", "A.1"]
    assert table.result.extra_metadata["columns_renamed"] == {"A": "A.1"}


def test_names_pandas_gives_too_are_not_reported(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "d.csv", "a,a,\n1,2,3\n")
    table = extract(path="d.csv")
    assert table.columns == ["a", "a.1", "Unnamed: 2"]
    assert "columns_renamed" not in table.result.extra_metadata


# -- 6. an output path that names a directory ----------------------------------------------------
@pytest.mark.parametrize("path", ["newdir/", "sub/newdir/", "newdir/."])
def test_an_output_path_naming_a_directory_fails(upstream: Upstream, write: WriteFn,
                                                 data_dir: Path, path: str) -> None:
    upstream("SELECT 1 AS a")
    with pytest.raises(DriverError, match="`path` .* names a directory"):
        write(path=path)
    assert not (data_dir / "newdir").exists() and not (data_dir / "sub").exists()


def test_the_writer_options_refuse_it_before_any_work() -> None:
    with pytest.raises(DriverError, match="names a directory"):
        csv_writer.Options.from_config({"path": "out/"})
