"""Definitions for a directory of pipelines (what `definitions.py` and the CLI load)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from .assets import IO_MANAGER_KEY, RESOURCE_KEY, OsirisPipelineDefs, build_osiris_assets
from .errors import OsirisError, PipelineInvalidError
from .io_manager import OsirisIOManager
from .naming import asset_key_part
from .resources import OsirisResource
from .translator import OsirisTranslator

log = logging.getLogger("osiris_dagster")

SKIP_FILES = {"osiris_connections.yaml", "osiris_connections.yml", "defs.yaml", "workspace.yaml",
              "dagster.yaml"}
INVALID_GROUP = "osiris_invalid_pipelines"


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
) -> dg.Definitions:
    """Definitions for the given pipeline files, or every pipeline in pipelines_dir
    (default $OSIRIS_PIPELINES_DIR or ./pipelines). A broken file is logged and shown as a
    failing placeholder asset; it never hides the other pipelines.

    The default executor runs all steps in one process: a DuckDB file has one writer. Another
    executor works too; steps then wait for the session database's lock (with backoff)."""
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

    built: list[OsirisPipelineDefs] = []
    broken: list[BrokenPipeline] = []
    names: dict[str, Path] = {}
    for path in paths:
        try:
            defs = build_osiris_assets(path, translator, connections_file=connections_file)
        except PipelineInvalidError as exc:
            broken.append(BrokenPipeline(path, str(exc)))
            continue
        except (OSError, OsirisError) as exc:
            broken.append(BrokenPipeline(path, f"{path}: {exc}"))
            continue
        key = asset_key_part(defs.pipeline.name)
        if key in names:
            broken.append(BrokenPipeline(path, f"{path}: pipeline name '{defs.pipeline.name}' is "
                                               f"already used by {names[key]}; rename one"))
            continue
        names[key] = path
        built.append(defs)

    for b in broken:
        log.error("osiris-dagster: skipping broken pipeline %s\n%s", b.path, b.message)

    resources: dict[str, object] = {
        RESOURCE_KEY: OsirisResource(sessions_dir=sessions_dir,
                                     connections_file=connections_file),
        IO_MANAGER_KEY: OsirisIOManager(sessions_dir=sessions_dir),
    }
    assets: list[object] = []
    jobs, schedules, sensors = [], [], []
    for d in built:
        assets.extend(d.assets)
        jobs.append(d.job)
        schedules.extend(d.schedules)
        sensors.extend(d.sensors)
        resources[d.params_resource_key] = d.params_resource
    assets.extend(_broken_asset(b) for b in broken)
    return dg.Definitions(assets=assets, jobs=jobs, schedules=schedules, sensors=sensors,
                          resources=resources, executor=executor or dg.in_process_executor)


def _broken_asset(broken: BrokenPipeline) -> dg.AssetsDefinition:
    """A visible, failing placeholder so a broken file is noticed in the UI, not just in logs."""
    stem = asset_key_part(broken.path.stem)

    @dg.asset(key=dg.AssetKey(["osiris_invalid", stem]), group_name=INVALID_GROUP,
              description=f"**Invalid Osiris pipeline** `{broken.path}`\n\n```\n{broken.message}"
                          "\n```\n\nFix the file and reload the code location.",
              metadata={"osiris/pipeline_file": dg.MetadataValue.path(str(broken.path)),
                        "osiris/errors": dg.MetadataValue.text(broken.message)},
              kinds={"osiris"})
    def _invalid() -> None:
        raise dg.Failure(description=broken.message)

    return _invalid
