"""The benchmark report's targets (benchmarks/run.py): a figure it cannot measure is n/a."""

from __future__ import annotations

from benchmarks import run

TEN_M = 10_000_000


def _summary(*sizes: int) -> dict:
    summary = {}
    for rows in sizes:
        for case in (run.E2E, run.EXTRACT):
            for name in ("osiris_cli", "duckdb_floor"):
                summary[(name, case, rows)] = {"ok": True, "wall_median": 10.0,
                                               "cpu_median": 10.0, "peak_median": rows / 1e5}
    return summary


def _growth(summary: dict, base: int) -> run.Target:
    targets = run.evaluate_targets(summary, [], ["osiris_cli"], TEN_M, base,
                                   (run.E2E, run.EXTRACT))
    return next(t for t in targets if t.name == "peak_memory_growth")


def test_memory_growth_with_one_size_is_not_a_pass() -> None:
    growth = _growth(_summary(TEN_M), base=TEN_M)
    assert (growth.measured, growth.verdict) == (None, "n/a")
    assert "one size measured" in growth.note


def test_memory_growth_with_two_sizes_is_measured() -> None:
    growth = _growth(_summary(1_000_000, TEN_M), base=1_000_000)
    assert (growth.measured, growth.verdict) == (10.0, "FAIL")


def _timed(contender: str, case: str, rnd: int, wall: float, steps: int | None = None) -> run.Run:
    return run.Run(contender, case, 100, rnd, wall, None, 100.0, 100.0, 100.0, 100.0, wall,
                   True, steps=steps)


def test_the_product_share_is_taken_round_by_round_against_the_no_op_floor() -> None:
    """Per asset and per `run`: what osiris costs beyond Dagster's do-nothing job on the same
    kind of instance, as the difference within each round (a slow round slows both)."""
    from benchmarks import startup

    lo, hi = run.OVERHEAD_STEPS
    runs = []
    for rnd, (slow, osiris_step, noop_step) in enumerate([(0.0, 0.040, 0.014),
                                                           (1.0, 0.050, 0.020)]):
        for name, per_step in (("osiris_cli", osiris_step), (run.NOOP_CLI, noop_step)):
            runs += [_timed(name, run.OVERHEAD, rnd, 1.5 + slow, lo),
                     _timed(name, run.OVERHEAD, rnd, 1.5 + slow + per_step * (hi - lo), hi)]
        runs += [_timed(startup.DAGSTER_FLOOR_CLI, startup.STARTUP, rnd, 1.4 + slow),
                 _timed("osiris_cli:run", startup.STARTUP, rnd, 1.8 + slow + rnd * 0.1),
                 _timed(startup.REFERENCE, startup.STARTUP, rnd, 0.6)]
    osiris = run.overhead_stats(runs, "osiris_cli")
    assert osiris is not None
    assert round(osiris["per_asset_above_noop_cli_ms"], 6) == 28.0  # median of 26 and 30
    assert run.overhead_stats(runs, run.NOOP_CLI)["per_asset_above_noop_cli_ms"] is None
    rows = {row["command"]: row for row in startup.summary(runs)}
    above = rows["osiris_cli:run"]["above_floor"]
    assert (round(above["min"], 6), round(above["max"], 6), above["n"]) == (0.4, 0.5, 2)
    assert rows[startup.DAGSTER_FLOOR_CLI]["above_floor"] is None
    assert "0.45 s [0.40-0.50]" in "\n".join(startup.table(list(rows.values())))


def test_every_report_pairs_runs_of_the_same_round_only() -> None:
    """A ratio is taken within a round, never across rounds: a round where either contender
    failed (or has no value) is left out, and so is a round only one of them ran."""
    from benchmarks import pairing

    runs = [_timed("a", run.E2E, 0, 2.0), _timed("b", run.E2E, 0, 1.0),
            _timed("a", run.E2E, 1, 9.0), _timed("b", run.E2E, 1, 3.0),
            _timed("a", run.E2E, 2, 100.0),  # b did not run in round 2
            _timed("a", run.E2E, 3, 50.0), _timed("b", run.E2E, 3, 1.0)]
    runs[-1].ok = False  # b failed in round 3
    ratio = run.paired_ratio(runs, ("a", run.E2E, 100), ("b", run.E2E, 100))
    assert ratio == {"median": 2.5, "min": 2.0, "max": 3.0, "n": 2}
    is_a, is_b = (lambda r: r.contender == "a"), (lambda r: r.contender == "b")
    assert pairing.difference(runs, is_a, is_b) == {"median": 3.5, "min": 1.0, "max": 6.0,
                                                     "n": 2}
    assert pairing.ratio(runs, is_a, is_b, "work_s") is None  # no work time in any round
