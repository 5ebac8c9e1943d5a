"""Driver registry: component name -> module with ``run(ctx, config, inputs)``.

Modules are imported lazily so a pipeline validates and loads even where a driver's optional
dependencies are missing. Components absent here have specs (they validate) but no driver yet.
"""

from __future__ import annotations

import importlib

from .base import Driver, DriverResult, PendingState, StepContext, UpstreamTable

_DRIVER_MODULES = {
    "duckdb.processor": "osiris_dagster.drivers.duckdb_processor",
    "filesystem.csv_extractor": "osiris_dagster.drivers.csv_extractor",
    "filesystem.csv_writer": "osiris_dagster.drivers.csv_writer",
    "graphql.extractor": "osiris_dagster.drivers.graphql_extractor",
    "mysql.extractor": "osiris_dagster.drivers.mysql_extractor",
    "mysql.writer": "osiris_dagster.drivers.mysql_writer",
    "posthog.extractor": "osiris_dagster.drivers.posthog_extractor",
    "supabase.extractor": "osiris_dagster.drivers.supabase_extractor",
    "supabase.writer": "osiris_dagster.drivers.supabase_writer",
}


def has_driver(component: str) -> bool:
    return component in _DRIVER_MODULES


def supported_components() -> list[str]:
    return sorted(_DRIVER_MODULES)


def get_driver(component: str) -> Driver | None:
    module = _DRIVER_MODULES.get(component)
    if module is None:
        return None
    return importlib.import_module(module).run


__all__ = ["Driver", "DriverResult", "PendingState", "StepContext", "UpstreamTable",
           "get_driver", "has_driver", "supported_components"]
