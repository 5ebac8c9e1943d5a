"""Contender scripts. Each runs in a fresh subprocess started by ``benchmarks.run`` and ends
with one line ``BENCH_RESULT {json}`` (rows, and the in-process time of its timed region when it
has one). The registry of contenders, their cases and default size caps is in
``benchmarks/run.py``; ``osiris-dagster run`` and ``cat`` are run directly, without a script.
"""
