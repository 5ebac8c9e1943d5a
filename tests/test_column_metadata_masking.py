"""A secret the server puts in a column NAME (a key of an API's answer: `by_key.<token>`) is
masked in every column metadata entry, as it is in the preview: `dagster/column_schema`, the
lineage (`dagster/column_lineage`, `osiris/column_lineage`), the unmatched descriptions and the
schema changes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from osiris_dagster.core.masking import MASK, Masker
from osiris_dagster.dagster_layer.column_metadata import (
    LINEAGE_TEXT,
    UNMATCHED_DESCRIPTIONS,
    StepColumns,
    column_metadata,
    schema_changes,
)
from osiris_dagster.drivers.base import StepColumnLineage

from .helpers import (
    defs_for,
    failure_description,
    json_endpoint,
    materialisations,
    run_job,
    write,
)

TOKEN = "tokZ9xQ4pL7mW2"
OTHER = "tokB8yR3kM6nV1"  # a second secret: two masked names become the same text


def _usage(path: str, headers: Mapping[str, str]) -> tuple[int, Any]:
    """A GraphQL endpoint whose answer is keyed by the caller's token."""
    if headers.get("Authorization") == f"Bearer {TOKEN}":
        return 200, {"data": {"usage": [{"by_key": {TOKEN: 5}, "n": 1}]}}
    return 401, {"errors": [{"message": "bad token"}]}


@pytest.fixture
def usage_url() -> Iterator[str]:
    with json_endpoint(_usage) as url:
        yield f"{url}/graphql"


def _shown(metadata: dict[str, Any]) -> str:
    """Everything the UI shows of the column metadata, as one text."""
    parts: list[str] = []
    for key in ("dagster/column_schema", "dagster/column_lineage", LINEAGE_TEXT,
                UNMATCHED_DESCRIPTIONS, "osiris/schema_changes"):
        if key in metadata:
            parts.append(repr(metadata[key]))
    return "\n".join(parts)


def test_a_secret_column_name_is_masked_in_the_schema_and_the_lineage(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance, usage_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RVC_TOKEN", TOKEN)
    connections = write(workdir / "osiris_connections.yaml", f"""\
version: 1
connections:
  graphql:
    usage: {{endpoint: "{usage_url}", auth_token: "${{RVC_TOKEN}}"}}
""")
    pipeline = write(workdir / "pipelines" / "usage.yaml", """\
oml_version: "0.1.0"
name: usage
steps:
  - id: extract
    component: graphql.extractor
    mode: read
    config:
      connection: "@graphql.usage"
      query: '{ usage { by_key n } }'
      data_path: data.usage
      auth_type: bearer
  - id: copy
    component: duckdb.processor
    mode: transform
    needs: [extract]
    config:
      query: SELECT * FROM input_df
""")
    result = run_job(defs_for(pipeline, tmp_path / "s", connections), "usage", instance)
    assert result.success, failure_description(result)
    mats = materialisations(result)

    extract = mats["usage/extract"]
    assert [c.name for c in extract["preview"].schema.columns] == [f"by_key.{MASK}", "n"]
    assert [c.name for c in extract["dagster/column_schema"].schema.columns] == \
        [f"by_key.{MASK}", "n"]
    copy = mats["usage/copy"]
    assert [c.name for c in copy["dagster/column_schema"].schema.columns] == \
        [f"by_key.{MASK}", "n"]
    lineage = copy["dagster/column_lineage"].value.deps_by_column
    assert [(d.asset_key.to_user_string(), d.column_name)
            for d in lineage[f"by_key.{MASK}"]] == [("usage/extract", f"by_key.{MASK}")]
    assert f"| `by_key.{MASK}` | `usage/extract`.`by_key.{MASK}` |" in \
        copy[LINEAGE_TEXT].value
    for md in mats.values():
        assert TOKEN not in _shown(md), _shown(md)


def test_the_builders_mask_names_types_descriptions_and_changes() -> None:
    mask = Masker([TOKEN, OTHER])
    columns = [(f"by_key.{TOKEN}", "BIGINT"), (f"by_key.{OTHER}", "BIGINT"),
               ("usage", f'STRUCT("{TOKEN}" BIGINT)'), ("n", "INTEGER")]
    lineage = StepColumnLineage({
        f"by_key.{TOKEN}": (("up", f"by_key.{TOKEN}"),),
        f"by_key.{OTHER}": (("up", f"by_key.{OTHER}"),),
        "n": (("up", f"by_key.{TOKEN}"), ("up", f"by_key.{OTHER}")),
    })
    step = StepColumns({"up": dg.AssetKey(["p", "up"])},
                       {f"by_key.{TOKEN}": "Calls made with the key", f"gone.{TOKEN}": "typo"})
    md = column_metadata(columns, lineage, step, mask)

    schema = md["dagster/column_schema"].schema.columns
    assert [(c.name, c.type, c.description) for c in schema] == [
        (f"by_key.{MASK}", "BIGINT", "Calls made with the key"),  # matched before masking
        (f"by_key.{MASK}", "BIGINT", None),
        ("usage", f'STRUCT("{MASK}" BIGINT)', None),
        ("n", "INTEGER", None)]
    assert md[UNMATCHED_DESCRIPTIONS].value.endswith(f"gone.{MASK}")
    # two upstream columns masked to the same name are one dependency (Dagster refuses twice)
    deps = md["dagster/column_lineage"].deps_by_column
    assert {c: [d.column_name for d in found] for c, found in deps.items()} == {
        f"by_key.{MASK}": [f"by_key.{MASK}"], "n": [f"by_key.{MASK}"]}
    assert f"| `n` | `p/up`.`by_key.{MASK}`, `p/up`.`by_key.{MASK}` |" in md[LINEAGE_TEXT].value
    shown = _shown(md)
    assert TOKEN not in shown and OTHER not in shown, shown

    # schema changes compare masked names: the same table is no change, whether the previous
    # materialisation stored the name masked (now) or in clear (before this fix)
    stored = md["dagster/column_schema"].schema
    assert schema_changes(stored, columns, mask) == []
    clear = dg.TableSchema(columns=[dg.TableColumn(n, t) for n, t in columns])
    assert schema_changes(clear, columns, mask) == []
    changed = schema_changes(clear, [(f"by_key.{TOKEN}", "VARCHAR"), ("m", "INTEGER")], mask)
    assert changed == ["added m (INTEGER)", f"removed usage (STRUCT(\"{MASK}\" BIGINT))",
                       "removed n (INTEGER)", f"retyped by_key.{MASK}: BIGINT -> VARCHAR"]


def test_rerun_reports_no_schema_change(workdir: Path, tmp_path: Path,
                                        instance: dg.DagsterInstance, usage_url: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RVC_TOKEN", TOKEN)
    connections = write(workdir / "osiris_connections.yaml", f"""\
version: 1
connections:
  graphql:
    usage: {{endpoint: "{usage_url}", auth_token: "${{RVC_TOKEN}}"}}
""")
    pipeline = write(workdir / "pipelines" / "usage.yaml", """\
oml_version: "0.1.0"
name: usage
x-dagster:
  steps:
    extract: {schema: strict}
steps:
  - id: extract
    component: graphql.extractor
    mode: read
    config:
      connection: "@graphql.usage"
      query: '{ usage { by_key n } }'
      data_path: data.usage
      auth_type: bearer
""")
    defs = defs_for(pipeline, tmp_path / "s", connections)
    for _ in range(2):
        result = run_job(defs, "usage", instance)
        assert result.success, failure_description(result)
        md = materialisations(result)["usage/extract"]
        assert "osiris/schema_changes" not in md, md["osiris/schema_changes"]
    logs = "\n".join(e.user_message for e in instance.all_logs(result.run_id))
    assert TOKEN not in logs
