"""Definitions for a directory of pipelines (what `definitions.py` and the CLI load)."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from osiris_dagster.core.errors import OsirisError, PipelineInvalidError
from osiris_dagster.core.naming import asset_key_part
from osiris_dagster.dagster_layer.assets import (
    IO_MANAGER_KEY,
    RESOURCE_KEY,
    OsirisPipelineDefs,
    build_osiris_assets,
)
from osiris_dagster.dagster_layer.executors import executor_from_env
from osiris_dagster.dagster_layer.io_manager import OsirisIOManager
from osiris_dagster.dagster_layer.resources import OsirisResource
from osiris_dagster.dagster_layer.translator import OsirisTranslator
from osiris_dagster.runtime.stores import store_for

log = logging.getLogger("osiris_dagster")

SKIP_FILES = {"osiris_connections.yaml", "osiris_connections.yml", "defs.yaml", "workspace.yaml",
              "dagster.yaml"}
INVALID_GROUP = "osiris_invalid_pipelines"
INVALID_KEY_PREFIX = "osiris_invalid"


@dataclass(frozen=True)
class BrokenPipeline:
    path: Path
    message: str


def pipeline_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Every *.yaml / *.yml pipeline under directory, sorted (connections files skipped)."""
    root = Path(directory)
    files = [p for pattern in ("*.yaml", "*.yml") for p in root.rglob(pattern)
             if p.is_file() and p.name not in SKIP_FILES
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return sorted(set(files))


def build_definitions(
    pipelines: Iterable[str | os.PathLike[str]] | None = None,
    *,
    pipelines_dir: str | os.PathLike[str] | None = None,
    sessions_dir: str | None = None,
    connections_file: str | None = None,
    translator: OsirisTranslator | None = None,
    executor: dg.ExecutorDefinition | None = None,
    session_store: str | None = None,
    ducklake_catalog: str | None = None,
    ducklake_data_path: str | None = None,
    ducklake_metadata_schema: str | None = None,
) -> dg.Definitions:
    """Definitions for the given pipeline files, or every pipeline in pipelines_dir
    (default $OSIRIS_PIPELINES_DIR or ./pipelines). A broken file is logged and shown as a
    non-materialisable asset carrying its errors; it never hides or fails the other pipelines.

    ``session_store`` and the ``ducklake_*`` settings (default: their OSIRIS_* variables)
    choose where step tables live. With the default duckdb store the steps of a run execute in
    one process (a DuckDB file has one writer); with the ducklake store in parallel processes.
    ``executor`` overrides that choice (default: OSIRIS_EXECUTOR)."""
    if pipelines is None:
        directory = Path(pipelines_dir or os.environ.get("OSIRIS_PIPELINES_DIR") or "pipelines")
        if not directory.is_dir():
            log.error("osiris-dagster: pipelines directory %s does not exist "
                      "(set OSIRIS_PIPELINES_DIR)", directory.resolve())
            paths: list[Path] = []
        else:
            paths = pipeline_files(directory)
    else:
        paths = [Path(p) for p in pipelines]

    built, broken = _build_each(paths, translator, connections_file)
    return definitions_from_built(built, broken, sessions_dir=sessions_dir,
                                  connections_file=connections_file, executor=executor,
                                  session_store=session_store, ducklake_catalog=ducklake_catalog,
                                  ducklake_data_path=ducklake_data_path,
                                  ducklake_metadata_schema=ducklake_metadata_schema)


def definitions_from_built(
    built: Sequence[OsirisPipelineDefs],
    broken: Sequence[BrokenPipeline] = (),
    *,
    sessions_dir: str | None = None,
    connections_file: str | None = None,
    executor: dg.ExecutorDefinition | None = None,
    session_store: str | None = None,
    ducklake_catalog: str | None = None,
    ducklake_data_path: str | None = None,
    ducklake_metadata_schema: str | None = None,
) -> dg.Definitions:
    """`build_definitions` for pipelines already built (the CLI builds its one pipeline once
    and uses the same objects for its job, asset keys and these definitions)."""
    broken = list(broken)
    resources = _shared_resources(sessions_dir, connections_file, session_store,
                                  ducklake_catalog, ducklake_data_path, ducklake_metadata_schema)
    osiris = resources[RESOURCE_KEY]
    assert isinstance(osiris, OsirisResource)
    settings = osiris.settings()
    store_for(settings)  # wrong store settings fail the code location, naming the setting
    executor = executor or executor_from_env(session_store=settings.session_store,
                                             ducklake_catalog=settings.ducklake_catalog)
    defs = _combine(built, broken, resources, executor)
    try:  # what a code server does on load; cached, so Dagster's own loading reuses it
        dg.Definitions.validate_loadable(defs)
    except Exception:  # noqa: BLE001 - find the file(s) responsible instead of failing them all
        built = _isolate_unloadable(built, broken, resources, executor)
        defs = _combine(built, broken, resources, executor)
    for b in broken:
        log.error("osiris-dagster: skipping broken pipeline %s\n%s", b.path, b.message)
    return defs


_RESOURCES: dict[tuple[str | None, ...], dict[str, object]] = {}


def _shared_resources(*config: str | None) -> dict[str, object]:
    """The resource and IO manager objects for these settings, the same objects for the same
    settings: Dagster merges two Definitions (two components of a `dg` project, or
    ``Definitions.merge`` of two ``build_definitions``) only when a key's resource is the same
    object in both."""
    if config not in _RESOURCES:
        names = ("sessions_dir", "connections_file", "session_store", "ducklake_catalog",
                 "ducklake_data_path", "ducklake_metadata_schema")
        osiris = OsirisResource(**dict(zip(names, config, strict=True)))
        _RESOURCES[config] = {RESOURCE_KEY: osiris,
                              IO_MANAGER_KEY: OsirisIOManager(osiris=osiris)}
    return dict(_RESOURCES[config])


def _build_each(paths: Sequence[Path], translator: OsirisTranslator | None,
                connections_file: str | None
                ) -> tuple[list[OsirisPipelineDefs], list[BrokenPipeline]]:
    """Each file on its own: whatever raises while one file's definitions are built (not
    only our own errors: a translator bug, a Dagster refusal) marks that file broken; a name
    another file already took marks the later file broken."""
    built: list[OsirisPipelineDefs] = []
    broken: list[BrokenPipeline] = []
    owners: dict[str, Path] = {}
    for path in paths:
        try:
            defs = build_osiris_assets(path, translator, connections_file=connections_file)
        except Exception as exc:  # noqa: BLE001 - one file must never take the location down
            broken.append(BrokenPipeline(path, describe_build_error(path, exc)))
            continue
        taken = [(name, owners[name]) for name in _dagster_names(defs) if name in owners]
        if taken:
            name, other = taken[0]
            broken.append(BrokenPipeline(path, (
                f"{path}: pipeline '{defs.pipeline.name}' gives the Dagster {name}, already "
                f"used by {other}; rename one of the pipelines (names that differ only in "
                "characters other than letters, digits, '_' and '-' give the same names, and "
                "a name Dagster reserves gets a trailing '_': 'type' and 'type_' are one)")))
            continue
        owners.update(dict.fromkeys(_dagster_names(defs), path))
        built.append(defs)
    return built, broken


def describe_build_error(path: Path, exc: Exception) -> str:
    """A broken file's message: the validator's `FILE:LINE: step 'ID': message` lines when
    validation failed, else the file and the exception that stopped its definitions."""
    if isinstance(exc, PipelineInvalidError):
        return str(exc)
    if isinstance(exc, OSError | OsirisError):
        return f"{path}: {exc}"
    return f"{path}: could not build its Dagster definitions: {type(exc).__name__}: {exc}"


def _dagster_names(defs: OsirisPipelineDefs) -> list[str]:
    """The names one pipeline claims in a code location (two pipelines must not share one)."""
    names = [f"asset key {spec.key.to_user_string()}"
             for a in defs.assets for spec in a.specs]
    names.append(f"job {defs.job.name}")
    names.append(f"resource {defs.params_resource_key}")
    names += [f"schedule {s.name}" for s in defs.schedules]
    names += [f"sensor {s.name}" for s in defs.sensors]
    return names


def _combine(built: Sequence[OsirisPipelineDefs], broken: Sequence[BrokenPipeline],
             resources: Mapping[str, object], executor: dg.ExecutorDefinition
             ) -> dg.Definitions:
    resources = dict(resources)
    assets: list[object] = []
    jobs, schedules, sensors = [], [], []
    for d in built:
        assets.extend(d.assets)
        jobs.append(d.job)
        schedules.extend(d.schedules)
        sensors.extend(d.sensors)
        resources[d.params_resource_key] = d.params_resource
    taken = {spec.key for a in assets if isinstance(a, dg.AssetsDefinition) for spec in a.specs}
    assets.extend(broken_specs(broken, taken))
    return dg.Definitions(assets=assets, jobs=jobs, schedules=schedules, sensors=sensors,
                          resources=resources, executor=executor)


def _isolate_unloadable(built: Sequence[OsirisPipelineDefs], broken: list[BrokenPipeline],
                        resources: Mapping[str, object], executor: dg.ExecutorDefinition
                        ) -> list[OsirisPipelineDefs]:
    """Dagster refused the combined definitions (it checks some things only when resolving):
    keep the pipelines that load together, one by one, and report the others as broken.
    Runs only when something is wrong, so the usual load pays nothing for it."""
    kept: list[OsirisPipelineDefs] = []
    for d in built:
        try:
            dg.Definitions.validate_loadable(_combine([*kept, d], [], resources, executor))
        except Exception as exc:  # noqa: BLE001
            broken.append(BrokenPipeline(d.pipeline.path,
                                         describe_build_error(d.pipeline.path, exc)))
            continue
        kept.append(d)
    return kept


def broken_specs(broken: Sequence[BrokenPipeline], taken: set[dg.AssetKey] | None = None
                 ) -> list[dg.AssetSpec]:
    """One external (non-materialisable) asset per broken file, errors in its description and
    metadata: visible in the catalog, skipped by `*` selections, jobs and *Materialize all*,
    so a broken file never fails the runs of the good ones. Keys are `osiris_invalid/<file
    name>`, made unique (the same file name in two folders) against `taken` keys too."""
    specs: list[dg.AssetSpec] = []
    used = set(taken or ())
    for b in broken:
        key = dg.AssetKey([INVALID_KEY_PREFIX, asset_key_part(b.path.stem)])
        if key in used:
            digest = hashlib.sha256(str(b.path).encode()).hexdigest()[:8]
            key = dg.AssetKey([INVALID_KEY_PREFIX, f"{key.path[-1]}_{digest}"])
        used.add(key)
        specs.append(dg.AssetSpec(
            key=key, group_name=INVALID_GROUP,
            description=f"**Invalid Osiris pipeline** `{b.path}` (not materialisable: the "
                        f"other pipelines run without it)\n\n```\n{b.message}\n```\n\n"
                        "Fix the file (`osiris-dagster validate FILE` shows the same lines) "
                        "and reload the code location.",
            metadata={"osiris/pipeline_file": dg.MetadataValue.path(str(b.path)),
                      "osiris/errors": dg.MetadataValue.text(b.message)},
            tags={"osiris/invalid": "true"},
            kinds={"osiris"}))
    return specs
