"""An incremental extractor's rows reach every step after it, or its next run reads them again
(or refuses, when setting its state back would write them twice); two runs that read from one
high-water mark do not both deliver the rows after it. Through Dagster, with the PostHog fake."""

from __future__ import annotations

import csv
import json
import logging
import os
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from osiris_dagster.core.errors import StepError
from osiris_dagster.core.settings import Settings
from osiris_dagster.drivers.base import DriverResult, PendingState
from osiris_dagster.oml import validate_pipeline
from osiris_dagster.runtime.runner import StepOutcome, commit_state
from osiris_dagster.runtime.session import Session
from osiris_dagster.runtime.workspace import state_dir_of

from ..helpers import defs_for, failure_description, run_job, write
from .conftest import FakePostHog
from .test_posthog import T0, _posthog_connections, event

PIPELINE = """\
oml_version: "0.1.0"
name: ph-delivery
params:
  target: {tmp}/out/copy.csv
steps:
  - id: events
    component: posthog.extractor
    mode: read
    config: {{data_type: events, initial_since: "2024-03-01T00:00:00Z", page_size: 100}}
  - id: copy
    component: filesystem.csv_writer
    mode: write
    needs: [events]
    config: {{path: "${{params.target}}"}}
"""
MIRROR = """\
  - id: mirror
    component: filesystem.csv_writer
    mode: write
    needs: [events]
    config: {{path: {tmp}/mirror/copy.csv}}
"""
JOB = "ph_delivery"
EVENTS = dg.AssetKey(["ph-delivery", "events"])


def _delivery_job() -> dg.JobDefinition:
    """The job, reconstructable in Dagster's re-execution (paths from the env)."""
    env = os.environ
    return defs_for(Path(env["DELIVERY_PIPELINE"]), Path(env["DELIVERY_SESSIONS"]),
                    Path(env["DELIVERY_CONNECTIONS"])).resolve_job_def(JOB)


@pytest.fixture
def setup(posthog: FakePostHog, workdir: Path, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    monkeypatch.setenv("POSTHOG_KEY", posthog.api_key)
    conns = _posthog_connections(workdir, posthog)
    sessions = tmp_path / "s"
    for name, path in (("PIPELINE", tmp_path / "p.yaml"), ("SESSIONS", sessions),
                       ("CONNECTIONS", conns)):
        monkeypatch.setenv(f"DELIVERY_{name}", str(path))
    return tmp_path / "p.yaml", sessions, conns


def _rows(path: Path) -> list[str]:
    """The uuids the CSV file holds."""
    with path.open(newline="", encoding="utf-8") as fh:
        return [row["uuid"] for row in csv.DictReader(fh)]


def _reexecute(parent: str, instance: dg.DagsterInstance) -> tuple[dg.DagsterRun, str]:
    with dg.execute_job(dg.reconstructable(_delivery_job), instance=instance,
                        reexecution_options=dg.ReexecutionOptions.from_failure(parent, instance)
                        ) as result:
        run = instance.get_run_by_id(result.run_id)
    assert run is not None
    failures = [e.dagster_event.step_failure_data.error.message  # type: ignore[union-attr]
                for e in instance.all_logs(run.run_id)
                if e.dagster_event and e.dagster_event.is_step_failure]
    return run, "\n".join(failures)


def test_rows_a_failed_writer_missed_are_read_again_and_the_old_table_is_not_written(
        setup: tuple[Path, Path, Path], posthog: FakePostHog, tmp_path: Path,
        instance: dg.DagsterInstance) -> None:
    """The writer after the extractor fails (its database down, here a path under a file):
    the extractor's state had advanced, so the next scheduled run started after these rows and
    they never reached the target. Now the next run reads them again; a re-execution of the
    failed run, which would write the old table too, is refused."""
    path, sessions, conns = setup
    write(path, PIPELINE.format(tmp=tmp_path))
    posthog.add_events(*[event(i, T0 + timedelta(seconds=i)) for i in range(4)])
    first = run_job(defs_for(path, sessions, conns), JOB, instance)
    assert first.success, failure_description(first)
    assert _rows(tmp_path / "out" / "copy.csv") == [f"0000-{i:04d}" for i in range(4)]

    posthog.add_events(*[event(i, T0 + timedelta(minutes=5, seconds=i)) for i in range(10, 13)])
    write(tmp_path / "blocked", "a file, not a directory")
    failed = run_job(defs_for(path, sessions, conns), JOB, instance,
                     params={"target": str(tmp_path / "blocked" / "copy.csv")})
    assert not failed.success

    again = run_job(defs_for(path, sessions, conns), JOB, instance)
    assert again.success, failure_description(again)
    assert _rows(tmp_path / "out" / "copy.csv") == ["0000-0010", "0000-0011", "0000-0012"]
    events = [json.loads(line) for line in
              (sessions / again.run_id / "logs" / "events.jsonl").read_text().splitlines()]
    (rewound,) = [e for e in events if e["event"] == "state_rewound"]
    assert f"in session {failed.run_id} did not reach copy" in rewound["detail"]
    warnings = [e.user_message for e in instance.all_logs(again.run_id)
                if e.level == logging.WARNING]  # the run's log says it in a line, too
    assert f"step 'events': {rewound['detail']}" in warnings, warnings

    run, message = _reexecute(failed.run_id, instance)
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert f"the rows of step 'events' in session {failed.run_id} were handed back" in message
    assert not (tmp_path / "blocked").is_dir()

    posthog.add_events(event(20, T0 + timedelta(minutes=9)))
    last = run_job(defs_for(path, sessions, conns), JOB, instance)
    assert last.success and _rows(tmp_path / "out" / "copy.csv") == ["0000-0020"]


def test_rows_one_writer_wrote_and_another_missed_stop_the_extractor_until_delivered(
        setup: tuple[Path, Path, Path], posthog: FakePostHog, tmp_path: Path,
        instance: dg.DagsterInstance) -> None:
    """One writer wrote the new rows, the other failed: reading them again would write them
    twice, going on would lose them for the other. The extractor refuses, naming the step; a
    re-execution from failure delivers them, and the next run goes on."""
    path, sessions, conns = setup
    write(path, PIPELINE.format(tmp=tmp_path) + MIRROR.format(tmp=tmp_path))
    posthog.add_events(*[event(i, T0 + timedelta(seconds=i)) for i in range(2)])
    assert run_job(defs_for(path, sessions, conns), JOB, instance).success
    posthog.add_events(*[event(i, T0 + timedelta(minutes=5, seconds=i)) for i in range(10, 13)])
    (tmp_path / "mirror" / "copy.csv").unlink()
    (tmp_path / "mirror").rmdir()
    write(tmp_path / "mirror", "a file, not a directory")
    failed = run_job(defs_for(path, sessions, conns), JOB, instance)
    assert not failed.success
    assert _rows(tmp_path / "out" / "copy.csv") == ["0000-0010", "0000-0011", "0000-0012"]

    refused = run_job(defs_for(path, sessions, conns), JOB, instance)
    assert not refused.success
    message = failure_description(refused)
    assert f"not run: the rows this step read in session {failed.run_id} did not reach " \
           "mirror, and they were written by copy" in message
    assert f"re-execute the run of session {failed.run_id} from failure" in message
    assert "--select mirror" in message and "deliveries skip 'ph-delivery' 'events'" in message

    (tmp_path / "mirror").unlink()
    run, errors = _reexecute(failed.run_id, instance)
    assert run.status == dg.DagsterRunStatus.SUCCESS, errors
    assert _rows(tmp_path / "mirror" / "copy.csv") == ["0000-0010", "0000-0011", "0000-0012"]

    posthog.add_events(event(20, T0 + timedelta(minutes=9)))
    last = run_job(defs_for(path, sessions, conns), JOB, instance)
    assert last.success, failure_description(last)
    assert _rows(tmp_path / "out" / "copy.csv") == ["0000-0020"]
    assert _rows(tmp_path / "mirror" / "copy.csv") == ["0000-0020"]


def test_an_extractor_materialised_alone_keeps_its_rows_for_the_steps_after_it(
        setup: tuple[Path, Path, Path], posthog: FakePostHog, tmp_path: Path,
        instance: dg.DagsterInstance) -> None:
    """Materialising only the extractor (in the UI) advanced its state; the next full run then
    started after those rows, which never reached the writer."""
    path, sessions, conns = setup
    write(path, PIPELINE.format(tmp=tmp_path))
    posthog.add_events(*[event(i, T0 + timedelta(seconds=i)) for i in range(3)])
    alone = run_job(defs_for(path, sessions, conns), JOB, instance, selection=[EVENTS])
    assert alone.success
    posthog.add_events(event(10, T0 + timedelta(minutes=5)))
    full = run_job(defs_for(path, sessions, conns), JOB, instance)
    assert full.success, failure_description(full)
    assert _rows(tmp_path / "out" / "copy.csv") == ["0000-0000", "0000-0001", "0000-0002",
                                                   "0000-0010"]


def test_two_runs_from_one_high_water_mark_do_not_both_deliver(tmp_path: Path) -> None:
    """Two runs read the same state and both extracted the rows after it: both saved their
    state and both delivered the rows. Now the second save fails: its steps after it do not
    run."""
    p = write(tmp_path / "p.yaml", PIPELINE.format(tmp=tmp_path))
    pipeline = validate_pipeline(p).pipeline
    assert pipeline is not None
    settings = Settings.from_env(tmp_path / "s")
    state = state_dir_of(tmp_path / "s", "ph-delivery", "events") / "posthog_state.json"

    def commit(session_id: str, mark: str) -> None:
        session = Session(settings, session_id).ensure()
        pending = PendingState(state, {"mark": mark}, replaces=None)  # both read no state
        commit_state(pipeline, session, StepOutcome(
            "events", None, DriverResult(table="events", pending_state=pending), 0.0))

    commit("run-a", "a")
    with pytest.raises(StepError, match="another run changed this step's incremental state"):
        commit("run-b", "b")
    assert json.loads(state.read_text()) == {"mark": "a"}


@pytest.mark.parametrize("refused", ["posthog_state.json", "delivery.json"])
def test_a_state_that_cannot_be_saved_leaves_the_rows_to_the_next_run(
        refused: str, setup: tuple[Path, Path, Path], posthog: FakePostHog, tmp_path: Path,
        instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk refuses the state file (or the delivery record) after the table was
    materialised: the step fails, the steps after it do not run, and the next run reads the
    same rows. (The state was saved before the record: a record that failed left an advanced
    state that nothing set back.)"""
    from osiris_dagster.runtime import step_records

    path, sessions, conns = setup
    write(path, PIPELINE.format(tmp=tmp_path))
    posthog.add_events(*[event(i, T0 + timedelta(seconds=i)) for i in range(3)])
    real = step_records.write_text_atomic

    def full_disk(target: Path, text: str, *args: object) -> None:
        if target.name == refused:
            raise OSError(28, "No space left on device")
        real(target, text, *args)

    monkeypatch.setattr(step_records, "write_text_atomic", full_disk)
    failed = run_job(defs_for(path, sessions, conns), JOB, instance)
    assert not failed.success
    assert "incremental state could not be saved" in failure_description(failed)
    assert not (tmp_path / "out" / "copy.csv").exists()
    monkeypatch.setattr(step_records, "write_text_atomic", real)
    again = run_job(defs_for(path, sessions, conns), JOB, instance)
    assert again.success, failure_description(again)
    assert _rows(tmp_path / "out" / "copy.csv") == ["0000-0000", "0000-0001", "0000-0002"]


# -- from the review of the first version ----------------------------------------------------------
OUT_OF_ORDER = """\
oml_version: "0.1.0"
name: ph-delivery
params:
  target: {tmp}/out/copy.csv
steps:
  - id: events
    component: posthog.extractor
    mode: read
    config: {{data_type: events, initial_since: "2024-03-01T00:00:00Z", page_size: 100}}
  - id: {writer}
    component: filesystem.csv_writer
    mode: write
    needs: [shape]
    config: {{path: "${{params.target}}"}}
  - id: shape
    component: duckdb.processor
    mode: transform
    needs: [events]
    config: {{query: "SELECT uuid FROM df_events"}}
"""


def _two_runs_then_a_failure(path: Path, sessions: Path, conns: Path, posthog: FakePostHog,
                             tmp_path: Path, instance: dg.DagsterInstance
                             ) -> dg.ExecuteInProcessResult:
    """A good run (2 rows), 3 new rows, and a run whose writer `copy` fails on them."""
    posthog.add_events(*[event(i, T0 + timedelta(seconds=i)) for i in range(2)])
    assert run_job(defs_for(path, sessions, conns), JOB, instance).success
    posthog.add_events(*[event(i, T0 + timedelta(minutes=5, seconds=i)) for i in range(10, 13)])
    write(tmp_path / "blocked", "a file, not a directory")
    failed = run_job(defs_for(path, sessions, conns), JOB, instance,
                     params={"target": str(tmp_path / "blocked" / "copy.csv")})
    assert not failed.success
    return failed


NEW_ROWS = ["0000-0010", "0000-0011", "0000-0012"]


@pytest.mark.parametrize("renamed", [False, True])
def test_a_writer_listed_before_its_input_or_renamed_still_gets_the_rows(
        renamed: bool, setup: tuple[Path, Path, Path], posthog: FakePostHog, tmp_path: Path,
        instance: dg.DagsterInstance) -> None:
    """The steps after the extractor were found in file order, so a writer listed before the
    step it needs was not waited for; a writer renamed after its failure was forgotten. Both
    lost the rows."""
    path, sessions, conns = setup
    write(path, OUT_OF_ORDER.format(tmp=tmp_path, writer="copy"))
    _two_runs_then_a_failure(path, sessions, conns, posthog, tmp_path, instance)
    if renamed:
        write(path, OUT_OF_ORDER.format(tmp=tmp_path, writer="copy_renamed"))
    again = run_job(defs_for(path, sessions, conns), JOB, instance)
    assert again.success, failure_description(again)
    assert _rows(tmp_path / "out" / "copy.csv") == NEW_ROWS


def test_a_removed_writer_that_got_the_rows_does_not_break_the_extractor(
        setup: tuple[Path, Path, Path], posthog: FakePostHog, tmp_path: Path,
        instance: dg.DagsterInstance, capsys: pytest.CaptureFixture[str]) -> None:
    """`copy` got the rows, `mirror` did not, then `copy` was removed from the file: the
    extractor failed with KeyError 'copy'. It refuses (a writer wrote them), and `deliveries
    skip` gives them up for `mirror`, keeping the old tables refused."""
    from osiris_dagster.cli import main

    path, sessions, conns = setup
    write(path, PIPELINE.format(tmp=tmp_path) + MIRROR.format(tmp=tmp_path))
    posthog.add_events(event(1, T0))
    assert run_job(defs_for(path, sessions, conns), JOB, instance).success
    posthog.add_events(*[event(i, T0 + timedelta(minutes=5, seconds=i)) for i in range(10, 13)])
    (tmp_path / "mirror" / "copy.csv").unlink()
    (tmp_path / "mirror").rmdir()
    write(tmp_path / "mirror", "a file, not a directory")
    failed = run_job(defs_for(path, sessions, conns), JOB, instance)
    assert not failed.success
    write(path, PIPELINE.format(tmp=tmp_path).replace("  - id: copy", "  - id: mirror"))
    refused = run_job(defs_for(path, sessions, conns), JOB, instance)
    assert "did not reach mirror, and they were written by copy" in \
        failure_description(refused)

    assert main(["deliveries", "--sessions-dir", str(sessions), "list"]) == 0
    assert "not yet: mirror" in capsys.readouterr().out
    assert main(["deliveries", "--sessions-dir", str(sessions), "skip", "ph-delivery",
                 "events"]) == 0
    assert "given up for mirror" in capsys.readouterr().out
    (tmp_path / "mirror").unlink()
    posthog.add_events(event(20, T0 + timedelta(minutes=9)))
    last = run_job(defs_for(path, sessions, conns), JOB, instance)
    assert last.success, failure_description(last)
    assert _rows(tmp_path / "out" / "copy.csv") == ["0000-0020"]


@pytest.mark.parametrize("written", [True, False])
def test_a_write_settled_as_written_counts_as_delivered(
        written: bool, setup: tuple[Path, Path, Path], posthog: FakePostHog, tmp_path: Path,
        instance: dg.DagsterInstance) -> None:
    """A writer's write may have landed (an unsettled write): the extractor refuses. Settled
    with `--written` (the rows are there), its next run goes on after them; settled plainly
    (they are not), it reads them again. Before, any settle made it read them again, and the
    rows that had landed were written twice."""
    from osiris_dagster.cli import main
    from osiris_dagster.runtime.unsettled_writes import UnsettledWrites, new_record

    path, sessions, conns = setup
    write(path, PIPELINE.format(tmp=tmp_path))
    failed = _two_runs_then_a_failure(path, sessions, conns, posthog, tmp_path, instance)
    UnsettledWrites(sessions, None).record(new_record(  # as a lost COMMIT records it
        "ph-delivery", "copy", "k", failed.run_id,
        [("events", failed.run_id, "events")], "the COMMIT's answer was lost"))
    refused = run_job(defs_for(path, sessions, conns), JOB, instance)
    assert "a write of copy may have landed" in failure_description(refused)

    settle = ["unsettled", "--sessions-dir", str(sessions), "settle", "ph-delivery", "copy"]
    assert main(settle + (["--written"] if written else [])) == 0
    again = run_job(defs_for(path, sessions, conns), JOB, instance)
    assert again.success, failure_description(again)
    assert _rows(tmp_path / "out" / "copy.csv") == ([] if written else NEW_ROWS)


def test_the_extractor_waits_for_a_step_of_another_run_still_on_its_rows(
        setup: tuple[Path, Path, Path], posthog: FakePostHog, tmp_path: Path,
        instance: dg.DagsterInstance) -> None:
    """A writer of an earlier run still writing (a slow write, a schedule faster than it):
    the next run set the state back under it and wrote its rows a second time."""
    from osiris_dagster.core.file_locks import held_lock
    from osiris_dagster.runtime.deliveries import IN_FLIGHT

    path, sessions, conns = setup
    write(path, PIPELINE.format(tmp=tmp_path))
    _two_runs_then_a_failure(path, sessions, conns, posthog, tmp_path, instance)
    lock = state_dir_of(sessions, "ph-delivery", "events") / IN_FLIGHT
    with held_lock(lock, shared=True):  # what a step after the extractor holds while it runs
        waiting = run_job(defs_for(path, sessions, conns), JOB, instance)
    assert "still working on the rows this step read last" in failure_description(waiting)
    assert f"it holds a shared lock on {lock})" in failure_description(waiting)  # which file
    again = run_job(defs_for(path, sessions, conns), JOB, instance)
    assert again.success and _rows(tmp_path / "out" / "copy.csv") == NEW_ROWS


def test_a_table_whose_state_was_not_saved_is_not_written_by_a_later_select(
        setup: tuple[Path, Path, Path], posthog: FakePostHog, tmp_path: Path,
        instance: dg.DagsterInstance) -> None:
    """The extractor's blocking check failed: its table was materialised, its state not
    saved. Materialising the writer alone then wrote those rows, and the next run read and
    wrote them again."""
    path, sessions, conns = setup
    checked = PIPELINE.replace("steps:\n", "x-dagster:\n  steps:\n    events:\n      checks: "
                               "{{row_count: {{max: 2}}, blocking: true}}\nsteps:\n", 1)
    write(path, checked.format(tmp=tmp_path))
    posthog.add_events(*[event(i, T0 + timedelta(seconds=i)) for i in range(3)])
    assert not run_job(defs_for(path, sessions, conns), JOB, instance).success
    alone = run_job(defs_for(path, sessions, conns), JOB, instance,
                    selection=[dg.AssetKey(["ph-delivery", "copy"])])
    # refused by the IO manager (the table failed its blocking check) before deliveries'
    # own refusal (its rows were handed back to the extractor) is reached
    assert "(step 'events') made its table in session" in failure_description(alone)
    assert "blocking check(s) failed: row_count" in failure_description(alone)
    assert not (tmp_path / "out" / "copy.csv").exists()


def test_a_step_that_only_comes_after_a_writer_is_not_waited_for(
        setup: tuple[Path, Path, Path], posthog: FakePostHog, tmp_path: Path,
        instance: dg.DagsterInstance) -> None:
    """A step whose `needs` names the writer (it reads the written file, not the rows' table)
    was waited for, and never recorded: after the first good run the extractor refused every
    run."""
    path, sessions, conns = setup
    write(path, PIPELINE.format(tmp=tmp_path) + f"""\
  - id: reread
    component: filesystem.csv_extractor
    mode: read
    needs: [copy]
    config: {{path: {tmp_path}/out/copy.csv}}
""")
    for i in range(3):
        posthog.add_events(event(i, T0 + timedelta(minutes=i)))
        ran = run_job(defs_for(path, sessions, conns), JOB, instance)
        assert ran.success, failure_description(ran)
        assert _rows(tmp_path / "out" / "copy.csv") == [f"0000-{i:04d}"]


def test_the_command_line_says_when_the_state_was_set_back(
        setup: tuple[Path, Path, Path], posthog: FakePostHog, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The set-back was only an event in the session's events.jsonl: `run` printed nothing."""
    from osiris_dagster.cli import main

    path, sessions, conns = setup
    write(path, PIPELINE.format(tmp=tmp_path))
    run = ["run", str(path), "--sessions-dir", str(sessions), "--connections", str(conns)]
    posthog.add_events(event(1, T0))
    assert main(run) == 0
    capsys.readouterr()
    posthog.add_events(*[event(i, T0 + timedelta(minutes=5, seconds=i)) for i in range(10, 13)])
    write(tmp_path / "blocked", "a file, not a directory")
    assert main([*run, "--param", f"target={tmp_path / 'blocked' / 'copy.csv'}"]) == 1
    failed = next(line.split()[1] for line in capsys.readouterr().out.splitlines()
                  if line.startswith("session "))
    assert main(run) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"  ! events: the rows this step read in session {failed} did not reach copy: its " \
           "incremental state was set back, and it reads them again now (the old session's " \
           "tables are not delivered again)" in lines, lines
    assert _rows(tmp_path / "out" / "copy.csv") == ["0000-0010", "0000-0011", "0000-0012"]
