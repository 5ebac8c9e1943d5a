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
