"""The StepContext drivers run in: an in-memory DuckDB with the session attached, upstream views,
atomic output creation, metrics/events into the session, and a heartbeat for long queries."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb

from osiris_dagster.core import memory
from osiris_dagster.core.atomic_files import write_text_atomic
from osiris_dagster.core.errors import DriverError
from osiris_dagster.core.naming import quote_ident
from osiris_dagster.drivers.base import UpstreamTable
from osiris_dagster.runtime import duckdb_instances
from osiris_dagster.runtime.python_rows import first_rows
from osiris_dagster.runtime.session import Session

ProgressCallback = Callable[[str, dict[str, Any]], None]
TMP_PREFIX = "__osiris_tmp_"

# What a step that runs user SQL may not do, enforced by DuckDB itself: no file or network
# access (read_csv, COPY, ATTACH, glob, httpfs), no Python-variable scans, no extension
# install/load, and (last, since it freezes the rest) no settings changes.
SEALED_SETTINGS = (
    "SET enable_external_access = false",
    "SET python_enable_replacements = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET lock_configuration = true",
)


class StepWorkspace:
    """Opened per step (``with StepWorkspace(...) as ws``); closed when the step ends."""

    def __init__(
        self,
        session: Session,
        *,
        pipeline_name: str,
        step_id: str,
        output_table: str,
        connection: Mapping[str, Any] | None = None,
        base_dir: Path | None = None,
        on_progress: ProgressCallback | None = None,
        on_notice: Callable[[str, str], None] | None = None,
        sealed_reuse: bool = False,
        park_when_done: bool = False,
    ) -> None:
        """``sealed_reuse``: the step seals its connection (a SQL step), so it may take the
        sealed instance the session's previous SQL step parked in this thread;
        ``park_when_done``: a SQL step that reads this one follows in the run, so this one
        parks its instance for it (:mod:`.duckdb_instances`)."""
        self.session = session
        self.pipeline_name = pipeline_name
        self.step_id = step_id
        self.output_table = output_table
        self.connection = connection
        self.base_dir = base_dir
        self.artifacts_dir = session.artifacts_dir(step_id)
        self.tmp_dir = session.tmp_dir
        self._on_progress = on_progress
        self._on_notice = on_notice
        self._attached: dict[str, str] = {}  # session location -> prefix of its tables
        self._reader_aliases: dict[str, str] = {}  # location of another session -> alias
        self._prefix = ""  # the session's `catalog.schema`, set when opened
        self._views: list[tuple[str, str]] = []  # (view name, relation): replayed on reopen
        self._sealed = False
        self._con: duckdb.DuckDBPyConnection | None = None
        self.rows_so_far: int | None = None
        self._memory_limit: int | None = None
        self.started = time.monotonic()
        self.cancelled = False
        self.commit_started = False  # a writer's COMMIT was sent: its write may have landed
        self.committed = False  # ... and succeeded: its write is in the target
        self._interrupt_callbacks: list[Callable[[], None]] = []
        self._state_loaded = False
        self._sealed_reuse = sealed_reuse
        self._park_when_done = park_when_done
        self._limit_raised = False
        self._instance_changed = False  # SQL run in it may have changed more than its tables

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> StepWorkspace:
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        parked = self.session.take_parked_connection() if self._sealed_reuse else None
        if parked is not None:  # sealed by the SQL step before, which left no views
            self._con, self._sealed = parked, True
        else:
            self._con = self.session.open_workspace_connection(step_start=True)
        self._prefix = self.session.table_prefix
        self._attached[self.session.store.canonical(self.session.location)] = self._prefix
        if parked is None:
            self._drop_leftover_temp_tables()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self._con is None:
            return
        con, self._con = self._con, None
        try:
            if exc_type is None:
                if not self._parked(con):
                    self.session.close_workspace_connection(
                        con, list(self._reader_aliases.values()))
            else:
                con.close()
            self.session.publish_artifacts(self.step_id)
        except (duckdb.Error, OSError):
            if exc_type is None:  # never hide the error that is already propagating
                raise

    def _parked(self, con: duckdb.DuckDBPyConnection) -> bool:
        """Leave a sealed SQL step's instance for the session's next SQL step: only its
        session attached, at the configured memory limit, its views dropped."""
        if not (self._park_when_done and self._sealed) or self._reader_aliases or \
                self._limit_raised or self._instance_changed:
            return False
        try:
            for name in dict.fromkeys(name for name, _relation in self._views):
                con.execute(f"DROP VIEW IF EXISTS main.{quote_ident(name)}")
        except duckdb.Error:
            return False
        except BaseException:  # interrupted: closed here, not left to the garbage collector
            con.close()
            raise
        return self.session.park_sealed_connection(con)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise RuntimeError("StepWorkspace used outside its `with` block")
        return self._con

    def interrupt(self) -> None:
        """Stop the step: interrupt the running DuckDB query, run the stop callbacks a driver
        registered (:meth:`on_interrupt`) and make the next progress() call raise (used for
        cancellation and time limits). Called from another thread."""
        self.cancelled = True
        for stop in list(self._interrupt_callbacks):
            with contextlib.suppress(Exception):
                stop()
        if self._con is not None:
            self._con.interrupt()

    @contextlib.contextmanager
    def on_interrupt(self, stop: Callable[[], None]) -> Iterator[None]:
        """While inside, :meth:`interrupt` also calls ``stop`` (e.g. ending a child process
        that DuckDB is reading from, which DuckDB's interrupt cannot reach)."""
        self._interrupt_callbacks.append(stop)
        try:
            if self.cancelled:
                stop()
            yield
        finally:
            self._interrupt_callbacks.remove(stop)

    # -- inputs ---------------------------------------------------------------------------------
    def add_upstream(self, step_id: str, view_name: str, location: str, table: str,
                     extra_view_names: Sequence[str] = ()) -> UpstreamTable:
        """Expose an upstream table as view ``view_name`` (it may live in an earlier session,
        at the store's ``location`` for that session)."""
        location = self.session.store.canonical(location)
        prefix = self._attached.get(location)
        if prefix is None:
            if self._sealed:  # a parked instance cannot ATTACH: a new one, not sealed yet
                self._reopen()
            alias = self._reader_aliases[location] = f"upstream_{len(self._attached)}"
            prefix = self.session.store.attach_reader(self.con, location, alias)
            self._attached[location] = prefix
        relation = f"{prefix}.{quote_ident(table)}"
        for name in (view_name, *extra_view_names):
            self._create_view(name, relation)
            self._views.append((name, relation))
        columns = tuple(
            (str(r[0]), str(r[1]))
            for r in self.con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
        )
        return UpstreamTable(step_id=step_id, view_name=view_name, relation=relation,
                             columns=columns)

    def _create_view(self, name: str, relation: str) -> None:
        self.con.execute(f"CREATE OR REPLACE VIEW main.{quote_ident(name)} AS "
                         f"SELECT * FROM {relation}")

    def seal_sql_access(self, *, leaves_instance_unchanged: bool = False) -> None:
        """From now on this step's connection runs only what a SQL step may: see SEALED_SETTINGS.

        Upstream databases attached before stay readable and the session stays writable (a
        store whose tables are files of its own, DuckLake's, keeps exactly those paths open).
        ``leaves_instance_unchanged``: the caller checked that the SQL it runs next changes
        nothing of the DuckDB instance but tables (``drivers.duckdb.seal``), so the instance
        may serve the session's next SQL step; otherwise it ends with this step."""
        if not leaves_instance_unchanged:
            self._instance_changed = True
        if not self._sealed:
            allowed = self.session.store.allowed_directories(list(self._attached))
            if allowed:
                self.con.execute("SET allowed_directories = ?", [allowed])
            duckdb_instances.execute_all(self.con, SEALED_SETTINGS)
            self._sealed = True

    def _reopen(self) -> None:
        """A fresh connection with the same attachments and views (a sealed one cannot change
        its settings, e.g. to retry with a higher memory_limit); it is not sealed."""
        old, self._con = self._con, None
        if old is not None:
            with contextlib.suppress(duckdb.Error):
                old.close()
        self._con = self.session.open_workspace_connection()
        for location, alias in self._reader_aliases.items():
            self.session.store.attach_reader(self._con, location, alias)
        for name, relation in self._views:
            self._create_view(name, relation)
        self._sealed = False

    # -- outputs --------------------------------------------------------------------------------
    @property
    def output_relation(self) -> str:
        return f"{self._prefix}.{quote_ident(self.output_table)}"

    def create_output(self, select_sql: str, params: Sequence[Any] | None = None) -> int:
        """Build the step's table so that no reader ever sees a partial one: under a temporary
        name, then swapped in in one transaction; or, in a store where other processes write
        the same session at once, built and swapped inside one transaction (a temporary table
        committed on its own would be visible to them)."""
        if self.session.store.replaces_in_one_transaction:
            rows = self._create_in_one_transaction(select_sql, params)
        else:
            rows = self._create_then_swap(select_sql, params)
        self.rows_so_far = rows
        return rows

    def _create_then_swap(self, select_sql: str, params: Sequence[Any] | None) -> int:
        tmp = f"{self._prefix}.{quote_ident(TMP_PREFIX + self.output_table)}"
        con = self.con
        with self.heartbeat():
            rows = _rows_created(con.execute(f"CREATE OR REPLACE TABLE {tmp} AS {select_sql}",
                                             params))
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"DROP TABLE IF EXISTS {self.output_relation}")
            con.execute(f"ALTER TABLE {tmp} RENAME TO {quote_ident(self.output_table)}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return rows

    def _create_in_one_transaction(self, select_sql: str, params: Sequence[Any] | None) -> int:
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            with self.heartbeat():
                rows = _rows_created(con.execute(
                    f"CREATE OR REPLACE TABLE {self.output_relation} AS {select_sql}", params))
            con.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            explained = self.session.store.write_error(exc) \
                if isinstance(exc, duckdb.Error) else None
            if explained is not None:  # the store failed, not the step's data: say which
                raise explained from None
            raise
        return rows

    # -- memory ---------------------------------------------------------------------------------
    @property
    def memory_limit(self) -> int:
        if self._memory_limit is None:
            self._memory_limit = memory.parse_size(self.session.settings.memory_limit) or 0
        return self._memory_limit

    @property
    def memory_ceiling(self) -> int:
        ceiling = memory.parse_size(self.session.settings.memory_limit_max) or 0
        return max(ceiling, self.memory_limit)

    def set_memory_limit(self, size: int, reason: str) -> None:
        """This step's DuckDB memory_limit (the connection lives as long as the step)."""
        with contextlib.suppress(duckdb.Error):  # a failed statement may have left one open
            self.con.execute("ROLLBACK")
        if self._sealed:
            self._reopen()
        before, after = memory.format_size(self.memory_limit), memory.format_size(size)
        self.log_event("memory_limit_raised", from_limit=before, to_limit=after, reason=reason)
        self.con.execute(f"SET memory_limit = '{int(size)}B'")
        self._memory_limit = int(size)
        self._limit_raised = True
        self.progress(message=f"DuckDB memory_limit raised from {before} to {after} "
                      f"({reason[:120]})")  # shown in the Dagster run log and the CLI

    def size_memory_for_columns(self, columns: int) -> None:
        """Raise the limit up front for a wide table whose build cannot be retried."""
        wanted = memory.limit_for_width(self.memory_limit, self.memory_ceiling, columns)
        if wanted > self.memory_limit:
            self.set_memory_limit(wanted, f"{columns} columns")

    def output_columns(self) -> list[tuple[str, str]]:
        return [(str(r[0]), str(r[1])) for r in
                self.con.execute(f"DESCRIBE {self.output_relation}").fetchall()]

    def preview_rows(self, limit: int = 10, *, shown: bool = False
                     ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """The first rows (see :func:`first_rows`; ``shown``: as the preview shows them)."""
        return first_rows(self.con, f"SELECT * FROM {self.output_relation}", limit,
                          shown=shown)

    def _drop_leftover_temp_tables(self) -> None:
        """A killed run can leave its temporary table behind; the next run removes it. (A store
        that builds tables in one transaction never commits a temporary table.)"""
        if self.session.store.replaces_in_one_transaction:
            return
        rows = self.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'session' "
            "AND starts_with(table_name, ?)", [TMP_PREFIX]
        ).fetchall()
        for (name,) in rows:
            self.con.execute(f"DROP TABLE IF EXISTS {self._prefix}.{quote_ident(name)}")

    @property
    def state_dir(self) -> Path:
        """Per-step state that outlives sessions (incremental high-water marks). A store that
        keeps records holds it where every worker sees it: its files are copied into a local
        directory for the driver, and :func:`~osiris_dagster.runtime.runner.commit_state`
        saves them back."""
        records = self.session.records
        if records is None:
            path = state_dir_of(self.session.settings.sessions_dir, self.pipeline_name,
                                self.step_id)
            path.mkdir(parents=True, exist_ok=True)
            return path
        path = state_dir_of(self.session.tmp_dir, self.pipeline_name, self.step_id)
        if not self._state_loaded:
            path.mkdir(parents=True, exist_ok=True)
            for name, body in records.state_files(self.pipeline_name, self.step_id).items():
                write_text_atomic(path / name, body)
            self._state_loaded = True
        return path

    # -- paths, logs, progress ------------------------------------------------------------------
    def resolve_path(self, path: str) -> Path:
        """See :func:`resolve_step_path` (against this step's connection's base_dir)."""
        return resolve_step_path(path, self.base_dir)

    def log_metric(self, name: str, value: Any, **fields: Any) -> None:
        self.session.log_metric(name, value, step_id=self.step_id, **fields)

    def log_event(self, name: str, **fields: Any) -> None:
        self.session.log_event(name, step_id=self.step_id, **fields)

    def notice(self, text: str) -> None:
        self.log_event("notice", message=text)
        if self._on_notice is not None:
            self._on_notice(self.step_id, text)

    def mark_commit_started(self) -> None:
        """See :func:`osiris_dagster.drivers.base.commit_started`."""
        self.commit_started = True

    def mark_committed(self) -> None:
        """See :func:`osiris_dagster.drivers.base.committed`."""
        self.committed = True

    def progress(self, rows: int | None = None, message: str | None = None) -> None:
        if self.cancelled and not self.commit_started:
            from osiris_dagster.core.errors import StepCancelled

            raise StepCancelled("the step was interrupted")
        if rows is not None:
            self.rows_so_far = rows
        fields: dict[str, Any] = {"elapsed_s": round(time.monotonic() - self.started, 1)}
        if rows is not None:
            fields["rows"] = rows
        if message:
            fields["message"] = message
        self.session.log_event("progress", step_id=self.step_id, **fields)
        if self._on_progress:
            self._on_progress(self.step_id, fields)

    def heartbeat(self) -> _Heartbeat:
        """Context manager: reports progress every ``heartbeat_seconds`` while a query runs."""
        return _Heartbeat(self, self.session.settings.heartbeat_seconds)


def _rows_created(result: duckdb.DuckDBPyConnection) -> int:
    """The number of rows a CREATE TABLE AS wrote, as DuckDB reports it (its one result)."""
    row = result.fetchone()
    if row is None or len(row) != 1 or not isinstance(row[0], int):
        raise DriverError(f"DuckDB answered CREATE TABLE AS with {row!r}, not a row count")
    return row[0]


class _Heartbeat:
    def __init__(self, ws: StepWorkspace, every: float) -> None:
        self._ws = ws
        self._every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        if self._every > 0:
            self._thread = threading.Thread(target=self._beat, daemon=True,
                                            name=f"osiris-heartbeat-{self._ws.step_id}")
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._every) and not self._ws.cancelled:
            con = self._ws._con
            pct = con.query_progress() if con is not None else -1
            msg = f"{pct:.0f}% of the current query done" if pct >= 0 else "still running"
            try:
                self._ws.progress(rows=self._ws.rows_so_far, message=msg)
            except Exception:  # noqa: BLE001 - a heartbeat must never kill the step
                return


def state_dir_of(root: Path, pipeline_name: str, step_id: str) -> Path:
    from osiris_dagster.core.naming import sanitise

    return root / ".state" / sanitise(pipeline_name) / sanitise(step_id)

def resolve_step_path(path: str, base_dir: Path | None) -> Path:
    """Where a step's ``path`` option points. Relative paths live under the connection's
    ``base_dir`` (never escaping it with `..`), else under the working directory; absolute
    paths are taken as written. ``~`` and ``~user`` name a home directory; ``~name`` of no user
    is a name (``~tilde.csv``), as :func:`os.path.expanduser` leaves it (pathlib's raises)."""
    p = Path(os.path.expanduser(path))
    if p.is_absolute():
        return p
    if base_dir is None:
        return (Path.cwd() / p).absolute()
    try:
        base = base_dir.resolve()
        resolved = (base / p).resolve()
    except (RuntimeError, OSError) as exc:  # a symbolic link loop (RuntimeError in 3.11)
        raise DriverError(f"path '{path}' under the connection's base_dir "
                          f"{base_dir} cannot be resolved: {exc}. Check the symbolic "
                          "links on the way (one points back at itself)") from None
    if not resolved.is_relative_to(base):
        raise DriverError(f"path '{path}' escapes the connection's base_dir {base}; use a "
                          "path inside it (or an absolute path)")
    return resolved
