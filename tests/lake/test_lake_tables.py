"""Step tables in the lake: a run's steps are tables of its session schema, a later run reads an
earlier session's tables, and two runs at once keep to their own schemas.

Every check reads the lake through a fresh DuckDB connection that attaches the same catalog and
data path, so what is asserted is what another worker (or a later run) would see.
"""

from __future__ import annotations

from pathlib import Path

from ..gate import Gate, gate_step
from .conftest import (
    Lake,
    Spawn,
    assert_no_traceback,
    dagster_job,
    dagster_materialize,
    dagster_project,
    only_new_session,
    osiris_run,
    wait_for,
)

MOVIES = "movie_id,director_id,gross\n1,1,100\n2,1,50\n3,2,70\n4,3,5\n"
DIRECTORS = "director_id,name\n1,Ann\n2,Bob\n3,Cy\n"

FLOW = """\
oml_version: "0.1.0"
name: lakeflow
steps:
  - id: movies
    component: filesystem.csv_extractor
    mode: read
    config: {path: movies.csv}
  - id: directors
    component: filesystem.csv_extractor
    mode: read
    needs: []
    config: {path: directors.csv}
  - id: per-director
    component: duckdb.processor
    mode: transform
    needs: [movies, directors]
    config:
      query: >-
        SELECT d.name, count(*) AS movies, sum(m.gross) AS gross
        FROM df_movies m JOIN df_directors d USING (director_id) GROUP BY d.name
"""

FLOW_TABLES = ["directors", "movies", "per_director"]
PER_DIRECTOR = [("Ann", 2, 150), ("Bob", 1, 70), ("Cy", 1, 5)]


def _check_flow(lake: Lake, session_id: str) -> None:
    lake.assert_tables(session_id, FLOW_TABLES)
    assert lake.rows(session_id, "per_director") == PER_DIRECTOR
    assert lake.rows(session_id, "movies") == [(1, 1, 100), (2, 1, 50), (3, 2, 70), (4, 3, 5)]
    assert lake.rows(session_id, "directors") == [(1, "Ann"), (2, "Bob"), (3, "Cy")]


def test_cli_run_writes_each_step_as_a_table_of_its_session(lake: Lake, spawn: Spawn,
                                                            tmp_path: Path) -> None:
    work = tmp_path / "cli"
    work.mkdir()
    (work / "pipe.yaml").write_text(FLOW, encoding="utf-8")
    (work / "movies.csv").write_text(MOVIES, encoding="utf-8")
    (work / "directors.csv").write_text(DIRECTORS, encoding="utf-8")
    run = spawn(osiris_run("pipe.yaml"), work, lake.env)
    assert run.wait() == 0, run.describe()
    assert_no_traceback(run)
    session = run.session_id()
    _check_flow(lake, session)
    assert lake.schemas() == [session]
    assert not (lake.sessions / session / "pipeline_data.duckdb").exists()


def test_dagster_job_on_the_multiprocess_executor_writes_the_same_tables(
        lake: Lake, spawn: Spawn, tmp_path: Path) -> None:
    project = dagster_project(tmp_path / "dg", lake, FLOW,
                              {"movies.csv": MOVIES, "directors.csv": DIRECTORS})
    run = spawn(dagster_job("lakeflow"), project.dir, project.env)
    assert run.wait() == 0, run.describe()
    assert "Executing steps using multiprocess executor" in run.output, run.describe()
    (session,) = lake.schemas()
    _check_flow(lake, session)
    events = [e["event"] for e in lake.events(session)]
    assert events.count("run_start") == 1 and events.count("run_end") == 1, events
    assert events.count("step_complete") == 3, events
    pids = project.step_starts(session)
    assert sorted(pids) == ["lakeflow__directors", "lakeflow__movies", "lakeflow__per_director"]
    assert run.popen.pid not in pids.values(), f"a step ran in the parent process: {pids}"


# A SQL step that is the first to write into its session: the session's schema has no data
# directory yet when the sealed step creates its table.
SQL_FIRST = """\
oml_version: "0.1.0"
name: sqlfirst
steps:
  - id: numbers
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT range AS n FROM range(5)"}
  - id: total
    component: duckdb.processor
    mode: transform
    needs: [numbers]
    config: {query: "SELECT sum(n) AS total FROM df_numbers"}
"""


def test_a_sql_step_may_be_the_first_to_write_its_session(lake: Lake, spawn: Spawn,
                                                          tmp_path: Path) -> None:
    work = tmp_path / "sqlfirst"
    work.mkdir()
    (work / "pipe.yaml").write_text(SQL_FIRST, encoding="utf-8")
    run = spawn(osiris_run("pipe.yaml"), work, lake.env)
    assert run.wait() == 0, run.describe()
    session = run.session_id()
    lake.assert_tables(session, ["numbers", "total"])
    assert lake.rows(session, "total") == [(10,)]


LATER = """\
oml_version: "0.1.0"
name: later
params:
  factor: {default: 10}
steps:
  - id: src
    component: filesystem.csv_extractor
    mode: read
    config: {path: src.csv}
  - id: total
    component: duckdb.processor
    mode: transform
    needs: [src]
    config: {query: "SELECT sum(x) * ${params.factor} AS total FROM df_src"}
"""


def test_a_later_run_of_one_asset_reads_the_earlier_sessions_tables(
        lake: Lake, spawn: Spawn, tmp_path: Path) -> None:
    project = dagster_project(tmp_path / "later", lake, LATER, {"src.csv": "x\n1\n2\n3\n"})
    first = spawn(dagster_job("later"), project.dir, project.env)
    assert first.wait() == 0, first.describe()
    (earlier,) = lake.schemas()
    assert lake.rows(earlier, "total") == [(60,)]

    # The file changes, but `src` is not materialised again: the later run must read the
    # earlier session's table, not the file.
    (project.dir / "src.csv").write_text("x\n1000\n", encoding="utf-8")
    config = project.run_config("factor.yaml", "later", {"factor": 100})
    second = spawn(dagster_materialize("later/total", config), project.dir, project.env)
    assert second.wait() == 0, second.describe()
    later = only_new_session(lake, [earlier])
    lake.assert_tables(later, ["total"])
    assert lake.rows(later, "total") == [(600,)]
    lake.assert_tables(earlier, ["src", "total"])  # the earlier session is untouched
    assert lake.rows(earlier, "total") == [(60,)]
    assert lake.schemas() == sorted([earlier, later])


TWICE_TAIL = """\
  - id: tagged
    component: duckdb.processor
    mode: transform
    needs: [wait]
    config:
      query: "SELECT ${params.tag} AS tag, ${params.k} * sum(ok) AS k FROM df_wait"
"""


def test_two_runs_at_once_keep_their_own_session_schemas(lake: Lake, spawn: Spawn,
                                                         tmp_path: Path) -> None:
    gate = Gate()
    try:
        work = tmp_path / "twice"
        work.mkdir()
        (work / "pipe.yaml").write_text(
            'oml_version: "0.1.0"\nname: twice\nparams:\n  tag: {default: none}\n'
            "  k: {default: 0}\nsteps:\n" + gate_step("wait", gate.url, []) + TWICE_TAIL,
            encoding="utf-8")
        runs = [spawn(osiris_run("pipe.yaml", "--param", f"tag={tag}", "--param", f"k={k}"),
                      work, lake.env, name=f"run-{tag}") for tag, k in (("one", 1), ("two", 2))]
        # both runs are provably in flight at once: each has a step waiting at the gate
        wait_for(lambda: gate.calls >= 2, "both runs to reach the gate", runs)
        gate.open()
        for run in runs:
            assert run.wait() == 0, run.describe()
    finally:
        gate.close()
    one, two = (run.session_id() for run in runs)
    assert one != two
    for session, tag, k in ((one, "one", 1), (two, "two", 2)):
        lake.assert_tables(session, ["tagged", "wait"])
        assert lake.rows(session, "tagged") == [(tag, k)]
        assert lake.rows(session, "wait") == [(1,)]
    assert lake.schemas() == sorted([one, two])
