"""An incremental extractor's rows reach every step after it, or its next run reads them again
(or refuses, when setting its state back would write them twice); two runs that read from one
high-water mark do not both deliver the rows after it. Through Dagster, with the PostHog fake."""

from __future__ import annotations

import csv
import json
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
    assert "re-execute that run from failure" in message and "--select mirror" in message

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
