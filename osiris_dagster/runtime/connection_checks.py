"""Checks of a pipeline against its connections file, for ``osiris-dagster validate``: that
its connection references name connections of the file (without it an undefined alias passed
validation and failed the run), and that a CSV step's `path` stays inside its connection's
`base_dir` (the run's own rule). A connection's `${VAR}`s are not read: the place a step runs
has them."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

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


def path_diagnostics(pipeline: Pipeline, connections_file: Path, file: str,
                     given_by_runs: Collection[str]) -> list[Diagnostic]:
    """An error, at the line of its `path`, for each step whose `path` escapes the base_dir of
    its connection: the run's own rule (:func:`resolve_step_path`), which refused the step only
    when it ran. Not checked: a path with a parameter each run is given (a partition's, a
    sensor's, a schedule's: validate has only a stand-in), and a connection whose fields name
    environment variables (those of the place the step runs: validate reads none)."""
    from osiris_dagster.core.errors import DriverError
    from osiris_dagster.runtime.workspace import resolve_step_path  # (imports DuckDB)

    connections = Connections(connections_file, env={})  # a `${VAR}` raises: not checked
    written = _path_options(pipeline.path)
    found = []
    for step in pipeline.steps:
        spec = get_spec(step.component)
        path, ref = step.config.get("path"), step.connection_ref
        line, raw = written.get(step.id, (step.line, path))
        if ("base_dir" not in spec.connection_fields or ref is None
                or not isinstance(path, str) or _references(raw, given_by_runs)):
            continue
        try:
            base_dir = connections.resolve(spec.family, ref).base_dir
        except ConnectionError_:  # undefined (connection_diagnostics says so) or a `${VAR}`
            continue
        if base_dir is None:
            continue
        try:
            resolve_step_path(path, base_dir)
        except DriverError as exc:
            found.append(Diagnostic("error", file, line, f"connection '{ref}' of "
                                    f"{connections_file}: {exc}", step.id))
    return found


def _path_options(path: Path) -> dict[str, tuple[int, Any]]:
    """step id -> (line of its `path` option, its value as written, parameters unresolved);
    the pipeline's model keeps neither."""
    from osiris_dagster.oml.yaml_lines import LineDict, load_yaml_with_lines

    doc = load_yaml_with_lines(path.read_text(encoding="utf-8"))
    out = {}
    for step in doc.get("steps") or []:
        config = step.get("config") if isinstance(step, LineDict) else None
        if isinstance(config, LineDict) and "path" in config:
            out[str(step.get("id"))] = (config.line_of("path"), config["path"])
    return out


def _references(text: Any, names: Collection[str]) -> bool:
    """Whether ``text`` references one of the parameters ``names`` (`${params.x}`)."""
    from osiris_dagster.oml.sql_params import PARAM_REF

    return isinstance(text, str) and any(m.group(1).strip() in names
                                         for m in PARAM_REF.finditer(text))
