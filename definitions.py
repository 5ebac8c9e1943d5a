"""The default code location: every pipeline under $OSIRIS_PIPELINES_DIR (default pipelines/).

    dagster dev -f definitions.py      (or: dagster dev, which reads workspace.yaml)
"""

from osiris_dagster import build_definitions

defs = build_definitions()
