"""A step's asset checks run alone: "Execute checks" in the Dagster UI launches a run whose
selection holds checks of the step's asset but not the asset itself.

The step does not run (that would make a new table, and write to its target). Its checks run on
the table it made last: the one the asset's latest materialisation (of the run's partition)
records, found by the IO manager's own lookup (:func:`latest_table_ref`, as a step of another
run finds its upstream's table), opened read-only in an in-memory DuckDB as an annotated input
is, and sealed as the step's own connection is when its checks run after its driver (a check
`expression` is SQL from the pipeline file). Nothing is written: no session, no events, and a
table refused by a failed blocking check stays refused whatever the checks say now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
import duckdb

from osiris_dagster.core.errors import OsirisError, UpstreamMissingError
from osiris_dagster.core.masking import Masker
from osiris_dagster.core.naming import quote_ident
from osiris_dagster.core.settings import Settings
from osiris_dagster.dagster_layer.io_manager import latest_table_ref
from osiris_dagster.oml import Pipeline
from osiris_dagster.runtime import duckdb_instances
from osiris_dagster.runtime.checks import CheckOutcome, CheckSpec, run_checks
from osiris_dagster.runtime.connections import Connections
from osiris_dagster.runtime.python_values import reader_connection
from osiris_dagster.runtime.runner import TableRef, mask_every_connection
from osiris_dagster.runtime.stores import store_for
from osiris_dagster.runtime.workspace import SEALED_SETTINGS


@dataclass(frozen=True)
class CheckedTable:
    """The table the checks ran on, its column types (for the failing rows' sample) and the
    checks' outcomes."""

    ref: TableRef
    column_types: dict[str, str]
    outcomes: list[CheckOutcome]


def check_latest_table(instance: dg.DagsterInstance, settings: Settings, pipeline_name: str,
                       step_id: str, key: dg.AssetKey, specs: Sequence[CheckSpec],
                       partition: str | None = None) -> CheckedTable:
    """Run ``specs`` on the table of ``key``'s latest materialisation (of ``partition``).

    Raises dg.Failure, not retried (no retry brings a table back), naming the step and what to
    materialise when there is no such table: never materialised, its session deleted, or a
    session store other than the one configured."""
    names = ", ".join(s.name for s in specs)
    where = (f"pipeline '{pipeline_name}', step '{step_id}': check(s) {names} run alone, on "
             "the table of the asset's latest materialisation (the step does not run)")
    try:
        ref = latest_table_ref(instance, settings, key, step_id, partition=partition,
                               role="asset")
        column_types, outcomes = _run_on_table(settings, ref, key, specs)
    except OsirisError as exc:
        raise dg.Failure(description=f"{where}, but {exc}", allow_retries=False) from None
    return CheckedTable(ref, column_types, outcomes)


def masker_for(pipeline: Pipeline, connections: Connections) -> Masker:
    """The masker the step's own run has for its check results: the pipeline's sensitive
    parameters and the secrets of every connection its steps name (a sample's value may be
    one)."""
    masker = Masker(pipeline.sensitive_values())
    mask_every_connection(pipeline, connections, masker)
    return masker


def _run_on_table(settings: Settings, ref: TableRef, key: dg.AssetKey,
                  specs: Sequence[CheckSpec]) -> tuple[dict[str, str], list[CheckOutcome]]:
    """Open the session read-only (the reader a typed input gets), make sure the table is
    there, seal the connection, run the checks; the connection is closed whatever happens."""
    con, prefix = reader_connection(ref.location, settings)
    try:
        relation = f"{prefix}.{quote_ident(ref.table)}"
        try:
            described = con.execute(f"DESCRIBE {relation}").fetchall()
        except duckdb.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            name = key.to_user_string()
            raise UpstreamMissingError(
                f"session {ref.session_id} ({ref.location}) has no table '{ref.table}' "
                f"readable any more ({first}); materialise '{name}' again") from None
        _seal(con, settings, ref.location)
        return {str(r[0]): str(r[1]) for r in described}, run_checks(con, relation, specs)
    finally:
        con.close()


def _seal(con: duckdb.DuckDBPyConnection, settings: Settings, location: str) -> None:
    """What a step's connection allows once sealed (workspace.SEALED_SETTINGS): no file or
    network access but the session's own (a DuckLake session's data files), no extensions, no
    settings changes. run_checks runs only the expressions the seal's parse check accepts."""
    store = store_for(settings)
    allowed = store.allowed_directories([store.canonical(location)])
    if allowed:
        con.execute("SET allowed_directories = ?", [allowed])
    duckdb_instances.execute_all(con, SEALED_SETTINGS)
