"""filesystem.csv_extractor against real files and a real session DuckDB file."""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import json
import lzma
import re
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.csv import extractor as csv_extractor
from osiris_dagster.runtime.session import Session

from .conftest import EXTRACTOR_DEFAULTS, ExtractFn, WorkspaceFactory

TRICKY = (
    'id,name,zip,born,score\n'
    '1,"Smith, John",00123,2024-01-31,1.5\n'
    '2,"says ""hi""",01234,2024-02-29,NA\n'
    '3,"two\nlines",,2024-03-01,\n'
    '4,Žluťoučký kůň 😀,99999,2024-03-02,NULL\n'
)
TRICKY_ROWS = [
    (1, "Smith, John", "00123", "2024-01-31", 1.5),
    (2, 'says "hi"', "01234", "2024-02-29", None),
    (3, "two\nlines", None, "2024-03-01", None),
    (4, "Žluťoučký kůň 😀", "99999", "2024-03-02", None),
]


def put(directory: Path, name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
    path = directory / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


def numbered_rows(count: int, start: int = 1) -> str:
    return "".join(f"{i},{i * 2}\n" for i in range(start, start + count))


# -- values, types, nulls -------------------------------------------------------------------------
def test_quoted_fields_unicode_and_types_round_trip(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "t.csv", TRICKY)
    table = extract(path="t.csv")
    assert table.columns == ["id", "name", "zip", "born", "score"]
    assert table.types == {"id": "BIGINT", "name": "VARCHAR", "zip": "VARCHAR",
                           "born": "VARCHAR", "score": "DOUBLE"}
    assert table.rows == TRICKY_ROWS
    assert table.result.table == "x"
    assert table.result.rows_read == table.result.rows_written == 4


def test_rows_read_metric_is_logged(extract: ExtractFn, data_dir: Path,
                                    session: Session) -> None:
    put(data_dir, "t.csv", "a\n1\n2\n")
    extract(path="t.csv")
    metrics = [json.loads(line) for line in session.metrics_path.read_text().splitlines()]
    assert {"metric": "rows_read", "value": 2, "step_id": "x"}.items() <= metrics[-1].items()


def test_pandas_null_markers_keep_numeric_columns_numeric(extract: ExtractFn,
                                                          data_dir: Path) -> None:
    markers = ["", "NA", "N/A", "NULL", "NaN", "nan", "None", "null", "n/a", "#N/A", "<NA>"]
    body = "".join(f"{i},{m},{m}\n" for i, m in enumerate(markers))
    put(data_dir, "n.csv", "i,f,s\n" + body + "99,2.5,text\n")
    table = extract(path="n.csv")
    assert table.types == {"i": "BIGINT", "f": "DOUBLE", "s": "VARCHAR"}
    assert [r[1] for r in table.rows] == [None] * len(markers) + [2.5]
    assert [r[2] for r in table.rows] == [None] * len(markers) + ["text"]


def test_na_values_adds_null_strings(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "n.csv", "a,b\n1,missing\n-,x\n3,y\n")
    table = extract(path="n.csv", na_values=["missing", "-"])
    assert table.types["a"] == "BIGINT"
    assert table.rows == [(1, None), (None, "x"), (3, "y")]


def test_leading_zero_numbers_stay_text(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "z.csv", "zip,n\n00123,1\n00456,2\n")
    assert extract(path="z.csv").rows == [("00123", 1), ("00456", 2)]


def test_booleans_only_when_spelled_like_pandas(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "b.csv", "tf,yn,t,yes\nTrue,Y,t,yes\nfalse,N,f,no\nTRUE,Y,t,yes\n")
    table = extract(path="b.csv")
    assert table.types == {"tf": "BOOLEAN", "yn": "VARCHAR", "t": "VARCHAR", "yes": "VARCHAR"}
    assert table.rows[0] == (True, "Y", "t", "yes")


def test_integers_beyond_64_bits_and_hex_stay_text(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "big.csv", "id,hex,n\n123456789012345678901234,0x1F,1.5\n7,0x20,2\n")
    table = extract(path="big.csv")
    assert table.types == {"id": "VARCHAR", "hex": "VARCHAR", "n": "DOUBLE"}
    assert table.rows[0] == ("123456789012345678901234", "0x1F", 1.5)


def test_type_contradicted_after_the_sample_is_resniffed(extract: ExtractFn,
                                                         data_dir: Path) -> None:
    put(data_dir, "late.csv", "a,b\n" + numbered_rows(25_000) + "1.5,oops\n")
    table = extract(path="late.csv")
    assert table.types == {"a": "DOUBLE", "b": "VARCHAR"}
    assert table.rows[-1] == (1.5, "oops")
    assert len(table.rows) == 25_001


def test_empty_fields_past_the_header_are_dropped_others_fail(extract: ExtractFn,
                                                              data_dir: Path) -> None:
    """README: a trailing delimiter (empty or NA fields past the header) is dropped; a value
    there fails naming the line."""
    put(data_dir, "t.csv", 'a,b\n1,2,\n3,4,,NA,""\n5,6\n')
    assert extract(path="t.csv").rows == [(1, 2), (3, 4), (5, 6)]
    put(data_dir, "v.csv", "a,b\n1,2,\n3,4, \n")
    with pytest.raises(DriverError, match="line 3 has 3 fields but the header has 2"):
        extract(path="v.csv")


def test_old_mac_cr_line_endings(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "cr.csv", "# note\ra,b\r1,x\r2,y\r")
    assert extract(path="cr.csv", comment="#").rows == [(1, "x"), (2, "y")]
    put(data_dir, "cr2.csv", "a,b\r1,x\r2,y,z\r")
    with pytest.raises(DriverError, match="line 3 has 3 fields"):
        extract(path="cr2.csv")


def test_crlf_and_utf8_bom(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "w.csv", b'\xef\xbb\xbfa,b\r\n1,"x\r\ny"\r\n2,z\r\n')
    table = extract(path="w.csv")
    assert table.columns == ["a", "b"]
    assert table.rows == [(1, "x\r\ny"), (2, "z")]


# -- paths ----------------------------------------------------------------------------------------
def test_relative_path_uses_base_dir_and_absolute_path_works(extract: ExtractFn,
                                                             tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    put(other, "r.csv", "a\n1\n")
    assert extract(path="r.csv", base_dir=other).rows == [(1,)]
    assert extract(path=str(other / "r.csv")).rows == [(1,)]


def test_a_symbolic_link_loop_under_base_dir_fails_naming_the_path(extract: ExtractFn,
                                                                   tmp_path: Path) -> None:
    """It raised a bare RuntimeError ('Symlink loop from ...') out of the driver."""
    base = tmp_path / "loop"
    base.mkdir()
    (base / "a").symlink_to(base / "b")
    (base / "b").symlink_to(base / "a")
    with pytest.raises(DriverError, match=r"path 'a/x\.csv' under the connection's base_dir "
                                          r".*cannot be resolved: .*Check the symbolic links"):
        extract(path="a/x.csv", base_dir=base)


def test_missing_file_names_absolute_path(extract: ExtractFn, data_dir: Path) -> None:
    with pytest.raises(DriverError, match="not found") as info:
        extract(path="nope.csv")
    assert str(data_dir / "nope.csv") in str(info.value)


def test_directory_is_rejected(extract: ExtractFn, data_dir: Path) -> None:
    (data_dir / "sub").mkdir()
    with pytest.raises(DriverError, match="is a directory"):
        extract(path="sub")


# -- dialect --------------------------------------------------------------------------------------
@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_explicit_delimiter(extract: ExtractFn, data_dir: Path, delimiter: str) -> None:
    d = delimiter
    put(data_dir, "d.csv", f'a{d}b{d}c\n1{d}"x{d}y"{d}3\n4{d}plain,comma{d}6\n')
    table = extract(path="d.csv", delimiter=d)
    assert table.columns == ["a", "b", "c"]
    assert table.rows == [(1, f"x{d}y", 3), (4, "plain,comma", 6)]


def test_single_text_column_is_not_split_by_a_sniffed_delimiter(extract: ExtractFn,
                                                               data_dir: Path) -> None:
    put(data_dir, "one.csv", "sentence\nhello; world\nfoo; bar\n")
    table = extract(path="one.csv")
    assert table.columns == ["sentence"]
    assert table.rows == [("hello; world",), ("foo; bar",)]


def test_comment_lines_and_inline_comments(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "c.csv", '# exported "today"\na,b\n1,2\n# note\n3,4 # trailing\n')
    table = extract(path="c.csv", comment="#")
    assert table.rows == [(1, 2), (3, 4)]


def test_hash_is_data_without_comment_option(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "h.csv", "tag,n\n#one,1\n#two,2\n")
    assert extract(path="h.csv").rows == [("#one", 1), ("#two", 2)]


def test_blank_lines_skipped_or_kept(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "bl.csv", "a,b\n1,x\n\n2,y\n\n")
    assert extract(path="bl.csv").rows == [(1, "x"), (2, "y")]
    kept = extract(path="bl.csv", skip_blank_lines=False)
    assert kept.rows == [(1, "x"), (None, None), (2, "y"), (None, None)]
    assert kept.types == {"a": "BIGINT", "b": "VARCHAR"}
    put(data_dir, "bl2.csv", "a,b\n\n1,x\n")
    assert extract(path="bl2.csv", skip_blank_lines=False).rows == [(None, None), (1, "x")]
    put(data_dir, "one.csv", 'a\r\n\r\nx\r\n""\r\n\r\ny\r\n\r\n')  # DuckDB: blank = NULL row
    assert extract(path="one.csv").rows == [("x",), (None,), ("y",)]
    assert extract(path="one.csv", skip_blank_lines=False).rows == [
        (None,), ("x",), (None,), (None,), ("y",), (None,)]
    put(data_dir, "bl3.csv", "a,b\n1,x\n2,y\n")
    assert extract(path="bl3.csv", skip_blank_lines=False).rows == [(1, "x"), (2, "y")]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_lines_of_only_spaces_are_skipped_like_pandas(extract: ExtractFn, data_dir: Path,
                                                      newline: str) -> None:
    """pandas skips a line of spaces and tabs like a blank line; DuckDB read it as a row (an
    extra row, and its column became text)."""
    lines = ["a,b", "1,x", " ", "2,y", "\t \t", "3,z", "  "]  # the last without a line break
    put(data_dir, "sp.csv", newline.join(lines))
    table = extract(path="sp.csv")
    assert table.rows == [(1, "x"), (2, "y"), (3, "z")]
    assert table.types == {"a": "BIGINT", "b": "VARCHAR"}
    put(data_dir, "one.csv", newline.join(["a", "1", " ", "2", ""]))
    assert extract(path="one.csv").rows == [(1,), (2,)]
    # with skip_blank_lines: false pandas keeps it as a row of that text
    assert extract(path="sp.csv", skip_blank_lines=False).rows == [
        ("1", "x"), (" ", None), ("2", "y"), ("\t \t", None), ("3", "z"), ("  ", None)]
    # after a preamble DuckDB's skip cannot step over (a scratch copy is read)
    put(data_dir, "pre.csv", newline.join(["# note", "", "a,b", "1,x", " ", "2,y", ""]))
    assert extract(path="pre.csv", skip_rows=2).rows == [(1, "x"), (2, "y")]


def test_rows_that_look_like_a_line_of_spaces_are_kept(extract: ExtractFn,
                                                       data_dir: Path) -> None:
    """A quoted space, or a space and empty fields, is a row for pandas too."""
    put(data_dir, "q.csv", 'a,b\n1,x\n" "\n ,\n2,y\n')
    assert extract(path="q.csv").rows == [("1", "x"), (" ", None), (" ", None), ("2", "y")]


def test_whitespace_before_a_comment_character_is_read_like_duckdb_and_pandas(
        extract: ExtractFn, data_dir: Path) -> None:
    """DuckDB and pandas read a tab before the comment character as a row of that text; the
    record scanner took it for a comment line, and the rewrite a line of spaces brings lost
    the row."""
    put(data_dir, "c.csv", "c0,c1\na,1\n\t# note\n \nb,2\n")
    assert extract(path="c.csv", comment="#").rows == [("a", 1), ("\t", None), ("b", 2)]


def test_a_line_of_spaces_that_na_values_makes_null_is_skipped(extract: ExtractFn,
                                                               data_dir: Path) -> None:
    put(data_dir, "na.csv", "c0,c1\n1,2\n \n3,4\n , \n")
    assert extract(path="na.csv", na_values=[" "]).rows == [(1, 2), (3, 4), (None, None)]


def test_a_preamble_line_of_spaces_is_skipped_by_duckdb_itself(extract: ExtractFn,
                                                               data_dir: Path) -> None:
    """A line of spaces is one line to DuckDB's `skip`: the file is read as it is (a copy of
    the data part from a CRLF file with a quoted bare LF failed DuckDB's line-end detection)."""
    put(data_dir, "pre.csv", b' \r\nc0,c1\r\n"l1\nl2",2\r\n')
    assert extract(path="pre.csv", skip_rows=1).rows == [("l1\nl2", 2)]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_rows_read_from_the_copy_without_blank_lines_are_read_as_in_the_file(
        extract: ExtractFn, data_dir: Path, newline: str) -> None:
    """The copy without blank lines was re-written by Python's csv module, which loses how a
    field was quoted: a quoted '#' became a comment there (its row lost, or cut), and spaces
    around a quoted field read differently than in the file itself."""
    rows = ['"#",3', 'b,"q#uoted"', ' "y" ,4']
    put(data_dir, "plain.csv", newline.join(["c0,c1", "1,x", *rows, ""]))
    put(data_dir, "spaced.csv", newline.join(["c0,c1", "1,x", "  ", *rows, "\t", ""]))
    plain = extract(path="plain.csv", comment="#").rows
    # ' "y" ' as pandas reads it (DuckDB alone gives 'y')
    assert plain == [("1", "x"), ("#", "3"), ("b", "q#uoted"), (' "y" ', "4")]
    assert extract(path="spaced.csv", comment="#").rows == plain


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_field_of_spaces_before_the_comment_character_keeps_its_row(
        extract: ExtractFn, data_dir: Path, newline: str) -> None:
    """DuckDB drops the whole record when a field after a delimiter is spaces and then the
    comment character (`1, #note`), without an error; pandas reads `1` and a space."""
    lines = ["c0,c1,c2", "1,x,y", "2, #note", '"q", #note,z', "3,  #", '4,"l1', 'l2", #n',
             "5,\t#tab", '6," #quoted"', "7,z # inline", "8,  #last"]
    put(data_dir, "c.csv", newline.join(lines))
    assert extract(path="c.csv", comment="#").rows == [
        ("1", "x", "y"), ("2", " ", None), ("q", " ", None), ("3", "  ", None),
        ("4", "l1" + newline + "l2", " "), ("5", "\t", None),
        ("6", " #quoted", None), ("7", "z ", None), ("8", "  ", None)]
    put(data_dir, "t.tsv", "c0\tc1\n1\t #note\n2\tb\n")
    assert extract(path="t.tsv", delimiter="\t", comment="#").rows == [(1, " "), (2, "b")]
    # a quote in an inline comment opens no value: the next line is a record of its own
    put(data_dir, "q.csv", 'c0,c1\nx #c,"l1\nl2",  #z\n3,4\n')
    assert extract(path="q.csv", comment="#").rows == [("x ", None), ('l2"', "  "), ("3", "4")]
    # a line of spaces before the comment character stays a comment line (README)
    put(data_dir, "line.csv", "c0,c1\n  # note\n1, #c\n")
    assert extract(path="line.csv", comment="#").rows == [(1, " ")]


def test_comment_handling_follows_quotes_as_csv_reads_them(extract: ExtractFn,
                                                            data_dir: Path) -> None:
    """A quote in the middle of an unquoted field is text: counting it as an opening quote
    cut a quoted value at its '#' (losing its closing quote) and dropped a blank line inside
    the next quoted value, or failed a file pandas reads."""
    put(data_dir, "a.csv", 'a,b\nl2","\n, #n"\n3,"\n\nx"\n')
    assert extract(path="a.csv", comment="#", dtype={"a": "str", "b": "str"}).rows == [
        ('l2"', "\n, #n"), ("3", "\n\nx")]
    put(data_dir, "b.csv", 'c0,c1,c2\nx %c,"l1\nl2","\n, %n"\nx\n')
    assert extract(path="b.csv", comment="%").rows == [
        ("x ", None, None), ('l2"', "\n, %n", None), ("x", None, None)]


@pytest.mark.parametrize(("content", "config", "rows"), [
    (b"a, #c\n1,2\n3,4\n", {}, [(1, 2), (3, 4)]),  # the header
    (b"Report, #gen\na,b\n1,2\n3,4\n", {"skip_rows": 1}, [(1, 2), (3, 4)]),
    (b"x, #1\ny, #2\na,b\n1,2\n3,4\n", {"header": 2}, [(1, 2), (3, 4)]),
])
def test_a_line_before_the_data_with_a_field_of_spaces_before_the_comment_loses_no_row(
        extract: ExtractFn, data_dir: Path, content: bytes, config: dict[str, object],
        rows: list[tuple[object, ...]]) -> None:
    """DuckDB drops such a line whole, so its `skip` then skipped the first data row too."""
    put(data_dir, "h.csv", content)
    assert extract(path="h.csv", comment="#", **config).rows == rows


def test_the_comment_character_in_a_quoted_header_is_text(extract: ExtractFn,
                                                         data_dir: Path) -> None:
    """The header's comment was cut by searching the parsed fields, quoted ones too."""
    put(data_dir, "q.csv", 'a,"b #c"\n1,2\n')
    assert extract(path="q.csv", comment="#").columns == ["a", "b #c"]
    put(data_dir, "n.csv", '"a#b",\n1,\n')
    assert extract(path="n.csv", comment="#", header=False).rows == [("a#b", None),
                                                                      ("1", None)]


def test_a_multibyte_delimiter_split_by_the_scans_chunks_is_found(extract: ExtractFn,
                                                                  data_dir: Path) -> None:
    """The byte scan for a field of spaces before the comment character missed a match whose
    two-byte delimiter straddled two chunks, and DuckDB dropped that row."""
    from osiris_dagster.drivers.csv.source import CHUNK_BYTES

    short, long_ = "1§2\n".encode(), "10§2\n".encode()  # 5 and 6 bytes
    fill = CHUNK_BYTES - 2  # the target row's '§' then starts at the chunk's last byte
    longs = next(n for n in range(5) if (fill - 6 * n) % 5 == 0)
    body = long_ * longs + short * ((fill - 6 * longs) // 5)
    put(data_dir, "m.csv", "a§b\n".encode() + body + "1§ #x\n".encode() + short)
    rows = extract(path="m.csv", delimiter="§", comment="#").rows
    assert rows[-2:] == [(1, " "), (1, "2")]
    assert len(rows) == body.count(b"\n") + 2


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_field_that_starts_with_spaces_and_a_quote_is_read_as_pandas_reads_it(
        extract: ExtractFn, data_dir: Path, newline: str) -> None:
    """DuckDB opens a quoted value after spaces at a field's start (` "y"` became `y`, ` ""`
    a NULL, ` "l1<line break>l2"` one value); pandas and csv.reader read the field's text as
    it is (a quote not at the very start is text, so the line break ends the record)."""
    lines = ["c0,c1,c2", '1, "y",x', ' "a",NA,  "b" ', '2, "",""', '3,"a, ""b""",y',
             '4, "l1' + newline + 'l2",z', "5,q,r"]
    put(data_dir, "s.csv", newline.join(lines) + newline)
    assert extract(path="s.csv").rows == [
        ("1", ' "y"', "x"), (' "a"', None, '  "b" '), ("2", ' ""', None),
        ("3", 'a, "b"', "y"), ("4", ' "l1', None), ('l2"', "z", None), ("5", "q", "r")]
    put(data_dir, "c.csv", 'c0,c1\n1, "y" #c\n2, #d\n')  # with comments as well
    assert extract(path="c.csv", comment="#").rows == [(1, ' "y" '), (2, " ")]
    put(data_dir, "h.csv", ' "a",b\n1,2\n')  # the header is read by csv.reader anyway
    assert extract(path="h.csv").columns == [' "a"', "b"]
    # ', "' inside a quoted value, and two spaces before a quote (text to DuckDB too)
    put(data_dir, "q.csv", 'c0,c1\n1,"He said, ""hi"" twice"\n2,  "y"\n')
    assert extract(path="q.csv").rows == [(1, 'He said, "hi" twice'), (2, '  "y"')]


def test_a_crlf_file_with_an_inline_comment_ending_at_a_bare_lf_keeps_the_next_line(
        extract: ExtractFn, data_dir: Path) -> None:
    """DuckDB read 'yz' after 'x #c<LF>' in a CRLF file as 'z' (the first character lost,
    without an error), and failed on a quoted bare LF after a comment line; with `comment` set,
    such a file is read from a copy whose line ends are all LF."""
    put(data_dir, "m.csv", b"a,b\r\nx #c\nyz,1\r\n2,3\r\n")
    assert extract(path="m.csv", comment="#").rows == [("x ", None), ("yz", 1), ("2", 3)]
    put(data_dir, "h.csv", b'a,b\r\n"q",2\r\nx #c\r\n#t\r\n1,"l1\nl2"')
    assert extract(path="h.csv", comment="#").rows == [("q", "2"), ("x ", None),
                                                       ("1", "l1\nl2")]
    put(data_dir, "t.csv", b'c0,c1,c2\r\nx#c,1,"l1\nl2"')  # the CRLF in the header only
    assert extract(path="t.csv", comment="#").rows == [("x", None, None), ('l2"', None, None)]


def test_a_crlf_file_with_bare_lfs_that_duckdb_cannot_read_is_read_from_an_lf_copy(
        extract: ExtractFn, data_dir: Path) -> None:
    """DuckDB failed ('state machine reached an invalid state', 'unterminated quote') on a
    bare LF in a CRLF file, in text or in a quoted value after a blank line; pandas reads
    both line ends. On such a failure the file is read again from an LF copy."""
    put(data_dir, "t.csv", b"a,b\r\nx\ny,1\r\n2,3\r\n")
    assert extract(path="t.csv").rows == [("x", None), ("y", 1), ("2", 3)]
    put(data_dir, "q.csv", b'a,b\r\n\r\n1,"x\ny"\r\n2,z\r\n')
    assert extract(path="q.csv").rows == [(1, "x\ny"), (2, "z")]
    put(data_dir, "w.csv", b"a,b\r\nx\ny,1,3\r\n2,3\r\n")  # a real error still names its line
    with pytest.raises(DriverError, match="line 3 has 3 fields but the header has 2"):
        extract(path="w.csv")


@pytest.mark.parametrize(("content", "config", "rows"), [
    # the copy's first line break decides DuckDB's line ends: LF record ends after a quoted
    # CRLF failed ("state machine", "unterminated quote")
    (b'c0\r\n"a\r\nb"\r\n\r\nc\r\n', {}, [("a\r\nb",), ("c",)]),
    (b'c0,c1\r\n"l1\r\nl2",1\r\n3, "a"\r\n', {}, [("l1\r\nl2", "1"), ("3", ' "a"')]),
    (b'c0,c1\r"a\rb",1\r2, "x"\r', {}, [("a\rb", "1"), ("2", ' "x"')]),
    (b'c0,c1\r\n\r\n"x\ny",1\r\n2,z\r\n', {"skip_blank_lines": False},
     [(None, None), ("x\ny", "1"), ("2", "z")]),
    # DuckDB's skip reads a line before the data as it reads lines: a quote after one space
    # opens a value there, a CRLF line before LF ones makes its strict reader find no row
    (b'c0, "c1\n1,2\n3,4\n', {}, [("1", "2"), ("3", "4")]),
    (b'z, "q\nc0,c1\n1,2\n', {"header": 1}, [("1", "2")]),
    (b'j, "k\nc0,c1\n1,2"\n3,4\n5,6\n', {"skip_rows": 1}, [("1", '2"'), ("3", "4"), ("5", "6")]),
    (b"j\r\nc0,c1\nx,1\n", {"skip_rows": 1}, [("x", "1")]),
    (b"z0\nc0\r\nx\n", {"header": 1}, [("x",)]),
    # from the fourth review:
    # a quote in a comment shifted the exact check's toggles: a later ' ""' was not found
    (b'c0,c1\n0,a\n#,"\n1, ""\n', {"comment": "#"}, [("0", "a"), ("1", ' ""')]),
    # a lone CR beside LF line ends: DuckDB's 'state machine' error
    (b"a,b\n1,2\r3,4\n", {}, [("1", "2"), ("3", "4")]),
    (b'"l1\nl2",1\r2,3\r', {"header": False}, [("l1\nl2", "1"), ("2", "3")]),
    # a BOM before a field that starts with a space and a quote
    (b'\xef\xbb\xbf "y",1\n2,3\n', {"header": False}, [(' "y"', "1"), ("2", "3")]),
    # a blank line of a lone CR after a line break: the byte scan missed it, so DuckDB
    # dropped pandas' all-NULL row at the end of the file
    (b"a,b\r\n1,2\r\n\r", {"skip_blank_lines": False}, [("1", "2"), (None, None)]),
    (b"a,b\n1,2\n\r", {"skip_blank_lines": False}, [("1", "2"), (None, None)]),
    (b"a\r\n1\r\n\r", {}, [("1",)]),
    # the copy ended its records with the first line break in its bytes, inside quotes here;
    # DuckDB chose another ('state machine'): the copy now ends every record with LF and
    # tells DuckDB so
    (b'"\r\r\n",b \r\na  ,x \r\n', {"header": False, "skip_blank_lines": False},
     [("\r\r\n", "b "), ("a  ", "x ")]),
    (b'"p\r\nq",b \r\ra  ,x \r', {"header": False, "skip_blank_lines": False},
     [("p\r\nq", "b "), (None, None), ("a  ", "x ")]),
    # a line of a space after a lone CR in a CRLF file: DuckDB read a row of NULLs (pandas
    # skips the line, or keeps the space); lone CRs beside other line ends go to the copy
    (b'h0,h1\r\n1,"a\r\nb"\r\n2,c\r \r\n3,y\r\n', {},
     [("1", "a\r\nb"), ("2", "c"), ("3", "y")]),
    (b"h0,h1\r\n1,a\r\n2,c\r \r\n3,y\r\n", {"skip_blank_lines": False},
     [("1", "a"), ("2", "c"), (" ", None), ("3", "y")]),
])
def test_line_ends_and_quotes_duckdb_reads_unlike_pandas_lose_no_row(
        extract: ExtractFn, data_dir: Path, content: bytes, config: dict[str, object],
        rows: list[tuple[object, ...]]) -> None:
    """From the third and fourth reviews: these failed (DuckDB's errors without a line), or
    silently gave fewer rows (0 for the CRLF lines before LF ones) or changed values."""
    put(data_dir, "f.csv", content)
    table = extract(path="f.csv", **config)
    assert [tuple(None if v is None else str(v) for v in r) for r in table.rows] == rows


@pytest.mark.parametrize(("content", "comment"), [
    (b'c0,c1\n1,2\n2,"y" \n', None), (b'c0,c1\n1,2\n2,"a" "b"\n', None),
    (b'c0,c1\n1,2\n2,"x" #y\n', "#"), (b'c0,c1\n1,2\n2,"y"  ,3\n', None),
])
def test_spaces_after_a_closing_quote_fail_naming_the_line_in_any_row(
        extract: ExtractFn, data_dir: Path, content: bytes, comment: str | None) -> None:
    """Only the first data row went through the record scanner: in later rows DuckDB dropped
    the spaces ('y', 'a b', 'x') where pandas keeps the text ('y ', 'a "b"', 'x ')."""
    put(data_dir, "s.csv", content)
    with pytest.raises(DriverError, match=r"s\.csv: line 3: invalid CSV"):
        extract(path="s.csv", comment=comment)


def test_the_comment_character_right_after_a_closing_quote_fails_naming_the_line(
        extract: ExtractFn, data_dir: Path) -> None:
    """DuckDB reads '"a"#x' as 'a' (the rest a comment), pandas as 'a#x': it was cut without
    an error. It fails like other text after a closing quote."""
    put(data_dir, "c.csv", 'c0,c1\n1,"a"#x\n2,3\n')
    with pytest.raises(DriverError, match=r"line 2: invalid CSV"):
        extract(path="c.csv", comment="#")
    put(data_dir, "ok.csv", 'c0,c1\n1,"#"\n2,"x" #y\n')  # a quoted '#'; '#' after a space
    with pytest.raises(DriverError, match=r"line 3: invalid CSV"):
        extract(path="ok.csv", comment="#")
    put(data_dir, "ok2.csv", 'c0,c1\n1,"#"\n2,x #y\n')
    assert extract(path="ok2.csv", comment="#").rows == [(1, "#"), (2, "x ")]


def test_a_line_starting_with_the_comment_character_inside_a_quoted_value_is_data(
        extract: ExtractFn, data_dir: Path) -> None:
    """The record scanner took such a line for a comment line and failed the read with
    'invalid CSV (unexpected end of data)'; DuckDB and pandas read the value."""
    put(data_dir, "q.csv", 'c0,c1\n1,"x\n#y"\n \n2,"\n  #z"\n')
    assert extract(path="q.csv", comment="#").rows == [(1, "x\n#y"), (2, "\n  #z")]


def test_a_line_of_spaces_past_the_sample_is_skipped(extract: ExtractFn, data_dir: Path) -> None:
    rows = [f"{i},v{i}" for i in range(30_000)]
    rows.insert(25_000, "   ")
    put(data_dir, "late.csv", "a,b\n" + "\n".join(rows) + "\n")
    table = extract(path="late.csv")
    assert table.types == {"a": "BIGINT", "b": "VARCHAR"}
    assert len(table.rows) == 30_000 and table.rows[25_000] == (25_000, "v25000")


# -- header, skip_rows, columns, limit -------------------------------------------------------------
def test_header_false_names_columns_by_position(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "nh.csv", "1,a,x\n2,b,y\n")
    table = extract(path="nh.csv", header=False)
    assert table.columns == ["0", "1", "2"]
    assert table.rows == [(1, "a", "x"), (2, "b", "y")]


def test_header_row_number_discards_rows_above(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "hi.csv", "report,2024\ngenerated,today\nid,v\n1,a\n2,b\n")
    table = extract(path="hi.csv", header=2)
    assert table.columns == ["id", "v"]
    assert table.rows == [(1, "a"), (2, "b")]


def test_skip_rows_then_header_and_blank_or_comment_preamble(extract: ExtractFn,
                                                            data_dir: Path) -> None:
    put(data_dir, "s.csv", '"junk, quoted\nacross lines"\n\n# c\nid,v\n\n1,a\n')
    table = extract(path="s.csv", skip_rows=1, comment="#")
    assert table.columns == ["id", "v"]
    assert table.rows == [(1, "a")]
    put(data_dir, "s2.csv", "x\ny\nignored\nid,v\n1,a\n")
    assert extract(path="s2.csv", skip_rows=2, header=1).rows == [(1, "a")]


def test_header_names_are_deduplicated_like_pandas(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "dup.csv", "a,a,,A,a.1\n1,2,3,4,5\n")
    table = extract(path="dup.csv")
    # pandas: a, a.2, Unnamed: 2, A, a.1; DuckDB names ignore case, so A needs a free suffix
    assert table.columns == ["a", "a.2", "Unnamed: 2", "A.3", "a.1"]
    assert table.rows == [(1, 2, 3, 4, 5)]


@pytest.mark.parametrize(("header", "names"), [
    (",Unnamed: 0,amount", ["Unnamed: 0.1", "Unnamed: 0", "amount"]),
    ("a,,a,Unnamed: 1", ["a", "Unnamed: 1.1", "a.1", "Unnamed: 1"]),
    (",a,Unnamed: 0.1,Unnamed: 0", ["Unnamed: 0.2", "a", "Unnamed: 0.1", "Unnamed: 0"]),
])
def test_a_header_name_keeps_its_column_against_a_blank_one(
        extract: ExtractFn, data_dir: Path, header: str, names: list[str]) -> None:
    """pandas names the header's names before the blank ones: in `,Unnamed: 0,amount` (a
    file re-exported with its index) `Unnamed: 0` is the second column. It was the first, so
    a query of `"Unnamed: 0"` read the index, not the values (as pandas gives them, Osiris)."""
    width = len(header.split(","))
    put(data_dir, "h.csv", f"{header}\n" + ",".join(str(i) for i in range(width)) + "\n")
    table = extract(path="h.csv")
    assert table.columns == names
    assert table.rows == [tuple(range(width))]


def test_columns_select_and_reorder(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "t.csv", TRICKY)
    table = extract(path="t.csv", columns=["score", "id"])
    assert table.columns == ["score", "id"]
    assert table.rows[0] == (1.5, 1)


def test_missing_column_lists_available(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "t.csv", TRICKY)
    with pytest.raises(DriverError, match=r"\['nope'\].*Available columns: \['id', 'name'"):
        extract(path="t.csv", columns=["id", "nope"])


def test_limit(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "l.csv", "a,b\n" + numbered_rows(50))
    table = extract(path="l.csv", limit=3)
    assert table.rows == [(1, 2), (2, 4), (3, 6)]
    assert table.result.rows_read == 3


def test_short_rows_are_padded_with_null(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "short.csv", "a,b,c\n1,2,3\n4\n5,6\n")
    assert extract(path="short.csv").rows == [(1, 2, 3), (4, None, None), (5, 6, None)]


# -- dates and dtype ------------------------------------------------------------------------------
DATES = "d,ts,n\n2024-01-31,2024-01-31 10:11:12,1\n2024-02-01,2024-02-01 00:00:01,2\n"


def test_dates_stay_text_by_default(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "dt.csv", DATES)
    table = extract(path="dt.csv", parse_dates=False)
    assert table.types == {"d": "VARCHAR", "ts": "VARCHAR", "n": "BIGINT"}


def test_parse_dates_true_detects_dates(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "dt.csv", DATES)
    table = extract(path="dt.csv", parse_dates=True)
    assert table.types == {"d": "DATE", "ts": "TIMESTAMP", "n": "BIGINT"}
    assert table.rows[0][:2] == (dt.date(2024, 1, 31), dt.datetime(2024, 1, 31, 10, 11, 12))


def test_parse_dates_list_converts_only_those(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "dt.csv", DATES)
    table = extract(path="dt.csv", parse_dates=["ts"])
    assert table.types == {"d": "VARCHAR", "ts": "TIMESTAMP", "n": "BIGINT"}
    assert table.rows[1] == ("2024-02-01", dt.datetime(2024, 2, 1, 0, 0, 1), 2)


def test_parse_dates_unparseable_value_names_column_and_line(extract: ExtractFn,
                                                             data_dir: Path) -> None:
    put(data_dir, "bad.csv", "id,when\n1,2024-01-01\n2,2024-01-02\n3,not a date\n")
    with pytest.raises(DriverError) as info:
        extract(path="bad.csv", parse_dates=["when"])
    message = str(info.value)
    assert "'when'" in message and "line 4" in message and "not a date" in message
    assert "bad.csv" in message and "parse_dates" in message
    # a US-style date (pandas guesses month first): the message says which dates are read
    put(data_dir, "us.csv", "id,when\n1,01/02/2024\n")
    with pytest.raises(DriverError, match=r"line 2: '01/02/2024' is not a date: `parse_dates` "
                                          r"reads ISO 8601 dates.*strptime"):
        extract(path="us.csv", parse_dates=["when"])


def test_parse_dates_unknown_column(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "dt.csv", DATES)
    with pytest.raises(DriverError, match="parse_dates.*Available columns"):
        extract(path="dt.csv", parse_dates=["nope"])


def test_dtype_maps_pandas_and_duckdb_names(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "ty.csv", "a,b,c,d,e,f,g,h\n1,2,3,4,true,2024-01-01 10:00:00,x,1.250\n")
    table = extract(path="ty.csv", dtype={
        "a": "str", "b": "Int64", "c": "int32", "d": "float64", "e": "bool",
        "f": "datetime64[ns]", "g": "category", "h": "DECIMAL(10,2)", "zz": "int",
    })
    assert table.types == {"a": "VARCHAR", "b": "BIGINT", "c": "INTEGER", "d": "DOUBLE",
                           "e": "BOOLEAN", "f": "TIMESTAMP", "g": "VARCHAR",
                           "h": "DECIMAL(10,2)"}
    assert table.rows == [("1", 2, 3, 4.0, True, dt.datetime(2024, 1, 1, 10), "x",
                           Decimal("1.25"))]  # 1.255 would be an error, not 1.26 (test_csv_dtype)


def test_dtype_unknown_type(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "ty.csv", "a\n1\n")
    with pytest.raises(DriverError, match="unknown type 'int33'"):
        extract(path="ty.csv", dtype={"a": "int33"})
    with pytest.raises(DriverError, match="unknown type"):
        extract(path="ty.csv", dtype={"a": "INT); DROP TABLE x; --"})


def test_dtype_bad_value_names_column_and_line(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "ty.csv", "a,b\n1,x\n2,y\nthree,z\n")
    with pytest.raises(DriverError, match=r"column 'a' at line 4: cannot convert 'three'.*dtype"):
        extract(path="ty.csv", dtype={"a": "int64"})


# -- encodings ------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["latin-1", "iso-8859-1"])
def test_latin1(extract: ExtractFn, data_dir: Path, encoding: str) -> None:
    put(data_dir, "l1.csv", "name,n\nCafé,1\nFrançois,2\n", encoding="latin-1")
    assert extract(path="l1.csv", encoding=encoding).rows == [("Café", 1), ("François", 2)]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be"])
def test_utf16_either_byte_order(extract: ExtractFn, data_dir: Path, codec: str) -> None:
    text = "name,n\nŽluť,1\n\"a,b\",2\n"
    raw = text.encode(codec) if codec == "utf-16" else b"\xfe\xff" + text.encode(codec)
    put(data_dir, "u16.csv", raw)
    assert extract(path="u16.csv", encoding="utf-16").rows == [("Žluť", 1), ("a,b", 2)]


@pytest.mark.parametrize("raw", [
    "a,b\n1,ž\n".encode("utf-16-le"),
    # a UTF-8 file of even length: read as UTF-16 it was one header of CJK-looking characters
    # and 0 rows, and the run succeeded
    "name,price\n€ x,1\nb,2\nc,3\n".encode(),
])
def test_utf16_without_a_bom_fails_as_in_pandas(extract: ExtractFn, data_dir: Path,
                                                 raw: bytes) -> None:
    put(data_dir, "u16.csv", raw)
    with pytest.raises(DriverError, match=r"u16\.csv: the file does not start with a UTF-16 "
                                          r"byte order mark .*set `encoding`"):
        extract(path="u16.csv", encoding="utf-16")


@pytest.mark.parametrize("raw", [b"a\nx\x80y\n", b"a\nx\x85y\n", b"a\n\x93q\x94\n"])
def test_latin1_takes_every_byte(extract: ExtractFn, data_dir: Path, raw: bytes) -> None:
    """DuckDB's latin-1 reader refused bytes 0x80-0x9f ('not latin-1 encoded', no line): a
    Windows-1252 file labelled latin-1 failed where pandas reads it."""
    put(data_dir, "l1.csv", raw)
    assert extract(path="l1.csv", encoding="latin-1").rows == [(raw[2:-1].decode("latin-1"),)]
    put(data_dir, "l1.csv.gz", gzip.compress(b"a,b\n\x80,\xe9\n"))
    assert extract(path="l1.csv.gz", encoding="latin-1").rows == [("\x80", "\xe9")]


def test_ascii_refuses_a_byte_past_127_naming_its_line(extract: ExtractFn,
                                                        data_dir: Path) -> None:
    """`encoding: ascii` read the file as UTF-8: text pandas refuses went through."""
    put(data_dir, "a.csv", b"name,n\nplain,1\n")
    assert extract(path="a.csv", encoding="ascii").rows == [("plain", 1)]
    put(data_dir, "u.csv", "name,n\nplain,1\n\u20ac x,2\n".encode())
    with pytest.raises(DriverError, match=r"u\.csv: line 3 is not valid ascii \(byte 0xe2"):
        extract(path="u.csv", encoding="ascii")
    put(data_dir, "l.csv.gz", gzip.compress("name,n\nCafé,1\n".encode("latin-1")))
    with pytest.raises(DriverError, match=r"line 2 is not valid ascii \(byte 0xe9"):
        extract(path="l.csv.gz", encoding="us-ascii")
    # lone-CR and CRLF line ends count too (a CR-only file named line 1 for every byte)
    for ending in (b"\r", b"\r\n"):
        put(data_dir, "cr.csv", ending.join([b"name,n", b"plain,1", b"caf\xc3\xa9,2", b""]))
        with pytest.raises(DriverError, match=r"cr\.csv: line 3 is not valid ascii"):
            extract(path="cr.csv", encoding="ascii")


def test_rows_longer_than_duckdbs_default_limit(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "long.csv", "a,b\n1,x\n2," + "y" * 3_000_000 + "\n3,z\n")
    table = extract(path="long.csv", columns=["a"])
    assert table.rows == [(1,), (2,), (3,)]


def test_ascii_reads_as_utf8(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "a.csv", "a\nplain\n")
    assert extract(path="a.csv", encoding="ascii").rows == [("plain",)]


def test_latin1_bytes_read_as_utf8_name_line_and_option(extract: ExtractFn,
                                                        data_dir: Path) -> None:
    put(data_dir, "enc.csv", "name\nok\nCafé\n", encoding="latin-1")
    with pytest.raises(DriverError) as info:
        extract(path="enc.csv")
    message = str(info.value)
    assert "enc.csv" in message and "line 3" in message and "`encoding`" in message


def test_encoding_error_in_the_header(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "enc1.csv", "Café,n\n1,2\n", encoding="latin-1")
    with pytest.raises(DriverError, match=r"enc1\.csv: line 1 is not valid utf-8.*`encoding`"):
        extract(path="enc1.csv")


def test_encoding_error_far_into_the_file(extract: ExtractFn, data_dir: Path) -> None:
    body = "a,b\n" + numbered_rows(30_000) + "1,Café\n"
    put(data_dir, "enc2.csv", body, encoding="latin-1")
    with pytest.raises(DriverError, match=r"enc2\.csv: line 30002 is not valid utf-8"):
        extract(path="enc2.csv")


# -- compression ----------------------------------------------------------------------------------
def test_gzip_by_extension_and_explicit(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "t.csv.gz", gzip.compress(TRICKY.encode()))
    assert extract(path="t.csv.gz").rows == TRICKY_ROWS
    put(data_dir, "t.data", gzip.compress(TRICKY.encode()))
    assert extract(path="t.data", compression="gzip").rows == TRICKY_ROWS


@pytest.mark.parametrize(("name", "pack"), [
    ("t.csv.bz2", bz2.compress), ("t.csv.xz", lzma.compress),
])
def test_bz2_and_xz(extract: ExtractFn, data_dir: Path, session: Session, name: str,
                    pack) -> None:
    put(data_dir, name, pack(TRICKY.encode()))
    assert extract(path=name).rows == TRICKY_ROWS
    assert list(session.tmp_dir.iterdir()) == []  # the decompressed scratch copy is gone


def test_zip_single_member(extract: ExtractFn, data_dir: Path) -> None:
    with zipfile.ZipFile(data_dir / "t.zip", "w") as archive:
        archive.writestr("inner.csv", TRICKY)
    assert extract(path="t.zip").rows == TRICKY_ROWS
    (data_dir / "t.zip").rename(data_dir / "t.bin")
    assert extract(path="t.bin", compression="zip").rows == TRICKY_ROWS


def test_zip_with_two_members_is_rejected(extract: ExtractFn, data_dir: Path) -> None:
    with zipfile.ZipFile(data_dir / "two.zip", "w") as archive:
        archive.writestr("a.csv", "a\n1\n")
        archive.writestr("b.csv", "b\n2\n")
    with pytest.raises(DriverError, match="exactly one CSV file, found 2"):
        extract(path="two.zip")


def test_gzip_with_utf16_and_header_row_number(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "g.csv.gz", gzip.compress("title\nname,n\nŽ,1\n".encode("utf-16")))
    assert extract(path="g.csv.gz", encoding="utf-16", header=1).rows == [("Ž", 1)]


def test_gz_extension_without_gzip_content(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "plain.csv.gz", "a\n1\n")
    with pytest.raises(DriverError, match=r"plain\.csv\.gz: cannot read.*`compression`"):
        extract(path="plain.csv.gz")
    assert extract(path="plain.csv.gz", compression="none").rows == [(1,)]


def test_a_zstd_file_is_refused_by_name(extract: ExtractFn, data_dir: Path) -> None:
    """A .zst file was read as text: 'line 1 is not valid utf-8', which sent the user to the
    `encoding` option."""
    put(data_dir, "t.csv.zst", b"\x28\xb5\x2f\xfd\x04\x00")
    with pytest.raises(DriverError, match=r"t\.csv\.zst: a Zstandard \(\.zst\) file cannot be "
                                          r"read here; decompress it first"):
        extract(path="t.csv.zst")


def test_corrupt_compressed_file(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "bad.csv.bz2", b"definitely not bz2")
    with pytest.raises(DriverError, match="cannot decompress as bz2"):
        extract(path="bad.csv.bz2")


# -- empty and header-only files ------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"\n\n\r\n"])
def test_empty_file_gives_placeholder_column(extract: ExtractFn, data_dir: Path,
                                             content: bytes) -> None:
    put(data_dir, "e.csv", content)
    table = extract(path="e.csv")
    assert table.types == {"_empty": "VARCHAR"}
    assert table.rows == []
    assert table.result.rows_read == 0


def test_empty_file_with_columns_option(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "e.csv", b"")
    table = extract(path="e.csv", columns=["id", "name"], dtype={"id": "int64"})
    assert table.types == {"id": "BIGINT", "name": "VARCHAR"}
    assert table.rows == []


def test_header_only_file(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "h.csv", "id,name,when\n")
    table = extract(path="h.csv")
    assert table.types == {"id": "VARCHAR", "name": "VARCHAR", "when": "VARCHAR"}
    assert table.rows == []
    typed = extract(path="h.csv", dtype={"id": "int"}, parse_dates=["when"], columns=["when",
                                                                                     "id"])
    assert typed.types == {"when": "TIMESTAMP", "id": "BIGINT"}


def test_failed_read_keeps_previous_table(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "ok.csv", "a\n1\n")
    extract(path="ok.csv")
    put(data_dir, "bad.csv", "a\n1\n2,3\n")
    with pytest.raises(DriverError):
        extract(path="bad.csv")
    put(data_dir, "other.csv", "b\nzzz\n")
    assert extract(path="ok.csv").rows == [(1,)]


# -- malformed rows -------------------------------------------------------------------------------
def test_extra_field_in_sniffed_sample_names_the_line(extract: ExtractFn,
                                                      data_dir: Path) -> None:
    put(data_dir, "m.csv", "a,b,c\n1,2,3\n4,5,6,7\n8,9,10\n")
    with pytest.raises(DriverError) as info:
        extract(path="m.csv")
    message = str(info.value)
    assert str(data_dir / "m.csv") in message
    assert "line 3 has 4 fields but the header has 3" in message


def test_extra_field_after_the_sample_names_the_line(extract: ExtractFn,
                                                     data_dir: Path) -> None:
    put(data_dir, "m2.csv", "a,b\n" + numbered_rows(30_000) + "1,2,3\n")
    with pytest.raises(DriverError, match=r"m2\.csv: line 30002 has 3 fields"):
        extract(path="m2.csv")


def test_extra_field_with_semicolon_delimiter(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "m3.csv", "a;b\n1;2\n3;4\n5;6;7\n")
    with pytest.raises(DriverError, match=r"line 4 has 3 fields but the header has 2 "
                                          r"\(delimiter ';'\)"):
        extract(path="m3.csv", delimiter=";")


def test_line_numbers_count_physical_lines(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "m4.csv", 'a,b\n1,"x\ny\nz"\n2,3,4\n')
    with pytest.raises(DriverError, match="line 5 has 3 fields"):
        extract(path="m4.csv")


# DuckDB's rejects table places these errors by byte position; its own line count would be one
# short after each record with a quoted line break, so each case has one before the bad row.
QUOTED_BREAK = '1,"x\ny"\n'


@pytest.mark.parametrize(("name", "content", "config", "pattern"), [
    ("crlf.csv", ("a,b\r\n" + QUOTED_BREAK.replace("\n", "\r\n") + "2,3\r\n4,5,6\r\n").encode(),
     {}, "line 5 has 3 fields but the header has 2"),
    ("gz.csv.gz", gzip.compress(("a,b\n" + QUOTED_BREAK * 2 + "2,3,4\n").encode(), mtime=0), {},
     "line 6 has 3 fields"),
    ("bom.csv", ("\ufeffa,b\n" + QUOTED_BREAK + "2,3,4\n").encode(), {}, "line 4 has 3 fields"),
    # a preamble DuckDB's `skip` cannot step over: it reads a copy of the data part
    ("pre.csv", ("# note\n\na,b\n" + QUOTED_BREAK + "2,3,4\n").encode(), {"comment": "#"},
     "line 6 has 3 fields"),
    # one column with blank lines: DuckDB reads a rewritten copy, the file is scanned instead
    ("one.csv", b'a\n"x\ny"\n\n2,3\n', {}, "line 5 has 2 fields but the header has 1"),
    ("cr.csv", b'a,b\r1,"x\ry"\r2,3,4\r', {}, "line 4 has 3 fields"),
    ("enc.csv", ("a,b\n" + QUOTED_BREAK).encode() + "2,Café\n".encode("latin-1"), {},
     "line 4 is not valid utf-8"),
    ("quote.csv", ("a,b\n" + QUOTED_BREAK + '2,"x"y\n3,4\n').encode(), {},
     "line 4: invalid CSV"),
])
def test_error_lines_are_physical_lines(extract: ExtractFn, data_dir: Path, name: str,
                                        content: bytes, config: dict[str, object],
                                        pattern: str) -> None:
    put(data_dir, name, content)
    with pytest.raises(DriverError, match=pattern):
        extract(path=name, **config)


def test_wide_row_far_into_a_file_with_quoted_line_breaks(extract: ExtractFn,
                                                          data_dir: Path) -> None:
    put(data_dir, "far.csv", "a,b\n" + QUOTED_BREAK * 40_000 + "2,3,4\n")
    with pytest.raises(DriverError, match=r"far\.csv: line 80002 has 3 fields"):
        extract(path="far.csv")


def test_extra_field_with_header_false(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "m5.csv", "1,2\n3,4,5\n")
    with pytest.raises(DriverError, match="line 2 has 3 fields but the first row has 2"):
        extract(path="m5.csv", header=False)


def test_unterminated_quote_names_the_line(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "q.csv", 'a,b\n1,ok\n2,"never closed\n3,x\n')
    with pytest.raises(DriverError, match=r"q\.csv: line 3: invalid CSV"):
        extract(path="q.csv")


# A quote the file never closes: with a quoted line break before it the extractor reads with
# parallel=false, and DuckDB 2.0.1's single-threaded reader turned the open value into NULL (or
# dropped the row) without an error. Each case must fail naming the line the open quote is on.
OPEN_AFTER_BREAK = "a,b\n" + QUOTED_BREAK + '2,"never closed\n3,x\n'


@pytest.mark.parametrize(("name", "content", "config"), [
    # a quote after a closed value and a space: DuckDB opens the value again ('"abc" "def' is
    # 'abc def...', read on to the end as NULL before), pandas reads text
    ("open_again.csv", b'id,note\n1,"multi\nline"\n2\n3,"abc" "def\n4,x\n5,y\n', {}),
    # a comment right after a closing quote: DuckDB reads 'a', pandas 'a#note'
    ("open_after_comment.csv", b'a,b\n1,"x\ny"\n2\n3,"a"#note\n4,"open\n', {"comment": "#"}),
])
def test_text_after_a_closing_quote_fails_at_its_line_before_an_open_quote_later(
        extract: ExtractFn, data_dir: Path, name: str, content: bytes,
        config: dict[str, object]) -> None:
    put(data_dir, name, content)
    with pytest.raises(DriverError, match=rf"{re.escape(name)}: line 5: invalid CSV"):
        extract(path=name, **config)


@pytest.mark.parametrize(("name", "content", "config", "line"), [
    ("open.csv", OPEN_AFTER_BREAK.encode(), {}, 4),
    ("open_no_newline.csv", ("a,b\n" + QUOTED_BREAK + '2,"never closed').encode(), {}, 4),
    ("open_last_line.csv", ("a,b\n" + QUOTED_BREAK + '2,"never closed\n').encode(), {}, 4),
    ("open.csv.gz", gzip.compress(OPEN_AFTER_BREAK.encode(), mtime=0), {}, 4),
    ("open_crlf.csv", OPEN_AFTER_BREAK.replace("\n", "\r\n").encode(), {}, 4),
    # the open quote starts the record: DuckDB dropped the whole row
    ("open_first.csv", ("a,b\n" + QUOTED_BREAK + '"never closed,2\n3,x\n').encode(), {}, 4),
    # a short row before it (the reason for the single-threaded reader), doubled quotes inside
    ("open_short.csv", b'a,b,c\n1,"x\ny"\n5\n2,"say ""hi"" never closed\n', {}, 5),
    ("open_semicolon.csv", OPEN_AFTER_BREAK.replace(",", ";").encode(), {"delimiter": ";"}, 4),
    # quotes in comment lines are not quotes; the preamble makes DuckDB read a copy
    ("open_comment.csv", ('# "x\n\na,b\n' + QUOTED_BREAK + '# y"\n2,"never closed\n').encode(),
     {"comment": "#"}, 7),
    ("open_latin1.csv", OPEN_AFTER_BREAK.replace("never", "né").encode("latin-1"),
     {"encoding": "latin-1"}, 4),
    ("open_utf16.csv", OPEN_AFTER_BREAK.encode("utf-16"), {"encoding": "utf-16"}, 4),
    ("open_limit.csv", OPEN_AFTER_BREAK.encode(), {"limit": 2}, 4),
    ("open_far.csv", ("a,b\n" + QUOTED_BREAK + numbered_rows(50_000) + '2,"open\n').encode(), {},
     50_004),
    # text after a closing quote fails DuckDB's read only when the record ends: here it never does
    ("open_after_text.csv", b'a,b,c\n1,"x\ny",z\n2,"a"b,"open\n3,x,y\n', {}, 4),
])
def test_quote_left_open_at_end_of_file_names_its_line(extract: ExtractFn, data_dir: Path,
                                                       name: str, content: bytes,
                                                       config: dict[str, object],
                                                       line: int) -> None:
    put(data_dir, name, content)
    with pytest.raises(DriverError) as caught:
        extract(path=name, **config)
    message = str(caught.value)
    assert f"{name}: line {line}: a quoted value starts here" in message
    assert "closing quote never comes" in message and 'doubled ("")' in message


@pytest.mark.parametrize("content", [
    'a,b\n1,ok\n2,"never closed\n3,x\n',  # no quoted line break: the parallel reader refuses it
    'a,b\n1,ok\n2,"never closed',
])
def test_quote_left_open_without_a_quoted_line_break(extract: ExtractFn, data_dir: Path,
                                                     content: str) -> None:
    put(data_dir, "open.csv", content)
    with pytest.raises(DriverError, match=r"open\.csv: line 3\b"):
        extract(path="open.csv")


@pytest.mark.parametrize(("content", "config", "rows"), [
    # a quoted value spanning to the last line, closed there (with and without a final newline)
    ('a,b\n1,"x\ny"\n2,"spans\nto the end"\n', {}, [(1, "x\ny"), (2, "spans\nto the end")]),
    ('a,b\n1,"x\ny"\n2,"spans\n""to"" the end"', {}, [(1, "x\ny"), (2, 'spans\n"to" the end')]),
    # a quote inside an unquoted field is text, not an opening quote; so is one after two spaces
    ('a,b\n1,"x\ny"\n2,5" tall\n3,"z"\n', {}, [(1, "x\ny"), (2, '5" tall'), (3, "z")]),
    ('a,b\n1,"x\ny"\n2,  "z\n', {}, [(1, "x\ny"), (2, '  "z')]),
    # a quote after a space is text for pandas (DuckDB opened a value there, and dropped
    # the spaces or failed on one never closed)
    ('a,b\n1,"x\ny"\n2, "z"  \n', {}, [(1, "x\ny"), (2, ' "z"  ')]),
    ('a,b\n1,"x\ny"\n2, "never closed\n', {}, [(1, "x\ny"), (2, ' "never closed')]),
    # an odd quote in a comment line is not a quote
    ('a,b\n1,"x\ny"\n# it"s\n2,"z"\n', {"comment": "#"}, [(1, "x\ny"), (2, "z")]),
    ('a;b\n1;"x\ny"\n2;"a;""b"""\n', {"delimiter": ";"}, [(1, "x\ny"), (2, 'a;"b"')]),
])
def test_closed_quotes_after_quoted_line_breaks_are_kept(extract: ExtractFn, data_dir: Path,
                                                         content: str, config: dict[str, object],
                                                         rows: list[tuple]) -> None:
    put(data_dir, "closed.csv", content)
    assert extract(path="closed.csv", **config).rows == rows


# -- options --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("config", "pattern"), [
    ({"delimiter": ",,"}, "single character"),
    ({"delimiter": '"'}, "quote character"),
    ({"comment": ","}, "cannot be the delimiter"),
    ({"encoding": "cp1250"}, "unsupported encoding"),
    ({"mode": "discover"}, "not supported"),
    ({"columns": ["a", "a"]}, "twice"),
    ({"dtype": {"a": "int"}, "parse_dates": ["a"]}, "both `dtype` and `parse_dates`"),
])
def test_impossible_options(workspace: WorkspaceFactory, data_dir: Path, config: dict,
                            pattern: str) -> None:
    put(data_dir, "o.csv", "a\n1\n")
    ws = workspace(base_dir=data_dir)
    with pytest.raises(DriverError, match=pattern):
        csv_extractor.run(ws, {**EXTRACTOR_DEFAULTS, "path": "o.csv", **config}, [])


def test_chunk_size_has_no_effect(extract: ExtractFn, data_dir: Path) -> None:
    put(data_dir, "c.csv", "a\n" + "".join(f"{i}\n" for i in range(300)))
    assert len(extract(path="c.csv", chunk_size=100).rows) == 300


def test_a_small_file_with_quotes_is_read_without_importing_numpy(tmp_path: Path) -> None:
    """The spaced-quote scans use numpy for big files only: importing it (~75 ms) is more
    than a small file's whole read, and a run pays it once per process."""
    import os
    import subprocess
    import sys

    (tmp_path / "q.csv").write_text('c0,c1\n1, "y"\n3,"He said, ""hi"" twice"\n')
    script = ("import sys\n"
              "from pathlib import Path\n"
              "from osiris_dagster.core.settings import Settings\n"
              "from osiris_dagster.runtime.session import Session\n"
              "from osiris_dagster.runtime.workspace import StepWorkspace\n"
              "from osiris_dagster.drivers.csv import extractor\n"
              "s = Session(Settings.from_env(Path('sessions')), 's1').ensure()\n"
              "with StepWorkspace(s, pipeline_name='p', step_id='x', output_table='x',\n"
              "                   base_dir=Path('.')) as ws:\n"
              "    extractor.run(ws, {'path': 'q.csv', 'delimiter': ',', 'header': True,\n"
              "                       'encoding': 'utf-8', 'skip_rows': 0,\n"
              "                       'skip_blank_lines': True, 'compression': 'infer'}, [])\n"
              "    print(ws.preview_rows(limit=10)[1])\n"
              "print('numpy' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_")}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows, imported = done.stdout.splitlines()[-2:]
    assert rows == """[(1, ' "y"'), (3, 'He said, "hi" twice')]""" and imported == "False"


def test_a_stopped_read_ends_without_explaining_or_reading_again(
        workspace: WorkspaceFactory, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB's interrupt (a timeout, Ctrl-C, Dagster's terminate) was taken for a bad file:
    the reader tried again with a rewritten copy of a file with mixed line ends, and the
    error's explanation rescanned the whole file in Python, so a stop took 30 s and more."""
    import duckdb

    from osiris_dagster.drivers.csv import read_errors

    put(data_dir, "mixed.csv", "a,b\r\n1,x\n2,y\r\n")
    explained: list[object] = []
    monkeypatch.setattr(read_errors.FailedRead, "explain",
                        lambda self, exc: explained.append(exc) or DriverError("explained"))
    ws = workspace(base_dir=data_dir)
    reads: list[str] = []

    def interrupted(sql: str, *args: object, **kwargs: object) -> object:
        reads.append(sql)
        ws.cancelled = True  # what ws.interrupt() does, with the query it interrupts
        raise duckdb.InterruptException("INTERRUPT Error: Interrupted!")

    monkeypatch.setattr(ws, "create_output", interrupted)
    with pytest.raises(duckdb.InterruptException):
        csv_extractor.run(ws, {**EXTRACTOR_DEFAULTS, "path": "mixed.csv"}, [])
    assert len(reads) == 1 and explained == []


def test_a_stop_ends_the_rewrite_of_a_file_with_mixed_line_ends(
        workspace: WorkspaceFactory, data_dir: Path) -> None:
    """A file mixing CRLF and LF is copied record by record in Python before DuckDB reads it,
    and nothing in that pass looked at a stop: a timeout or terminate on a 300 MB file took
    16-32 s to end the step."""
    from osiris_dagster.core.errors import StepCancelled

    put(data_dir, "mixed.csv", "a,b\r\n" + "".join(
        f"{i},x\n" if i % 3 == 0 else f"{i},x\r\n" for i in range(50_000)))
    ws = workspace(base_dir=data_dir)
    ws.cancelled = True  # told to stop: DuckDB's interrupt cannot reach the Python copy
    with pytest.raises(StepCancelled):
        csv_extractor.run(ws, {**EXTRACTOR_DEFAULTS, "path": "mixed.csv"}, [])
