"""Column metadata of materialisations: `dagster/column_lineage` in upstream asset keys (as the
translator made them), `osiris/column_lineage`, and column descriptions in
`dagster/column_schema`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from osiris_dagster import build_definitions
from osiris_dagster.dagster_layer.translator import OsirisStepData, OsirisTranslator

from .helpers import defs_for, failure_description, materialisations, run_job, write

PIPELINE = """\
oml_version: "0.1.0"
name: lineage-demo
x-dagster:
  steps:
    join:
      columns:
        name: "Director's name"
        MOVIES: Number of movies
        budget: Not produced by the query
steps:
  - id: extract-movies
    component: filesystem.csv_extractor
    mode: read
    config: {path: data/movies.csv}
  - id: extract.directors
    component: filesystem.csv_extractor
    mode: read
    needs: []
    config: {path: data/directors.csv}
  - id: join
    component: duckdb.processor
    mode: transform
    needs: [extract-movies, extract.directors]
    config:
      query: >
        SELECT d.name, count(*) AS movies, sum(m.box_office_usd) AS box_office
        FROM df_extract_movies m JOIN df_extract_directors d USING (director_id)
        GROUP BY d.name
  - id: factorials
    component: duckdb.processor
    mode: transform
    needs: [join]
    config:
      query: "SELECT name, CAST(movies AS INTEGER) ! AS f FROM input_df"
  - id: write
    component: filesystem.csv_writer
    mode: write
    needs: [join]
    config: {path: out/directors.csv}
"""

KEY = dg.AssetKey


def deps(metadata: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    lineage = metadata["dagster/column_lineage"].value
    return {column: [(d.asset_key.to_user_string(), d.column_name) for d in found]
            for column, found in lineage.deps_by_column.items()}


def test_lineage_and_descriptions_of_a_join_a_writer_and_an_untraceable_query(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    pipeline = write(workdir / "pipelines" / "lineage.yaml", PIPELINE)
    result = run_job(defs_for(pipeline, tmp_path / "s"), "lineage_demo", instance)
    assert result.success, failure_description(result)
    mats = materialisations(result)

    join = mats["lineage-demo/join"]
    assert deps(join) == {
        "name": [("lineage-demo/extract_directors", "name")],
        "movies": [],
        "box_office": [("lineage-demo/extract-movies", "box_office_usd")],
    }
    text = join["osiris/column_lineage"].value
    assert "| `name` | `lineage-demo/extract_directors`.`name` |" in text
    assert "| `movies` | no upstream column |" in text
    schema = {c.name: c.description for c in join["dagster/column_schema"].schema.columns}
    assert schema == {"name": "Director's name", "movies": "Number of movies",
                      "box_office": None}
    assert "budget" in join["osiris/unmatched_column_descriptions"].value
    warnings = [e.user_message for e in instance.all_logs(result.run_id)
                if e.level == 30 and "budget" in e.user_message]  # logging.WARNING
    assert warnings == ["step 'join': x-dagster.steps.join.columns describes columns this "
                        "table does not have: budget"], warnings  # only metadata before

    written = mats["lineage-demo/write"]
    assert deps(written) == {c: [("lineage-demo/join", c)]
                             for c in ("box_office", "movies", "name")}

    untraced = mats["lineage-demo/factorials"]
    assert "dagster/column_lineage" not in untraced
    assert "could not parse" in untraced["osiris/column_lineage"].value
    assert untraced["dagster/row_count"].value == mats["lineage-demo/join"][
        "dagster/row_count"].value  # the step itself ran

    extracted = mats["lineage-demo/extract-movies"]
    assert "dagster/column_lineage" not in extracted and "osiris/column_lineage" not in extracted
    assert all(c.description is None for c in extracted["dagster/column_schema"].schema.columns)


class WarehouseTranslator(OsirisTranslator):
    def get_asset_spec(self, data: OsirisStepData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        return spec.replace_attributes(key=spec.key.with_prefix("warehouse"))


def test_upstream_keys_come_from_the_translator(workdir: Path, tmp_path: Path,
                                                instance: dg.DagsterInstance) -> None:
    pipeline = write(workdir / "pipelines" / "lineage.yaml", PIPELINE)
    defs = build_definitions([pipeline], sessions_dir=str(tmp_path / "s"),
                             translator=WarehouseTranslator())
    result = run_job(defs, "lineage_demo", instance,
                     selection=[KEY(["warehouse", "lineage-demo", s])
                                for s in ("extract-movies", "extract_directors", "join")])
    assert result.success, failure_description(result)
    join = materialisations(result)["warehouse/lineage-demo/join"]
    assert deps(join)["box_office"] == [("warehouse/lineage-demo/extract-movies",
                                         "box_office_usd")]


def test_a_lineage_problem_is_masked_before_it_is_cut() -> None:
    """The problem reaches the UI masked, then cut to 300 characters (the tracer used to cut
    it first: a secret across the cut showed its first characters)."""
    from osiris_dagster.core.masking import Masker
    from osiris_dagster.dagster_layer.column_metadata import LINEAGE_TEXT, lineage_metadata
    from osiris_dagster.drivers.base import StepColumnLineage

    secret = "Cut-Secret-4411"
    for before in range(300 - len(secret), 300):
        problem = "x" * before + secret + " and more"
        shown = lineage_metadata(StepColumnLineage.unknown(problem), {},
                                 Masker([secret]))[LINEAGE_TEXT].text
        assert not any(secret[:n] in shown for n in range(4, len(secret) + 1)), shown
