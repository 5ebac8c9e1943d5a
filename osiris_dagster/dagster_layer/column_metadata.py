"""A step's columns as Dagster metadata: ``dagster/column_schema`` with the descriptions from
``x-dagster.steps.<id>.columns``, and ``dagster/column_lineage`` from the lineage the driver
reported (:class:`osiris_dagster.drivers.base.StepColumnLineage`), in upstream asset keys.

``osiris/column_lineage`` says the same lineage in words (Dagster OSS hides
``dagster/column_lineage`` on the asset page), or why there is none for this materialisation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from osiris_dagster.core.masking import Masker
from osiris_dagster.drivers.base import StepColumnLineage

LINEAGE_TEXT = "osiris/column_lineage"
UNMATCHED_DESCRIPTIONS = "osiris/unmatched_column_descriptions"


@dataclass(frozen=True)
class StepColumns:
    """What the metadata needs beyond the step's outcome: the asset key of each upstream step
    (as the translator made them) and the pipeline file's column descriptions."""

    upstream_keys: Mapping[str, dg.AssetKey] = field(default_factory=dict)
    descriptions: Mapping[str, str] = field(default_factory=dict)


def column_schema(columns: Sequence[tuple[str, str]], descriptions: Mapping[str, str]
                  ) -> tuple[dg.TableSchema, list[str]]:
    """The table's schema with descriptions, and the described names it does not have.

    A description applies to the column of the same name, else to the one column whose name
    differs only in case (DuckDB names are case-insensitive)."""
    described = _match_descriptions([name for name, _ in columns], descriptions)
    schema = dg.TableSchema(columns=[
        dg.TableColumn(name, kind, description=descriptions[described[name]]
                       if name in described else None)
        for name, kind in columns])
    used = set(described.values())
    return schema, [name for name in descriptions if name not in used]


def _match_descriptions(names: Sequence[str], descriptions: Mapping[str, str]
                        ) -> dict[str, str]:
    """Column name -> the description key that applies to it."""
    matched = {name: name for name in names if name in descriptions}
    by_fold: dict[str, list[str]] = {}
    for name in names:
        by_fold.setdefault(name.casefold(), []).append(name)
    for key in descriptions:
        if key in matched.values():
            continue
        candidates = by_fold.get(key.casefold(), [])
        if len(candidates) == 1 and candidates[0] not in matched:
            matched[candidates[0]] = key
    return matched


def lineage_metadata(lineage: StepColumnLineage | None,
                     upstream_keys: Mapping[str, dg.AssetKey], mask: Masker) -> dict[str, Any]:
    """``dagster/column_lineage`` and ``osiris/column_lineage`` for a step's lineage (nothing
    for a step that reports none, such as an extractor)."""
    if lineage is None:
        return {}
    if lineage.problem is None:
        missing = sorted({step for sources in lineage.columns.values() for step, _ in sources
                          if step not in upstream_keys})
        if missing:
            lineage = StepColumnLineage.unknown(f"upstream step '{missing[0]}' has no asset key "
                                                "in this job")
    if lineage.problem is not None:
        return {LINEAGE_TEXT: dg.MetadataValue.text(
            "Column lineage not recorded for this materialisation: "
            f"{mask.shortened(lineage.problem, 300)}. The step itself ran normally.")}
    deps = {column: [dg.TableColumnDep(asset_key=upstream_keys[step], column_name=name)
                     for step, name in sources]
            for column, sources in lineage.columns.items()}
    return {"dagster/column_lineage": dg.TableColumnLineage(deps_by_column=deps),
            LINEAGE_TEXT: dg.MetadataValue.md(_lineage_markdown(lineage, upstream_keys))}


def _lineage_markdown(lineage: StepColumnLineage, upstream_keys: Mapping[str, dg.AssetKey]
                      ) -> str:
    rows = ["| column | comes from |", "| --- | --- |"]
    for column, sources in lineage.columns.items():
        origin = ", ".join(f"`{upstream_keys[step].to_user_string()}`.`{_cell(name)}`"
                           for step, name in sources) or "no upstream column"
        rows.append(f"| `{_cell(column)}` | {origin} |")
    return "\n".join(rows)


def _cell(name: str) -> str:
    """A column name inside a markdown table cell and code span."""
    return name.replace("|", "\\|").replace("`", "'")


def column_metadata(columns: Sequence[tuple[str, str]] | None,
                    lineage: StepColumnLineage | None, step: StepColumns | None, mask: Masker
                    ) -> dict[str, Any]:
    """All column metadata of a materialisation: the schema (for a step with a table) and the
    lineage (when the upstream asset keys are known, ``step``); described columns the table
    lacks are listed in ``osiris/unmatched_column_descriptions`` (ignored, not an error)."""
    md: dict[str, Any] = {}
    if columns is not None:
        schema, unmatched = column_schema(columns, step.descriptions if step else {})
        md["dagster/column_schema"] = dg.MetadataValue.table_schema(schema)
        if unmatched:
            md[UNMATCHED_DESCRIPTIONS] = dg.MetadataValue.text(
                "x-dagster.steps.<id>.columns describes columns this table does not have: "
                + ", ".join(unmatched))
    if step is not None:
        md.update(lineage_metadata(lineage, step.upstream_keys, mask))
    return md
