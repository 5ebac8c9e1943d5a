"""osiris-dagster: run Osiris OML pipelines as Dagster assets over one DuckDB file per session.

The public names load on first use (PEP 562): `import osiris_dagster` and commands that need no
Dagster (`osiris-dagster validate`) do not pay Dagster's import (about a second). `dir()` lists
them, so dg's registry discovery (`dagster_dg_cli.registry_modules = osiris_dagster`, which walks
the module's attributes) still finds `OsirisPipelineComponent`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from osiris_dagster.dagster_layer.assets import OsirisPipelineDefs, build_osiris_assets
    from osiris_dagster.dagster_layer.component import OsirisPipelineComponent
    from osiris_dagster.dagster_layer.io_manager import OsirisIOManager
    from osiris_dagster.dagster_layer.loader import build_definitions
    from osiris_dagster.dagster_layer.resources import OsirisResource
    from osiris_dagster.dagster_layer.translator import OsirisStepData, OsirisTranslator
    from osiris_dagster.runtime.runner import TableRef

# public name -> module that defines it
_PUBLIC = {
    "OsirisIOManager": "osiris_dagster.dagster_layer.io_manager",
    "OsirisPipelineComponent": "osiris_dagster.dagster_layer.component",
    "OsirisPipelineDefs": "osiris_dagster.dagster_layer.assets",
    "OsirisResource": "osiris_dagster.dagster_layer.resources",
    "OsirisStepData": "osiris_dagster.dagster_layer.translator",
    "OsirisTranslator": "osiris_dagster.dagster_layer.translator",
    "TableRef": "osiris_dagster.runtime.runner",
    "build_definitions": "osiris_dagster.dagster_layer.loader",
    "build_osiris_assets": "osiris_dagster.dagster_layer.assets",
}

__all__ = [  # the keys of _PUBLIC, spelled out for type checkers and linters
    "OsirisIOManager",
    "OsirisPipelineComponent",
    "OsirisPipelineDefs",
    "OsirisResource",
    "OsirisStepData",
    "OsirisTranslator",
    "TableRef",
    "build_definitions",
    "build_osiris_assets",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'osiris_dagster' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
