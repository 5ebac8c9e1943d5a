"""supabase.writer over REST: a failure after its rows were written is never written again."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from ..helpers import events, failure_description
from .conftest import REST_KEY, PgTarget, PipelineRun
from .postgrest_fake import PostgrestFake

APPEND_WITH_RETRIES = """\
oml_version: "0.1.0"
name: rest-after-write
steps:
  - id: load
    component: filesystem.csv_extractor
    mode: read
    config: {{path: {csv}}}
  - id: append
    component: supabase.writer
    mode: write
    needs: [load]
    config:
      connection: "@supabase.api"
      schema: {schema}
      table: {table}
      write_mode: append
      batch_size: 2
x-dagster:
  steps:
    append:
      retry: {{max_retries: 2, delay_seconds: 0}}
"""


def test_a_rest_append_that_fails_after_its_rows_landed_is_not_retried(
        pg: PgTarget, rest: PostgrestFake, run_pipeline: PipelineRun, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, instance: dg.DagsterInstance) -> None:
    """Every batch was written (the REST API commits each), then the step's bookkeeping
    failed (a full disk): the REST writer did not mark its rows as written, so the error was
    an ordinary one and the step's retry appended all the rows again."""
    from osiris_dagster.runtime import runner

    table = pg.table("r_after_write")
    pg.execute(f"DROP TABLE IF EXISTS {table}", f"CREATE TABLE {table} (id int, name text)")
    csv = tmp_path / "rows.csv"
    csv.write_text("id,name\n1,a\n2,b\n3,c\n")
    log_success = runner._log_success

    def failing_success(session: object, step: Any, *args: Any, **kwargs: Any) -> None:
        if step.id == "append":
            raise OSError(errno.ENOSPC, "No space left on device")
        log_success(session, step, *args, **kwargs)
    monkeypatch.setattr(runner, "_log_success", failing_success)
    monkeypatch.setenv("SUPABASE_TEST_KEY", REST_KEY)
    connections = ("version: 1\nconnections:\n  supabase:\n    api:\n"
                   f"      url: {rest.url}\n      service_role_key: ${{SUPABASE_TEST_KEY}}\n")
    result, session = run_pipeline(
        APPEND_WITH_RETRIES.format(csv=csv, schema=pg.schema, table="r_after_write"),
        connections, "rest-after-write")
    assert not result.success
    assert sorted(pg.query(f"SELECT id, name FROM {table}")) == [(1, "a"), (2, "b"), (3, "c")]
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    text = failure_description(result)
    assert "No space left on device" in text and "Recorded as an unsettled write" in text, text
    (error,) = [e for e in events(session) if e["event"] == "step_error"]
    assert "will_retry" not in error
