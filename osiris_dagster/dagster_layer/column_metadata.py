"""A step's columns as Dagster metadata: ``dagster/column_schema`` with the descriptions from
``x-dagster.steps.<id>.columns``, and ``dagster/column_lineage`` from the lineage the driver
reported (:class:`osiris_dagster.drivers.base.StepColumnLineage`), in upstream asset keys.

``osiris/column_lineage`` says the same lineage in words (Dagster OSS hides
``dagster/column_lineage`` on the asset page), or why there is none for this materialisation.

Every column name and type text goes through the session's masker, as in the preview: a name
can hold a secret (an API answer keyed by the caller's token becomes a column `by_key.<token>`,
a nested one a type `STRUCT("<token>" BIGINT)`). Descriptions are matched on the real names;
:func:`schema_changes` compares masked names, as the stored schemas have them.
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


def column_schema(columns: Sequence[tuple[str, str]], descriptions: Mapping[str, str],
                  mask: Masker) -> tuple[dg.TableSchema, list[str]]:
    """The table's schema with descriptions, and the described names it does not have; names,
    types and descriptions masked.

    A description applies to the column of the same name, else to the one column whose name
    differs only in case (DuckDB names are case-insensitive)."""
    described = _match_descriptions([name for name, _ in columns], descriptions)
    schema = dg.TableSchema(columns=[
        dg.TableColumn(mask.text(name), mask.text(kind),
                       description=mask.text(descriptions[described[name]])
                       if name in described else None)
        for name, kind in columns])
    used = set(described.values())
    return schema, [mask.text(name) for name in descriptions if name not in used]


def schema_changes(schema: dg.TableSchema | None, columns: Sequence[tuple[str, str]],
                   mask: Masker) -> list[str]:
    """Added, removed and retyped columns against the latest materialisation's ``schema``, in
    masked names and types: the stored schema has them masked (an older one in clear: masked
    here too, so it compares equal), and the texts go to the metadata, the log and the
    session."""
    if schema is None:
        return []
    before = {mask.text(c.name): mask.text(c.type) for c in schema.columns}
    after = {mask.text(n): mask.text(t) for n, t in columns}
    out = [f"added {n} ({t})" for n, t in after.items() if n not in before]
    out += [f"removed {n} ({t})" for n, t in before.items() if n not in after]
    out += [f"retyped {n}: {before[n]} -> {t}" for n, t in after.items()
            if n in before and before[n] != t]
    return out


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
    # masked names may coincide (two secrets): Dagster wants each dependency once per column
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for column, sources in lineage.columns.items():
        found = deps.setdefault(mask.text(column), [])
        for step, name in sources:
            dep = dg.TableColumnDep(asset_key=upstream_keys[step], column_name=mask.text(name))
            if dep not in found:
                found.append(dep)
    return {"dagster/column_lineage": dg.TableColumnLineage(deps_by_column=deps),
            LINEAGE_TEXT: dg.MetadataValue.md(_lineage_markdown(lineage, upstream_keys, mask))}


def _lineage_markdown(lineage: StepColumnLineage, upstream_keys: Mapping[str, dg.AssetKey],
                      mask: Masker) -> str:
    rows = ["| column | comes from |", "| --- | --- |"]
    for column, sources in lineage.columns.items():
        origin = ", ".join(f"`{upstream_keys[step].to_user_string()}`.`{_cell(name, mask)}`"
                           for step, name in sources) or "no upstream column"
        rows.append(f"| `{_cell(column, mask)}` | {origin} |")
    return "\n".join(rows)


def _cell(name: str, mask: Masker) -> str:
    """A column name inside a markdown table cell and code span (masked first: a secret with a
    `|` or a backquote is no longer recognised once escaped)."""
    return mask.text(name).replace("|", "\\|").replace("`", "'")


def column_metadata(columns: Sequence[tuple[str, str]] | None,
                    lineage: StepColumnLineage | None, step: StepColumns | None, mask: Masker
                    ) -> dict[str, Any]:
    """All column metadata of a materialisation, masked with ``mask`` (the session's masker):
    the schema (for a step with a table) and the lineage (when the upstream asset keys are
    known, ``step``); described columns the table lacks are listed in
    ``osiris/unmatched_column_descriptions`` (ignored, not an error)."""
    md: dict[str, Any] = {}
    if columns is not None:
        schema, unmatched = column_schema(columns, step.descriptions if step else {}, mask)
        md["dagster/column_schema"] = dg.MetadataValue.table_schema(schema)
        if unmatched:
            md[UNMATCHED_DESCRIPTIONS] = dg.MetadataValue.text(
                "x-dagster.steps.<id>.columns describes columns this table does not have: "
                + ", ".join(unmatched))
    if step is not None:
        md.update(lineage_metadata(lineage, step.upstream_keys, mask))
    return md
