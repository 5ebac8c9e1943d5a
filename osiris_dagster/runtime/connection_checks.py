"""Whether a pipeline's connection references name connections of the connections file, for
``osiris-dagster validate``: without it an undefined alias passed validation and failed the run.
Only names are checked; a connection's `${VAR}`s are read when a step runs."""

from __future__ import annotations

from pathlib import Path

from osiris_dagster.core.errors import ConnectionError_
from osiris_dagster.oml.diagnostics import Diagnostic
from osiris_dagster.oml.model import Pipeline
from osiris_dagster.oml.specs import get_spec
from osiris_dagster.runtime.connections import CONNECTION_OPTIONAL, FILE_NAME, Connections


def connection_diagnostics(pipeline: Pipeline, connections_file: Path | None,
                           file: str) -> list[Diagnostic]:
    """An error for each step whose connection (named, or its family's default) the file does
    not define; a warning when a step needs one and no connections file was found."""
    users = [(step, get_spec(step.component).family) for step in pipeline.steps]
    users = [(step, family) for step, family in users
             if step.connection_ref is not None or family not in CONNECTION_OPTIONAL]
    if not users:
        return []
    if connections_file is None:
        names = ", ".join(sorted({s.id for s, _ in users}))
        return [Diagnostic("warning", file, 0, f"no {FILE_NAME} found (pass --connections "
                           "FILE, set OSIRIS_CONNECTIONS, or put it in the working directory "
                           f"or next to the pipeline): the connections of {names} are not "
                           "checked")]
    connections = Connections(connections_file)
    found = []
    for step, family in users:
        try:
            connections.check(family, step.connection_ref)
        except ConnectionError_ as exc:
            found.append(Diagnostic("error", file, step.line, str(exc), step.id))
    return found
