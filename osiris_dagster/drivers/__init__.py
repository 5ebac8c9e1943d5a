"""Driver registry: component name -> module with ``run(ctx, config, inputs)``.

Modules are imported lazily so a pipeline validates and loads even where a driver's optional
dependencies are missing. Components absent here have specs (they validate) but no driver yet.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from osiris_dagster.drivers.base import (
    Driver,
    DriverResult,
    PendingState,
    StepContext,
    UpstreamTable,
)

_DRIVER_MODULES = {
    "duckdb.processor": "osiris_dagster.drivers.duckdb.processor",
    "filesystem.csv_extractor": "osiris_dagster.drivers.csv.extractor",
    "filesystem.csv_writer": "osiris_dagster.drivers.csv.writer",
    "graphql.extractor": "osiris_dagster.drivers.graphql.extractor",
    "mysql.extractor": "osiris_dagster.drivers.mysql.extractor",
    "mysql.writer": "osiris_dagster.drivers.mysql.writer",
    "posthog.extractor": "osiris_dagster.drivers.posthog.extractor",
    "supabase.extractor": "osiris_dagster.drivers.postgres.extractor",
    "supabase.writer": "osiris_dagster.drivers.postgres.writer",
}


def repeats_safely(component: str, config: Mapping[str, Any]) -> bool:
    """Whether running the step again on the same input gives the same end state, even after
    a write that may have landed: a module's ``repeats_safely(config)`` says so (writers in
    an upsert or replace mode); without one, False."""
    module = _DRIVER_MODULES.get(component)
    if module is None:
        return False
    check = getattr(importlib.import_module(module), "repeats_safely", None)
    return bool(check(config)) if check is not None else False


def supported_components() -> list[str]:
    return sorted(_DRIVER_MODULES)


def get_driver(component: str) -> Driver | None:
    module = _DRIVER_MODULES.get(component)
    if module is None:
        return None
    return importlib.import_module(module).run


__all__ = ["Driver", "DriverResult", "PendingState", "StepContext", "UpstreamTable",
           "get_driver", "repeats_safely", "supported_components"]
