"""The `osiris-dagster` command line: validate pipelines and run them through Dagster."""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import shlex
import sys
import time
import uuid
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, TextIO

from osiris_dagster.core.atomic_files import write_text_atomic
from osiris_dagster.core.errors import OsirisError

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
# stdout's reader left before the output ended (`osiris-dagster sessions list | head -1`): 128 +
# SIGPIPE, what a shell reports for a program that a closed pipe ended (`set -o pipefail`
# scripts know it), and not 1, which says a run failed.
EXIT_OUTPUT_CUT = 141
KEEP_SNAPSHOTS = "10m"  # `sessions clean`: DuckLake snapshots younger than this stay


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A reader that closes our output early ends it quietly with
    EXIT_OUTPUT_CUT: Python ignores SIGPIPE, so the next write would otherwise end in a
    BrokenPipeError traceback (and another at the interpreter's final flush)."""
    try:
        try:
            return _command(argv)
        finally:
            if sys.stdout is not None:  # output still buffered meets the closed pipe here
                sys.stdout.flush()
    except BrokenPipeError:
        if not _discard_closed_outputs():
            raise  # another pipe or socket (a database's, a child's): a real error
        return EXIT_OUTPUT_CUT


def _command(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_INVALID
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OsirisError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except Exception as exc:
        full = _disk_full(exc)
        if full is None or getattr(args, "debug", False):
            raise
        print(f"error: a disk could not be written ({full}); it is full, or failing. Free "
              "space where the sessions directory and the Dagster home are, then run again; a "
              "run cut short is listed unfinished by `osiris-dagster sessions list`.",
              file=sys.stderr)
        return 1


# SQLite says "disk I/O error" when a write fails for want of space at some points (a journal,
# a schema read on a full disk)
_FULL = ("database or disk is full", "No space left on device", "Disk quota exceeded",
         "disk I/O error")


def _disk_full(exc: BaseException) -> str | None:
    """The message of the error in ``exc``'s chain that says a disk is full (SQLite's, DuckDB's,
    the system's), else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        if any(words in text for words in _FULL):
            return text.splitlines()[0] if text else type(current).__name__
        current = current.__cause__ or current.__context__
    return None


def _discard_closed_outputs() -> bool:
    """Point stdout and stderr, those whose reader is gone, at /dev/null (what they still
    buffer is flushed there at exit, not into another BrokenPipeError); whether one was."""
    closed = [s for s in (sys.stdout, sys.stderr) if s is not None and _reader_gone(s)]
    for stream in closed:
        _to_devnull(stream)
    return bool(closed)


def _reader_gone(stream: TextIO) -> bool:
    """Whether the stream is a pipe (or socket) whose reading end is closed: poll reports an
    error or hang-up on its writing end."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # no file descriptor (replaced, closed)
        return False
    if not hasattr(select, "poll"):  # e.g. Windows: the error came from our output, surely
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _to_devnull(stream: TextIO) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


class _RunOutput:
    """stdout of `run`. Its reader may leave while steps run (`run ... | head -3`); a step must
    not fail on its progress line (its writes half done), so after a broken pipe the output
    goes to /dev/null and the run goes on to its end."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.cut = False

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self._discard()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._discard()

    def _discard(self) -> None:
        self.cut = True
        _to_devnull(self.stream)

    def exit_code(self, code: int) -> int:
        """The run's exit code; EXIT_OUTPUT_CUT for a run that succeeded with its output cut
        (a failure keeps its own code: the errors went to stderr)."""
        return EXIT_OUTPUT_CUT if self.cut and code == EXIT_OK else code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="osiris-dagster",
                                description="Run Osiris OML pipelines as Dagster assets.")
    sub = p.add_subparsers(dest="command")

    v = sub.add_parser("validate", help="check pipeline files; report every error with its line")
    v.add_argument("files", nargs="+", metavar="FILE")
    v.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="parameter value (repeatable)")
    v.add_argument("--profile", help="profile whose params apply")
    v.add_argument("--connections", metavar="FILE",
                   help="osiris_connections.yaml whose aliases the steps must name (default: "
                        "found as `run` finds it)")
    v.set_defaults(func=cmd_validate)

    r = sub.add_parser("run", help="materialise a pipeline's assets through Dagster")
    r.add_argument("pipeline", metavar="PIPELINE")
    r.add_argument("--connections", metavar="FILE", help="osiris_connections.yaml to use")
    _sessions_dir_option(r)
    r.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="parameter value (repeatable); beats env, profile and OML default")
    r.add_argument("--profile", help="profile whose params apply (default: dev if defined)")
    r.add_argument("--select", action="append", default=[], metavar="STEP",
                   help="run only this step (repeatable); upstreams come from their latest "
                        "sessions (of the same partition)")
    r.add_argument("--partition", metavar="KEY",
                   help="the partition to run (required for a pipeline with x-dagster."
                        "partitions, refused without them)")
    r.add_argument("--debug", action="store_true", help="show tracebacks")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("sessions", help="list, show or clean sessions (directories with the "
                                        "duckdb store, schemas with OSIRIS_SESSION_STORE="
                                        "ducklake)")
    _sessions_dir_option(s)
    ssub = s.add_subparsers(dest="action")
    ssub.add_parser("list", help="one line per session, newest first")
    show = ssub.add_parser("show", help="a session's steps, tables and files")
    show.add_argument("session_id")
    clean = ssub.add_parser("clean", help="delete old sessions (those referenced by the latest "
                                          "materialisation of any asset, or of any partition "
                                          "of one, are kept)")
    clean.add_argument("--older-than", metavar="AGE", help="e.g. 7d, 12h, 30m")
    clean.add_argument("--keep", type=_count, metavar="N",
                       help="keep the N newest per pipeline (0 or more)")
    clean.add_argument("--dry-run", action="store_true", help="only print what would go")
    clean.add_argument("--force", action="store_true",
                       help="also delete sessions that latest materialisations reference and "
                            "unfinished ones (a run that may still be going)")
    clean.add_argument("--keep-snapshots", metavar="AGE", default=KEEP_SNAPSHOTS,
                       help="ducklake store: keep the lake's snapshots younger than AGE "
                            f"(default {KEEP_SNAPSHOTS}) so transactions still running keep "
                            "their conflict checks; files they still reference are freed by a "
                            "later clean. 0s frees everything now: only when nothing else "
                            "writes to the lake")
    s.set_defaults(func=cmd_sessions)

    u = sub.add_parser("unsettled", help="writes that may have landed although their step "
                                         "failed: list them, or settle one after checking its "
                                         "target (the step then runs again on that input)")
    _sessions_dir_option(u)
    usub = u.add_subparsers(dest="action")
    usub.add_parser("list", help="one block per unsettled write")
    settle = usub.add_parser("settle", help="forget a step's unsettled writes (check its target "
                                            "first)")
    settle.add_argument("pipeline", help="the pipeline's name (its OML `name`)")
    settle.add_argument("step", help="the step's id")
    settle.add_argument("--written", action="store_true",
                        help="the rows are in the target: keep refusing that input, and count "
                             "them as delivered (instead of letting the step write them again)")
    u.set_defaults(func=cmd_unsettled)

    d = sub.add_parser("deliveries", help="incremental extractors whose last rows have not "
                                          "reached every step after them: list them, or give "
                                          "those rows up for the steps that missed them")
    _sessions_dir_option(d)
    dsub = d.add_subparsers(dest="action")
    dsub.add_parser("list", help="one block per extractor with rows not delivered")
    skip = dsub.add_parser("skip", help="the extractor's next run goes on after its last rows "
                                        "(the steps that missed them never get them)")
    skip.add_argument("pipeline", help="the pipeline's name (its OML `name`)")
    skip.add_argument("step", help="the extractor's step id")
    d.set_defaults(func=cmd_deliveries)

    h = sub.add_parser("init-home", help="make a Dagster home (DAGSTER_HOME) whose dagster.yaml "
                                         "opens Dagster's SQLite files through osiris-dagster's "
                                         "storages (faster runs in dagster dev)")
    h.add_argument("home", nargs="?", metavar="DIR",
                   help="the home's directory (default $DAGSTER_HOME); made if missing")
    h.set_defaults(func=cmd_init_home)
    return p


def _sessions_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions-dir", metavar="DIR",
                        help="root of session directories (default $OSIRIS_SESSIONS_DIR or "
                             ".osiris_sessions)")


def _count(text: str) -> int:
    """argparse type for --keep: a whole number >= 0 (argparse exits 2 with the message)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more, got {text!r}"
                                         ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _parse_params(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OsirisError(f"--param expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


# -- validate -------------------------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    from osiris_dagster.oml import validate_pipeline
    from osiris_dagster.runtime.connection_checks import connection_diagnostics, path_diagnostics
    from osiris_dagster.runtime.connections import find_connections_file

    params = _parse_params(args.param)
    invalid = 0
    for f in args.files:
        result = validate_pipeline(f, params=params, profile=args.profile,
                                   sensor_gives_its_params=True)
        if result.pipeline is not None:
            connections = find_connections_file(args.connections, result.pipeline.path)
            result.diagnostics.extend(connection_diagnostics(result.pipeline, connections, f))
            if connections is not None:
                result.diagnostics.extend(path_diagnostics(
                    result.pipeline, connections, f, result.pipeline.dagster.run_param_names()))
        for d in result.errors:
            print(str(d), flush=True)
        for d in result.warnings:
            print(f"warning: {d}", file=sys.stderr)
        if result.ok:
            steps = len(result.pipeline.steps) if result.pipeline else 0
            print(f"{f}: valid ({steps} steps, {len(result.warnings)} warnings)")
        else:
            invalid += 1
            print(f"{f}: {len(result.errors)} error(s)", file=sys.stderr)
    return EXIT_INVALID if invalid else EXIT_OK


# -- sessions -------------------------------------------------------------------------------------
def cmd_sessions(args: argparse.Namespace) -> int:
    from osiris_dagster.core.settings import Settings
    from osiris_dagster.runtime.stores import store_for

    settings = Settings.from_env(args.sessions_dir)  # with the session store's settings
    store = store_for(settings)
    if args.action in (None, "list"):
        sessions = store.list_sessions()
        if not sessions:
            print(f"no sessions {store.describe()}")
        for s in sessions:
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.started))
            print(f"{s.session_id}  {started}  {s.status or 'unfinished':10}  "
                  f"{_size(s.size_bytes):>9}  {s.pipeline or '?'}")
        return EXIT_OK
    if args.action == "show":
        return _show_session(settings, args.session_id)
    return _clean_sessions(args, settings)


# -- unsettled writes -----------------------------------------------------------------------------
def cmd_unsettled(args: argparse.Namespace) -> int:
    from osiris_dagster.core.settings import Settings
    from osiris_dagster.runtime.stores import store_for
    from osiris_dagster.runtime.unsettled_writes import UnsettledWrites

    settings = Settings.from_env(args.sessions_dir)
    store = store_for(settings)
    if store.records is None and not settings.sessions_dir.is_dir():
        print(f"error: no sessions directory {settings.sessions_dir} (check --sessions-dir or "
              "OSIRIS_SESSIONS_DIR)", file=sys.stderr)
        return EXIT_INVALID
    writes = UnsettledWrites(settings.sessions_dir, store.records)
    if args.action == "settle":
        busy = _still_writing(writes, args.pipeline, args.step)
        if busy:
            print(f"error: pipeline '{args.pipeline}', step '{args.step}' is still writing (the "
                  f"run of session {busy[0].session_id}, started {busy[0].failed_at}): what is "
                  "in the target now says nothing yet. Settle once that run has ended, if it "
                  "leaves the write unsettled.", file=sys.stderr)
            return EXIT_INVALID
        removed = (writes.settle_as_written if args.written else writes.settle)(
            args.pipeline, args.step)
        if not removed:
            print(f"error: no unsettled write of pipeline '{args.pipeline}', step '{args.step}' "
                  f"{store.describe()} (see `osiris-dagster unsettled list`)", file=sys.stderr)
            return EXIT_INVALID
        then = ("its rows count as written: the step stays refused on that input" if
                args.written else "the step runs again on that input")
        for w in removed:
            print(f"settled: pipeline '{w.pipeline}', step '{w.step_id}', failed in session "
                  f"{w.session_id} at {w.failed_at}; {then}")
        return EXIT_OK
    found = writes.all()
    if not found:
        print(f"no unsettled writes {store.describe()}")
    for w in found:
        if writes.still_writing(w):
            print(f"pipeline '{w.pipeline}', step '{w.step_id}': still writing in session "
                  f"{w.session_id}, started at {w.failed_at} (not unsettled: its run goes on)")
            continue
        settled = " (settled as written)" if w.written else ""
        print(f"pipeline '{w.pipeline}', step '{w.step_id}': failed in session {w.session_id} "
              f"at {w.failed_at}{settled}")
        if w.target:
            print(f"  target {w.target}")
        for line in w.inputs:
            print(f"  input {line}")
        print(f"  error: {w.error}")
    return EXIT_OK


def _still_writing(writes: Any, pipeline: str, step: str) -> list[Any]:
    from osiris_dagster.runtime.unsettled_writes import UnreadableRecordError

    try:
        return [w for w in writes.of(pipeline, step) if writes.still_writing(w)]
    except UnreadableRecordError:
        return []


# -- deliveries -----------------------------------------------------------------------------------
def cmd_deliveries(args: argparse.Namespace) -> int:
    from osiris_dagster.core.settings import Settings
    from osiris_dagster.runtime.deliveries import pending, skip
    from osiris_dagster.runtime.stores import store_for

    settings = Settings.from_env(args.sessions_dir)
    store = store_for(settings)
    if args.action == "skip":
        given_up = skip(settings.sessions_dir, store.records, args.pipeline, args.step)
        if given_up is None:
            print(f"error: no rows of pipeline '{args.pipeline}', step '{args.step}' waiting to "
                  f"be delivered {store.describe()} (see `osiris-dagster deliveries list`)",
                  file=sys.stderr)
            return EXIT_INVALID
        print(f"skipped: the rows read in session {given_up.session_id} are given up for "
              f"{', '.join(given_up.missing())}; the next run goes on after them")
        return EXIT_OK
    found = pending(settings.sessions_dir, store.records)
    if not found:
        print(f"no rows waiting to be delivered {store.describe()}")
    for where, d in found:
        named = f"pipeline '{d.pipeline}', step '{d.step_id}'" if d.pipeline else where
        print(f"{named}: rows read in session {d.session_id}")
        print(f"  received by: {', '.join(d.delivered_to) or 'none'}")
        print(f"  not yet: {', '.join(d.missing())} (a write settled as written counts as "
              "received on the extractor's next run)")
        if d.pipeline:
            print(f"  to give them up: osiris-dagster deliveries skip {shlex.quote(d.pipeline)} "
                  f"{shlex.quote(d.step_id)}")
    return EXIT_OK


def _show_session(settings: Any, session_id: str) -> int:
    from osiris_dagster.runtime.session import Session

    session = Session(settings, session_id)
    store = session.store
    try:
        tables = store.session_tables(session_id)
    except OsirisError as exc:
        tables, unreadable = [], str(exc)
    else:
        unreadable = None
    if tables is None:
        print(f"error: no session {session_id} {store.describe()}", file=sys.stderr)
        return EXIT_INVALID
    print(f"session {session_id}")
    if store.records is not None:
        print(f"location {session.location} {store.describe()}")
    if session.dir.is_dir():
        print(f"directory {session.dir}")
    for e in session.read_events():
        if e.get("event") in ("run_start", "step_complete", "step_error", "run_end"):
            detail = {k: v for k, v in e.items() if k not in ("ts", "session", "event")}
            print(f"  {e['ts']}  {e['event']:14} {json.dumps(detail, ensure_ascii=False)}")
    for name, rows in tables:
        print(f"  table {name}: {rows} rows")
    if unreadable:
        print(f"  (cannot read its tables: {unreadable})")
    for name, size in store.session_files(session_id).items():
        print(f"  file  {name} ({_size(size)})")
    return EXIT_OK


def _clean_sessions(args: argparse.Namespace, settings: Any) -> int:
    from osiris_dagster.runtime.housekeeping import parse_duration, select_for_cleaning
    from osiris_dagster.runtime.stores import store_for

    if args.older_than is None and args.keep is None:
        print("error: say what to clean: --older-than AGE and/or --keep N", file=sys.stderr)
        return EXIT_INVALID
    try:
        older = parse_duration(args.older_than) if args.older_than else None
        keep_snapshots = parse_duration(args.keep_snapshots)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    store = store_for(settings)
    sessions = store.list_sessions()
    referenced, ended = (set(), {}) if args.force else _what_dagster_knows(
        settings, [s.session_id for s in sessions if s.status is None])
    delete, protected = select_for_cleaning(sessions, older_than=older, keep=args.keep,
                                            referenced=referenced, ended=ended,
                                            force=args.force)
    for k in protected:
        print(f"kept    {k.session.session_id} ({k.reason}; --force deletes)")
    report = None if args.dry_run else store.drop_sessions(delete, keep_snapshots)
    if report is not None:
        from osiris_dagster.runtime.run_process import forget_runs

        forget_runs(settings.sessions_dir, {s.session_id[:36] for s in delete})
    for s in delete:
        over = f", unfinished: {ended[s.session_id]}" if s.session_id in ended else ""
        print(f"{'would delete' if args.dry_run else 'deleted'} {s.session_id} "
              f"({_size(s.size_bytes)}, {s.pipeline or '?'}{over})")
    freed = sum(s.size_bytes for s in delete) - (report.bytes_left if report else 0)
    verb = "would free" if args.dry_run else "freed"
    print(f"{len(delete)} session(s), {verb} {_size(freed)}")
    for note in report.notes if report else []:
        print(note)
    return EXIT_OK


def _what_dagster_knows(settings: Any, unfinished: Sequence[str]
                        ) -> tuple[set[str], dict[str, str]]:
    """(session ids that latest materialisations reference, the ``unfinished`` sessions whose
    run is over, with how that is known): from the Dagster instance `run` uses, and for an
    `osiris-dagster run` on this host killed outright, from its lock."""
    from osiris_dagster.runtime.run_process import runs_whose_process_is_gone

    warnings.filterwarnings("ignore")
    with _instance(settings) as instance:  # disposed after: its kept connections closed
        referenced = _referenced_sessions(instance)
        ended = dict.fromkeys(_ended_runs(instance, unfinished), "its Dagster run is over")
    gone = runs_whose_process_is_gone(settings.sessions_dir, {sid[:36] for sid in unfinished})
    for sid in unfinished:
        if sid not in ended and sid[:36] in gone:
            ended[sid] = "the `osiris-dagster run` that ran it was killed"
    return referenced, ended


def _referenced_sessions(instance: Any) -> set[str]:
    """Session ids recorded on the latest materialisation of any asset in the instance, and of
    every partition of a partitioned one (a downstream-only run of a partition reads the
    session of that partition's latest upstream materialisation)."""
    out: set[str] = set()
    for key in instance.get_asset_keys():
        for record in _latest_materialisations(instance, key):
            mat = record.asset_materialization
            if mat is not None and "osiris/session_id" in mat.metadata:
                out.add(str(mat.metadata["osiris/session_id"].value))
    return out


def _ended_runs(instance: Any, unfinished: Sequence[str]) -> set[str]:
    """The sessions among ``unfinished`` (no run_end: still going, or killed) whose Dagster run
    has ended: succeeded, failed or canceled (e.g. a run worker killed, then marked failed by
    Dagster's run monitoring). A session's id is its run's id, or that id, '-' and the
    pipeline's name in a run of several pipelines. A run the instance does not know, or still
    records as started (a `kill -9` leaves it so), stays unfinished: only --force deletes it."""
    from dagster import DagsterRunStatus, RunsFilter

    if not unfinished:
        return set()
    candidates = {sid[:36] for sid in unfinished} | set(unfinished)
    over = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
    run_ids = set(instance.get_run_ids(RunsFilter(run_ids=sorted(candidates), statuses=over)))
    return {sid for sid in unfinished
            if sid in run_ids or (sid[36:37] == "-" and sid[:36] in run_ids)}


_RECORDS_PER_QUERY = 1000  # under Dagster's limit on records fetched at once (10,000)


def _latest_materialisations(instance: Any, key: Any) -> list[Any]:
    """The asset's latest materialisation record and that of each of its partitions: one query
    for the partitions' latest storage ids, then their records in batches (not a query per
    partition: a daily asset over years has thousands)."""
    from dagster import AssetRecordsFilter, DagsterEventType

    latest = instance.fetch_materializations(key, limit=1).records
    ids = set(instance.event_log_storage.get_latest_storage_id_by_partition(
        key, DagsterEventType.ASSET_MATERIALIZATION).values())
    ids -= {r.storage_id for r in latest}
    ordered = sorted(ids)
    records = list(latest)
    for start in range(0, len(ordered), _RECORDS_PER_QUERY):
        batch = ordered[start:start + _RECORDS_PER_QUERY]
        records += instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, storage_ids=batch), limit=len(batch)).records
    return records


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# -- init-home ------------------------------------------------------------------------------------
def cmd_init_home(args: argparse.Namespace) -> int:
    from osiris_dagster.dagster_layer.dagster_home import init_home

    home = args.home or os.environ.get("DAGSTER_HOME")
    if not home:
        print("error: no Dagster home: pass its directory or set DAGSTER_HOME", file=sys.stderr)
        return EXIT_INVALID
    config_file, added, replaced, notes, shared = init_home(Path(os.path.expanduser(home)))
    if replaced:
        print(f"{config_file}: wrote {', '.join(added)} again for this home (they name it as "
              "$DAGSTER_HOME, and by this path for processes without it)" if not shared else
              f"{config_file}: wrote {', '.join(added)} again (they name the home as "
              "$DAGSTER_HOME only)")
    elif added:
        print(f"{config_file}: added {', '.join(added)}")
    else:
        print(f"{config_file}: already uses osiris-dagster's storages")
    if added and shared:
        print(f"note: {config_file} is a link to a file outside the home, which other homes "
              "may share: it names the home only as $DAGSTER_HOME, and every process of this "
              "home needs DAGSTER_HOME set")
    for note in notes:
        print(f"note: {note}")
    home_dir = str(config_file.parent)
    set_home = os.path.expanduser(os.environ.get("DAGSTER_HOME") or "")
    # another home, or this one by a relative path Dagster refuses
    if not os.path.isabs(set_home) or os.path.normpath(set_home) != home_dir:
        print(f"next: export DAGSTER_HOME={shlex.quote(home_dir)}")
    return 0


# -- run ------------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    warnings.filterwarnings("ignore")
    from osiris_dagster.oml import validate_pipeline

    params = _parse_params(args.param)
    path = Path(args.pipeline)
    result = validate_pipeline(path, params=params, profile=args.profile)
    for d in result.warnings:
        print(f"warning: {d}", file=sys.stderr)
    if result.pipeline is None:
        for d in result.errors:
            print(str(d), file=sys.stderr)
        print(f"{path}: not run: {len(result.errors)} error(s)", file=sys.stderr)
        return EXIT_INVALID
    pipeline = result.pipeline
    unknown = [s for s in args.select if s not in {st.id for st in pipeline.steps}]
    if unknown:
        print(f"error: --select names unknown step(s) {', '.join(unknown)} of pipeline "
              f"'{pipeline.name}' (steps: {', '.join(s.id for s in pipeline.steps)})",
              file=sys.stderr)
        return EXIT_INVALID
    problem = _partition_argument_problem(pipeline, args.partition, params)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_INVALID
    if args.connections:
        from osiris_dagster.runtime.connections import find_connections_file

        find_connections_file(args.connections)  # fail early (exit 2) when missing

    from osiris_dagster.core.settings import Settings

    settings = Settings.from_env(args.sessions_dir)
    return _run_with_dagster(args, pipeline, params, settings)


def _partition_argument_problem(pipeline: Any, partition: str | None,
                                params: dict[str, str]) -> str | None:
    """Why `run` cannot start with this --partition, or without one (None: it can). A run of
    a partitioned pipeline without a partition fails inside Dagster, or worse, succeeds with
    the values `validate` gives the partition parameters."""
    settings = pipeline.dagster.partitions
    if settings is None:
        if partition is None:
            return None
        return (f"pipeline '{pipeline.name}' has no partitions (no x-dagster.partitions): run "
                "it without --partition")
    if partition is None:
        return (f"pipeline '{pipeline.name}' has {settings.kind} partitions: `run` needs "
                "--partition KEY (one partition per run; Dagster's own CLI: `dagster asset "
                "materialize --partition KEY` on your definitions); for several partitions, a "
                "run per key, or a backfill in the Dagster UI")
    given = sorted(pipeline.dagster.partition_param_names() & params.keys())
    if given:
        return (f"--param {', '.join(given)}: --partition sets it (the partition's own value); "
                "leave it out")
    return None


def _unknown_partition(pipeline: Any, key: str, instance: Any) -> str | None:
    """Why ``key`` is no partition of the pipeline, naming the ones there are (None: it is)."""
    from osiris_dagster.dagster_layer.partitions import partitions_definition

    settings = pipeline.dagster.partitions
    where = f"pipeline '{pipeline.name}' has no partition '{key}'"
    if settings.kind == "dynamic":
        if instance.has_dynamic_partition(settings.name, key):
            return None
        count = len(instance.get_dynamic_partitions(settings.name))
        return (f"{where}: this Dagster instance has {count} key(s) of its dynamic "
                f"partitions '{settings.name}' (its sensor adds one per file it finds, the "
                "file's absolute path)")
    pdef = partitions_definition(pipeline)
    if pdef.has_partition_key(key):
        return None
    if settings.is_time:
        first, last = pdef.get_first_partition_key(), pdef.get_last_partition_key()
        there = (f"{first} ... {last}" if first and last else
                 "none yet (the first is not over)")
        return f"{where}: its {settings.kind} partitions are {there}"
    keys = list(pdef.get_partition_keys())
    shown = ", ".join(repr(k) for k in keys[:20]) + (", ..." if len(keys) > 20 else "")
    return f"{where}: its partitions are {shown}"


def _run_with_dagster(args: argparse.Namespace, pipeline: Any, params: dict[str, str],
                      settings: Any) -> int:
    """Run the pipeline; its output's reader may leave early (`| head`), which neither fails a
    step nor changes the exit code of a failed run (see :class:`_RunOutput`)."""
    out, err = _RunOutput(sys.stdout), _RunOutput(sys.stderr)
    from osiris_dagster.dagster_layer.assets import build_osiris_assets, params_resource_key
    from osiris_dagster.dagster_layer.loader import definitions_from_built, describe_build_error
    from osiris_dagster.dagster_layer.sqlite_files import sqlite_files_held_open
    from osiris_dagster.oml.params import coerce, declared_params
    from osiris_dagster.runtime.run_process import process_running
    from osiris_dagster.runtime.session import Session

    try:
        defs_one = build_osiris_assets(pipeline.path, connections_file=args.connections)
    except Exception as exc:  # noqa: BLE001 - e.g. Dagster refusing a definition: say which
        if args.debug:
            raise
        print(f"error: {describe_build_error(pipeline.path, exc)}", file=err)
        return EXIT_INVALID
    typed = _typed_params(pipeline.path, params, coerce, declared_params)
    defs = definitions_from_built([defs_one], sessions_dir=str(settings.sessions_dir),
                                  connections_file=args.connections)
    job = defs.resolve_job_def(defs_one.job.name)
    instance = _instance(settings)
    unknown = (None if args.partition is None else
               _unknown_partition(pipeline, args.partition, instance))
    if unknown:
        instance.dispose()
        print(f"error: {unknown}", file=err)
        return EXIT_INVALID
    run_id = str(uuid.uuid4())
    run_cfg: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    res_cfg: dict[str, Any] = {}
    if typed:  # wins even when equal to the OML default (a `params` value then does not)
        res_cfg["explicit_params"] = typed
    if args.profile:
        res_cfg["profile"] = args.profile
    if res_cfg:
        run_cfg["resources"] = {params_resource_key(pipeline): {"config": res_cfg}}
    selection = [defs_one.asset_keys[s] for s in args.select] or None

    session = Session(settings, run_id)
    print(f"pipeline {pipeline.name} ({pipeline.path})", file=out)
    print(f"session  {run_id}", file=out)
    if args.partition is not None:
        print(f"partition {args.partition}", file=out)
    handler = _ProgressPrinter(out)
    plog = logging.getLogger("osiris_dagster.progress")
    plog.addHandler(handler)
    plog.setLevel(logging.INFO)
    plog.propagate = False
    started = time.monotonic()
    try:
        with process_running(settings.sessions_dir, run_id), \
                sqlite_files_held_open(instance):  # one checkpoint per file, not per event
            res = job.execute_in_process(run_config=run_cfg, instance=instance, run_id=run_id,
                                         asset_selection=selection, raise_on_error=False,
                                         partition_key=args.partition,
                                         tags={"osiris/session_dir":
                                               os.path.abspath(session.dir)})
    finally:
        plog.removeHandler(handler)
        instance.dispose()  # closes the event log's kept connections: one WAL checkpoint
    elapsed = time.monotonic() - started
    _finish_events(session, res.success)
    printed = {sid for sid, _ in handler.errors}
    failed = _interrupted_reasons(_failed_steps(res, pipeline), session)
    handler.print_held(failed={sid for sid, _ in failed})
    for sid, text in failed:  # not printed yet: failed before the step ran (its inputs)
        if sid not in printed:
            print(f"  FAILED {sid}: {text.splitlines()[0] if text else 'failed'}", file=out)
    print("", file=out)
    for line in handler.summary():
        print(line, file=out)
    if session.records is not None or session.dir.exists():
        print(f"session dir: {session.dir}", file=out)
    else:
        print("session dir: none (no step ran)", file=out)
    if res.success:
        print(f"done in {elapsed:.1f}s", file=out)
        return out.exit_code(EXIT_OK)
    if args.debug:
        for ev in res.all_events:
            if ev.is_step_failure and ev.step_failure_data and ev.step_failure_data.error:
                print(f"Traceback of step '{ev.step_key}':\n"
                      f"{ev.step_failure_data.error.to_string()}", file=err)
    for line in _failure_lines(res, pipeline, failed):
        print(f"error: {line}", file=err)
    return out.exit_code(EXIT_FAILED)


def _typed_params(path: Path, params: dict[str, str], coerce: Any, declared_params: Any
                  ) -> dict[str, Any]:
    from osiris_dagster.oml.diagnostics import Collector
    from osiris_dagster.oml.yaml_lines import load_yaml_with_lines

    specs = declared_params(load_yaml_with_lines(path.read_text(encoding="utf-8")),
                            Collector(str(path)))
    return {k: coerce(specs.get(k), v, "--param") for k, v in params.items()}


# The CLI prints every step's progress itself. Dagster's default compute-log capture would start
# `tail -F` and a Python watcher process for stdout and stderr on every run (~23 MB of RSS and two
# interpreter start-ups per run, for logs nobody reads).
CLI_INSTANCE_YAML = """telemetry:
  enabled: false
compute_logs:
  module: dagster.core.storage.noop_compute_log_manager
  class: NoOpComputeLogManager
"""


def _instance(settings: Any) -> Any:
    """$DAGSTER_HOME when set, else a persistent instance under the sessions root."""
    if os.environ.get("DAGSTER_HOME"):
        return _dagster_home_instance()
    import dagster as dg

    from osiris_dagster.core.file_locks import held_lock
    from osiris_dagster.dagster_layer.sqlite_events import cli_instance_overrides

    home = settings.sessions_dir / ".dagster"
    overrides = cli_instance_overrides(str(home))
    ready = home / ".initialised"
    if ready.exists():  # schema in place: concurrent runs start without waiting on each other
        return dg.DagsterInstance.local_temp(tempdir=str(home), overrides=overrides)
    home.mkdir(parents=True, exist_ok=True)
    # Concurrent first runs would race creating the SQLite schema: one at a time.
    with held_lock(home / ".init.lock"):
        config = home / "dagster.yaml"
        if not config.exists():
            write_text_atomic(config, CLI_INSTANCE_YAML)
        instance = dg.DagsterInstance.local_temp(tempdir=str(home), overrides=overrides)
        instance.get_runs(limit=1)  # touch the storages so their schema exists
        ready.touch()
        return instance


# Taken in $DAGSTER_HOME while a run creates the home's SQLite files.
HOME_SET_UP_LOCK = ".osiris-set-up.lock"


def _dagster_home_instance() -> Any:
    """The instance of $DAGSTER_HOME. When its dagster.yaml leaves the storage to Dagster's
    default (SQLite files under $DAGSTER_HOME), it is opened on those same files through the
    storages the CLI's own instance uses (:func:`cli_instance_overrides`: connections kept
    during the run, stamped files opened without loading the migrations); ``dagster dev`` on
    that home reads and writes them as before. A dagster.yaml that names those same storages
    (README, "One Dagster home for the UI and the command line") is opened the same way. Any
    other configuration (another database, `storage: sqlite` with its own directory, a custom
    instance class) is Dagster's own way."""
    import dagster as dg

    try:  # private parts of Dagster: a release without them opens the home as Dagster does
        from dagster._core.instance.config import dagster_instance_config
        from dagster._core.instance.ref import InstanceRef
    except ImportError:
        return dg.DagsterInstance.get()
    from osiris_dagster.core.file_locks import held_lock
    from osiris_dagster.dagster_layer.dagster_home import (
        ours_elsewhere,
        stale_fallbacks_message,
        storage_is_default_or,
    )
    from osiris_dagster.dagster_layer.sqlite_events import cli_instance_overrides
    from osiris_dagster.dagster_layer.sqlite_storages import home_is_set_up

    home = os.path.expanduser(os.environ["DAGSTER_HOME"])
    if not (os.path.isabs(home) and os.path.isdir(home)):
        return dg.DagsterInstance.get()  # Dagster's own error says what is wrong
    overrides = cli_instance_overrides(home)
    if os.path.exists(os.path.join(home, "dagster.yaml")):  # else Dagster warns a second time
        config, custom_class = dagster_instance_config(home)
        if custom_class is not None or not storage_is_default_or(home, config):
            for key, where in ours_elsewhere(home, config).items():
                print(f"warning: {os.path.join(home, 'dagster.yaml')}: {key} keeps this home's "
                      f"history in {where}, not under {os.path.normpath(home)} (a home moved or "
                      "copied keeps the paths it was set up with; `osiris-dagster init-home` "
                      "says how to fix it)", file=sys.stderr)
            return dg.DagsterInstance.get()
        stale = stale_fallbacks_message(home, config, "`osiris-dagster init-home` writes "
                                        "this home's path there, or says how")
        if stale:
            print(f"warning: {os.path.join(home, 'dagster.yaml')}: {stale}", file=sys.stderr)
    ref = InstanceRef.from_dir(home, overrides=overrides)
    if home_is_set_up(home):  # concurrent runs open it without waiting on each other
        return dg.DagsterInstance.from_ref(ref)
    # Dagster's own code creates the schema of a new home; runs starting at once would race
    # on it (two revisions stamped in one file leave the home unreadable to Dagster).
    with held_lock(Path(home) / HOME_SET_UP_LOCK):
        return dg.DagsterInstance.from_ref(ref)


def _finish_events(session: Any, success: bool) -> None:
    if session.records is None and not session.events_path.exists():
        return
    with session.locked_events() as events:  # atomic with the steps' own run_end
        if events and not any(e.get("event") == "run_end" for e in events):
            session.log_once("run_end", status="success" if success else "failure")


def _failed_steps(res: Any, pipeline: Any) -> list[tuple[str, str]]:
    """(step id, the root cause the product raised) per failed step: Dagster wraps exceptions
    (e.g. DagsterExecutionLoadInputError around an IO manager's error), and its wrapper alone
    does not say what to do."""
    from osiris_dagster.core.naming import dagster_name

    step_ids = {dagster_name(pipeline.name, s.id): s.id for s in pipeline.steps}
    failed = []
    for ev in res.all_events:
        if ev.is_step_failure and ev.step_failure_data is not None:
            sid = step_ids.get(str(ev.step_key).split("[")[0], ev.step_key)
            text = _step_failure_text(ev.step_failure_data)
            failed.append((sid, text.removeprefix(f"pipeline '{pipeline.name}', step '{sid}': ")))
    return failed


def _interrupted_reasons(failed: list[tuple[str, str]], session: Any) -> list[tuple[str, str]]:
    """A step stopped by Ctrl-C (or a termination) fails in Dagster with its bare
    DagsterExecutionInterruptedError; the session's step_error says what became of the step
    (stopped, or finished while it was stopped: its rows written)."""
    if not any(_INTERRUPTED in text for _, text in failed):
        return failed
    try:
        reasons = {e.get("step_id"): str(e.get("error")) for e in session.read_events()
                   if e.get("event") == "step_error"}
    except (OSError, ValueError):
        return failed
    return [(sid, reasons.get(sid, text) if _INTERRUPTED in text else text)
            for sid, text in failed]


_INTERRUPTED = "DagsterExecutionInterruptedError"


def _failure_lines(res: Any, pipeline: Any, failed: list[tuple[str, str]]) -> list[str]:
    """One line per failed step (``failed``: :func:`_failed_steps`), or the run's own
    failure, each ending with the root cause."""
    lines = [f"pipeline '{pipeline.name}', step '{sid}' failed: {text}" for sid, text in failed]
    if lines:
        return lines
    for ev in res.all_events:
        error = getattr(ev.event_specific_data, "error", None) if ev.is_run_failure else None
        if error is not None:
            return [f"pipeline '{pipeline.name}': the run failed: {error_with_cause(error)}"]
    return [f"pipeline '{pipeline.name}': the run failed (see the Dagster event log)"]


def _step_failure_text(data: Any) -> str:
    user = data.user_failure_data
    if user is not None and user.description:
        return user.description
    return error_with_cause(data.error) if data.error else "the step failed"


def error_with_cause(error: Any) -> str:
    """A serialised Dagster error as `<what Dagster was doing>: <root cause>`: the chain of
    causes is followed to its end (and through the context of Dagster's own wrappers)."""
    chain = [error]
    while True:
        node = chain[-1]
        nxt = node.cause or (node.context if node.cls_name.startswith("Dagster") else None)
        if nxt is None or nxt in chain:
            break
        chain.append(nxt)
    root = _error_text(chain[-1])
    if len(chain) == 1:
        return root
    return f"{_error_text(chain[0]).rstrip(': ')}: {root}"


def _error_text(error: Any) -> str:
    """The error's message; our own errors without their class (they are written for people),
    others as `Class: message` (without the module path)."""
    text = error.message.strip()
    head, sep, rest = text.partition(": ")
    if sep and head.split(".")[-1] == error.cls_name:
        if head.startswith("osiris_dagster."):
            return rest.strip()
        if error.cls_name.startswith("Dagster"):
            return rest.strip()
        return f"{error.cls_name}: {rest.strip()}"
    return text


PROGRESS_EVERY_S = 5.0  # `run` prints a step's progress at most this often


class _ProgressPrinter(logging.Handler):
    """Prints one line per step start/finish and a heartbeat line for long steps.

    A step's ``ok`` line (with its check lines) is held until the step is accepted, which the
    next step's first line or the run's end shows: its table may yet be refused (a blocking
    check, the IO manager, an incremental state another run changed), and then only ``FAILED``
    is printed for it (:meth:`print_held`)."""

    def __init__(self, out: _RunOutput) -> None:
        super().__init__()
        self.out = out
        self.rows: dict[str, tuple[int, int, float, str | None]] = {}
        self.errors: list[tuple[str, str]] = []
        self.held: dict[str, list[str]] = {}  # step -> its ok line, then its check lines
        self.progress_shown: dict[str, float] = {}  # step -> when its last progress line was

    def emit(self, record: logging.LogRecord) -> None:
        data = getattr(record, "osiris", None)
        if not isinstance(data, dict):
            return
        ev, sid = data.get("event"), data.get("step_id")
        if ev == "step_start":
            line = f"  > {sid} ({data.get('component')}) started"
        elif ev == "step_complete":
            rows = data.get("rows_written")
            target = data.get("target")
            self.rows[sid] = (int(data.get("rows_read") or 0), int(rows or 0),
                              float(data.get("duration") or 0), target)
            suffix = f" -> {target}" if target else ""
            self.held[sid] = [
                f"  ok {sid}: {rows} rows in {float(data.get('duration') or 0):.2f}s{suffix}"]
            return
        elif ev == "check_failed":
            kind = "blocking check" if data.get("blocking") else "check"
            line = f"  ! {sid}: {kind} {data.get('check')} failed: {data.get('detail')}"
            if sid in self.held:
                self.held[sid].append(line)
                return
        elif ev == "step_error":
            self.errors.append((sid, str(data.get("error"))))
            self.print_held(failed={sid})
            line = f"  FAILED {sid}: {str(data.get('error')).splitlines()[0]}"
        elif ev == "notice":
            line = f"  ! {sid}: {data.get('message')}"
        elif ev == "progress":
            # a paginated read reports every page: a line per step and PROGRESS_EVERY_S
            now = time.monotonic()
            if now - self.progress_shown.get(sid, -PROGRESS_EVERY_S) < PROGRESS_EVERY_S:
                return
            self.progress_shown[sid] = now
            rows = data.get("rows")
            rows_txt = f", {rows} rows so far" if rows is not None else ""
            line = f"  .. {sid}: running {data.get('elapsed_s')}s{rows_txt}" + (
                f" ({data['message']})" if data.get("message") else "")
        else:
            return
        self.print_held()
        print(line, file=self.out, flush=True)

    def print_held(self, failed: Collection[str] = ()) -> None:
        """Print the held lines: a step in ``failed`` was not accepted after all, so its check
        lines only, and it leaves the summary."""
        for sid, lines in self.held.items():
            if sid in failed:
                lines = lines[1:]
                self.rows.pop(sid, None)
            for line in lines:
                print(line, file=self.out, flush=True)
        self.held.clear()

    def summary(self) -> list[str]:
        lines = []
        for sid, (_read, written, duration, target) in self.rows.items():
            where = f" -> {target}" if target else ""
            lines.append(f"{sid}: {written} rows ({duration:.2f}s){where}")
        return lines


if __name__ == "__main__":
    raise SystemExit(main())
