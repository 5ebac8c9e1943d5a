"""Partitions and their schedules, as a review found them wanting: every partition runs once
whatever the schedule's cron and time zone, a partition's bounds name instants, and `validate`
refuses what would lose or misplace rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from dagster._utils.schedules import cron_string_iterator

from osiris_dagster import build_definitions
from osiris_dagster.dagster_layer.automation import previous_tick
from osiris_dagster.oml import validate_pipeline
from osiris_dagster.oml.automation_checks import check_schedule_params
from osiris_dagster.oml.diagnostics import Collector
from osiris_dagster.oml.params import declared_params
from osiris_dagster.oml.partition_checks import INVALID_PARTITION_SUBSTRINGS
from osiris_dagster.oml.yaml_lines import load_yaml_with_lines

from .helpers import failure_description, materialisations, table_rows, write

SCHEDULED = """\
oml_version: "0.1.0"
name: sched
x-dagster:
  partitions: {partitions}
  schedule: {schedule}
steps:
  - {{id: a, component: duckdb.processor, mode: transform, config: {{query: 'SELECT 1 AS x'}}}}
"""


def _ticks(tmp_path: Path, partitions: str, schedule: str, first: datetime, last: datetime
           ) -> tuple[list[str], list[str]]:
    """The partition keys the schedule requests at each of its real ticks (the daemon's cron
    iterator) from ``first`` to ``last``, in order; and the keys of the partitions that ended
    after the tick before the first and up to the last (Dagster's own notion of complete)."""
    path = write(tmp_path / "pipes" / "sched.yaml",
                 SCHEDULED.format(partitions=partitions, schedule=schedule))
    defs = build_definitions([path], sessions_dir=str(tmp_path / "s"))
    sched = defs.get_schedule_def("sched_schedule")
    repo = defs.get_repository_def()
    requested: list[str] = []
    ticks = cron_string_iterator(first.timestamp(), sched.cron_schedule,
                                 sched.execution_timezone)
    tick = start = next(ticks)
    while tick <= last:
        with dg.build_schedule_context(scheduled_execution_time=tick,
                                       repository_def=repo) as ctx:
            result = sched.evaluate_tick(ctx)
        requested += [r.partition_key for r in result.run_requests or []]
        assert all(r.run_key == r.partition_key for r in result.run_requests or [])
        end = tick
        tick = next(ticks)
    (spec,) = defs.resolve_all_asset_specs()
    before = spec.partitions_def.get_partition_keys(
        current_time=previous_tick(sched.cron_schedule, sched.execution_timezone, start))
    due = spec.partitions_def.get_partition_keys(current_time=end)
    assert due[:len(before)] == before
    return requested, list(due[len(before):])


@pytest.mark.parametrize("partitions, schedule, first, last", [
    # UTC days, ticks at 01:30 Prague: 23:30Z in summer, 00:30Z in winter (the review's case)
    ('{daily: {start: "2026-01-01"}}', '{cron: "30 1 * * *", timezone: Europe/Prague}',
     datetime(2026, 3, 24, tzinfo=UTC), datetime(2026, 4, 2, tzinfo=UTC)),
    ('{daily: {start: "2026-01-01"}}', '{cron: "30 1 * * *", timezone: Europe/Prague}',
     datetime(2026, 10, 20, tzinfo=UTC), datetime(2026, 10, 30, tzinfo=UTC)),
    # a weekly tick over daily partitions: the week's seven days, not only the last
    ('{daily: {start: "2026-01-01", timezone: Europe/Prague}}', '{cron: "0 6 * * 1"}',
     datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 20, tzinfo=UTC)),
    # Prague hours (a repeated hour on 25 October) by a daily UTC tick
    ('{hourly: {start: "2026-10-20", timezone: Europe/Prague}}', '{cron: "15 0 * * *"}',
     datetime(2026, 10, 22, tzinfo=UTC), datetime(2026, 10, 28, tzinfo=UTC)),
    # Prague days by an hourly Prague tick across the spring gap; monthly by a daily tick
    ('{daily: {start: "2026-03-01", timezone: Europe/Prague}}',
     '{cron: "0 * * * *", timezone: Europe/Prague}',
     datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
    ('{monthly: {start: "2026-01-01", end: "2026-05-01"}}',
     '{cron: "0 2 * * *", timezone: America/New_York}',
     datetime(2026, 1, 20, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)),
])
def test_each_partition_runs_at_exactly_one_tick(tmp_path: Path, partitions: str,
                                                 schedule: str, first: datetime,
                                                 last: datetime) -> None:
    requested, due = _ticks(tmp_path, partitions, schedule, first, last)
    assert requested == due
    assert len(due) > 3


def test_a_tick_with_nothing_new_is_a_skip_naming_both_ticks(tmp_path: Path) -> None:
    path = write(tmp_path / "pipes" / "sched.yaml", SCHEDULED.format(
        partitions='{daily: {start: "2026-01-01"}}', schedule='{cron: "0 * * * *"}'))
    defs = build_definitions([path], sessions_dir=str(tmp_path / "s"))
    with dg.build_schedule_context(scheduled_execution_time=datetime(2026, 2, 10, 5, tzinfo=UTC),
                                   repository_def=defs.get_repository_def()) as ctx:
        result = defs.get_schedule_def("sched_schedule").evaluate_tick(ctx)
    assert not result.run_requests
    assert "2026-02-10T04:00:00+00:00" in result.skip_message
    assert "2026-02-10T05:00:00+00:00" in result.skip_message


# -- 2: a partition's bounds are instants ---------------------------------------------------------
HOURLY_PRAGUE = """\
oml_version: "0.1.0"
name: hp
x-dagster:
  partitions: {hourly: {start: "2026-10-25 00:00", end: "2026-10-25 05:00",
                         timezone: Europe/Prague}}
steps:
  - id: events
    component: duckdb.processor
    mode: transform
    config:
      query: >
        SELECT ts_utc FROM range(TIMESTAMP '2026-10-24 21:00', TIMESTAMP '2026-10-25 05:00',
                                 INTERVAL 15 MINUTE) AS t(ts_utc)
  - id: slice
    component: duckdb.processor
    mode: transform
    config:
      query: >
        SELECT count(*) AS n, CAST(min(ts_utc) AS VARCHAR) AS lo,
               CAST(max(ts_utc) AS VARCHAR) AS hi,
               ${params.partition_start} AS s, ${params.partition_end} AS e
        FROM input_df
        WHERE ts_utc >= CAST(${params.partition_start} AS TIMESTAMPTZ)
          AND ts_utc < CAST(${params.partition_end} AS TIMESTAMPTZ)
"""


def test_hourly_bounds_in_a_dst_fall_back_put_each_row_in_its_own_partition(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """25 October 2026 in Prague: 02:00-03:00 happens twice (+02:00, then +01:00). Each of the
    two partitions gets its own hour of UTC rows; before, both had bounds without an offset,
    the first an empty window (start == end == '2026-10-25T02:00:00')."""
    defs = build_definitions([write(workdir / "hp.yaml", HOURLY_PRAGUE)],
                             sessions_dir=str(tmp_path / "s"))
    (spec, _) = defs.resolve_all_asset_specs()
    keys = spec.partitions_def.get_partition_keys()
    assert keys == ["2026-10-25-00:00", "2026-10-25-01:00", "2026-10-25-02:00",
                    "2026-10-25-02:00+0100", "2026-10-25-03:00", "2026-10-25-04:00"]
    job = defs.resolve_job_def("hp")
    got = {}
    for key in keys:
        result = job.execute_in_process(instance=instance, partition_key=key)
        assert result.success, failure_description(result)
        (row,) = table_rows(materialisations(result)["hp/slice"]["preview"])
        got[key] = row
    assert got["2026-10-25-02:00"] == {
        "n": 4, "lo": "2026-10-25 00:00:00", "hi": "2026-10-25 00:45:00",
        "s": "2026-10-25T02:00:00+02:00", "e": "2026-10-25T02:00:00+01:00"}
    assert got["2026-10-25-02:00+0100"] == {
        "n": 4, "lo": "2026-10-25 01:00:00", "hi": "2026-10-25 01:45:00",
        "s": "2026-10-25T02:00:00+01:00", "e": "2026-10-25T03:00:00+01:00"}
    assert [got[k]["lo"] for k in keys] == [f"2026-10-{d} {h}:00:00" for d, h in (
        ("24", "22"), ("24", "23"), ("25", "00"), ("25", "01"), ("25", "02"), ("25", "03"))]
    assert sum(row["n"] for row in got.values()) == 6 * 4  # 22:00Z-04:00Z, nothing twice


# -- 3: a schedule's params as its runs take them -------------------------------------------------
def _validate(tmp_path: Path, text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    result = validate_pipeline(write(tmp_path / "x.yaml", text))
    return ([(d.line, d.message) for d in result.errors],
            [(d.line, d.message) for d in result.warnings])


def test_validate_refuses_a_schedule_param_its_type_refuses(tmp_path: Path) -> None:
    """A review's `schedule: {params: {n: "abc"}}` for an integer `n` validated, and every run
    the schedule started failed."""
    p = write(tmp_path / "sp.yaml", """\
oml_version: "0.1.0"
name: sp
params:
  n: {default: 1, type: integer}
x-dagster:
  schedule: {cron: "0 6 * * *", params: {n: "abc"}}
steps:
  - {id: q, component: duckdb.processor, mode: transform,
     config: {query: "SELECT ${params.n} AS n"}}
""")
    result = validate_pipeline(p, env={})
    assert [(d.line, d.message) for d in result.errors] == [
        (6, "x-dagster.schedule.params: parameter 'n' expects an integer, got 'abc' from "
            "x-dagster.schedule.params: write it as digits with an optional leading '-', or "
            "declare the parameter `type: string` (or quote its default) to keep the text as "
            "written; every run the schedule starts would fail")]


def test_schedule_params_are_checked_against_their_types() -> None:
    """The check `validate` calls (after check_x_dagster): the schedule's value goes through
    the `--param` type rule, named at its line."""
    doc = load_yaml_with_lines(
        'params:\n  n: {default: 1, type: integer}\n  f: 1.5\n  s: a\nx-dagster:\n'
        '  schedule:\n    - cron: "0 6 * * *"\n      params: {n: "abc", f: 2, s: 3}\n'
        '    - {cron: "0 7 * * *", params: {n: "7", f: true}}\n')
    out = Collector("x.yaml")
    check_schedule_params(doc["x-dagster"], declared_params(doc, out), out)
    assert [(d.line, d.message) for d in out.errors] == [
        (8, "x-dagster.schedule.params: parameter 'n' expects an integer, got 'abc' from "
            "x-dagster.schedule.params: write it as digits with an optional leading '-', or "
            "declare the parameter `type: string` (or quote its default) to keep the text as "
            "written; every run the schedule starts would fail"),
        (9, "x-dagster.schedule.params: parameter 'f' expects a number, got True (bool) from "
            "x-dagster.schedule.params; every run the schedule starts would fail")]


@pytest.mark.parametrize("name", ["partition_key", "partition_start", "partition_end"])
def test_a_schedule_param_the_partition_sets_is_refused(tmp_path: Path, name: str) -> None:
    errors, _ = _validate(tmp_path, SCHEDULED.format(
        partitions='{daily: {start: "2026-01-01"}}',
        schedule=f'{{cron: "0 6 * * *",\n              params: {{{name}: "2026-01-02"}}}}'))
    assert errors == [(6, f"x-dagster.schedule.params sets '{name}', which each run's "
                          "partition sets (the daily partition the tick runs): remove it")]


# -- 4: static keys Dagster refuses, and keys that are paths -------------------------------------
def test_static_keys_dagster_refuses_are_errors_at_their_line(tmp_path: Path) -> None:
    errors, warnings = _validate(tmp_path, (
        'oml_version: "0.1.0"\nname: x\nx-dagster:\n  partitions:\n    static:\n'
        '      - eu\n      - "r...s"\n      - "a\\nb"\n      - ".."\n      - "eu/west"\n'
        "steps:\n  - {id: a, component: duckdb.processor, mode: transform, "
        "config: {query: 'SELECT 1'}}\n"))
    assert [(line, msg.split(",")[0]) for line, msg in errors] == [
        (7, "x-dagster.partitions.static: key 'r...s' holds '...'"),
        (8, "x-dagster.partitions.static: key 'a\\nb' holds '\\n'")]
    assert [(line, "outside the directory" in msg, "into another directory" in msg)
            for line, msg in warnings] == [(9, True, False), (10, False, True)]


def test_the_refused_substrings_are_dagsters() -> None:
    from dagster._core.definitions.partitions.utils.base import (
        INVALID_PARTITION_SUBSTRINGS as DAGSTERS,
    )

    assert list(INVALID_PARTITION_SUBSTRINGS) == DAGSTERS


# -- 5: bounds off a partition boundary, an empty range -------------------------------------------
@pytest.mark.parametrize("block, line, message", [
    ('{monthly: {start: "2026-01-15"}}', 4,
     "x-dagster.partitions.monthly.start 2026-01-15 is not the start of a month (months start "
     "on the 1st): the partitions would start at 2026-02-01, and the days from 2026-01-15 on "
     "would be in none; use 2026-01-01 or 2026-02-01"),
    ('{weekly: {start: "2026-01-01"}}', 4,
     "x-dagster.partitions.weekly.start 2026-01-01 is not the start of a week (weeks run "
     "Sunday to Sunday): the partitions would start at 2026-01-04, and the days from "
     "2026-01-01 on would be in none; use 2025-12-28 or 2026-01-04"),
    ('{monthly: {start: "2026-01-01",\n               end: "2026-12-31"}}', 5,
     "x-dagster.partitions.monthly.end 2026-12-31 is not the start of a month (months start on "
     "the 1st): the last partition would end at 2026-12-01, and the days from 2026-12-01 on "
     "would be in none; use 2026-12-01 or 2027-01-01"),
    ('{daily: {start: "2026-01-02",\n             end: "2026-01-02"}}', 5,
     "x-dagster.partitions.daily.end 2026-01-02 must be after start 2026-01-02: `end` is "
     "exclusive (the last partition ends there), so there would be no partition"),
    ('{hourly: {start: "2026-01-02 05:00",\n              end: "2026-01-02 04:00"}}', 5,
     "x-dagster.partitions.hourly.end 2026-01-02-04:00 must be after start 2026-01-02-05:00"),
])
def test_time_bounds_off_a_boundary_or_empty_are_refused(tmp_path: Path, block: str,
                                                         line: int, message: str) -> None:
    errors, _ = _validate(tmp_path, (
        'oml_version: "0.1.0"\nname: x\nx-dagster:\n  partitions: ' + block + "\nsteps:\n"
        "  - {id: a, component: duckdb.processor, mode: transform, "
        "config: {query: 'SELECT 1'}}\n"))
    assert [(ln, msg[:len(message)]) for ln, msg in errors] == [(line, message)]


@pytest.mark.parametrize("block", ['{weekly: {start: "2026-01-04", end: "2026-03-01"}}',
                                   '{monthly: {start: "2026-01-01", end: "2027-01-01"}}',
                                   '{daily: {start: "2026-01-15", end: "2026-01-16"}}'])
def test_bounds_on_boundaries_validate(tmp_path: Path, block: str) -> None:
    errors, _ = _validate(tmp_path, (
        'oml_version: "0.1.0"\nname: x\nx-dagster:\n  partitions: ' + block + "\nsteps:\n"
        "  - {id: a, component: duckdb.processor, mode: transform, "
        "config: {query: 'SELECT 1'}}\n"))
    assert errors == []


def test_several_schedules_over_time_partitions_are_refused(tmp_path: Path) -> None:
    """Each schedule runs every partition that ended since its own previous tick: a
    self-review saw two schedules each run 2026-02-09 (an append writer would write it twice)."""
    errors, _ = _validate(tmp_path, SCHEDULED.format(
        partitions='{daily: {start: "2026-01-01"}}',
        schedule='[{cron: "0 6 * * *"}, {cron: "0 18 * * *"}]'))
    assert len(errors) == 1 and "2 schedules over time partitions" in errors[0][1], errors


def test_an_invalid_partitions_block_is_one_error_not_also_unresolved_parameters(
        tmp_path: Path) -> None:
    """A review saw each refused partition setting also report "unresolved parameter
    'partition_key': declare it under 'params'", advice that is wrong for a partitioned
    pipeline."""
    errors, _ = _validate(tmp_path, (
        'oml_version: "0.1.0"\nname: x\nx-dagster:\n  partitions: {monthly: {start: '
        '"2026-01-15"}}\nsteps:\n  - {id: a, component: duckdb.processor, mode: transform, '
        "config: {query: 'SELECT ${params.partition_key} AS k, ${params.partition_end} AS e'}}\n"))
    assert len(errors) == 1 and "is not the start of a month" in errors[0][1], errors
