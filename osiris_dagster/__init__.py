"""osiris-dagster: run Osiris OML pipelines as Dagster assets over one DuckDB file per session."""

from .assets import OsirisPipelineDefs, build_osiris_assets
from .component import OsirisPipelineComponent
from .io_manager import OsirisIOManager
from .loader import build_definitions
from .resources import OsirisResource
from .runner import TableRef
from .translator import OsirisStepData, OsirisTranslator

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
