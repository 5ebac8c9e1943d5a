"""`OsirisPipelineComponent`: an Osiris pipeline in a `dg` project without writing Python.

```yaml
# defs/<name>/defs.yaml
type: osiris_dagster.OsirisPipelineComponent
attributes:
  pipeline_path: pipeline.yaml        # a file or a directory of pipelines, relative to this folder
  connections_file: ../../osiris_connections.yaml   # optional
  key_prefix: [warehouse]             # optional translation attributes
  group: etl
  tags: {team: bi}
  owners: ["team:data"]
```
Invalid pipelines fail `dg check defs` with the same `FILE:LINE: step 'ID': message` lines as
`osiris-dagster validate`.
"""


from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from osiris_dagster.core.errors import PipelineInvalidError
from osiris_dagster.dagster_layer.loader import build_definitions, pipeline_files
from osiris_dagster.dagster_layer.translator import OsirisStepData, OsirisTranslator
from osiris_dagster.oml import validate_pipeline

STARTER_PIPELINE = """\
# A starter Osiris pipeline: edit the steps, then `dg check defs` and `dg launch --assets '*'`.
oml_version: "0.1.0"
name: {name}
params:
  rows: {{default: 10, description: How many rows to generate}}
steps:
  - id: generate
    component: duckdb.processor
    mode: transform
    config:
      query: "SELECT range AS id, 'item ' || range AS label FROM range(${{params.rows}})"
  - id: export
    component: filesystem.csv_writer
    mode: write
    config:
      path: output/{name}.csv
"""


class _ComponentTranslator(OsirisTranslator):
    """Applies the component's translation attributes on top of the default mapping."""

    def __init__(self, key_prefix: list[str], group: str | None, tags: dict[str, str],
                 owners: list[str]) -> None:
        self.key_prefix = key_prefix
        self.group = group
        self.tags = tags
        self.owners = owners

    def get_asset_key(self, pipeline, step) -> dg.AssetKey:  # noqa: ANN001
        return super().get_asset_key(pipeline, step).with_prefix(self.key_prefix)

    def get_asset_spec(self, data: OsirisStepData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        if self.group:
            spec = spec.replace_attributes(group_name=self.group)
        if self.tags or self.owners:
            spec = spec.merge_attributes(tags=self.tags, owners=self.owners)
        return spec


class OsirisScaffolder(dg.Scaffolder):
    """`dg scaffold defs osiris_dagster.OsirisPipelineComponent NAME`: defs.yaml + pipeline."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        dg.scaffold_component(request, {"pipeline_path": "pipeline.yaml"})
        name = request.target_path.name.replace("_", "-").lower() or "my-pipeline"
        pipeline = request.target_path / "pipeline.yaml"
        if not pipeline.exists():
            pipeline.write_text(STARTER_PIPELINE.format(name=name), encoding="utf-8")


@dg.scaffold_with(OsirisScaffolder)
@dataclass
class OsirisPipelineComponent(dg.Component, dg.Resolvable):
    """Osiris OML pipeline(s) as Dagster assets: one asset per step over one DuckDB file per
    run, with schedules, sensors and checks from each file's `x-dagster` block."""

    pipeline_path: str
    connections_file: str | None = None
    sessions_dir: str | None = None
    session_store: str | None = None  # duckdb | ducklake (default $OSIRIS_SESSION_STORE)
    ducklake_catalog: str | None = None
    ducklake_data_path: str | None = None
    ducklake_metadata_schema: str | None = None
    key_prefix: list[str] = field(default_factory=list)
    group: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    owners: list[str] = field(default_factory=list)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        base = Path(context.path)
        target = (base / self.pipeline_path).resolve()
        if target.is_dir():
            files = pipeline_files(target)
        elif target.is_file():
            files = [target]
        else:
            raise FileNotFoundError(f"{base / 'defs.yaml'}: pipeline_path {self.pipeline_path!r}"
                                    f" does not exist ({target})")
        problems = []
        for f in files:
            result = validate_pipeline(f, values_at_run_time=True)
            problems += [str(d) for d in result.errors]
        if problems:
            raise PipelineInvalidError(str(target), [_Plain(p) for p in problems])
        connections = (str((base / self.connections_file).resolve())
                       if self.connections_file else None)
        translator = _ComponentTranslator(self.key_prefix, self.group, self.tags, self.owners)
        return build_definitions(files, sessions_dir=self.sessions_dir,
                                 connections_file=connections, translator=translator,
                                 session_store=self.session_store,
                                 ducklake_catalog=self.ducklake_catalog,
                                 ducklake_data_path=self.ducklake_data_path,
                                 ducklake_metadata_schema=self.ducklake_metadata_schema)


@dataclass(frozen=True)
class _Plain:
    """A pre-formatted diagnostic line (PipelineInvalidError prints error lines)."""

    text: str
    severity: str = "error"

    def __str__(self) -> str:
        return self.text
