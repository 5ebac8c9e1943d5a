"""OsirisTranslator: how a pipeline step becomes a Dagster AssetSpec.

Subclass it and override :meth:`get_asset_spec` (usually ``super().get_asset_spec(data)
.replace_attributes(...)``) to rename keys, change groups or add tags; the factory uses it for
every step, dependency keys included.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import dagster as dg

from osiris_dagster.core.naming import asset_key_part, dagster_name, table_names
from osiris_dagster.dagster_layer.partitions import partitions_definition
from osiris_dagster.oml.model import Pipeline, Step
from osiris_dagster.oml.specs import get_spec


@dataclass(frozen=True)
class OsirisStepData:
    pipeline: Pipeline
    step: Step


class OsirisTranslator:
    def get_asset_key(self, pipeline: Pipeline, step: Step) -> dg.AssetKey:
        return dg.AssetKey([asset_key_part(pipeline.name), asset_key_part(step.id)])

    def get_asset_spec(self, data: OsirisStepData) -> dg.AssetSpec:
        pipeline, step = data.pipeline, data.step
        spec = get_spec(step.component)
        assert spec is not None
        step_settings = pipeline.dagster.for_step(step.id)
        description = step_settings.description or (
            f"{spec.description}\n\nStep `{step.id}` of pipeline `{pipeline.name}` "
            f"(`{step.component}`, mode `{step.mode}`)."
        )
        metadata: dict[str, object] = {
            "osiris/step_id": step.id,
            "osiris/component": step.component,
            "osiris/pipeline": pipeline.name,
            "osiris/pipeline_file": dg.MetadataValue.path(str(pipeline.path)),
            "dagster/code_references": _code_reference(str(pipeline.path), step.line),
        }
        if spec.produces_table:
            metadata["osiris/table"] = table_names(s.id for s in pipeline.steps)[step.id]
            metadata["dagster/storage_kind"] = "duckdb"
        if step.connection_ref:
            metadata["osiris/connection"] = step.connection_ref
        return dg.AssetSpec(
            key=self.get_asset_key(pipeline, step),
            deps=[*(self.get_asset_key(pipeline, pipeline.step(n)) for n in step.needs),
                  *(dg.AssetKey(k.split("/")) for k in step_settings.deps)],
            description=description,
            group_name=pipeline.dagster.group or dagster_name(pipeline.name),
            kinds=set(spec.kinds),
            owners=[*pipeline.dagster.owners, *step_settings.owners],
            tags={**pipeline.dagster.tags, **step_settings.tags, "osiris/mode": step.mode},
            code_version=step.fingerprint,
            metadata=metadata,
            partitions_def=partitions_definition(pipeline),
        )


def _code_reference(path: str, line: int) -> dg.CodeReferencesMetadataValue:
    """The UI's "open in editor" link to the step's line. Dagster marks both classes beta and
    warns each time a command loads the definitions; the link is ours to keep working, not the
    user's to be told about."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.CodeReferencesMetadataValue(code_references=[
            dg.LocalFileCodeReference(file_path=path, line_number=line)])
