"""OML: loading, validating and resolving Osiris pipeline files (no Dagster, no DuckDB)."""

from .diagnostics import Diagnostic
from .model import Pipeline, Step
from .validate import ValidationResult, load_pipeline, validate_pipeline

__all__ = ["Diagnostic", "Pipeline", "Step", "ValidationResult", "load_pipeline",
           "validate_pipeline"]
