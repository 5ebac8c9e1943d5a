"""Foundations every layer uses, with no Dagster: errors, the one secret masker, naming rules,
settings, memory limits, the environment (.env and ${VAR}) and atomic files."""
