"""A corpus of bad pipeline files, connection files and data files.

Every case must end with a clear message (exit 2 for invalid input, 1 for a failing step) or a
correct result: never a Python traceback, never a hang, never a lost previous output file.

* pipeline files: `osiris-dagster validate` in-process, then `osiris-dagster run` in the batch;
* data, connection and writer cases: `osiris-dagster run`, many per subprocess (`run_batch`);
* inputs that could hang or crash the interpreter (anchor bombs, deep nesting, 10 MB values):
  one subprocess each, with a timeout.
"""

from __future__ import annotations

import csv
import json
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from osiris_dagster import cli
from osiris_dagster.core.naming import table_names

from .conftest import (
    TMP_TABLE_PREFIX,
    BatchItem,
    CliResult,
    assert_no_traceback,
    db_query,
    db_tables,
    hidden_temp_files,
    run_batch,
    run_cli,
)

PREVIOUS = b"previous,output\n1,2\n"  # out/result.csv before every run case
OUTPUT = "out/result.csv"
Content = str | bytes | Callable[[Path], None]


def _garbage(seed: int, size: int) -> bytes:
    # \xff never occurs in UTF-8, so the bytes can never decode as text by accident
    return b"\x89PNG\r\n\x1a\n\xff" + random.Random(seed).randbytes(size) + b"\xff\x00"


# -- pipeline texts ---------------------------------------------------------------------------
HEAD = 'oml_version: "0.1.0"\nname: bad-input\n'
PROC = ("  - id: make\n    component: duckdb.processor\n    mode: transform\n"
        "    config: {query: \"SELECT 1 AS one\"}\n")
WRITE = ("  - id: write\n    component: filesystem.csv_writer\n    mode: write\n"
         f"    config: {{path: {OUTPUT}}}\n")
GOOD = HEAD + "steps:\n" + PROC + WRITE


def extract(config: str, sid: str = "read") -> str:
    return (f"  - id: {sid}\n    component: filesystem.csv_extractor\n    mode: read\n"
            f"    config: {config}\n")


def csv_pipeline(path: str = "data.csv", extra: str = "", name: str = "bad-data") -> str:
    return (f'oml_version: "0.1.0"\nname: {name}\nsteps:\n'
            + extract("{path: " + json.dumps(path) + extra + "}") + WRITE)


def with_step(step: str) -> str:
    return HEAD + "steps:\n" + step + WRITE


def anchor_bomb(levels: int = 10, indent: str = "  ") -> str:
    """Billion laughs: 9 ** levels strings from a few hundred bytes."""
    lines = [f'{indent}l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"{indent}l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def deep_block(depth: int) -> str:
    return "".join("  " * (i + 1) + f"k{i}:\n" for i in range(depth - 1)) + \
        "  " * depth + f"k{depth - 1}: 1\n"


MANY_STEPS = 10_000


def many_steps(n: int) -> str:
    parts = [HEAD, "steps:\n"]
    for i in range(n):
        parts.append(f"  - id: s{i}\n    component: duckdb.processor\n    mode: transform\n"
                     f"    config: {{query: \"SELECT {i} AS v\"}}\n")
    return "".join(parts)


# -- 1. pipeline files: validate (in-process) and run (batch) ---------------------------------
@dataclass(frozen=True)
class PipelineCase:
    id: str
    text: str | bytes
    says: tuple[str, ...] = ()
    rc: int = 2
    run: bool = True


P = PipelineCase
PIPELINE_CASES = [
    P("malformed-unclosed-flow", HEAD + "steps: [\n  {id: a\n", ("invalid YAML",)),
    P("malformed-unclosed-quote", HEAD + 'steps:\n  - id: "a\n', ("invalid YAML",)),
    P("malformed-bad-indent", HEAD + "steps:\n  - id: a\n   component: x\n",
      ("pipeline.yaml:5: invalid YAML",)),
    P("tab-indentation", HEAD + "steps:\n\t- id: a\n", ("pipeline.yaml:4: invalid YAML",)),
    P("tab-inside-step", HEAD + "steps:\n  - id: a\n    component:\tduckdb.processor\n"
      "    mode: transform\n    config:\n\t  query: x\n", ("invalid YAML",)),
    P("empty-file", "", ("must be a YAML mapping",)),
    P("only-comments", "# a pipeline\n# nothing else\n", ("must be a YAML mapping",)),
    P("only-whitespace", "   \n\n  \n", ("must be a YAML mapping",)),
    P("top-level-list", "- oml_version: 0.1.0\n- name: x\n", ("must be a YAML mapping",)),
    P("top-level-scalar", "just a string\n", ("must be a YAML mapping",)),
    P("binary-garbage", _garbage(1, 4096), ("cannot read file",)),
    P("utf16-file", GOOD.encode("utf-16"), ("cannot read file",)),
    P("nul-byte", GOOD.replace("name: bad-input", "name: bad\0input"), ("invalid YAML",)),
    P("multiple-documents", GOOD + "---\nname: other\n", ("invalid YAML",)),
    P("python-object-tag", HEAD + 'steps:\n  - !!python/object/apply:os.system ["touch pwned"]\n',
      ("invalid YAML",)),
    P("huge-integer-literal", with_step(extract("{path: x.csv, limit: " + "9" * 5000 + "}"))),
    P("oml-version-number", GOOD.replace('"0.1.0"', "0.1"), ("'oml_version' must be a string",)),
    P("oml-version-unsupported", GOOD.replace('"0.1.0"', '"7.0"'), ("unsupported oml_version",)),
    P("missing-oml-version", GOOD.replace('oml_version: "0.1.0"\n', ""),
      ("missing required key 'oml_version'",)),
    P("name-is-list", GOOD.replace("name: bad-input", "name: [a, b]"),
      ("'name' must be a non-empty string",)),
    P("name-is-empty", GOOD.replace("name: bad-input", 'name: ""'),
      ("'name' must be a non-empty string",)),
    P("steps-is-mapping", HEAD + "steps: {id: a}\n", ("'steps' must be a non-empty list",)),
    P("steps-is-empty", HEAD + "steps: []\n", ("'steps' must be a non-empty list",)),
    P("steps-is-null", HEAD + "steps:\n", ("'steps' must be a non-empty list",)),
    P("step-is-string", HEAD + "steps:\n  - just a string\n", ("steps[0] must be a mapping",)),
    P("step-id-is-int", GOOD.replace("id: make", "id: 5"), ("steps[0].id must be a non-empty",)),
    P("step-id-is-null", GOOD.replace("id: make", "id: null"),
      ("steps[0].id must be a non-empty",)),
    P("step-id-is-mapping", GOOD.replace("id: make", "id: {x: 1}"),
      ("steps[0].id must be a non-empty",)),
    P("component-is-list", GOOD.replace("component: duckdb.processor", "component: [a]"),
      ("'component' must be a string",)),
    P("component-unknown", GOOD.replace("duckdb.processor", "foo.bar"),
      ("unknown component 'foo.bar'",)),
    P("mode-is-int", GOOD.replace("mode: transform", "mode: 5"), ("mode '5' is not one of",)),
    P("mode-wrong-for-component", GOOD.replace("mode: transform", "mode: read"),
      ("mode 'read' is not allowed",)),
    P("needs-is-string", GOOD.replace("mode: write\n", "mode: write\n    needs: make\n"),
      ("'needs' must be a list of step ids",)),
    P("needs-unknown-step", GOOD.replace("mode: write\n", "mode: write\n    needs: [nope]\n"),
      ("needs unknown step 'nope'",)),
    P("needs-cycle", HEAD + "steps:\n"
      + PROC.replace("    config", "    needs: [write]\n    config")
      + WRITE.replace("    config", "    needs: [make]\n    config"), ("cycle",)),
    P("config-is-list", GOOD.replace('config: {query: "SELECT 1 AS one"}', "config: [1, 2]"),
      ("'config' must be a mapping",)),
    P("query-is-int", GOOD.replace('{query: "SELECT 1 AS one"}', "{query: 5}"),
      ("'query' must be string",)),
    P("path-is-list", with_step(extract("{path: [a, b]}")), ("'path' must be string",)),
    P("header-is-string", with_step(extract("{path: x.csv, header: 'yes'}")),
      ("'header' must be boolean or integer",)),
    P("limit-minus-one", with_step(extract("{path: x.csv, limit: -1}")), ("'limit' must be >= 1",)),
    P("limit-1e308", with_step(extract("{path: x.csv, limit: 1.0e+308}")),
      ("'limit' must be integer",)),
    P("limit-nan", with_step(extract("{path: x.csv, limit: .nan}")), ("'limit' must be integer",)),
    P("skip-rows-minus-one", with_step(extract("{path: x.csv, skip_rows: -1}")),
      ("'skip_rows' must be >= 0",)),
    P("chunk-size-400-digits", with_step(extract("{path: x.csv, chunk_size: " + "9" * 400 + "}")),
      ("'chunk_size' must be <=",)),
    P("delimiter-two-chars", with_step(extract("{path: x.csv, delimiter: ';;'}")),
      ("'delimiter' must be at most 1",)),
    P("duplicate-keys", GOOD + "name: again\n", ("duplicate key 'name'",)),
    P("duplicate-step-ids", HEAD + "steps:\n" + PROC + PROC, ("duplicate step id",)),
    P("params-is-list", GOOD + "params: [1, 2]\n", ("'params' must be a mapping",)),
    P("unresolved-param", GOOD.replace("SELECT 1 AS one", "SELECT ${params.nope} AS one"),
      ("unresolved parameter 'nope'",)),
    P("inline-secret", with_step("  - id: db\n    component: mysql.extractor\n    mode: read\n"
                                 "    config: {query: SELECT 1, password: hunter22}\n"),
      ("inline secret",)),
    P("legacy-tasks-key", GOOD + "tasks: []\n", ("legacy key 'tasks'",)),
    P("x-dagster-is-list", GOOD + "x-dagster: [1]\n", ("'x-dagster' must be a mapping",)),
    P("utf8-bom", "\ufeff" + GOOD, rc=0),
    P("merge-key", HEAD + "steps:\n  - <<: {id: make, component: duckdb.processor}\n"
      "    mode: transform\n    config: {query: \"SELECT 1 AS one\"}\n" + WRITE, rc=0),
    P("unicode-everywhere", GOOD.replace("id: make", "id: \"žluťoučký kůň 📦\"")
      .replace("SELECT 1 AS one", "SELECT 'ünïcødé ✓' AS \\\"sloupec ž\\\""), rc=0),
    P("name-10mb", GOOD.replace("name: bad-input", "name: " + "n" * 10_000_000), rc=0,
      run=False),  # the run of a 10 MB value is an isolated case below
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in PIPELINE_CASES])
def test_validate_bad_pipeline(case: PipelineCase, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "pipeline.yaml", case.text)
    rc = cli.main(["validate", "pipeline.yaml"])
    out = capsys.readouterr()
    text = out.out + out.err
    assert rc == case.rc, text[-3000:]
    assert_no_traceback(text)
    if case.rc == 2:
        assert "pipeline.yaml" in out.out + out.err and "error" in out.err, text[-3000:]
    else:
        assert "pipeline.yaml: valid" in out.out
    for fragment in case.says:
        assert fragment in text, f"{fragment!r} not in:\n{text[-3000:]}"
    assert not (tmp_path / "pwned").exists()  # no YAML tag ever executes code


@pytest.mark.parametrize("path, says", [
    pytest.param("missing.yaml", "file not found", id="file-missing"),
    pytest.param("a-directory", "cannot read file", id="path-is-directory"),
])
def test_validate_unreadable_path(path: str, says: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-directory").mkdir()
    assert cli.main(["validate", path]) == 2
    out = capsys.readouterr()
    assert says in out.out and path in out.out
    assert_no_traceback(out.out + out.err)


def test_validate_10000_steps_is_fast_and_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "pipeline.yaml", many_steps(MANY_STEPS))
    wall, cpu = time.monotonic(), time.process_time()
    rc = cli.main(["validate", "pipeline.yaml"])
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    out = capsys.readouterr()
    assert_no_traceback(out.out + out.err)
    assert rc == 0, out.out[-2000:]
    assert f"pipeline.yaml: valid ({MANY_STEPS} steps" in out.out
    assert cpu < 8.0, f"validating {MANY_STEPS} steps took {cpu:.1f}s CPU ({wall:.1f}s wall)"


# -- 2. run cases (data, connections, writers, step ids), many per subprocess ----------------
@dataclass
class Outcome:
    case_dir: Path
    cwd: Path
    result: CliResult
    session_dir: Path | None

    @property
    def db(self) -> Path:
        assert self.session_dir is not None, self.result.describe()
        return self.session_dir / "pipeline_data.duckdb"

    @property
    def output(self) -> Path:
        return self.cwd / OUTPUT

    def rows(self, table: str, order: str = "") -> list[tuple]:
        sql = f'SELECT * FROM "{table}"' + (f" ORDER BY {order}" if order else "")
        return db_query(self.db, sql)


@dataclass(frozen=True)
class RunCase:
    id: str
    pipeline: str | bytes
    files: Mapping[str, Content] = field(default_factory=dict)
    connections: Content | None = None
    rc: tuple[int, ...] = (0,)
    says: tuple[str, ...] = ()
    rows: Mapping[str, int] | None = None  # expected session tables -> rows when rc == 0
    check: Callable[[Outcome], None] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    subdir: str = ""
    timeout: float = 60.0
    use_connections: bool = False  # pass --connections conn.yaml
    own_sessions: bool = False  # a sessions root of its own (default: one for the batch)


def _big_line_file(size: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with open(path, "wb") as fh:
            fh.write(b"id,text\n1,short\n2,")
            chunk = b"x" * (1 << 20)
            left = size
            while left > 0:
                fh.write(chunk[:min(left, len(chunk))])
                left -= len(chunk)
            fh.write(b"\n3,end\n")
    return make


def _check_long_value(size: int, may_refuse: bool) -> Callable[[Outcome], None]:
    def check(o: Outcome) -> None:
        if o.result.rc == 1:
            assert may_refuse, o.result.describe()
            assert "line 3" in o.result.stderr and "longer than" in o.result.stderr
            return
        got = o.rows("read", "id")
        assert [(r[0], len(r[1])) for r in got] == [(1, 5), (2, size), (3, 3)]
    return check


def _expect_rows(table: str, expected: list[tuple], order: str) -> Callable[[Outcome], None]:
    def check(o: Outcome) -> None:
        assert o.rows(table, order) == expected
    return check


def _expect_columns(table: str, names: list[str]) -> Callable[[Outcome], None]:
    def check(o: Outcome) -> None:
        got = [r[0] for r in db_query(o.db, f'DESCRIBE "{table}"')]
        assert got == names
    return check


def _check_limit_beyond_int64(o: Outcome) -> None:
    """A limit larger than any file reads every row (pandas' nrows), or is rejected up front."""
    if o.result.rc == 2:
        assert "'limit'" in o.result.stderr, o.result.describe()
    else:
        assert o.rows("read", "a") == [(1,), (2,)]


def _expect_output(text: str) -> Callable[[Outcome], None]:
    def check(o: Outcome) -> None:
        assert o.output.read_text(encoding="utf-8") == text
    return check


R = RunCase
DATA_CASES = [
    R("data-binary-garbage", csv_pipeline(), {"data.csv": _garbage(2, 65536)}, rc=(1,),
      says=("step 'read'", "data.csv", "not valid utf-8")),
    R("data-nul-bytes", csv_pipeline(), {"data.csv": b"a,b\n1,\x00\x00x\n2,y\n"},
      rows={"read": 2}, check=_expect_rows("read", [(1, "\x00\x00x"), (2, "y")], "a")),
    R("data-duplicate-column-names", csv_pipeline(), {"data.csv": "a,a,b,A\n1,2,3,4\n"},
      rows={"read": 1}, check=_expect_columns("read", ["a", "a.1", "b", "A.2"])),
    R("data-row-wider-than-header", csv_pipeline(), {"data.csv": "a,b\n1,2\n3,4,5\n"},
      rc=(1,), says=("step 'read'", "line 3 has 3 fields")),
    R("data-first-row-shorter-than-header", csv_pipeline(), {"data.csv": "a,b,c\n1,2\n3,4,5\n"},
      rows={"read": 2}, check=_expect_rows("read", [(1, 2, None), (3, 4, 5)], "a")),
    R("data-later-row-shorter-than-header", csv_pipeline(), {"data.csv": "a,b,c\n1,2,3\n4,5\n"},
      rows={"read": 2}, check=_expect_rows("read", [(1, 2, 3), (4, 5, None)], "a")),
    R("data-latin1-bytes-in-utf8-file", csv_pipeline(),
      {"data.csv": "name,city\nJosé,Zürich\n".encode() + "Ana,Malmö\n".encode("latin-1")},
      rc=(1,), says=("step 'read'", "line 3", "utf-8")),
    R("data-latin1-file-declared", csv_pipeline(extra=", encoding: latin-1"),
      {"data.csv": "name,city\nJosé,Zürich\nAna,Malmö\n".encode("latin-1")},
      rows={"read": 2}, check=_expect_rows("read", [("Ana", "Malmö"), ("José", "Zürich")],
                                           "name")),
    R("data-empty-file", csv_pipeline(), {"data.csv": b""}, rows={"read": 0}),
    R("data-header-only", csv_pipeline(), {"data.csv": "a,b\n"}, rows={"read": 0},
      check=_expect_output("a,b\n")),
    R("data-only-blank-lines", csv_pipeline(), {"data.csv": "\n\n\n"}, rows={"read": 0}),
    R("data-line-over-duckdb-max-line-size", csv_pipeline(),
      {"data.csv": _big_line_file(3_000_000)}, rows={"read": 3},
      check=_check_long_value(3_000_000, may_refuse=False)),
    R("data-line-64mb", csv_pipeline(), {"data.csv": _big_line_file(64 << 20)}, rc=(0, 1),
      check=_check_long_value(64 << 20, may_refuse=True), timeout=120),
    R("data-field-10mb", csv_pipeline(), {"data.csv": _big_line_file(10_000_000)},
      rows={"read": 3}, check=_check_long_value(10_000_000, may_refuse=False)),
    R("data-unclosed-quote", csv_pipeline(), {"data.csv": 'a,b\n1,"oops\n2,3\n'}, rc=(1,),
      says=("step 'read'", "line 2")),
    # after a quoted line break DuckDB reads single-threaded, and read this quote as NULL
    R("data-unclosed-quote-after-quoted-line-break", csv_pipeline(),
      {"data.csv": 'a,b\n1,"x\ny"\n2,"oops\n3,4\n'}, rc=(1,),
      says=("step 'read'", "data.csv: line 4", "closing quote never comes")),
    # Known limitation: DuckDB's reader refuses mixed \r\n and \n endings; the error is clear.
    # CRLF and LF in one file: DuckDB fails on it, pandas reads both (read from a copy)
    R("data-mixed-line-endings", csv_pipeline(), {"data.csv": b"a,b\r\n1,2\n3,4\r\n5,6"},
      rows={"read": 3}, check=_expect_rows("read", [(1, 2), (3, 4), (5, 6)], "a")),
    R("data-cr-line-endings", csv_pipeline(), {"data.csv": b"a,b\r1,2\r3,4\r"},
      rows={"read": 2}),
    R("data-huge-and-negative-numbers", csv_pipeline(),
      {"data.csv": "a,b\n1e308,-1\n-1.7976931348623157e308,0\n"}, rows={"read": 2},
      check=_expect_rows("read", [(-1.7976931348623157e308, 0), (1e308, -1)], "a")),
    R("data-fake-gzip", csv_pipeline("data.csv.gz"), {"data.csv.gz": "a,b\n1,2\n"}, rc=(1,),
      says=("step 'read'", "gzip")),
    R("data-endless-nul-stream", csv_pipeline("/dev/zero"), rc=(1,),
      says=("step 'read'", "/dev/zero")),
    R("data-file-missing", csv_pipeline("nope.csv"), rc=(1,),
      says=("step 'read'", "CSV file not found")),
    R("data-path-is-directory", csv_pipeline("adir"), {"adir/keep": ""}, rc=(1,),
      says=("step 'read'", "is a directory")),
    R("data-empty-header-names", csv_pipeline(), {"data.csv": ",,x\n1,2,3\n"}, rows={"read": 1},
      check=_expect_columns("read", ["Unnamed: 0", "Unnamed: 1", "x"])),
    R("data-limit-beyond-int64",
      csv_pipeline(extra=", limit: 100000000000000000000000000000"), {"data.csv": "a\n1\n2\n"},
      rc=(0, 2), check=_check_limit_beyond_int64),
]

WRITER_CASES = [
    R("writer-path-is-directory", with_step(PROC).replace(OUTPUT, "out"), rc=(1,),
      says=("step 'write'", "is a directory")),
    R("writer-parent-is-a-file", with_step(PROC).replace(OUTPUT, f"{OUTPUT}/x.csv"), rc=(1,),
      says=("step 'write'",)),
    R("writer-unencodable-character",
      HEAD + "steps:\n" + PROC.replace("SELECT 1 AS one", "SELECT 'Malmö ✓' AS city")
      + WRITE.replace(f"{{path: {OUTPUT}}}", f"{{path: {OUTPUT}, encoding: ascii}}"),
      rc=(1,), says=("step 'write'", "city")),
]

CONN_PIPELINE = ('oml_version: "0.1.0"\nname: bad-conn\nsteps:\n'
                 + extract('{path: data.csv, connection: "@filesystem.local"}') + WRITE)
CONN_OK = "connections:\n  filesystem:\n    local: {base_dir: .}\n"


def conn_case(case_id: str, connections: Content | None, *says: str,
              rc: tuple[int, ...] = (1, 2),
              check: Callable[[Outcome], None] | None = None) -> RunCase:
    return R(case_id, CONN_PIPELINE, {"data.csv": "a,b\n1,2\n"}, connections=connections, rc=rc,
             says=says, check=check, use_connections=True)


def _check_family_list(o: Outcome) -> None:
    # the family *is* present, just not a mapping: the message must not claim it is undefined
    assert "is not defined (families: filesystem)" not in o.result.stderr, o.result.stderr


CONNECTION_CASES = [
    conn_case("conn-ok-control", CONN_OK, rc=(0,)),
    conn_case("conn-file-is-a-list", "- filesystem\n- local\n", "conn.yaml", "connections:"),
    conn_case("conn-no-connections-key", "version: 1\nfilesystem: {local: {}}\n", "conn.yaml",
              "connections:"),
    conn_case("conn-empty-file", "", "conn.yaml", "connections:"),
    conn_case("conn-only-comments", "# nothing here\n", "conn.yaml", "connections:"),
    conn_case("conn-connections-is-list", "connections: [1, 2]\n", "conn.yaml", "connections:"),
    conn_case("conn-malformed-yaml", "connections: [\n", "conn.yaml", "invalid YAML"),
    conn_case("conn-unset-env-var",
              "connections:\n  filesystem:\n    local: {base_dir: '${OSIRIS_RELY_UNSET}'}\n",
              "OSIRIS_RELY_UNSET", "is not set", "@filesystem.local"),
    conn_case("conn-binary-file", _garbage(3, 512), "conn.yaml"),
    conn_case("conn-utf16-file", CONN_OK.encode("utf-16"), "conn.yaml"),
    conn_case("conn-alias-is-string", "connections:\n  filesystem:\n    local: hello\n",
              "conn.yaml", "'@filesystem.local' must be a mapping"),
    conn_case("conn-alias-missing", "connections:\n  filesystem:\n    other: {base_dir: .}\n",
              "conn.yaml", "'@filesystem.local' is not defined"),
    conn_case("conn-family-is-list", "connections:\n  filesystem: [local]\n", "conn.yaml",
              "filesystem", check=_check_family_list),
    conn_case("conn-file-missing", None, "conn.yaml", "does not exist", rc=(2,)),
]


_ids_steps = [
    ("x", "SELECT 42 AS keep", None),
    ("../x", "SELECT range AS v FROM range(3)", []),
    ('a"; DROP TABLE x; --', "SELECT v * 2 AS w FROM input_df", ["../x"]),
    ("x'); DROP TABLE x; --", "SELECT w FROM input_df", ['a"; DROP TABLE x; --']),
    ("../../../../../../escape", "SELECT * FROM input_df", ["x'); DROP TABLE x; --"]),
    ("žluťoučký kůň 📦", "SELECT * FROM input_df", ["../../../../../../escape"]),
    ("/etc/passwd", "SELECT w AS doubled FROM input_df ORDER BY w", ["žluťoučký kůň 📦"]),
]


def _yaml_str(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


IDS_PIPELINE = ('oml_version: "0.1.0"\nname: "../../../evil name"\nsteps:\n' + "".join(
    f"  - id: {_yaml_str(sid)}\n    component: duckdb.processor\n    mode: transform\n"
    f"    needs: {_yaml_str(needs or [])}\n    config: {{query: {_yaml_str(query)}}}\n"
    for sid, query, needs in _ids_steps)
    + "  - id: \"..\"\n    component: filesystem.csv_writer\n    mode: write\n"
    + f"    needs: [\"/etc/passwd\"]\n    config: {{path: {OUTPUT}}}\n")


def _check_ids(o: Outcome) -> None:
    ids = [sid for sid, _, _ in _ids_steps] + [".."]
    tables = db_tables(o.db)
    names = table_names(ids)
    assert tables == {names[s]: (1 if s == "x" else 3) for s in ids[:-1]}, tables
    assert o.rows(names["x"]) == [(42,)]  # not dropped by an injected statement
    assert o.output.read_text(encoding="utf-8") == "doubled\n0\n2\n4\n"
    # nothing was created outside the working directory (escape attempts stay inside)
    for path in o.case_dir.rglob("*"):
        inside = path == o.cwd or o.cwd in path.parents or path in o.cwd.parents
        assert inside, f"{path} was created outside the working directory {o.cwd}"
    # one artifacts directory per step, each directly under <session>/artifacts
    artifacts = o.session_dir / "artifacts"
    dirs = sorted(p for p in artifacts.iterdir())
    assert len(dirs) == len(ids), dirs
    for d in dirs:
        assert d.is_dir() and d.parent == artifacts and (d / "cleaned_config.json").is_file()
    root = o.cwd / "sessions"
    assert {p.name for p in root.iterdir()} <= {o.session_dir.name, ".dagster", ".state"}
    for path in o.session_dir.rglob("*"):
        assert o.session_dir in path.resolve().parents


STEP_ID_CASES = [
    R("step-ids-path-traversal-sql-injection-unicode", IDS_PIPELINE, subdir="a/b/c/d",
      check=_check_ids, own_sessions=True),
]


def _pipeline_run_cases() -> list[RunCase]:
    out = []
    for c in PIPELINE_CASES:
        if not c.run:
            continue
        out.append(R(f"pipeline-{c.id}", c.text, rc=(c.rc,), says=c.says,
                     rows={"make": 1} if c.rc == 0 and "make" in str(c.text) else None))
    return out


RUN_CASES = (_pipeline_run_cases() + DATA_CASES + WRITER_CASES + CONNECTION_CASES
             + STEP_ID_CASES)
assert len({c.id for c in RUN_CASES}) == len(RUN_CASES), "duplicate case ids"


def _write(path: Path, content: Content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if callable(content):
        content(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))


def _case_dirs(root: Path, case: RunCase) -> tuple[Path, Path, Path]:
    """(case directory, working directory, sessions root) of a run case."""
    case_dir = root / re.sub(r"[^A-Za-z0-9_.-]", "_", case.id)
    cwd = case_dir / case.subdir if case.subdir else case_dir
    # one sessions root (and Dagster instance) for the batch keeps it fast; cases that inspect
    # the sessions root get their own
    return case_dir, cwd, cwd / "sessions" if case.own_sessions else root / "sessions"


@dataclass
class RunRecord:
    case_dir: Path
    cwd: Path
    sessions: Path
    result: CliResult


@pytest.fixture(scope="module")
def run_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunRecord]]:
    root = tmp_path_factory.mktemp("bad_inputs_run")
    items, records = [], {}
    for case in RUN_CASES:
        case_dir, cwd, sessions = _case_dirs(root, case)
        cwd.mkdir(parents=True)
        _write(cwd / "pipeline.yaml", case.pipeline)
        _write(cwd / OUTPUT, PREVIOUS)
        for name, content in case.files.items():
            _write(cwd / name, content)
        argv = ["run", "pipeline.yaml", "--sessions-dir", str(sessions)]
        if case.connections is not None:
            _write(cwd / "conn.yaml", case.connections)
        if case.use_connections:
            argv += ["--connections", "conn.yaml"]
        items.append(BatchItem(case.id, argv, cwd, dict(case.env), case.timeout))
        records[case.id] = (case_dir, cwd, sessions)
    results = run_batch(items, root)
    yield {cid: RunRecord(*dirs, results[cid]) for cid, dirs in records.items()}
    for big in root.rglob("*.csv"):  # the long-line inputs are large; keep the rest to debug
        if big.stat().st_size > (1 << 20):
            big.unlink()


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in RUN_CASES])
def test_run_bad_input(case: RunCase, run_results: dict[str, RunRecord]) -> None:
    rec = run_results[case.id]
    res, cwd = rec.result, rec.cwd
    assert not res.timed_out, f"hang: {res.describe()}"
    assert res.rc in case.rc, res.describe()
    assert_no_traceback(res.output)
    for fragment in case.says:
        assert fragment in res.output, f"{fragment!r} not in:\n{res.describe()}"
    output = cwd / OUTPUT
    if res.rc != 0:
        assert res.stderr.strip(), "a failure must say why on stderr"
        assert output.read_bytes() == PREVIOUS, "the previous output file was changed"
    if res.rc == 1:
        assert "step '" in res.stderr and "failed" in res.stderr, res.describe()
    assert hidden_temp_files(output) == [], "temporary files left next to the output"
    session_dir = res.session_dir
    db = session_dir / "pipeline_data.duckdb" if session_dir else None
    if res.rc == 0:
        assert db is not None and db.is_file(), res.describe()
    if db is not None and db.is_file():
        assert session_dir.resolve().parent == rec.sessions.resolve()
        tables = db_tables(db)  # the session database opens read-only after any outcome
        assert not [t for t in tables if t.startswith(TMP_TABLE_PREFIX)], tables
        if res.rc == 0 and case.rows is not None:
            for table, rows in case.rows.items():
                assert tables.get(table) == rows, (table, tables)
    if res.rc == 0:
        assert output.read_bytes() != PREVIOUS, "the run succeeded but did not write its output"
    if case.check is not None:
        case.check(Outcome(rec.case_dir, cwd, res, session_dir))


# -- 3. inputs that may hang or crash the interpreter: one subprocess each --------------------
@dataclass(frozen=True)
class IsolatedCase:
    id: str
    files: Mapping[str, Content]
    argv: tuple[str, ...]
    rc: tuple[int, ...]
    says: tuple[str, ...] = ()
    timeout: float = 30.0
    check: Callable[[Path, CliResult], None] | None = None


def _check_10mb_literal(cwd: Path, res: CliResult) -> None:
    db = res.session_dir / "pipeline_data.duckdb"
    assert db_query(db, "SELECT length(big) FROM make") == [(10_000_000,)]
    csv.field_size_limit(max(csv.field_size_limit(), 32 * 1024 * 1024))
    with open(cwd / OUTPUT, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["big"] and len(rows[1][0]) == 10_000_000


def _check_short_error(cwd: Path, res: CliResult) -> None:
    assert len(res.stderr) < 64_000, f"error message of {len(res.stderr)} characters"
    assert (cwd / OUTPUT).read_bytes() == PREVIOUS


def _check_previous_kept(cwd: Path, res: CliResult) -> None:
    assert (cwd / OUTPUT).read_bytes() == PREVIOUS


BOMB_PIPELINE = GOOD + "x-bomb:\n" + anchor_bomb(10)
RUN = ("run", "pipeline.yaml", "--sessions-dir", "sessions")
ISOLATED_CASES = [
    IsolatedCase("yaml-anchor-bomb-pipeline", {"pipeline.yaml": BOMB_PIPELINE},
                 ("validate", "pipeline.yaml"), rc=(0, 2), timeout=20),
    IsolatedCase("yaml-anchor-bomb-connections",
                 {"pipeline.yaml": CONN_PIPELINE, "data.csv": "a,b\n1,2\n",
                  "conn.yaml": "x-bomb:\n" + anchor_bomb(10) + "connections:\n  filesystem:\n"
                  "    local: {base_dir: ., extra: *l9}\n"},
                 (*RUN, "--connections", "conn.yaml"), rc=(0, 1, 2), timeout=20),
    IsolatedCase("yaml-nested-500-deep-block",
                 {"pipeline.yaml": GOOD + "x-deep:\n" + deep_block(500)},
                 ("validate", "pipeline.yaml"), rc=(0, 2)),
    IsolatedCase("yaml-nested-500-deep-flow",
                 {"pipeline.yaml": GOOD.replace(
                     "config: {query", "config: {x-deep: " + "[" * 500 + "]" * 500 + ", query")},
                 RUN, rc=(0, 2), check=_check_previous_kept),
    IsolatedCase("string-10mb-sql-literal",
                 {"pipeline.yaml": GOOD.replace("SELECT 1 AS one",
                                                "SELECT '" + "x" * 10_000_000 + "' AS big")},
                 RUN, rc=(0,), check=_check_10mb_literal),
    IsolatedCase("string-10mb-bad-sql",
                 {"pipeline.yaml": GOOD.replace("SELECT 1 AS one", "SELECT " + "x" * 10_000_000)},
                 RUN, rc=(1,), says=("step 'make'",), check=_check_short_error),
]


@pytest.fixture(scope="module")
def isolated_results(tmp_path_factory: pytest.TempPathFactory
                     ) -> dict[str, tuple[Path, CliResult]]:
    root = tmp_path_factory.mktemp("bad_inputs_isolated")

    def one(case: IsolatedCase) -> tuple[str, tuple[Path, CliResult]]:
        cwd = root / case.id
        cwd.mkdir()
        _write(cwd / OUTPUT, PREVIOUS)
        for name, content in case.files.items():
            _write(cwd / name, content)
        return case.id, (cwd, run_cli(case.argv, cwd, timeout=case.timeout))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, ISOLATED_CASES))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in ISOLATED_CASES])
def test_isolated_bad_input(case: IsolatedCase,
                            isolated_results: dict[str, tuple[Path, CliResult]]) -> None:
    cwd, res = isolated_results[case.id]
    assert not res.timed_out, f"hang: no answer within {case.timeout}s ({res.describe()})"
    assert res.rc in case.rc, res.describe()
    assert_no_traceback(res.output)
    for fragment in case.says:
        assert fragment in res.output, f"{fragment!r} not in:\n{res.describe()}"
    if res.rc != 0:
        assert res.stderr.strip()
    assert hidden_temp_files(cwd / OUTPUT) == []
    if case.check is not None:
        case.check(cwd, res)
