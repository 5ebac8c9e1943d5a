"""Benchmark suite for osiris-dagster: ``python -m benchmarks`` (see benchmarks/README.md).

Every contender runs in a fresh subprocess, interleaved with the others and repeated; the harness
records wall time, rows/s and the peak RSS of the contender's whole process tree. Only ratios
measured in the same run are meant to be compared: the machine is shared and noisy.
"""
