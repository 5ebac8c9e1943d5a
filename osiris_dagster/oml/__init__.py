"""OML: loading, validating and resolving Osiris pipeline files (no Dagster, no DuckDB)."""

from osiris_dagster.oml.diagnostics import Diagnostic
from osiris_dagster.oml.model import Pipeline, Step
from osiris_dagster.oml.validate import ValidationResult, load_pipeline, validate_pipeline

__all__ = ["Diagnostic", "Pipeline", "Step", "ValidationResult", "load_pipeline",
           "validate_pipeline"]
