"""``keep_default_na``: the text pandas' default NA list would make NULL (``NA``, ``None``,
``null``, an empty field, ...) can be kept, as ``pandas.read_csv(keep_default_na=False)`` keeps it.

pandas is the reference: each case is read by the extractor and by ``pandas.read_csv`` with the
same options, and must give the same values and the same kind of column (text, number, boolean,
date). Where the extractor deliberately differs from pandas whatever this option says (a trailing
delimiter, integer columns with NULLs, ``DATE`` for date-only values), the test says so.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.csv import extractor as csv_extractor
from osiris_dagster.drivers.csv.extractor import PANDAS_NA_VALUES
from osiris_dagster.oml import validate_pipeline

from .conftest import ExtractFn

# every default NA string, quoted and not, next to text that only looks like one
NA_TEXT = "".join(f'{i},{m},"{m}",{i}\n' for i, m in enumerate(PANDAS_NA_VALUES))
MIXED = (
    "id,country,name,score,flag,note\n"
    "1,NA,None,1.5,True,null\n"
    '2,DE,"",,False,""\n'
    "3,na,n/a,2,true,  \n"
    "4,,NULL,NaN,,#N/A\n"
    "5, ,nan,-1.#IND,FALSE,<NA>\n"
    "6,US\n"  # a short row: the fields it lacks
)


def _kind(dtype: Any) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "date"
    return "text"


_KINDS = {"BOOLEAN": "bool", "BIGINT": "number", "DOUBLE": "number", "INTEGER": "number",
          "DATE": "date", "TIMESTAMP": "date", "TIMESTAMP WITH TIME ZONE": "date",
          "VARCHAR": "text"}


def _value(value: Any) -> Any:
    """A cell as a comparable Python value: None for every kind of missing, dates as dates."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp):
        return value.date() if value == value.normalize() else value.to_pydatetime()
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        return value.date()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def pandas_read(content: str, **config: Any) -> tuple[dict[str, str], list[tuple[Any, ...]]]:
    """``pandas.read_csv`` with the extractor's config translated: the column kinds and rows."""
    kwargs: dict[str, Any] = {"keep_default_na": config.get("keep_default_na", True),
                              "sep": config.get("delimiter", ",")}
    if "na_values" in config:
        kwargs["na_values"] = config["na_values"]
    if "dtype" in config:
        kwargs["dtype"] = config["dtype"]
    if "parse_dates" in config:
        kwargs["parse_dates"] = config["parse_dates"]
    if config.get("header") is False:
        kwargs["header"] = None
    if "skip_blank_lines" in config:
        kwargs["skip_blank_lines"] = config["skip_blank_lines"]
    if "comment" in config:
        kwargs["comment"] = config["comment"]
    frame = pd.read_csv(io.StringIO(content), **kwargs)
    rows = [tuple(_value(v) for v in row) for row in frame.astype(object).itertuples(index=False)]
    kinds = {str(name): _kind(dtype) for name, dtype in frame.dtypes.items()}
    for i, name in enumerate(kinds):  # booleans with NaN: object in pandas, BOOLEAN here
        values = {type(row[i]) for row in rows} - {type(None)}
        if kinds[name] == "text" and values == {bool}:
            kinds[name] = "bool"
    return kinds, rows


def assert_reads_like_pandas(extract: ExtractFn, data_dir: Path, content: str,
                             name: str = "f.csv", **config: Any) -> None:
    path = data_dir / name
    raw = content.encode()
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    table = extract(path=name, **config)
    kinds, rows = pandas_read(content, **config)
    assert {n: _KINDS[t] for n, t in table.types.items()} == kinds
    assert [tuple(_value(v) for v in row) for row in table.rows] == rows


# -- the option -----------------------------------------------------------------------------------
@pytest.mark.parametrize("na_values", [None, ["NA"], ["n/a", "-"], ["", "None"], [" "]])
def test_keep_default_na_false_reads_like_pandas(extract: ExtractFn, data_dir: Path,
                                                 na_values: list[str] | None) -> None:
    """Namibia (`NA`), a name `None`, `null`, an empty field (quoted or not) and a field a short
    row lacks are text; only `na_values` are NULL (`""` among them makes empty fields NULL)."""
    config: dict[str, Any] = {"keep_default_na": False}
    if na_values is not None:
        config["na_values"] = na_values
    assert_reads_like_pandas(extract, data_dir, MIXED, **config)
    assert_reads_like_pandas(extract, data_dir, "i,bare,quoted,n\n" + NA_TEXT, **config)


def test_country_codes_and_names_keep_their_text(extract: ExtractFn, data_dir: Path) -> None:
    (data_dir / "c.csv").write_text("code,name\nNA,Namibia\nDE,None\nNULL,null\n,\n")
    table = extract(path="c.csv", keep_default_na=False)
    assert table.types == {"code": "VARCHAR", "name": "VARCHAR"}
    assert table.rows == [("NA", "Namibia"), ("DE", "None"), ("NULL", "null"), ("", "")]
    default = extract(path="c.csv")  # the default stays pandas' default list
    assert default.rows == [(None, "Namibia"), ("DE", None), (None, None), (None, None)]
    assert extract(path="c.csv", keep_default_na=True).rows == default.rows


def test_the_default_list_is_pandas_own() -> None:
    from pandas._libs.parsers import STR_NA_VALUES
    assert set(PANDAS_NA_VALUES) == STR_NA_VALUES


def test_keep_default_na_true_reads_like_pandas(extract: ExtractFn, data_dir: Path) -> None:
    # (a column of only NA markers would be VARCHAR here, float64 in pandas: not this option's)
    content = MIXED.replace("None,1.5", "Bob,1")
    assert_reads_like_pandas(extract, data_dir, content)
    assert_reads_like_pandas(extract, data_dir, content, keep_default_na=True)
    assert_reads_like_pandas(extract, data_dir, content, na_values=["DE", "n/a "])


@pytest.mark.parametrize("content", [
    "a,b\n1,2\n,3\n",        # an empty field makes a numeric column text
    'a,b\n1,2\n"",3\n',      # a quoted empty field too
    "a,b\n1,2\n  ,3\n",      # and a field of spaces (a row, not a line of spaces)
    "a,b\n1,2\n3\n",         # and the field a short row lacks
    "a,b\n1.5,2\n,3\n",
    "a,b\nTrue,2\n,3\n",
])
def test_empty_fields_in_numeric_looking_columns(extract: ExtractFn, data_dir: Path,
                                                 content: str) -> None:
    assert_reads_like_pandas(extract, data_dir, content, keep_default_na=False)
    assert_reads_like_pandas(extract, data_dir, content, keep_default_na=False, na_values=["x"])
    assert_reads_like_pandas(extract, data_dir, content, keep_default_na=False, na_values=[""])
    assert_reads_like_pandas(extract, data_dir, content)


def test_with_dtype(extract: ExtractFn, data_dir: Path) -> None:
    content = "a,b,c\n1,NA,x\n,None,\n3\n"
    assert_reads_like_pandas(extract, data_dir, content, keep_default_na=False,
                             dtype={"a": "str", "b": "str"})
    # pandas' nullable Int64 reads an empty field as <NA>, also with keep_default_na off
    table = extract(path="f.csv", keep_default_na=False, dtype={"a": "Int64"})
    assert table.types["a"] == "BIGINT"
    assert [r[0] for r in table.rows] == [1, None, 3]
    # int64 cannot hold '' (pandas: "invalid literal for int()"): an error naming the line
    with pytest.raises(DriverError, match=r"column 'a' at line 3: cannot convert '' to `dtype` "
                                          r"'int64'"):
        extract(path="f.csv", keep_default_na=False, dtype={"a": "int64"})
    with pytest.raises(ValueError, match="invalid literal"):
        pd.read_csv(data_dir / "f.csv", keep_default_na=False, dtype={"a": "int64"})
    # the field a short row lacks, named at its line too
    with pytest.raises(DriverError, match=r"column 'b' at line 4: cannot convert ''"):
        extract(path="f.csv", keep_default_na=False, dtype={"b": "int64"},
                na_values=["NA", "None"])


def test_with_parse_dates(extract: ExtractFn, data_dir: Path) -> None:
    """pandas reads an empty field of a `parse_dates` column as NaT whatever keep_default_na
    says; other text stays an error here (pandas would leave the whole column text)."""
    content = 'd,n\n2024-01-31,NA\n,1\n"",2\n2024-02-29\n'
    (data_dir / "f.csv").write_text(content)
    table = extract(path="f.csv", keep_default_na=False, parse_dates=["d"])
    assert table.types == {"d": "DATE", "n": "VARCHAR"}
    assert table.rows == [(dt.date(2024, 1, 31), "NA"), (None, "1"), (None, "2"),
                          (dt.date(2024, 2, 29), "")]
    _, rows = pandas_read(content, keep_default_na=False, parse_dates=["d"])
    assert [tuple(_value(v) for v in r) for r in table.rows] == rows
    (data_dir / "g.csv").write_text("d\n2024-01-31\nNA\n")
    with pytest.raises(DriverError, match=r"column 'd' at line 3: 'NA' is not a date"):
        extract(path="g.csv", keep_default_na=False, parse_dates=["d"])
    # parse_dates: true types each column from its values: '' keeps a date column text
    table = extract(path="f.csv", keep_default_na=False, parse_dates=True)
    assert table.types == {"d": "VARCHAR", "n": "VARCHAR"}
    assert table.rows[1:3] == [("", "1"), ("", "2")]


def test_with_header_false_and_columns(extract: ExtractFn, data_dir: Path) -> None:
    content = "NA,1\nNone,\n,3\n"
    assert_reads_like_pandas(extract, data_dir, content, keep_default_na=False, header=False)
    table = extract(path="f.csv", keep_default_na=False, header=False, columns=["1"])
    assert table.rows == [("1",), ("",), ("3",)]


@pytest.mark.parametrize("skip_blank_lines", [True, False])
def test_blank_lines_and_lines_of_spaces(extract: ExtractFn, data_dir: Path,
                                         skip_blank_lines: bool) -> None:
    """A blank line kept by skip_blank_lines: false is a row of empty strings (pandas), a line
    of spaces a row of that text; both read from the copy without blank lines."""
    for content in ("a,b\n1,x\n\n2,NA\n \n3,y\n\n", "a\nx\n\n\"\"\nNA\n  \ny\n"):
        assert_reads_like_pandas(extract, data_dir, content, keep_default_na=False,
                                 skip_blank_lines=skip_blank_lines)
        assert_reads_like_pandas(extract, data_dir, content, keep_default_na=False,
                                 na_values=[" "], skip_blank_lines=skip_blank_lines)


def test_copy_paths_for_comments_and_mixed_line_ends(extract: ExtractFn,
                                                     data_dir: Path) -> None:
    """Files read from a rewritten copy (a field of spaces before the comment character, CRLF
    mixed with LF): the option holds there too."""
    content = "a,b,c\n1,NA,x\n2, #note\n,None,\n"
    assert_reads_like_pandas(extract, data_dir, content, keep_default_na=False, comment="#")
    crlf = "a,b\r\n1,NA\r\n,None\n3,\r\n"
    assert_reads_like_pandas(extract, data_dir, crlf, keep_default_na=False, comment="#")
    assert_reads_like_pandas(extract, data_dir, crlf, keep_default_na=False)


def test_gzip(extract: ExtractFn, data_dir: Path) -> None:
    assert_reads_like_pandas(extract, data_dir, MIXED, name="f.csv.gz", keep_default_na=False)


def test_a_late_empty_field_widens_a_numeric_column_to_text(extract: ExtractFn,
                                                            data_dir: Path) -> None:
    """The empty field past the sample makes the column text when the file is read again."""
    rows = "".join(f"{i},{i * 2}\n" for i in range(1, 25_001))
    content = "a,b\n" + rows + ",NA\n"
    assert_reads_like_pandas(extract, data_dir, content, keep_default_na=False)
    table = extract(path="f.csv", keep_default_na=False)
    assert table.types == {"a": "VARCHAR", "b": "VARCHAR"}
    assert table.rows[-1] == ("", "NA")
    assert extract(path="f.csv").types == {"a": "BIGINT", "b": "BIGINT"}


def test_fields_past_the_header(extract: ExtractFn, data_dir: Path) -> None:
    """A trailing delimiter stays dropped (empty fields past the header; pandas would make the
    first column the index, whatever this option); `NA` there is a value once the default list
    is off, so the row is too wide, named at its line on every read path."""
    (data_dir / "t.csv").write_text('a,b\n1,2,\n3,4,,""\n5,6\n')
    assert extract(path="t.csv", keep_default_na=False).rows == [(1, 2), (3, 4), (5, 6)]
    assert extract(path="t.csv", keep_default_na=False, na_values=[""]).rows == [
        (1, 2), (3, 4), (5, 6)]
    (data_dir / "n.csv").write_text("a,b\n1,2,\n3,4,NA\n")
    assert extract(path="n.csv").rows == [(1, 2), (3, 4)]
    with pytest.raises(DriverError, match="line 3 has 3 fields but the header has 2"):
        extract(path="n.csv", keep_default_na=False)
    assert extract(path="n.csv", keep_default_na=False, na_values=["", "NA"]).rows == [
        (1, 2), (3, 4)]


def test_a_too_wide_row_read_from_a_copy_is_named_at_its_line(extract: ExtractFn,
                                                              data_dir: Path) -> None:
    """Read from a copy (a blank line kept), the line scan that names a too-wide row took a
    trailing delimiter the reader drops for it (it named line 2); now it skips what the reader
    drops, with either NA list."""
    (data_dir / "b.csv").write_text("a,b\n1,2,\n\n3,4, \n")
    with pytest.raises(DriverError, match="line 4 has 3 fields but the header has 2"):
        extract(path="b.csv", skip_blank_lines=False)
    (data_dir / "m.csv").write_text("a,b\n1,2,\n\n3,4,NA\n")
    with pytest.raises(DriverError, match="line 4 has 3 fields but the header has 2"):
        extract(path="m.csv", skip_blank_lines=False, keep_default_na=False)


@pytest.mark.parametrize("value", ["false", 0, None, "no"])
def test_a_non_boolean_is_refused_by_the_driver(extract: ExtractFn, data_dir: Path,
                                                value: Any) -> None:
    (data_dir / "f.csv").write_text("a\n1\n")
    with pytest.raises(DriverError, match="`keep_default_na` must be true or false"):
        extract(path="f.csv", keep_default_na=value)


def test_options_default() -> None:
    opts = csv_extractor.Options.from_config({"path": "x.csv"})
    assert opts.keep_default_na is True
    assert opts.null_strings == PANDAS_NA_VALUES


# -- validate -------------------------------------------------------------------------------------
def _validate(tmp_path: Path, *lines: str) -> list[str]:
    """validate's errors for a csv_extractor step whose config ends with ``lines`` (line 9 on)."""
    path = tmp_path / "p.yaml"
    path.write_text("".join(f"{line}\n" for line in (
        'oml_version: "0.1.0"', "name: p", "steps:", "  - id: src",
        "    component: filesystem.csv_extractor", "    mode: read", "    config:",
        "      path: a.csv", *(f"      {line}" for line in lines))), encoding="utf-8")
    return [str(d) for d in validate_pipeline(path, env={}).errors]


@pytest.mark.parametrize("lines", [("keep_default_na: false",), ("keep_default_na: true",),
                                   ("keep_default_na: false", "na_values: ['', NA]")])
def test_validate_accepts_keep_default_na(tmp_path: Path, lines: tuple[str, ...]) -> None:
    assert _validate(tmp_path, *lines) == []


@pytest.mark.parametrize("value", ["'false'", "0", "no_such", "[]"])
def test_validate_refuses_a_non_boolean_keep_default_na(tmp_path: Path, value: str) -> None:
    errors = _validate(tmp_path, f"keep_default_na: {value}")
    assert len(errors) == 1, errors
    assert "'keep_default_na'" in errors[0] and "boolean" in errors[0], errors[0]
