"""osiris-dagster: run Osiris OML pipelines as Dagster assets over one DuckDB file per session."""

from osiris_dagster.dagster_layer.assets import OsirisPipelineDefs, build_osiris_assets
from osiris_dagster.dagster_layer.component import OsirisPipelineComponent
from osiris_dagster.dagster_layer.io_manager import OsirisIOManager
from osiris_dagster.dagster_layer.loader import build_definitions
from osiris_dagster.dagster_layer.resources import OsirisResource
from osiris_dagster.dagster_layer.translator import OsirisStepData, OsirisTranslator
from osiris_dagster.runtime.runner import TableRef

__all__ = [
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
