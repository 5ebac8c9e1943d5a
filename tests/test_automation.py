"""Schedules and new-file sensors declared in `x-dagster`."""

from __future__ import annotations

import json
import os
import random
import time
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest

from osiris_dagster import build_definitions
from osiris_dagster.oml import validate_pipeline
from osiris_dagster.runtime.filewatch import Cursor, FileVersion, Fingerprint, plan_runs

from .helpers import events, failure_description, materialisations, table_rows, write

PIPELINE = """\
oml_version: "0.1.0"
name: drops
params:
  input_path: {{default: none.csv}}
  input_name: {{default: none.csv}}
x-dagster:
  sensor:
    watch: "{watch}"
    param: input_path
    name_param: input_name
    settle_seconds: {settle}
    max_runs_per_tick: {max_runs}
    archive_to: processed
  schedule:
    - {{cron: "0 6 * * *", timezone: Europe/Prague, params: {{input_path: daily.csv}}}}
    - {{cron: "30 1 * * 1-5", default_status: running}}
steps:
  - id: load
    component: filesystem.csv_extractor
    mode: read
    config: {{path: "${{params.input_path}}"}}
  - id: count
    component: duckdb.processor
    mode: transform
    config: {{query: "SELECT count(*) AS n, sum(v) AS total FROM input_df"}}
  - id: save
    component: filesystem.csv_writer
    mode: write
    config: {{path: "out/${{params.input_name}}"}}
"""


def make_defs(workdir: Path, sessions: Path, watch: str = "incoming/*.csv", settle: float = 0,
              max_runs: int = 20) -> dg.Definitions:
    p = write(workdir / "drops.yaml", PIPELINE.format(watch=watch, settle=settle,
                                                       max_runs=max_runs))
    return build_definitions([p], sessions_dir=str(sessions))


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None,
         name: str = "drops_sensor") -> tuple[list[dg.RunRequest], str | None, str | None]:
    sensor = defs.get_sensor_def(name)
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    result = sensor.evaluate_tick(ctx)
    skip = result.skip_message
    return list(result.run_requests or []), result.cursor, skip


def queue(defs: dg.Definitions, instance: dg.DagsterInstance, requests: list[dg.RunRequest],
          sensor: str = "drops_sensor") -> None:
    """What the daemon does with a tick's requests: a run each (not started), with its run
    key."""
    job = defs.resolve_job_def(defs.get_sensor_def(sensor).job_name)
    for r in requests:
        instance.create_run_for_job(job, run_config=r.run_config,
                                    tags={**r.tags, "dagster/run_key": r.run_key,
                                          "dagster/sensor_name": sensor})


def csv_file(path: Path, rows: int, age_seconds: float = 60) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("v\n" + "".join(f"{i}\n" for i in range(rows)), encoding="utf-8")
    stamp = time.time() - age_seconds
    os.utime(path, (stamp, stamp))
    return path


def test_sensor_requests_one_run_per_file_version(workdir: Path, tmp_path: Path,
                                                  instance: dg.DagsterInstance) -> None:
    defs = make_defs(workdir, tmp_path / "s")
    inbox = workdir / "incoming"
    odd = ["plain.csv", "with space.csv", "quote'and\"dq.csv", "unicodé_ž.csv", "dollar$x.csv"]
    for i, name in enumerate(odd):
        csv_file(inbox / name, i + 1)
    csv_file(inbox / "ignored.txt", 1)
    requests, cursor, _ = tick(defs, instance, None)
    assert sorted(Path(r.tags["osiris/file"]).name for r in requests) == sorted(odd)
    by_name = {Path(r.tags["osiris/file"]).name: r for r in requests}
    cfg = by_name["with space.csv"].run_config["resources"]["osiris_params__drops"]["config"]
    assert cfg["explicit_params"] == {"input_path": str(inbox / "with space.csv"),
                             "input_name": "with space.csv"}
    assert by_name["plain.csv"].tags["osiris/archive_to"] == str(workdir / "processed")
    assert len(cursor) < 1000

    queue(defs, instance, requests)  # the daemon makes a run of each request
    again, cursor2, skip = tick(defs, instance, cursor)
    assert again == [] and "no new files" in skip
    # rewriting a file makes a new version: exactly one more run
    csv_file(inbox / "plain.csv", 10, age_seconds=1)
    third, cursor3, _ = tick(defs, instance, cursor2)
    assert [Path(r.tags["osiris/file"]).name for r in third] == ["plain.csv"]
    assert third[0].run_key != by_name["plain.csv"].run_key
    # touching nothing gives nothing
    assert tick(defs, instance, cursor3)[0] == []


def test_unsettled_files_wait_and_limits_spread_runs_over_ticks(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    defs = make_defs(workdir, tmp_path / "s", settle=30, max_runs=2)
    inbox = workdir / "incoming"
    for i in range(5):
        csv_file(inbox / f"f{i}.csv", 1, age_seconds=300 - i)
    csv_file(inbox / "being-written.csv", 1, age_seconds=0)
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        requests, cursor, _ = tick(defs, instance, cursor)
        assert len(requests) <= 2
        seen += [Path(r.tags["osiris/file"]).name for r in requests]
    assert seen == [f"f{i}.csv" for i in range(5)]  # all of them, in order, none twice
    data = json.loads(cursor)
    assert len(data["keys"]) == 1  # only the keys at the high-water mark are kept
    _, _, skip = tick(defs, instance, cursor)
    assert "1 file(s) still being written" in skip


def test_missing_watch_directory_is_a_skip_reason(workdir: Path, tmp_path: Path,
                                                  instance: dg.DagsterInstance) -> None:
    defs = make_defs(workdir, tmp_path / "s", watch="nowhere/sub/*.csv")
    requests, _, skip = tick(defs, instance, None)
    assert requests == [] and "does not exist" in skip and "nowhere" in skip


def test_gzip_and_recursive_globs(workdir: Path, tmp_path: Path,
                                  instance: dg.DagsterInstance) -> None:
    defs = make_defs(workdir, tmp_path / "s", watch="incoming/**/*.csv*")
    import gzip

    target = workdir / "incoming" / "deep" / "a.csv.gz"
    target.parent.mkdir(parents=True)
    with gzip.open(target, "wt") as fh:
        fh.write("v\n1\n2\n")
    os.utime(target, (time.time() - 60, time.time() - 60))
    requests, _, _ = tick(defs, instance, None)
    assert [r.tags["osiris/file"] for r in requests] == [str(target)]


def test_sensor_run_loads_the_file_and_archives_it(workdir: Path, tmp_path: Path,
                                                   instance: dg.DagsterInstance) -> None:
    defs = make_defs(workdir, tmp_path / "s")
    src = csv_file(workdir / "incoming" / "batch 1.csv", 4)
    (request,), _, _ = tick(defs, instance, None)
    job = defs.resolve_job_def("drops")
    result = job.execute_in_process(instance=instance, run_config=request.run_config,
                                    tags=request.tags, raise_on_error=False)
    assert result.success, failure_description(result)
    assert (workdir / "out" / "batch 1.csv").read_text() == "n,total\n4,6\n"
    assert not src.exists() and (workdir / "processed" / "batch 1.csv").exists()
    evs = events(tmp_path / "s" / result.run_id)
    assert any(e["event"] == "file_archived" for e in evs)
    run = instance.get_run_by_id(result.run_id)
    assert run.tags["osiris/session_dir"] == str(tmp_path / "s" / result.run_id)


def test_a_run_names_its_own_session_when_it_carries_another_ones_tag(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """Dagster copies a run's tags to its re-execution: a review saw the re-execution's tag
    name the parent's session directory, so a user inspected the old session."""
    defs = make_defs(workdir, tmp_path / "s")
    csv_file(workdir / "incoming" / "batch 1.csv", 4)
    (request,), _, _ = tick(defs, instance, None)
    result = defs.resolve_job_def("drops").execute_in_process(
        instance=instance, run_config=request.run_config, raise_on_error=False,
        tags={**request.tags, "osiris/session_dir": str(tmp_path / "s" / "the-parent")})
    assert result.success, failure_description(result)
    run = instance.get_run_by_id(result.run_id)
    assert run.tags["osiris/session_dir"] == str(tmp_path / "s" / result.run_id)


def test_the_session_dir_tag_is_written_at_most_once_per_run(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each tag write is a run-storage write (~8 ms): when the tag's text differed from the
    session's path (the CLI gave a relative one), every step wrote it again."""
    defs = make_defs(workdir, tmp_path / "s")
    csv_file(workdir / "incoming" / "batch 1.csv", 4)
    (request,), _, _ = tick(defs, instance, None)
    writes: list[dict] = []
    real = dg.DagsterInstance.add_run_tags
    monkeypatch.setattr(dg.DagsterInstance, "add_run_tags",
                        lambda self, run_id, tags: (writes.append(tags), real(self, run_id, tags)))
    result = defs.resolve_job_def("drops").execute_in_process(
        instance=instance, run_config=request.run_config, raise_on_error=False,
        tags={**request.tags, "osiris/session_dir": "s/relative/elsewhere"})
    assert result.success, failure_description(result)
    assert len([t for t in writes if "osiris/session_dir" in t]) == 1, writes


def test_failed_run_leaves_the_file_in_place(workdir: Path, tmp_path: Path,
                                             instance: dg.DagsterInstance) -> None:
    defs = make_defs(workdir, tmp_path / "s")
    src = workdir / "incoming" / "bad.csv"
    src.parent.mkdir(parents=True)
    src.write_text("v\n1\n2,3,4\n")
    os.utime(src, (time.time() - 60, time.time() - 60))
    (request,), _, _ = tick(defs, instance, None)
    result = defs.resolve_job_def("drops").execute_in_process(
        instance=instance, run_config=request.run_config, tags=request.tags,
        raise_on_error=False)
    assert not result.success
    assert src.exists() and not (workdir / "processed").exists()


def test_schedules_have_cron_timezone_and_params(workdir: Path, tmp_path: Path,
                                                 instance: dg.DagsterInstance) -> None:
    defs = make_defs(workdir, tmp_path / "s")
    first = defs.get_schedule_def("drops_schedule")
    second = defs.get_schedule_def("drops_schedule_2")
    assert first.cron_schedule == "0 6 * * *"
    assert first.execution_timezone == "Europe/Prague"
    assert first.default_status == dg.DefaultScheduleStatus.STOPPED
    assert second.default_status == dg.DefaultScheduleStatus.RUNNING
    assert defs.get_sensor_def("drops_sensor").default_status == \
        dg.DefaultSensorStatus.STOPPED
    ctx = dg.build_schedule_context(instance=instance,
                                    scheduled_execution_time=datetime(2026, 3, 5, 6, 0))
    (request,) = first.evaluate_tick(ctx).run_requests
    config = request.run_config["resources"]["osiris_params__drops"]["config"]
    assert config["explicit_params"] == {"input_path": "daily.csv"}


def test_a_schedule_value_equal_to_the_default_beats_env(
        tmp_path: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    """A schedule's `params` are given values: they win over OSIRIS_PARAM_<NAME> even when
    equal to the OML default (before, such a value counted as not given and env won)."""
    path = write(tmp_path / "pipes" / "n.yaml", (
        'oml_version: "0.1.0"\nname: numbers\nparams: {n: {default: 2}}\nx-dagster:\n'
        '  schedule: {cron: "0 6 * * *", params: {n: 2}}\nsteps:\n  - id: pick\n'
        "    component: duckdb.processor\n    mode: transform\n"
        "    config: {query: 'SELECT ${params.n} AS n'}\n"))
    monkeypatch.setenv("OSIRIS_PARAM_N", "7")
    defs = build_definitions([path], sessions_dir=str(tmp_path / "s"))
    ctx = dg.build_schedule_context(instance=instance,
                                    scheduled_execution_time=datetime(2026, 3, 5, 6, 0))
    (request,) = defs.get_schedule_def("numbers_schedule").evaluate_tick(ctx).run_requests
    result = defs.resolve_job_def("numbers").execute_in_process(
        instance=instance, run_config=request.run_config)
    assert result.success
    assert table_rows(materialisations(result)["numbers/pick"]["preview"]) == [{"n": 2}]


def _schedule_pipeline(tmp_path: Path, cron: str) -> Path:
    return write(tmp_path / "pipes" / "sched.yaml", (
        "oml_version: \"0.1.0\"\nname: sched\nx-dagster:\n"
        f"  schedule: {{cron: \"{cron}\"}}\n"
        "steps:\n  - {id: a, component: duckdb.processor, mode: transform, "
        "config: {query: 'SELECT 1'}}\n"))


@pytest.mark.parametrize("cron", ["0 0 L * *", "0 0 * * 1#2", "0 9-17 * * 1-5",
                                  "15 2 1-7,15 jan-mar mon-fri", "@daily", "0 0 29 2 *",
                                  "0 6 * * 7"])
def test_cron_forms_dagster_accepts_validate_and_build(tmp_path: Path, cron: str) -> None:
    p = _schedule_pipeline(tmp_path, cron)
    result = validate_pipeline(p)
    assert result.errors == [], [str(d) for d in result.errors]
    defs = build_definitions([p])
    assert defs.get_schedule_def("sched_schedule").cron_schedule == cron


@pytest.mark.parametrize("cron, message", [
    ("0 0 31 2 *", "never fires: February has no day 31"),
    ("0 0 30 feb *", "never fires: February has no day 30"),
    ("0 0 * * * *", "must have 5 fields"),
    ("0 0 L-2 * *", "is not a schedule Dagster accepts"),
    ("0 0 * * 5L", "is not a schedule Dagster accepts"),
    ("0 24 * * *", "hour value '24' is outside 0-23"),
])
def test_cron_dagster_refuses_is_a_validation_error(tmp_path: Path, cron: str,
                                                   message: str) -> None:
    p = _schedule_pipeline(tmp_path, cron)
    result = validate_pipeline(p)
    assert [(d.line, message in d.message) for d in result.errors] == [(4, True)], \
        [str(d) for d in result.errors]


def test_cron_step_beyond_its_range_warns(tmp_path: Path) -> None:
    result = validate_pipeline(_schedule_pipeline(tmp_path, "*/90 * * * *"))
    assert result.errors == []
    assert any(d.line == 4 and "fires more often than it reads" in d.message
               for d in result.warnings)


def _cron_corpus() -> list[str]:
    """Cron expressions mixing the forms Dagster's rule treats specially: names, L, n#k, H,
    steps beyond the range, reversed and out-of-range values, 4/6/7 fields, aliases."""
    fitting = [  # per position: items that fit it, most of the time
        ["*", "0", "59", "*/7", "*/90", "5/90", "0-59/90", "10-20/5", "1,2,30", "H", "H/5"],
        ["*", "0", "23", "*/2", "*/30", "9-17", "3/25", "1,13"],
        ["*", "1", "15", "29", "30", "31", "L", "1-7,15", "*/40", "2/45", "L-2", "?", "1-L/40",
         "5-l/20", "20-L"],
        ["*", "1", "2", "feb", "jan-mar", "*/13", "2,3", "1/15"],
        ["*", "0", "7", "sun", "mon-fri", "1#2", "6#5", "5L", "*/9", "1-5", "?"],
        ["*", "0", "30", "*/90"],
        ["*", "2027", "2026-2030"],
    ]
    odd = ["24", "61", "*/0", "5-1", "x", "L", "1#2", "32", "13", "8", "-1", "1-"]
    rng = random.Random(15)
    out = ["@daily", "@hourly", "@weekly", "@monthly", "@yearly", "@annually", "@midnight",
           "@reboot", "", "0 0 31 2 *", "0 0 30 feb *", "0 0 31 2,3 *", "0 0 L 2 *"]
    for _ in range(3000):
        n = rng.choice([4, 5, 5, 5, 5, 5, 5, 6, 7])
        out.append(" ".join(rng.choice(odd if rng.random() < 0.08 else fitting[i])
                            for i in range(n)))
    return out


def test_cron_verdict_without_dagster_import_is_dagsters(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """`validate` judges crons with Dagster's vendored croniter loaded on its own (no Dagster
    import) and restates Dagster's two extra checks: same verdicts and warnings as Dagster."""
    from dagster._utils.schedules import has_out_of_range_cron_interval, is_valid_cron_string

    from osiris_dagster.oml import cron
    from osiris_dagster.oml.dagster_croniter import vendored_croniter

    alone = vendored_croniter()
    assert alone is not None and alone.__module__.startswith("osiris_dagster.")
    monkeypatch.setattr(cron, "_croniter_alone", lambda: alone)
    seen: dict[str, int] = {"valid": 0, "refused": 0, "warned": 0}
    for expression in _cron_corpus():
        dagster_ok = is_valid_cron_string(expression)
        assert (cron.cron_problem(expression) is None) == dagster_ok, expression
        seen["valid" if dagster_ok else "refused"] += 1
        if dagster_ok:
            warned = has_out_of_range_cron_interval(expression)
            assert (cron.cron_warning(expression) is not None) == warned, expression
            seen["warned"] += warned
    assert min(seen.values()) > 200, seen  # every verdict well represented


def test_a_schedule_dagster_refuses_never_takes_the_location_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even past validation (here: validation is bypassed), a definition Dagster refuses
    while building one file makes that file broken, and the other pipelines load."""
    import osiris_dagster.oml.automation_checks as automation_checks

    p = _schedule_pipeline(tmp_path, "0 0 31 2 *")
    write(tmp_path / "pipes" / "good.yaml", p.read_text().replace("name: sched", "name: good")
          .replace('  schedule: {cron: "0 0 31 2 *"}\n', "  group: g\n"))
    monkeypatch.setattr(automation_checks, "cron_problem", lambda _cron: None)
    defs = build_definitions(pipelines_dir=tmp_path / "pipes")
    dg.Definitions.validate_loadable(defs)
    assert {k.to_user_string() for k in defs.resolve_all_asset_keys()} == {
        "good/a", "osiris_invalid/sched"}
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key.path[0] == "osiris_invalid")
    assert "DagsterInvalidDefinitionError" in spec.description and "0 0 31 2 *" in \
        spec.description


@pytest.mark.parametrize("block, message", [
    ('schedule: {cron: "61 * * * *"}', "minute value '61' is outside 0-59"),
    ('schedule: {cron: "0 6 * *"}', "must have 5 fields"),
    ('schedule: {cron: "0 6 * * *", timezone: Mars/Base}', "not an IANA time zone"),
    ('schedule: {cron: "0 6 * * *", params: {nope: 1}}', "'nope', which is not declared"),
    ('schedule: {cron: "0 6 * * *", default_status: on}', "must be 'running' or 'stopped'"),
    ('sensor: {watch: "*.csv", param: missing}', "must name a parameter declared"),
    ('sensor: {param: p}', "watch is required"),
    ('sensor: {watch: "*.csv", param: p, max_runs_per_tick: 0}', "max_runs_per_tick must be"),
    ('sensor: {watch: "*.csv", param: p, every: 3}', "unknown key 'x-dagster.sensor.every'"),
])
def test_invalid_automation_is_a_validation_error_with_its_line(
        tmp_path: Path, block: str, message: str) -> None:
    text = ("oml_version: \"0.1.0\"\nname: x\nparams: {p: a.csv}\nx-dagster:\n  " + block +
            "\nsteps:\n  - {id: a, component: duckdb.processor, mode: transform, "
            "config: {query: 'SELECT 1'}}\n")
    result = validate_pipeline(write(tmp_path / "x.yaml", text))
    assert [d.line for d in result.errors] == [5], [str(d) for d in result.errors]
    assert message in str(result.errors[0])


def test_plan_runs_never_passes_a_settling_file() -> None:
    now = 1_000_000_000_000
    old = FileVersion(now - 100 * 10**9, "/a", 1, now - 100 * 10**9)
    fresh = FileVersion(now - 10**9, "/b", 1, now - 10**9)
    stats = {f.path: Fingerprint(f.size, f.mtime_ns, f.ctime_ns, f.inode, "d")
             for f in (old, fresh)}
    plan = plan_runs([fresh, old], Cursor(), now, settle_seconds=5, max_runs=10,
                     fingerprint_of=stats.get)
    assert [p.file for p in plan.to_run] == [old] and plan.settling == [fresh]
    assert plan.cursor.high_water_ns == old.version_ns
    later = plan_runs([fresh, old], plan.cursor, now + 10 * 10**9, 5, 10, stats.get)
    assert [p.file for p in later.to_run] == [fresh] and later.seen == [old]
    # a file that changes between the scan and its fingerprint is still being written
    busy = plan_runs([fresh], Cursor(), now + 10 * 10**9, 5, 10, lambda path: None)
    assert busy.to_run == [] and busy.settling == [fresh] and busy.cursor.high_water_ns == 0
    assert Cursor.parse("not json").high_water_ns == 0


# -- archive inside the watch (issue 17, item 5) -------------------------------------------------
SENSOR_ONLY = """\
oml_version: "0.1.0"
name: x
params: {{p: a.csv}}
x-dagster:
  sensor:
    watch: "{watch}"
    param: p
    archive_to: "{archive}"
steps:
  - {{id: a, component: filesystem.csv_extractor, mode: read, config: {{path: "${{params.p}}"}}}}
"""


@pytest.mark.parametrize("watch, archive", [
    ("in/**/*.csv", "in/done/"),
    ("in/**/*.csv", "in"),
    ("in/*/*.csv", "in/done"),
    ("in/*.csv", "in"),
    ("in/*.csv", "./in/"),
    ("in/*.csv", "other/../in"),
    ("*.csv", "."),
    ("in/**", "in/a/b/done"),
    ("in/d*/*.csv", "in/done"),
    ("/data/in/**/*.csv", "/data/in/x/processed"),
    ("~/in/*/*.csv", "~/in/done"),
])
def test_archive_inside_the_watch_is_refused(tmp_path: Path, watch: str, archive: str) -> None:
    result = validate_pipeline(write(tmp_path / "x.yaml",
                                     SENSOR_ONLY.format(watch=watch, archive=archive)))
    assert [d.line for d in result.errors] == [8], [str(d) for d in result.errors]
    message = str(result.errors[0])
    assert "x.yaml:8:" in message and "archive_to" in message and watch in message
    assert "re-run" in message or "again" in message


@pytest.mark.parametrize("watch, archive", [
    ("in/*.csv", "in/done/"),           # '*' never crosses a '/'
    ("in/**/*.csv", "processed"),
    ("in/**/*.csv", "in/.done"),        # glob skips hidden directories
    ("in/x*/*.csv", "in/done"),
    ("/data/in/**/*.csv", "/data/processed"),
    ("in/**/*.csv", "/somewhere/else"),  # relative vs absolute: the sensor decides at run time
])
def test_archive_outside_the_watch_is_accepted(tmp_path: Path, watch: str, archive: str
                                               ) -> None:
    result = validate_pipeline(write(tmp_path / "x.yaml",
                                     SENSOR_ONLY.format(watch=watch, archive=archive)))
    assert result.ok, [str(d) for d in result.errors]


@pytest.mark.parametrize("watch, archive", [
    ("/data/incoming/*.csv", "/data"),
    ("/data/incoming/*.csv", "/"),
    ("incoming/*.csv", "."),
    ("incoming/*.csv", "./"),
    ("incoming/2026/*.csv", "incoming/2026/.."),
    ("in/sub/*/*.csv", "in"),
    ("incoming/exports.csv", "incoming/.."),
    ("incoming/*.csv", ".."),
    ("../in/*.csv", "../.."),
    ("../in/*.csv", ".."),
])
def test_an_archive_holding_the_watched_directory_is_refused(tmp_path: Path, watch: str,
                                                             archive: str) -> None:
    """Every file is under such an archive, which the sensor never reads: no file ever ran,
    and validate said valid."""
    result = validate_pipeline(write(tmp_path / "x.yaml",
                                     SENSOR_ONLY.format(watch=watch, archive=archive)))
    assert [d.line for d in result.errors] == [8], [str(d) for d in result.errors]
    message = str(result.errors[0])
    assert "x.yaml:8:" in message and repr(archive) in message and repr(watch) in message
    assert "no file would ever run" in message


@pytest.mark.parametrize("watch, archive", [
    ("incoming/*.csv", "../done"),  # beside the base directory, whatever it is
    ("../in/*.csv", "../done"),
    ("incoming/*.csv", "/data"),     # relative vs absolute: the sensor decides at run time
])
def test_an_archive_beside_the_watched_directory_is_accepted(tmp_path: Path, watch: str,
                                                             archive: str) -> None:
    result = validate_pipeline(write(tmp_path / "x.yaml",
                                     SENSOR_ONLY.format(watch=watch, archive=archive)))
    assert result.ok, [str(d) for d in result.errors]


CONNECTED = """\
oml_version: "0.1.0"
name: drops
params:
  input_path: {{default: none.csv}}
x-dagster:
  sensor:
    watch: "in/**/*.csv"
    param: input_path
    settle_seconds: 0
    archive_to: "{archive}"
steps:
  - id: load
    component: filesystem.csv_extractor
    mode: read
    config: {{connection: "@filesystem.drop", path: "${{params.input_path}}"}}
"""


def test_sensor_never_rereads_its_archive_when_validate_cannot_see_it(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """Watch relative to a connection's base_dir, archive_to absolute inside it: only the
    resolved paths show the overlap, so the sensor itself leaves the archive alone."""
    base = tmp_path / "landing zone"
    archive = base / "in" / "done"
    conns = write(workdir / "osiris_connections.yaml",
                  f"version: 1\nconnections:\n  filesystem:\n    drop:\n"
                  f"      base_dir: \"{base}\"\n")
    p = write(workdir / "drops.yaml", CONNECTED.format(archive=archive))
    assert validate_pipeline(p).ok
    defs = build_definitions([p], sessions_dir=str(tmp_path / "s"), connections_file=str(conns))
    src = csv_file(base / "in" / "2026" / "a.csv", 3)
    (request,), cursor, _ = tick(defs, instance, None)
    assert request.tags["osiris/file"] == str(src)
    result = defs.resolve_job_def("drops").execute_in_process(
        instance=instance, run_config=request.run_config, tags=request.tags,
        raise_on_error=False)
    assert result.success, failure_description(result)
    assert (archive / "a.csv").is_file() and not src.exists()
    for start in (cursor, None):  # also after a cursor reset
        requests, _, skip = tick(defs, instance, start)
        assert requests == [], [r.tags["osiris/file"] for r in requests]
        assert "archive" in skip


def test_an_archive_holding_the_watch_is_the_skip_reason(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """Known only on resolved paths (watch relative to a connection's base_dir, archive_to
    absolute): the sensor says why no file runs, not only "no new files"."""
    base = tmp_path / "landing"
    conns = write(workdir / "osiris_connections.yaml",
                  f"version: 1\nconnections:\n  filesystem:\n    drop:\n"
                  f"      base_dir: \"{base}\"\n")
    p = write(workdir / "drops.yaml", CONNECTED.format(archive=base))
    defs = build_definitions([p], sessions_dir=str(tmp_path / "s"), connections_file=str(conns))
    csv_file(base / "in" / "a.csv", 3)
    requests, cursor, skip = tick(defs, instance, None)
    assert requests == [] and cursor is None
    assert f"the archive directory {base} holds the watch directory {base / 'in'}" in skip


# -- new versions with the same path, size and mtime (item 6) ------------------------------------
def _run(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest,
         sensor: str = "drops_sensor") -> dg.ExecuteInProcessResult:
    """Execute a sensor's request the way the daemon does (its run key and sensor tags)."""
    tags = {**request.tags, "dagster/run_key": request.run_key, "dagster/sensor_name": sensor}
    return defs.resolve_job_def(defs.get_sensor_def(sensor).job_name).execute_in_process(
        instance=instance, run_config=request.run_config, tags=tags, raise_on_error=False)


def test_a_file_moved_back_from_processed_runs_again(workdir: Path, tmp_path: Path,
                                                     instance: dg.DagsterInstance) -> None:
    defs = make_defs(workdir, tmp_path / "s")
    src = csv_file(workdir / "incoming" / "orders.csv", 4)
    (first,), cursor, _ = tick(defs, instance, None)
    assert _run(defs, instance, first).success
    archived = workdir / "processed" / "orders.csv"
    assert archived.is_file() and not src.exists()
    os.rename(archived, src)  # same path, size, mtime and content as the first time
    (second,), cursor, _ = tick(defs, instance, cursor)
    assert second.tags["osiris/file"] == str(src)
    assert second.run_key != first.run_key  # the daemon would drop an equal key
    assert _run(defs, instance, second).success
    assert not src.exists() and archived.is_file()


def test_a_rewrite_with_the_old_mtime_runs_again(workdir: Path, tmp_path: Path,
                                                 instance: dg.DagsterInstance) -> None:
    defs = make_defs(workdir, tmp_path / "s")
    src = workdir / "incoming" / "same size.csv"
    src.parent.mkdir(parents=True)
    src.write_text("v\n1\n2\n")
    stamp = time.time() - 60
    os.utime(src, (stamp, stamp))
    st = src.stat()
    (first,), cursor, skip = tick(defs, instance, None)
    src.write_text("v\n7\n9\n")  # same size, then `touch -r` back to the old times
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (src.stat().st_size, src.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    (second,), _, _ = tick(defs, instance, cursor)
    assert second.run_key != first.run_key
    assert second.tags["osiris/file_fingerprint"] != first.tags["osiris/file_fingerprint"]


def test_skip_reason_names_files_that_already_ran(workdir: Path, tmp_path: Path,
                                                  instance: dg.DagsterInstance) -> None:
    defs = make_defs(workdir, tmp_path / "s")
    bad = workdir / "incoming" / "broken file.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text("v\n1\n2,3,4\n")
    os.utime(bad, (time.time() - 60, time.time() - 60))
    (request,), cursor, _ = tick(defs, instance, None)
    assert not _run(defs, instance, request).success  # a failed run leaves the file
    _, _, skip = tick(defs, instance, cursor)
    assert "broken file.csv" in skip and "already" in skip
    # a lost cursor: the daemon would silently drop the duplicate key; the sensor says so
    requests, _, skip = tick(defs, instance, None)
    assert requests == [] and "broken file.csv" in skip and "already" in skip


# -- a file that changes while its run reads it (item 7) -----------------------------------------
def test_a_file_changed_after_the_sensor_saw_it_is_not_archived(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    import logging

    defs = make_defs(workdir, tmp_path / "s")
    src = csv_file(workdir / "incoming" / "growing.csv", 3)
    (first,), cursor, _ = tick(defs, instance, None)

    class WriterNotDone(logging.Handler):  # appends once the run's load step read the file
        def emit(self, record: logging.LogRecord) -> None:
            data = getattr(record, "osiris", {})
            if data.get("event") == "step_complete" and data.get("step_id") == "load":
                with open(src, "a", encoding="utf-8") as fh:
                    fh.write("100\n")

    progress = logging.getLogger("osiris_dagster.progress")
    handler, level = WriterNotDone(), progress.level
    progress.addHandler(handler)
    progress.setLevel(logging.INFO)
    try:
        result = _run(defs, instance, first)
    finally:
        progress.removeHandler(handler)
        progress.setLevel(level)
    assert result.success, failure_description(result)
    assert src.exists() and not (workdir / "processed").exists()
    evs = events(tmp_path / "s" / result.run_id)
    (changed,) = [e for e in evs if e["event"] == "file_changed_during_run"]
    assert changed["path"] == str(src) and "size" in changed["change"]
    assert not any(e["event"] == "file_archived" for e in evs)
    logs = [e.message for e in instance.all_logs(result.run_id) if e.message]
    assert any("left in place" in m and "growing.csv" in m for m in logs), logs

    (second,), _, _ = tick(defs, instance, cursor)  # the new version has a new key
    assert second.run_key != first.run_key
    result = _run(defs, instance, second)
    assert result.success and not src.exists()
    assert (workdir / "processed" / "growing.csv").read_text().endswith("2\n100\n")
    assert (workdir / "out" / "growing.csv").read_text() == "n,total\n4,103\n"


def test_fingerprint_of_a_large_file_reads_only_its_edges(tmp_path: Path) -> None:
    from osiris_dagster.runtime.filewatch import EDGE_BYTES, FULL_HASH_BYTES, fingerprint

    big = tmp_path / "big.csv"
    big.write_bytes(b"v\n" + b"1\n" * (FULL_HASH_BYTES // 2 + 10))
    st = big.stat()
    before = fingerprint(str(big))
    assert before is not None and before.size == st.st_size and before.inode == st.st_ino
    with open(big, "r+b") as fh:  # same size, last row changed, mtime put back
        fh.seek(st.st_size - 2)
        fh.write(b"9\n")
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = fingerprint(str(big))
    assert after is not None and after.digest != before.digest
    change = before.differences(after)
    assert change is not None and "content changed" in change and "size" not in change
    assert before.differences(before) is None
    assert Fingerprint.parse(before.dump()) == before and Fingerprint.parse("junk") is None
    assert st.st_size > 2 * EDGE_BYTES  # hashed: head and tail only, not the whole file
    assert fingerprint(str(tmp_path / "gone.csv")) is None


def test_a_cursor_from_before_fingerprints_still_knows_its_files() -> None:
    f = FileVersion(5, "/in/a.csv", 10, 5, 4, 77)
    legacy = Cursor.parse(json.dumps({"hw": 5, "keys": [f.legacy_key]}))
    assert not legacy.is_new(f)
    assert Cursor.parse(legacy.dump()).keys_at_mark == {f.legacy_key}


def test_a_file_dated_in_the_future_runs_once_it_has_settled(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """A writer whose clock is ahead (or `touch -d`) gives a file an mtime in the future: it
    waited until that time (for good, a year ahead). Its ctime, set when it was written here,
    tells how long it has been still."""
    defs = make_defs(workdir, tmp_path / "s")
    ahead = csv_file(workdir / "incoming" / "ahead.csv", 2, age_seconds=-365 * 86400)
    requests, cursor, skip = tick(defs, instance, None)
    assert [Path(r.tags["osiris/file"]).name for r in requests] == ["ahead.csv"], skip
    assert requests[0].tags["osiris/file"] == str(ahead)
    queue(defs, instance, requests)
    # the cursor's mark is now a year ahead: files written after still run, once each
    csv_file(workdir / "incoming" / "next.csv", 1)
    later, cursor, _ = tick(defs, instance, cursor)
    assert [Path(r.tags["osiris/file"]).name for r in later] == ["next.csv"]
    queue(defs, instance, later)
    assert tick(defs, instance, cursor)[0] == []


def test_plan_runs_judges_a_future_mtime_by_the_ctime() -> None:
    now = 1_000_000_000_000
    ahead = FileVersion(now + 10**15, "/ahead", 1, now + 10**15, now - 100 * 10**9)
    both = FileVersion(now + 10**15, "/both", 1, now + 10**15, now + 10**15)
    stats = {f.path: Fingerprint(f.size, f.mtime_ns, f.ctime_ns, f.inode, "d")
             for f in (ahead, both)}
    plan = plan_runs([ahead, both], Cursor(), now, settle_seconds=5, max_runs=10,
                     fingerprint_of=stats.get)
    assert [p.file for p in plan.to_run] == [ahead] and plan.settling == [both]
    from osiris_dagster.dagster_layer.automation import _skip_reason
    reason = _skip_reason("*.csv", Path("/"), None, plan.settling, [], [], now)
    assert "1 file(s) dated in the future" in reason and "both" in reason
    assert "still being written" not in reason
