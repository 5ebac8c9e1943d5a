"""Tests of the ducklake session store, run in the lake virtualenv (duckdb 1.5.5)."""
