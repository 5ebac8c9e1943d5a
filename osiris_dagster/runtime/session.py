"""One session = one run: a directory holding the run's DuckDB file, logs, artifacts and manifest.

This is the only module that knows where session files live; everything else asks it. Keeping the
store behind this small surface is what lets it move to a shared catalog later.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import secrets
import threading
from collections.abc import Hashable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import yaml

from osiris_dagster.core.atomic_files import write_text_atomic
from osiris_dagster.core.errors import OsirisError
from osiris_dagster.core.masking import Masker
from osiris_dagster.core.naming import quote_literal
from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime import duckdb_instances
from osiris_dagster.runtime.stores import SessionStore, store_for
from osiris_dagster.runtime.stores.duckdb_file import DB_FILE
from osiris_dagster.runtime.stores.ducklake_records import LakeRecords

SESSION_TIME_ZONE = "UTC"  # every step connection's DuckDB TimeZone, whatever the host's

# Run on every step's new instance (see Session.open_workspace_connection).
STEP_INSTANCE_STATEMENTS = (
    # Step tables are written once (CREATE TABLE AS) and never updated in place, so the
    # checkpoint vacuum has nothing to reclaim; but it merges the partial row group the
    # order-preserving insert leaves at the end of every batch (~16 MB of CSV), which
    # rewrites ~40 % of a freshly extracted table when the step's connection closes.
    "SET max_vacuum_tasks = 0",
    f"SET TimeZone = '{SESSION_TIME_ZONE}'",
    "SET Calendar = 'gregorian'",
    "SET enable_progress_bar = true",
    "SET enable_progress_bar_print = false",
)

LOG_LOCK_FILE = ".lock"  # in logs/: flock()ed by every writer of events.jsonl / metrics.jsonl
# Threads of this process take _write_lock (flock() does not order threads of one process that
# share nothing); _held records which session log locks this thread already holds, so a holder
# can append (run_end after reading the events) without locking itself out.
_write_lock = threading.RLock()
_held = threading.local()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_default(obj: Any) -> str:
    return str(obj)


class Session:
    """Files of one session: ``<sessions root>/<session id>/``."""

    def __init__(self, settings: Settings, session_id: str, masker: Masker | None = None) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", session_id) or session_id in {".", ".."}:
            raise OsirisError(f"invalid session id {session_id!r}")
        self.settings = settings
        self.session_id = session_id
        self.dir = settings.sessions_dir / session_id
        self.masker = masker or Masker()

    # -- layout -------------------------------------------------------------------------------
    @functools.cached_property
    def store(self) -> SessionStore:
        """The settings' store (asked for on every event: looked up once)."""
        return store_for(self.settings)

    @property
    def records(self) -> LakeRecords | None:
        """Where events, metrics, manifest and artifacts are kept when not in :attr:`dir`."""
        return self.store.records

    @property
    def location(self) -> str:
        """Where the session's tables are (the store's name for it; a file path by default)."""
        return self.store.location(self.session_id)

    @property
    def table_prefix(self) -> str:
        """``catalog.schema`` of the session's tables in a workspace connection."""
        return self.store.session_prefix(self.session_id)

    @property
    def db_path(self) -> Path:
        """The session's DuckDB file (the duckdb store; the ducklake store has none)."""
        return self.dir / DB_FILE

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def tmp_dir(self) -> Path:
        return self.dir / "tmp"

    def spill_dir(self) -> Path:
        """DuckDB's temp_directory for a connection opened by this thread of this process.

        Not the session's tmp/ itself: DuckDB names its spill files the same in every process
        (``duckdb_temp_storage_DEFAULT-0.tmp``), so two steps of one session spilling at once
        (parallel executors) would overwrite each other's and fail, crash or worse. A thread
        opens one step connection at a time, and DuckDB removes its files when it closes."""
        return self.tmp_dir / f"spill-{os.getpid()}-{threading.get_ident()}"

    @property
    def events_path(self) -> Path:
        return self.logs_dir / "events.jsonl"

    @property
    def metrics_path(self) -> Path:
        return self.logs_dir / "metrics.jsonl"

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.yaml"

    def artifacts_dir(self, step_id: str) -> Path:
        """`artifacts/<step id>/`; the id is made a safe path component (`../x` -> `_.._x`)."""
        from osiris_dagster.core.naming import safe_dir_name

        return self.dir / "artifacts" / safe_dir_name(step_id)

    def ensure(self) -> Session:
        for d in (self.logs_dir, self.tmp_dir, self.dir / "artifacts"):
            d.mkdir(parents=True, exist_ok=True)
        return self

    # -- logs ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def log_lock(self) -> Iterator[None]:
        """Exclusive lock over this session's log files, across threads AND processes (several
        processes write one session: the multiprocess executor, the CLI, a sensor's run).

        A flock() on ``logs/.lock``: every line is appended whole under it (a line longer than
        PIPE_BUF is not atomic with O_APPEND on every filesystem), and a read-then-append such as
        run_end holds it across both. Re-entrant within a thread; released if the process dies.
        """
        held: set[str] = getattr(_held, "dirs", None) or set()
        _held.dirs = held
        key = os.path.realpath(self.logs_dir)  # two spellings of one dir are one lock
        if key in held:
            yield
            return
        with _write_lock:
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.logs_dir / LOG_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                held.add(key)
                try:
                    yield
                finally:
                    held.discard(key)
            finally:
                os.close(fd)  # closing the descriptor releases the flock

    def _append(self, kind: str, path: Path, record: dict[str, Any]) -> None:
        line = json.dumps(self.masker.value(record), default=_json_default, ensure_ascii=False)
        if self.records is not None:
            self.records.append(self.session_id, kind, line)
            return
        data = (line + "\n").encode("utf-8")
        with self.log_lock():
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                view = memoryview(data)
                while view:  # one line, all of it, before the lock is released
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)

    def log_event(self, event: str, **fields: Any) -> None:
        self._append("event", self.events_path, {"ts": _now(), "session": self.session_id,
                                                 "event": event, **fields})

    def log_metric(self, metric: str, value: Any, **fields: Any) -> None:
        self._append("metric", self.metrics_path, {"ts": _now(), "session": self.session_id,
                                                   "metric": metric, "value": value, **fields})

    def read_events(self) -> list[dict[str, Any]]:
        if self.records is not None:
            return [json.loads(line) for line in self.records.read(self.session_id, "event")]
        if not self.events_path.exists():
            return []
        with contextlib.ExitStack() as stack:
            with contextlib.suppress(OSError):  # a read-only copy of a session: read as it is
                stack.enter_context(self.log_lock())
            with open(self.events_path, encoding="utf-8") as fh:
                return [json.loads(line) for line in fh if line.strip()]

    def table_refusal(self, step_id: str) -> str | None:
        """Why the last table ``step_id`` made in this session was refused after its driver
        finished (a blocking check failed, its file changed while it was read, its incremental
        state could not be saved: a ``step_error`` after its last ``step_complete``); None
        when it was not. Such a table stays in the session but must not reach a step of
        another run."""
        refusal: str | None = None
        made = False
        for event in self.read_events():
            if event.get("step_id") != step_id:
                continue
            if event.get("event") == "step_complete":
                made, refusal = True, None
            elif event.get("event") == "step_error" and made:
                refusal = str(event.get("error") or "failed")
        return refusal

    @contextlib.contextmanager
    def locked_events(self) -> Iterator[list[dict[str, Any]]]:
        """The events so far, with the log lock held until the block ends: a decision made on
        them (is run_end written yet?) and the append it leads to are one step for every
        process, so run_end is written exactly once (with :meth:`log_once`)."""
        if self.records is not None:  # log_once arbitrates between processes instead
            yield self.read_events()
            return
        with self.log_lock():
            yield self.read_events()

    def log_once(self, event: str, **fields: Any) -> bool:
        """Log ``event`` unless some process already did (called inside :meth:`locked_events`,
        after checking the events). Returns whether this call logged it."""
        if self.records is not None and not self.records.claim(self.session_id, event):
            return False
        self.log_event(event, **fields)
        return True

    # -- artifacts ----------------------------------------------------------------------------
    def write_json_artifact(self, step_id: str, name: str, data: Any) -> Path:
        path = self.artifacts_dir(step_id) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.masker.value(data), indent=2, sort_keys=True, default=_json_default,
                          ensure_ascii=False)
        write_text_atomic(path, text + "\n")
        return path

    def publish_artifacts(self, step_id: str) -> None:
        """Copy the step's artifact files to the store's records (a no-op when the session
        directory is the record): a worker's disk is not where a session is read from."""
        if self.records is None:
            return
        root = self.artifacts_dir(step_id)
        for path in sorted(root.rglob("*")) if root.is_dir() else []:
            if path.is_file():
                name = path.relative_to(self.dir).as_posix()
                self.records.put_file(self.session_id, name,
                                      path.read_text(encoding="utf-8", errors="replace"))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        # libyaml's emitter when present: the pure-Python one takes ~30 s for a 10 MB query
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        text = yaml.dump(self.masker.value(manifest), Dumper=dumper, sort_keys=False,
                         allow_unicode=True)
        write_text_atomic(self.manifest_path, text)
        if self.records is not None:
            self.records.put_file(self.session_id, "manifest.yaml", text)

    # -- database -----------------------------------------------------------------------------
    def open_workspace_connection(self, *, step_start: bool = False
                                  ) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB with this session's tables attached (at :attr:`table_prefix`);
        ``step_start`` when it is the one a step starts with.

        Steps work in an in-memory catalog so a processor's SQL sees only the views we give it;
        memory_limit and temp_directory make large inputs spill to disk instead of failing.
        TimeZone and Calendar are pinned (UTC, gregorian) because DuckDB takes them from the
        host: TIMESTAMPTZ text, date_trunc, casts between naive and aware values would otherwise
        give different results on machines in different zones. The instance itself may have
        been prepared while the previous step ran (:mod:`.duckdb_instances`).
        """
        self.ensure()
        con = duckdb_instances.new_instance(self._instance_config(), STEP_INSTANCE_STATEMENTS,
                                            step_start=step_start)
        try:
            con.execute(f"SET temp_directory = {quote_literal(str(self.spill_dir()))}")
            self.store.attach_session(con, self.session_id)
        except BaseException:
            con.close()
            raise
        return con

    def _instance_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"memory_limit": self.settings.memory_limit}
        if self.settings.threads:
            config["threads"] = self.settings.threads
        return config

    def _parking_key(self) -> Hashable:
        """What a step instance opened by this thread is made of, besides the session's file."""
        return (tuple(sorted(self._instance_config().items())), STEP_INSTANCE_STATEMENTS,
                str(self.spill_dir()))

    def park_sealed_connection(self, con: duckdb.DuckDBPyConnection) -> bool:
        """Keep a sealed SQL step's instance (its views dropped, its session attached, no
        other database) for the session's next SQL step in this thread; False when it cannot
        be kept (see :mod:`.duckdb_instances`) and the caller closes it."""
        if not self.store.step_instances_can_be_parked:
            return False
        return duckdb_instances.park(self.store.canonical(self.location), self._parking_key(),
                                     con, self.close_workspace_connection)

    def take_parked_connection(self) -> duckdb.DuckDBPyConnection | None:
        """The sealed instance the previous SQL step of this session parked in this thread
        (seeded afresh, so nothing of the previous step's random() state carries over)."""
        if not self.store.step_instances_can_be_parked:
            return None
        con = duckdb_instances.take_parked(self.store.canonical(self.location),
                                           self._parking_key())
        if con is not None:
            try:
                con.execute("SELECT setseed(?)", [secrets.randbelow(2**52) / 2**52])
            except BaseException:
                self.close_workspace_connection(con)
                raise
        return con

    def close_workspace_connection(self, con: duckdb.DuckDBPyConnection,
                                   reader_aliases: Sequence[str] = ()) -> None:
        """Close a step's instance (after :meth:`open_workspace_connection` and ATTACHes of
        ``reader_aliases``). The store detaches its databases here, each checkpointed and
        unlocked before this returns, and the empty instance is freed in the background
        (:func:`.duckdb_instances.retire`); a store that cannot detach closes it here."""
        try:
            detached = self.store.detach(con, reader_aliases)
        except duckdb.Error:
            detached = False  # closing does the checkpoint again and raises what still fails
        if detached:
            duckdb_instances.retire(con)
        else:
            con.close()


def state_json(data: Any) -> str:
    """The text of a state file (a high-water mark document)."""
    return json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True,
                      default=_json_default) + "\n"


def write_json_atomic(path: Path, data: Any) -> None:
    """``data`` as JSON in ``path``, replaced in one rename (state files: never half written)."""
    write_text_atomic(path, state_json(data))
