"""Dagster resources: where sessions live and which connections file to use."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from osiris_dagster.core.environment import environment
from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime.connections import Connections, find_connections_file


class OsirisResource(dg.ConfigurableResource):
    """Settings shared by every osiris step. Unset fields fall back to OSIRIS_* env variables."""

    sessions_dir: str | None = Field(
        default=None, description="Root of session directories (default $OSIRIS_SESSIONS_DIR "
                                  "or .osiris_sessions).")
    connections_file: str | None = Field(
        default=None, description="osiris_connections.yaml to use (default $OSIRIS_CONNECTIONS, "
                                  "then the working directory, then the pipeline's directory).")

    def settings(self) -> Settings:
        return Settings.from_env(self.sessions_dir)

    def connections(self, pipeline_path: Path) -> Connections:
        return Connections(find_connections_file(self.connections_file, pipeline_path),
                           environment())
