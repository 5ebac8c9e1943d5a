"""`osiris-dagster run`: the bundled example end to end, exit codes, progress and summary."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import REPO
from .helpers import write

EXAMPLE = REPO / "pipelines" / "director_stats.yaml"
CONNECTIONS = REPO / "osiris_connections.yaml"


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("OSIRIS_") and k != "DAGSTER_HOME"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "osiris_dagster.cli", *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=300)


def expected_director_stats(min_movies: int) -> list[dict[str, str]]:
    """The example's SQL re-done in pandas, independently of DuckDB."""
    data = REPO / "pipelines" / "data"
    movies = pd.read_csv(data / "movies.csv")
    directors = pd.read_csv(data / "directors.csv")
    df = movies.merge(directors, on="director_id")
    groups = df.groupby("director_id")
    out = []
    for did, g in groups:
        if len(g) < min_movies:
            continue
        out.append({"director_id": str(did), "movie_count": str(len(g)),
                    "total_box_office_usd": str(int(g["box_office_usd"].sum())),
                    "director_name": g["name"].iloc[0]})
    return sorted(out, key=lambda r: r["director_id"])


def test_bundled_example_runs_end_to_end(tmp_path: Path) -> None:
    out = cli("run", str(EXAMPLE), "--connections", str(CONNECTIONS), "--sessions-dir",
              str(tmp_path / "sessions"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    for step in ("extract-movies", "extract-directors", "compute-director-stats",
                 "write-director-stats"):
        assert f"  > {step} (" in out.stdout and f"  ok {step}: " in out.stdout
    assert "extract-movies: 60 rows" in out.stdout
    session_line = next(line for line in out.stdout.splitlines()
                        if line.startswith("session dir: "))
    session_dir = Path(session_line.removeprefix("session dir: "))
    assert (session_dir / "pipeline_data.duckdb").is_file()
    target = tmp_path / "output" / "director_stats.csv"
    assert f"-> {target}" in out.stdout
    with open(target, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    header = list(rows[0])
    assert header == sorted(header)  # Osiris writes columns sorted by name
    got = sorted(({k: r[k] for k in ("director_id", "movie_count", "total_box_office_usd",
                                     "director_name")} for r in rows),
                 key=lambda r: r["director_id"])
    assert got == expected_director_stats(2)


def test_param_and_select_reuse_earlier_sessions(tmp_path: Path) -> None:
    sessions = str(tmp_path / "sessions")
    first = cli("run", str(EXAMPLE), "--connections", str(CONNECTIONS), "--sessions-dir",
                sessions, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = cli("run", str(EXAMPLE), "--connections", str(CONNECTIONS), "--sessions-dir",
                 sessions, "--param", "min_movies=7", "--select", "compute-director-stats",
                 "--select", "write-director-stats", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "extract-movies" not in second.stdout
    with open(tmp_path / "output" / "director_stats.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["director_id"] for r in rows} == {r["director_id"]
                                                for r in expected_director_stats(7)}


def test_param_equal_to_the_default_still_beats_env(tmp_path: Path) -> None:
    """`--param` beats OSIRIS_PARAM_<NAME> and the profile even when its value is the OML
    default (before, such a value counted as not given, and the env value ran silently)."""
    out = cli("run", str(EXAMPLE), "--connections", str(CONNECTIONS), "--sessions-dir",
              str(tmp_path / "sessions"), "--param", "min_movies=2", cwd=tmp_path,
              env={"OSIRIS_PARAM_MIN_MOVIES": "7"})
    assert out.returncode == 0, out.stdout + out.stderr
    with open(tmp_path / "output" / "director_stats.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["director_id"] for r in rows} == {r["director_id"]
                                                for r in expected_director_stats(2)}
    assert len(expected_director_stats(2)) != len(expected_director_stats(7))


def test_invalid_pipeline_exits_2_without_traceback(tmp_path: Path) -> None:
    p = write(tmp_path / "bad.yaml", "oml_version: \"0.1.0\"\nname: bad\nsteps:\n"
                                     "  - id: a\n    component: duckdb.processor\n"
                                     "    mode: read\n    config: {query: 'SELECT 1'}\n")
    out = cli("run", str(p), cwd=tmp_path)
    assert out.returncode == 2
    assert f"{p}:6: step 'a': mode 'read' is not allowed" in out.stderr
    assert "Traceback" not in out.stdout + out.stderr


@pytest.mark.parametrize("args, message", [
    (["--select", "nope"], "--select names unknown step(s) nope"),
    (["--param", "novalue"], "--param expects KEY=VALUE"),
    (["--param", "min_movies=abc"], "parameter 'min_movies' expects an integer"),
    (["--connections", "missing.yaml"], "connections file missing.yaml does not exist"),
    (["--profile", "prod"], "profile 'prod' (asked for by --profile, or by `profile` in the "
                            "run config) is not defined"),
])
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    out = cli("run", str(EXAMPLE), *args, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_failing_step_exits_1_and_names_step_and_cause(tmp_path: Path) -> None:
    p = write(tmp_path / "fail.yaml", """\
oml_version: "0.1.0"
name: failing
steps:
  - id: read-missing
    component: filesystem.csv_extractor
    mode: read
    config: {path: does/not/exist.csv}
  - id: after
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT * FROM input_df"}
""")
    out = cli("run", str(p), "--sessions-dir", str(tmp_path / "s"), cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "pipeline 'failing', step 'read-missing' failed" in out.stderr
    assert "does/not/exist.csv" in out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    debug = cli("run", str(p), "--sessions-dir", str(tmp_path / "s"), "--debug", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_heartbeat_reports_long_steps(tmp_path: Path) -> None:
    p = write(tmp_path / "slow.yaml", """\
oml_version: "0.1.0"
name: slow
steps:
  - id: crunch
    component: duckdb.processor
    mode: transform
    config:
      query: "SELECT count(*) AS n FROM range(2500000000) t(x) WHERE x % 7 = 3"
""")
    out = cli("run", str(p), "--sessions-dir", str(tmp_path / "s"), cwd=tmp_path,
              env={"OSIRIS_HEARTBEAT_SECONDS": "0.5"})
    assert out.returncode == 0, out.stderr
    assert "  .. crunch: running " in out.stdout


REPORT = """\
oml_version: "0.1.0"
name: report
steps:
  - id: build-numbers
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT range AS n FROM range(5)"}
  - id: save-report
    component: filesystem.csv_writer
    mode: write
    config: {path: out/report.csv}
"""


def _last_error_line(stderr: str) -> str:
    return [line for line in stderr.splitlines() if line.strip()][-1]


def test_failure_ends_with_the_root_cause_never_materialised(tmp_path: Path) -> None:
    """Dagster wraps an input-loading failure; the CLI must show the product's own cause."""
    p = write(tmp_path / "report.yaml", REPORT)
    out = cli("run", str(p), "--sessions-dir", str(tmp_path / "s"), "--select", "save-report",
              cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    last = _last_error_line(out.stderr)
    assert "step 'save-report'" in last
    assert last.endswith("has never been materialised; materialise 'report/build-numbers' "
                         "first (or materialise the whole pipeline)"), out.stderr
    assert "Traceback" not in out.stderr
    # stdout showed no FAILED line, and a session directory that was never made
    assert "  FAILED save-report: " in out.stdout and "has never been materialised" in out.stdout
    assert "session dir: none (no step ran)" in out.stdout
    assert not (tmp_path / "s").exists() or not [
        d for d in (tmp_path / "s").iterdir() if not d.name.startswith(".")]


def test_failure_ends_with_the_root_cause_session_gone(tmp_path: Path) -> None:
    p = write(tmp_path / "report.yaml", REPORT)
    sessions = tmp_path / "s"
    first = cli("run", str(p), "--sessions-dir", str(sessions), cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    session_id = next(line.split()[1] for line in first.stdout.splitlines()
                      if line.startswith("session "))
    shutil.rmtree(sessions / session_id)
    out = cli("run", str(p), "--sessions-dir", str(sessions), "--select", "save-report",
              cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    last = _last_error_line(out.stderr)
    assert "step 'save-report'" in last
    assert f"was materialised in session {session_id}, whose directory " \
           f"{sessions / session_id} is gone (cleaned or deleted); materialise " \
           "'report/build-numbers' again" in last, out.stderr
    assert "never been materialised" not in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("blocking", [False, True])
def test_failed_checks_are_printed(tmp_path: Path, blocking: bool) -> None:
    """A failed check was only in events.jsonl and Dagster: the command printed `ok` and
    `done` (and, blocking, an error without the counts)."""
    write(tmp_path / "o.csv", "id,amount\n1,5\n2,\n3,-1\n")
    p = write(tmp_path / "chk.yaml", f"""\
oml_version: "0.1.0"
name: chk
x-dagster:
  steps:
    orders:
      checks:
        not_null: [amount]
        expression: "amount >= 0"
        row_count: {{min: 1}}
        blocking: {str(blocking).lower()}
steps:
  - {{id: orders, component: filesystem.csv_extractor, mode: read, config: {{path: o.csv}}}}
""")
    out = cli("run", str(p), "--sessions-dir", str(tmp_path / "s"), cwd=tmp_path)
    assert out.returncode == (1 if blocking else 0), out.stdout + out.stderr
    kind = "blocking check" if blocking else "check"
    assert f"  ! orders: {kind} not_null failed: 1 failing row(s)" in out.stdout
    assert f"  ! orders: {kind} expression failed: 2 failing row(s)" in out.stdout
    assert "row_count failed" not in out.stdout
    # a step whose table a blocking check refused is FAILED, never `ok` first
    lines = out.stdout.splitlines()
    assert any(line.startswith("  ok orders: 3 rows in") for line in lines) is not blocking
    assert any(line.startswith("orders: 3 rows (") for line in lines) is not blocking  # summary
    assert ("  FAILED orders: blocking check(s) failed: not_null, expression" in lines) is \
        blocking, out.stdout


def test_a_drivers_notice_is_printed_and_logged(tmp_path: Path) -> None:
    """Header names differing only in case were renamed with only an event in events.jsonl
    (a review found the renaming silent); a driver now has a notice: a `!` line of the CLI,
    a warning in Dagster's run log, and the event `notice`."""
    write(tmp_path / "case.csv", "id,ID,Name,name\n1,2,a,b\n")
    p = write(tmp_path / "case.yaml", """\
oml_version: "0.1.0"
name: case
steps:
  - {id: read, component: filesystem.csv_extractor, mode: read, config: {path: case.csv}}
""")
    out = cli("run", str(p), "--sessions-dir", str(tmp_path / "s"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert ("  ! read: column names that differ only in case are kept apart (DuckDB's column "
            "names ignore case): 'ID' as 'ID.1', 'name' as 'name.1'") in out.stdout, out.stdout
    events = "".join(f.read_text() for f in (tmp_path / "s").rglob("events.jsonl"))
    assert '"event": "notice"' in events or '"event":"notice"' in events


def test_ctrl_c_names_what_became_of_the_step(tmp_path: Path) -> None:
    """Ctrl-C during a step printed `failed: ...DagsterExecutionInterruptedError`, not what
    the session recorded (stopped, or finished while stopping: its rows written)."""
    import signal
    import threading

    p = write(tmp_path / "cross.yaml", """\
oml_version: "0.1.0"
name: interrupted
steps:
  - {id: a, component: duckdb.processor, mode: transform,
     config: {query: "SELECT x FROM range(150000) t(x)"}}
  - {id: b, component: duckdb.processor, mode: transform, needs: [a],
     config: {query: "SELECT sum(p.x * q.x) AS s FROM df_a p, df_a q"}}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_")
           and k != "DAGSTER_HOME"}
    out_path = tmp_path / "out.txt"
    with out_path.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "osiris_dagster.cli", "run", str(p),
                                 "--sessions-dir", str(tmp_path / "s")], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            while "  > b (" not in out_path.read_text():  # step b's query is running
                assert proc.poll() is None, out_path.read_text()
                threading.Event().wait(0.1)
            os.killpg(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1
    assert "  FAILED b: cancelled: the run was terminated" in out_path.read_text()
    assert "error: pipeline 'interrupted', step 'b' failed: cancelled: the run was " \
           "terminated" in err, err
    assert "DagsterExecutionInterruptedError" not in err + out_path.read_text()


PARTITIONED = """\
oml_version: "0.1.0"
name: pdaily
x-dagster:
  partitions: {daily: {start: "2026-03-27", end: "2026-04-03"}}
steps:
  - id: day
    component: duckdb.processor
    mode: transform
    config:
      query: "SELECT '${params.partition_key}' AS k, '${params.partition_end}' AS e"
  - id: write
    component: filesystem.csv_writer
    mode: write
    config: {path: "out_${params.partition_key}.csv"}
"""


def test_run_of_a_partitioned_pipeline_needs_partition(tmp_path: Path) -> None:
    """Before, `run` started a non-partitioned run of partitioned assets: it failed inside
    Dagster ("Cannot access partition_key for a non-partitioned run", exit 1), and `--select`
    of the first step even succeeded with `partition_key` silently the partitions' start."""
    p = write(tmp_path / "pdaily.yaml", PARTITIONED)
    conns = write(tmp_path / "conns.yaml", "version: 1\nconnections:\n  filesystem:\n    here:\n"
                                           f"      default: true\n      base_dir: {tmp_path}\n")
    base = [str(p), "--connections", str(conns), "--sessions-dir", str(tmp_path / "s")]
    for extra in ([], ["--select", "day"]):
        refused = cli("run", *base, *extra, cwd=tmp_path)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "needs --partition KEY" in refused.stderr, refused.stderr
        assert "dagster asset materialize" in refused.stderr
        assert "session" not in refused.stdout and "Traceback" not in refused.stderr
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").glob("*-*"))

    ran = cli("run", *base, "--partition", "2026-03-29", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "partition 2026-03-29" in ran.stdout
    assert (tmp_path / "out_2026-03-29.csv").read_text().splitlines()[1:] == [
        "2026-03-30,2026-03-29"]
    alone = cli("run", *base, "--partition", "2026-03-29", "--select", "write", cwd=tmp_path)
    assert alone.returncode == 0, alone.stdout + alone.stderr  # that partition's upstream

    for key, told in (("2026-04-03", "2026-03-27 ... 2026-04-02"),
                      ("29.3.2026", "2026-03-27 ... 2026-04-02"),
                      ("", "2026-03-27 ... 2026-04-02")):
        bad = cli("run", *base, "--partition", key, cwd=tmp_path)
        assert bad.returncode == 2, bad.stdout + bad.stderr
        assert f"no partition '{key}'" in bad.stderr and told in bad.stderr, bad.stderr
    given = cli("run", *base, "--partition", "2026-03-29", "--param",
                "partition_key=2026-03-30", cwd=tmp_path)
    assert given.returncode == 2 and "--partition sets it" in given.stderr, given.stderr


def test_partition_of_a_pipeline_without_partitions_exits_2(tmp_path: Path) -> None:
    out = cli("run", str(EXAMPLE), "--connections", str(CONNECTIONS), "--partition", "eu",
              cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "has no partitions" in out.stderr and "without --partition" in out.stderr


def test_progress_lines_are_printed_at_most_every_few_seconds_per_step() -> None:
    """A paginated extract reports progress per page: the CLI printed a line for each (2,000
    lines for 2,000 pages). The first and then one per interval are printed; a step's other
    lines (start, ok, errors) always are."""
    import io
    import logging

    from osiris_dagster.cli import _ProgressPrinter, _RunOutput

    buffer = io.StringIO()
    printer = _ProgressPrinter(_RunOutput(buffer))

    def emit(**fields: object) -> None:
        record = logging.LogRecord("osiris", logging.INFO, __file__, 0, "x", None, None)
        record.osiris = fields  # type: ignore[attr-defined]
        printer.emit(record)

    emit(event="step_start", step_id="pages", component="graphql.extractor")
    for page in range(2000):
        emit(event="progress", step_id="pages", elapsed_s=0.1, rows=page * 10)
    emit(event="progress", step_id="other", elapsed_s=0.1, rows=1)
    lines = buffer.getvalue().splitlines()
    assert [line for line in lines if "pages: running" in line] == [
        "  .. pages: running 0.1s, 0 rows so far"]
    assert "  .. other: running 0.1s, 1 rows so far" in lines


@pytest.mark.parametrize("sqlite_says", ["database or disk is full", "disk I/O error"])
def test_a_full_disk_ends_the_command_with_an_error_not_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        sqlite_says: str) -> None:
    """Dagster's event log write failing on a full disk ended `run` in a 100-line traceback
    (SQLite says "disk I/O error" where a journal or schema read fails for want of space)."""
    import sqlite3

    from osiris_dagster import cli as cli_module

    def disk_full(*args: object, **kwargs: object) -> int:
        try:
            raise sqlite3.OperationalError(sqlite_says)
        except sqlite3.OperationalError as exc:  # as SQLAlchemy wraps it
            raise RuntimeError(f"(sqlite3.OperationalError) {sqlite_says}\n"
                               "(Background on this error at: https://sqlalche.me)") from exc

    monkeypatch.setattr(cli_module, "_run_with_dagster", disk_full)
    code = cli_module.main(["run", str(EXAMPLE), "--connections", str(CONNECTIONS),
                            "--sessions-dir", str(tmp_path / "sessions")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"error: a disk could not be written ((sqlite3.OperationalError) "
                          f"{sqlite_says}); it is full, or failing. Free space where the "
                          "sessions directory")
    assert "Traceback" not in err
