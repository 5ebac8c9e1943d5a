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

    session_store: str | None = Field(
        default=None, description="Where step tables live: 'duckdb' (one file per session, the "
                                  "default) or 'ducklake' (default $OSIRIS_SESSION_STORE).")
    ducklake_catalog: str | None = Field(
        default=None, description="DuckLake catalog, e.g. 'postgres:dbname=osiris host=db' "
                                  "(default $OSIRIS_DUCKLAKE_CATALOG).")
    ducklake_data_path: str | None = Field(
        default=None, description="DuckLake data files: a shared directory or s3://bucket/prefix/"
                                  " (default $OSIRIS_DUCKLAKE_DATA_PATH).")
    ducklake_metadata_schema: str | None = Field(
        default=None, description="Schema of the catalog database that holds DuckLake's tables "
                                  "(default $OSIRIS_DUCKLAKE_METADATA_SCHEMA, else DuckLake's).")

    def settings(self) -> Settings:
        return Settings.from_env(self.sessions_dir, session_store=self.session_store,
                                 ducklake_catalog=self.ducklake_catalog,
                                 ducklake_data_path=self.ducklake_data_path,
                                 ducklake_metadata_schema=self.ducklake_metadata_schema)

    def connections(self, pipeline_path: Path) -> Connections:
        return Connections(find_connections_file(self.connections_file, pipeline_path),
                           environment())
