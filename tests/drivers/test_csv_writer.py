"""filesystem.csv_writer: DuckDB COPY output compared byte for byte."""

from __future__ import annotations

import bz2
import codecs
import fcntl
import gzip
import json
import lzma
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.base import UpstreamTable
from osiris_dagster.drivers.csv import writer as csv_writer
from osiris_dagster.runtime.session import Session
from osiris_dagster.runtime.workspace import StepWorkspace

from ..helpers import gone_pid, lock_is_held
from .conftest import WRITER_DEFAULTS, ExtractFn, WorkspaceFactory, WriteFn

Upstream = Callable[..., None]

MIXED = """
SELECT * FROM (VALUES
    (2, 'plain', true, 1.5, TIMESTAMP '2024-01-31 10:11:12', DATE '2024-02-29', ''),
    (1, 'a,b "q"', false, NULL, NULL, NULL, 'multi
line'),
    (NULL, 'Žluť 😀', NULL, 2.0, TIMESTAMP '2024-01-01 00:00:00', DATE '2024-01-01', NULL)
) v(id, text, flag, score, "at", day, note)
"""
MIXED_CSV = (
    "at,day,flag,id,note,score,text\n"
    "2024-01-31 10:11:12,2024-02-29,True,2,,1.5,plain\n"
    ',,False,1,"multi\nline",,"a,b ""q"""\n'
    "2024-01-01 00:00:00,2024-01-01,,,,2.0,Žluť 😀\n"
)


def test_sorted_columns_nulls_booleans_and_quoting(upstream: Upstream, write: WriteFn,
                                                   data_dir: Path) -> None:
    upstream(MIXED)
    result = write(path="out.csv")
    target = data_dir / "out.csv"
    assert target.read_bytes() == MIXED_CSV.encode()
    assert result.target == str(target)
    assert result.table is None
    assert result.rows_read == result.rows_written == 3


def test_rows_written_metric(upstream: Upstream, write: WriteFn, session: Session) -> None:
    upstream("SELECT 1 AS a")
    write(path="m.csv")
    metrics = [json.loads(line) for line in session.metrics_path.read_text().splitlines()]
    assert {"metric": "rows_written", "value": 1, "step_id": "w"}.items() <= metrics[-1].items()


def test_digit_column_names_sort_numerically(upstream: Upstream, write: WriteFn,
                                             data_dir: Path) -> None:
    upstream('SELECT 10 AS "10", 2 AS "2", 0 AS "0", 1 AS "1"')
    write(path="n.csv")
    assert (data_dir / "n.csv").read_text() == "0,1,2,10\n0,1,2,10\n"


@pytest.mark.parametrize("quoting", ["minimal", "all", "nonnumeric"])
def test_nan_is_an_empty_field_like_pandas(upstream: Upstream, write: WriteFn, data_dir: Path,
                                          quoting: str) -> None:
    upstream("SELECT * FROM (VALUES ('nan'::DOUBLE, '-nan'::FLOAT, 1), "
             "('inf'::DOUBLE, -0.0::FLOAT, 2), (-1.5, NULL, 3)) v(d, f, n)")
    write(path="nan.csv", quoting=quoting)
    quote = '"' if quoting == "all" else ""
    rows = [["", "", "1"], ["inf", "-0.0", "2"], ["-1.5", "", "3"]]
    if quoting == "all":
        rows = [[f'"{v}"' for v in row] for row in rows]
    header = ",".join(f"{quote}{c}{quote}" for c in "dfn")
    assert (data_dir / "nan.csv").read_text() == "\n".join(
        [header, *(",".join(row) for row in rows)]) + "\n"


def test_delimiter_and_no_header(upstream: Upstream, write: WriteFn, data_dir: Path) -> None:
    upstream("SELECT 1 AS a, 'x;y' AS b, 'z' AS c")
    write(path="d.csv", delimiter=";", header=False)
    assert (data_dir / "d.csv").read_bytes() == b'1;"x;y";z\n'


def test_crlf_newlines(upstream: Upstream, write: WriteFn, data_dir: Path) -> None:
    upstream("SELECT * FROM (VALUES (1, 'a'), (2, 'b')) v(n, s)")
    write(path="c.csv", newline="crlf")
    assert (data_dir / "c.csv").read_bytes() == b"n,s\r\n1,a\r\n2,b\r\n"


def test_quoting_all(upstream: Upstream, write: WriteFn, data_dir: Path) -> None:
    upstream("SELECT * FROM (VALUES (1, 'a', true), (NULL, NULL, NULL)) v(n, s, b)")
    write(path="q.csv", quoting="all")
    assert (data_dir / "q.csv").read_text() == '"b","n","s"\n"True","1","a"\n"","",""\n'


def test_quoting_nonnumeric(upstream: Upstream, write: WriteFn, data_dir: Path) -> None:
    upstream("SELECT * FROM (VALUES (1, 2.5, 'a', DATE '2024-01-01'), (NULL, NULL, NULL, NULL))"
             " v(i, f, s, d)")
    write(path="q.csv", quoting="nonnumeric")
    assert (data_dir / "q.csv").read_text() == (
        '"d",f,i,"s"\n"2024-01-01",2.5,1,"a"\n"",,,""\n')


def test_single_column_null_is_not_a_blank_line(upstream: Upstream, write: WriteFn,
                                                data_dir: Path) -> None:
    upstream("SELECT * FROM (VALUES ('x'), (NULL), ('')) v(a)")
    write(path="one.csv")
    assert (data_dir / "one.csv").read_text() == 'a\nx\n""\n""\n'


# -- encodings ------------------------------------------------------------------------------------
def test_latin1_output(upstream: Upstream, write: WriteFn, data_dir: Path,
                       session: Session) -> None:
    upstream("SELECT 'Café' AS name, 1 AS n")
    write(path="l1.csv", encoding="latin-1", chunk_size=1)  # chunk_size: accepted, no effect
    assert (data_dir / "l1.csv").read_bytes() == "n,name\n1,Café\n".encode("latin-1")
    assert list(session.tmp_dir.iterdir()) == []  # the UTF-8 scratch file is gone


def test_utf16_output_has_one_bom(upstream: Upstream, write: WriteFn, data_dir: Path) -> None:
    upstream("SELECT * FROM range(300000) t(i)")  # > 1 MiB: several transcoded chunks
    write(path="u16.csv", encoding="utf-16")
    raw = (data_dir / "u16.csv").read_bytes()
    assert raw.startswith(codecs.BOM_UTF16_LE) and raw.count(codecs.BOM_UTF16_LE) == 1
    text = raw.decode("utf-16")
    assert text.splitlines()[:3] == ["i", "0", "1"] and len(text.splitlines()) == 300_001


def test_ascii_output(upstream: Upstream, write: WriteFn, data_dir: Path) -> None:
    upstream("SELECT 'plain' AS a")
    write(path="a.csv", encoding="ascii")
    assert (data_dir / "a.csv").read_bytes() == b"a\nplain\n"


def test_unencodable_value_fails_and_keeps_previous_file(upstream: Upstream, write: WriteFn,
                                                         data_dir: Path) -> None:
    target = data_dir / "keep.csv"
    target.write_bytes(b"previous,content\n")
    upstream("SELECT * FROM (VALUES (1, 'ok'), (2, 'Žluť')) v(n, name)")
    with pytest.raises(DriverError) as info:
        write(path="keep.csv", encoding="latin-1")
    message = str(info.value)
    assert "column 'name'" in message and "'Ž'" in message and "keep.csv" in message
    assert "line 3" in message
    assert target.read_bytes() == b"previous,content\n"
    assert sorted(p.name for p in data_dir.iterdir()) == ["keep.csv"]  # no temp file left


def test_failed_copy_keeps_previous_file(workspace: WorkspaceFactory,
                                         data_dir: Path) -> None:
    """DuckDB fails half-way through COPY: the partial temp file goes, the target stays."""
    target = data_dir / "keep.csv"
    target.write_bytes(b"previous\n")
    ws = workspace("w", base_dir=data_dir)
    ws.con.execute("CREATE VIEW main.bad AS SELECT CASE WHEN i < 150000 THEN i::VARCHAR "
                   "ELSE error('boom at ' || i) END AS a FROM range(200000) t(i)")
    bad = UpstreamTable(step_id="up", view_name="bad", relation='main."bad"')
    with pytest.raises(DriverError, match="boom at"):
        csv_writer.run(ws, {**WRITER_DEFAULTS, "path": "keep.csv"}, [bad])
    assert target.read_bytes() == b"previous\n"
    assert sorted(p.name for p in data_dir.iterdir()) == ["keep.csv"]


# -- compression ----------------------------------------------------------------------------------
def test_gzip_output(upstream: Upstream, write: WriteFn, data_dir: Path) -> None:
    upstream(MIXED)
    write(path="out.csv.gz")
    raw = (data_dir / "out.csv.gz").read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    assert gzip.decompress(raw) == MIXED_CSV.encode()


def test_zstd_output(upstream: Upstream, write: WriteFn, data_dir: Path) -> None:
    """A .zst target (pandas infers Zstandard from it) was written as plain text."""
    upstream(MIXED)
    write(path="out.csv.zst")
    raw = (data_dir / "out.csv.zst").read_bytes()
    assert raw[:4] == b"\x28\xb5\x2f\xfd"  # Zstandard's magic number
    (data_dir / "plain.csv").write_text(MIXED_CSV)
    con = duckdb.connect()

    def lines(name: str) -> list[tuple[str, ...]]:  # DuckDB decompresses by the extension
        return con.execute("SELECT * FROM read_csv(?, header=false, all_varchar=true)",
                           [str(data_dir / name)]).fetchall()

    assert lines("out.csv.zst") == lines("plain.csv")
    upstream("SELECT 'x' AS _empty WHERE false")  # the empty-file table: an empty line
    write(path="empty.csv.zst")
    assert (data_dir / "empty.csv.zst").read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    with pytest.raises(DriverError, match=r"Zstandard \(\.zst\) file is written in UTF-8 only"):
        write(path="latin.csv.zst", encoding="latin-1")


def test_gzip_output_in_utf16(upstream: Upstream, write: WriteFn, data_dir: Path) -> None:
    upstream("SELECT 'Ž' AS a")
    write(path="out.csv.gz", encoding="utf-16")
    assert gzip.decompress((data_dir / "out.csv.gz").read_bytes()).decode("utf-16") == "a\nŽ\n"


@pytest.mark.parametrize(("name", "unpack"), [
    ("o.csv.bz2", bz2.decompress), ("o.csv.xz", lzma.decompress),
])
def test_bz2_and_xz_output(upstream: Upstream, write: WriteFn, data_dir: Path, name: str,
                           unpack) -> None:
    upstream(MIXED)
    write(path=name)
    assert unpack((data_dir / name).read_bytes()) == MIXED_CSV.encode()


def test_zip_output_has_one_member(upstream: Upstream, write: WriteFn, data_dir: Path) -> None:
    upstream(MIXED)
    write(path="o.csv.zip")
    with zipfile.ZipFile(data_dir / "o.csv.zip") as archive:
        assert archive.namelist() == ["o.csv"]
        assert archive.read("o.csv") == MIXED_CSV.encode()


# -- empty, paths, errors -------------------------------------------------------------------------
def test_empty_table_writes_header_only(upstream: Upstream, write: WriteFn,
                                        data_dir: Path) -> None:
    upstream("SELECT 1 AS b, 'x' AS a WHERE false")
    result = write(path="e.csv")
    assert (data_dir / "e.csv").read_bytes() == b"a,b\n"
    assert result.rows_written == 0
    write(path="e2.csv", header=False)
    assert (data_dir / "e2.csv").read_bytes() == b""


def test_table_from_empty_csv_writes_empty_file(extract: ExtractFn, write: WriteFn,
                                                data_dir: Path, session: Session) -> None:
    (data_dir / "empty.csv").write_bytes(b"")
    extract(path="empty.csv")  # table x with the _empty placeholder column
    with StepWorkspace(session, pipeline_name="p", step_id="up", output_table="up") as ws:
        ws.create_output("SELECT * FROM session.main.x")
    write(path="again.csv")
    assert (data_dir / "again.csv").read_bytes() == b"\n"


@pytest.mark.parametrize(("select", "written"), [
    ("SELECT 1 AS _empty WHERE false", b"_empty\n"),
    ("SELECT DATE '2024-01-01' AS _empty WHERE false", b"_empty\n"),
    ("SELECT 'x' AS _empty WHERE false", b"\n"),  # the marker itself: see empty_file.py
])
def test_a_sql_result_named_like_the_marker(upstream: Upstream, write: WriteFn, data_dir: Path,
                                            select: str, written: bytes) -> None:
    """Only the marker's exact shape (one VARCHAR column ``_empty``, no rows) is an empty
    file; any other table with that one column name is written as pandas writes it."""
    upstream(select)
    write(path="m.csv")
    assert (data_dir / "m.csv").read_bytes() == written


def test_no_inputs(write: WriteFn) -> None:
    with pytest.raises(DriverError, match="needs an upstream step with data"):
        write(with_input=False, path="x.csv")


def test_create_dirs(upstream: Upstream, write: WriteFn, data_dir: Path) -> None:
    upstream("SELECT 1 AS a")
    with pytest.raises(DriverError, match="does not exist.*create_dirs"):
        write(path="new/dir/x.csv", create_dirs=False)
    assert not (data_dir / "new").exists()
    write(path="new/dir/x.csv")
    assert (data_dir / "new" / "dir" / "x.csv").read_text() == "a\n1\n"


def test_absolute_path_and_directory_target(upstream: Upstream, write: WriteFn,
                                            tmp_path: Path) -> None:
    upstream("SELECT 1 AS a")
    result = write(path=str(tmp_path / "abs.csv"))
    assert result.target == str(tmp_path / "abs.csv")
    assert (tmp_path / "abs.csv").read_text() == "a\n1\n"
    with pytest.raises(DriverError, match="is a directory"):
        write(path=str(tmp_path))


def test_overwrites_existing_file(upstream: Upstream, write: WriteFn, data_dir: Path) -> None:
    (data_dir / "o.csv").write_text("old content that is longer than the new one\n")
    upstream("SELECT 1 AS a")
    write(path="o.csv")
    assert (data_dir / "o.csv").read_text() == "a\n1\n"


@pytest.mark.parametrize("link", ["real.csv", "sub/../real.csv", "chain.csv"])
def test_a_symbolic_link_stays_and_its_file_gets_the_rows(upstream: Upstream, write: WriteFn,
                                                          data_dir: Path, link: str) -> None:
    """As writing through the link does (Osiris, pandas): the link is kept and the file it
    points to (through every link) is replaced, atomically, beside itself. (An absolute
    `path`, or a relative one without a connection's base_dir, is taken as written.)"""
    elsewhere = data_dir / "elsewhere"
    (elsewhere / "sub").mkdir(parents=True)
    (elsewhere / "real.csv").write_text("old\n")
    (elsewhere / "chain.csv").symlink_to("real.csv")
    (data_dir / "out.csv").symlink_to(Path("elsewhere", link))
    upstream("SELECT 1 AS a")
    result = write(path=str(data_dir / "out.csv"))
    assert os.readlink(data_dir / "out.csv") == str(Path("elsewhere", link))
    assert (elsewhere / "real.csv").read_text() == "a\n1\n"
    assert not (elsewhere / "real.csv").is_symlink()
    assert result.target == str(data_dir / "out.csv")
    assert sorted(p.name for p in data_dir.iterdir()) == ["elsewhere", "out.csv"]
    assert sorted(p.name for p in elsewhere.iterdir()) == ["chain.csv", "real.csv", "sub"]


def test_a_dangling_link_gets_its_file_made(upstream: Upstream, write: WriteFn,
                                            data_dir: Path) -> None:
    (data_dir / "out.csv.gz").symlink_to("made.csv")  # compressed as the name written says
    upstream("SELECT 1 AS a")
    write(path=str(data_dir / "out.csv.gz"))
    assert (data_dir / "out.csv.gz").is_symlink()
    assert gzip.decompress((data_dir / "made.csv").read_bytes()) == b"a\n1\n"


def test_a_link_loop_fails_and_stays(upstream: Upstream, write: WriteFn, data_dir: Path) -> None:
    (data_dir / "a.csv").symlink_to("b.csv")
    (data_dir / "b.csv").symlink_to("a.csv")
    upstream("SELECT 1 AS a")
    with pytest.raises(DriverError, match="cannot write .*a.csv.*symbolic links"):
        write(path=str(data_dir / "a.csv"))
    assert os.readlink(data_dir / "a.csv") == "b.csv" and os.readlink(data_dir / "b.csv") == "a.csv"


def test_a_target_that_is_no_regular_file_fails_and_stays(upstream: Upstream, write: WriteFn,
                                                          data_dir: Path) -> None:
    """A FIFO (or a device such as /dev/null, through a link) is not replaced by a file."""
    os.mkfifo(data_dir / "pipe.csv")
    (data_dir / "null.csv").symlink_to("pipe.csv")
    upstream("SELECT 1 AS a")
    for name in ("pipe.csv", "null.csv"):
        with pytest.raises(DriverError, match="cannot write .*not a regular file"):
            write(path=str(data_dir / name))
    assert (data_dir / "pipe.csv").is_fifo() and (data_dir / "null.csv").is_symlink()
    assert sorted(p.name for p in data_dir.iterdir()) == ["null.csv", "pipe.csv"]


def test_a_hard_link_keeps_the_old_rows(upstream: Upstream, write: WriteFn,
                                        data_dir: Path) -> None:
    """The replace stays atomic (a rename): the path written names the new file, any other
    name of the old file (a hard link, e.g. a backup snapshot's) keeps the old rows."""
    (data_dir / "out.csv").write_text("old\n")
    os.link(data_dir / "out.csv", data_dir / "backup.csv")
    upstream("SELECT 1 AS a")
    write(path="out.csv")
    assert (data_dir / "out.csv").read_text() == "a\n1\n"
    assert (data_dir / "backup.csv").read_text() == "old\n"
    assert os.stat(data_dir / "out.csv").st_nlink == os.stat(data_dir / "backup.csv").st_nlink == 1


@pytest.mark.parametrize("name", ["p.csv", "p.csv.gz", "p.csv.zip"])
def test_a_replaced_file_keeps_its_mode_and_owner(upstream: Upstream, write: WriteFn,
                                                  data_dir: Path, name: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A private export stays private: the new file has the old one's mode (and owner and
    group, where the writer may set them: root), and the rows are never in a file more
    readable than that while they are written."""
    target = data_dir / name
    target.write_text("old\n")
    target.chmod(0o600)
    owner = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    os.chown(target, *owner)
    modes: list[int] = []
    real = csv_writer.publish

    def publish(tmp: Path, target: Path, **kwargs: Any) -> None:
        modes.append(os.stat(tmp).st_mode & 0o777)
        real(tmp, target, **kwargs)

    monkeypatch.setattr(csv_writer, "publish", publish)
    upstream("SELECT 1 AS a")
    write(path=name)
    status = os.stat(target)
    assert (status.st_mode & 0o777, status.st_uid, status.st_gid) == (0o600, *owner)
    assert modes == [0o600]
    assert target.read_bytes() != b"old\n"


def test_a_new_file_gets_the_default_mode(upstream: Upstream, write: WriteFn,
                                          data_dir: Path) -> None:
    umask = os.umask(0o027)
    try:
        upstream("SELECT 1 AS a")
        write(path="new.csv")
    finally:
        os.umask(umask)
    assert os.stat(data_dir / "new.csv").st_mode & 0o777 == 0o640


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(
        upstream: Upstream, write: WriteFn, data_dir: Path) -> None:
    """A writer killed mid-write leaves ``.<name>.<pid>.<token>.tmp`` beside its target; the next
    write of that target removes it. A running writer's file and other targets' files stay."""
    dead, alive = gone_pid(), os.getppid()
    killed = data_dir / f".out.csv.{dead}.0123abcd.tmp"
    running = data_dir / f".out.csv.{alive}.89abcdef.tmp"
    other = data_dir / f".other.csv.{dead}.0123abcd.tmp"
    no_pid = [data_dir / ".out.csv.99999999999.0123abcd.tmp", data_dir / ".out.csv.\u00b2.x.tmp"]
    for path in (killed, running, other, *no_pid):
        path.write_text("a,b\n1,")
    upstream("SELECT 1 AS a")
    write(path="out.csv")
    assert (data_dir / "out.csv").read_text() == "a\n1\n"
    assert sorted(p.name for p in data_dir.iterdir() if p.name.endswith(".tmp")) == sorted(
        p.name for p in (running, other, *no_pid))


def test_the_writer_holds_its_temporary_files_lock_until_it_is_published(
        upstream: Upstream, write: WriteFn, data_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    held: list[bool] = []
    real = csv_writer.publish

    def publish(tmp: Path, target: Path, **kwargs: Any) -> None:
        held.append(lock_is_held(tmp))
        real(tmp, target, **kwargs)

    monkeypatch.setattr(csv_writer, "publish", publish)
    upstream("SELECT 1 AS a")
    write(path="out.csv")
    assert held == [True]
    assert sorted(p.name for p in data_dir.iterdir()) == ["out.csv"]


def test_a_killed_writers_file_goes_though_another_process_has_its_pid(
        upstream: Upstream, write: WriteFn, data_dir: Path) -> None:
    """In a container every run is pid 1, so a killed run's file carries the pid of a live
    process; the lock beside it is free (its owner ended), so the next write removes both.
    A file whose lock is held stays, whatever its pid."""
    alive, dead = os.getppid(), gone_pid()
    killed = data_dir / f".out.csv.{alive}.0123abcd.tmp"
    killed.write_text("a,b\n1,")
    Path(f"{killed}.lock").write_text("")
    held = data_dir / f".out.csv.{dead}.89abcdef.tmp"
    held.write_text("a,b\n1,")
    with open(f"{held}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a writer of another PID namespace holds it
        upstream("SELECT 1 AS a")
        write(path="out.csv")
    assert (data_dir / "out.csv").read_text() == "a\n1\n"
    assert sorted(p.name for p in data_dir.iterdir() if p.name.startswith(".out.csv.")) == \
        sorted([held.name, f"{held.name}.lock"])


@pytest.mark.parametrize(("config", "pattern"), [
    ({"delimiter": "ab"}, "one character"),
    ({"encoding": "cp1250"}, "unsupported encoding"),
    ({"newline": "nl"}, "newline"),
    ({"quoting": "none"}, "quoting"),
])
def test_impossible_options(upstream: Upstream, write: WriteFn, config: dict,
                            pattern: str) -> None:
    upstream("SELECT 1 AS a")
    with pytest.raises(DriverError, match=pattern):
        write(path="x.csv", **config)


def test_round_trip_through_the_extractor(upstream: Upstream, write: WriteFn,
                                          extract: ExtractFn, data_dir: Path) -> None:
    upstream(MIXED)
    write(path="rt.csv")
    table = extract(path="rt.csv", parse_dates=["at", "day"])
    assert table.columns == ["at", "day", "flag", "id", "note", "score", "text"]
    assert table.rows[1] == (None, None, False, 1, "multi\nline", None, 'a,b "q"')
    assert table.types["flag"] == "BOOLEAN" and table.types["id"] == "BIGINT"
