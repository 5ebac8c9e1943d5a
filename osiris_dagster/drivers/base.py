"""The contract between the runtime and a driver. No Dagster here.

A driver is a function ``run(ctx, config, inputs) -> DriverResult``:

- ``ctx`` is a :class:`StepContext`: a DuckDB connection to the step's workspace (an in-memory
  database with the session database attached as ``session``), where every upstream is visible as
  a view ``df_<sanitised id>`` (and ``input_df`` when there is exactly one upstream);
- ``config`` is the step's resolved config (params substituted, spec defaults applied, the
  ``connection`` reference removed); the resolved connection, if any, is ``ctx.connection``;
- ``inputs`` lists the upstream tables in ``needs`` order.

Extractors and processors call ``ctx.create_output(select_sql)``, which builds the step's table
under a temporary name and swaps it in atomically. Writers read ``inputs[0]`` and write outside.
Incremental extractors return their new high-water mark as ``DriverResult.pending_state``; the
runtime saves it once the step's output is accepted (see :class:`PendingState`). Processors and
writers say which upstream columns each of their columns comes from in
``DriverResult.column_lineage`` (see :class:`StepColumnLineage`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import duckdb


@dataclass(frozen=True)
class UpstreamTable:
    """An upstream step's output as the driver sees it."""

    step_id: str
    view_name: str  # df_<sanitised id> (already a valid identifier, no quoting needed)
    relation: str  # fully qualified, quoted SQL relation of the underlying table
    columns: tuple[tuple[str, str], ...] = ()  # (name, duckdb type)


@dataclass(frozen=True)
class PendingState:
    """Incremental state (a high-water mark) a driver wants kept for its next run.

    A driver never writes its state itself: the step can still fail after the driver returns
    (``schema: strict``, a blocking check, the IO manager), and a mark saved then would make the
    next run start after rows that never landed. The runtime writes ``document`` as JSON to
    ``path`` (atomically) once the step's table is committed, its checks passed and the
    materialisation is recorded; a failed step never writes it, so the next run reads the same
    rows again."""

    path: Path
    document: Mapping[str, Any]
    # the file's text when the driver read it (None: there was none): the runtime saves only
    # over that, so two runs that read the same state cannot both deliver the rows after it
    replaces: str | None = None


UpstreamColumn = tuple[str, str]
"""(upstream step id, column name)."""


@dataclass(frozen=True)
class StepColumnLineage:
    """Which upstream columns each column a step produced (or wrote out) comes from.

    ``columns`` maps each output column to the ``(upstream step id, column)`` pairs it is
    computed from, in the order the query reads them; an empty tuple for a column computed from
    no upstream column (a literal, ``count(*)``). When the lineage could not be worked out,
    ``problem`` says why and ``columns`` is empty: lineage is never guessed, and a problem never
    fails the step."""

    columns: Mapping[str, tuple[UpstreamColumn, ...]] = field(default_factory=dict)
    problem: str | None = None

    @classmethod
    def pass_through(cls, step_id: str, columns: Iterable[str]) -> StepColumnLineage:
        """Every column comes unchanged from the same-named column of upstream ``step_id``."""
        return cls({name: ((step_id, name),) for name in columns})

    @classmethod
    def unknown(cls, problem: str) -> StepColumnLineage:
        return cls({}, problem)


@dataclass
class DriverResult:
    """What a step produced. ``table`` is None for writers (they produce no session table)."""

    table: str | None
    rows_read: int = 0
    rows_written: int = 0
    target: str | None = None  # writers: file path or table they wrote
    extra_metadata: dict[str, Any] = field(default_factory=dict)
    pending_state: PendingState | None = None  # committed by the runtime, never by the driver
    column_lineage: StepColumnLineage | None = None  # None: nothing to record (extractors)


class StepContext(Protocol):
    """What a driver may use. Implemented by :class:`osiris_dagster.runtime.StepWorkspace`."""

    step_id: str
    pipeline_name: str
    con: duckdb.DuckDBPyConnection
    output_table: str
    artifacts_dir: Path
    tmp_dir: Path
    connection: Mapping[str, Any] | None
    base_dir: Path | None  # from an @filesystem connection's base_dir, resolved to an absolute path
    state_dir: Path  # per pipeline step, outlives sessions (e.g. incremental high-water marks)
    rows_so_far: int | None  # rows read so far: what a heartbeat between progress reports says

    def create_output(self, select_sql: str, params: Sequence[Any] | None = None) -> int:
        """Materialise ``select_sql`` as the step's table (atomically); returns its row count."""
        ...

    def output_columns(self) -> list[tuple[str, str]]:
        """The ``(name, DuckDB type)`` columns of the step's table, once it is created."""
        ...

    def seal_sql_access(self, *, leaves_instance_unchanged: bool = False) -> None:
        """Before running user SQL: no file, network, extension or settings access from here on
        (DuckDB's enable_external_access off and lock_configuration on).
        ``leaves_instance_unchanged``: the SQL was checked to change no more than tables
        (``drivers.duckdb.seal.check_query``), so its DuckDB instance may be used again."""
        ...

    def size_memory_for_columns(self, columns: int) -> None:
        """Raise the step's memory limit up front for a table this wide (streamed sources)."""
        ...

    def log_metric(self, name: str, value: Any, **fields: Any) -> None: ...

    def log_event(self, name: str, **fields: Any) -> None: ...

    def notice(self, text: str) -> None:
        """What a person watching the run should read: a ``!`` line of the CLI, a warning in
        Dagster's run log, and the session event ``notice`` (masked on every path)."""
        ...

    def progress(self, rows: int | None = None, message: str | None = None) -> None:
        """Report progress of a long step (shown by the CLI and in the Dagster logs)."""
        ...

    def resolve_path(self, path: str) -> Path:
        """A config path made absolute: against ``base_dir`` if set, else the working directory."""
        ...


def commit_started(ctx: StepContext) -> None:
    """Call right before a writer's COMMIT: from here on the write may land whatever happens,
    so a stop (run terminated, step timeout) no longer aborts the step at ``progress()`` and
    the step's own outcome is reported, never a timeout that a retry would write again. A
    context without the notion (a bare one in a test) ignores it."""
    mark = getattr(ctx, "mark_commit_started", None)
    if mark is not None:
        mark()


def committed(ctx: StepContext) -> None:
    """Call right after a writer's COMMIT succeeded: the rows are in the target, so whatever
    fails after this (a log write on a full disk, the step's bookkeeping) fails the step
    without a retry and is recorded as an unsettled write, never written again blindly."""
    mark = getattr(ctx, "mark_committed", None)
    if mark is not None:
        mark()


def on_interrupt(ctx: StepContext, stop: Callable[[], None]) -> AbstractContextManager[object]:
    """While inside, stopping the step (run terminated, step timeout) also calls ``stop``: for
    work DuckDB's interrupt cannot reach, such as a child process DuckDB reads from. A context
    without the notion (a bare one in a test) ignores it."""
    hook = getattr(ctx, "on_interrupt", None)
    return hook(stop) if hook else nullcontext()


def stopped(ctx: StepContext) -> bool:
    """Whether the step was told to stop (see :func:`on_interrupt`)."""
    return bool(getattr(ctx, "cancelled", False))


def heartbeat(ctx: StepContext) -> AbstractContextManager[object]:
    """While inside, the step reports progress every few seconds, when its context can (a
    StepWorkspace can; a bare context in a test need not): for one long DuckDB statement."""
    beat = getattr(ctx, "heartbeat", None)
    return beat() if beat else nullcontext()


Driver = Callable[[StepContext, Mapping[str, Any], Sequence[UpstreamTable]], DriverResult]
