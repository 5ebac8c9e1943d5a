"""The CLI's Dagster instance keeps its event log connections: same files, fewer connections."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.storage.event_log.sqlite import sqlite_event_log
from dagster._core.storage.runs.sqlite import sqlite_run_storage
from dagster._core.storage.schedules.sqlite import sqlite_schedule_storage
from sqlalchemy import event
from sqlalchemy.engine import Engine

from osiris_dagster import cli
from osiris_dagster.core.settings import Settings
from osiris_dagster.dagster_layer import sqlite_events
from osiris_dagster.dagster_layer.dagster_home import storage_is_default_or
from osiris_dagster.dagster_layer.sqlite_events import (
    PooledSqliteEventLogStorage,
    cli_instance_overrides,
)
from osiris_dagster.dagster_layer.sqlite_storages import (
    StampedSqliteRunStorage,
    StampedSqliteScheduleStorage,
    home_is_set_up,
)

from .helpers import gone_pid, init_home, lock_is_held


@contextmanager
def _event_log_connects() -> Iterator[list[int]]:
    """Counts the SQLite connections opened to event log files (`history/runs/*.db`) while
    inside."""
    opened = [0]

    def on_connect(dbapi_connection: Any, record: object) -> None:
        files = [row[2] for row in dbapi_connection.execute("PRAGMA database_list")]
        if any(Path(f).parent.name == "runs" for f in files if f):
            opened[0] += 1

    event.listen(Engine, "connect", on_connect)
    try:
        yield opened
    finally:
        event.remove(Engine, "connect", on_connect)


def _pooled(home: Path | str) -> dg.DagsterInstance:
    return dg.DagsterInstance.local_temp(tempdir=str(home),
                                         overrides=cli_instance_overrides(str(home)))


@dg.asset
def numbers() -> int:
    return 3


@dg.asset
def doubled(numbers: int) -> int:
    return numbers * 2


def _run(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """The two assets' values stay in memory: Dagster's default IO manager would write them to
    one path under the instance's directory, which two writer processes share."""
    return dg.materialize([numbers, doubled], instance=instance,
                          resources={"io_manager": dg.mem_io_manager})


def test_a_run_opens_each_file_once_and_reads_back_through_dagsters_own_class(
        tmp_path: Path) -> None:
    instance = _pooled(tmp_path)
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    _run(instance)  # the index shard exists, its schema checked
    with _event_log_connects() as opened:
        result = _run(instance)
    assert result.success
    assert opened[0] == 1  # the run's new shard; the index's connection is still open
    instance.dispose()

    plain = dg.DagsterInstance.local_temp(tempdir=str(tmp_path))  # what `dagster dev` opens
    assert type(plain.event_log_storage).__name__ == "SqliteEventLogStorage"
    assert plain.get_run_by_id(result.run_id).is_success
    mat = plain.get_latest_materialization_event(dg.AssetKey("doubled"))
    assert mat is not None and mat.run_id == result.run_id
    logs = plain.all_logs(result.run_id)
    assert [e.dagster_event_type for e in logs if e.is_dagster_event].count(
        dg.DagsterEventType.ASSET_MATERIALIZATION) == 2


@contextmanager
def _statements() -> Iterator[list[str]]:
    """The SQL statements run on any SQLAlchemy engine while inside."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", before)


def test_schema_probes_answered_yes_are_not_asked_again(tmp_path: Path) -> None:
    """Dagster probes the index for asset_keys columns and completed data migrations on every
    asset event and read; once the answer is yes it stays yes, so later runs skip the probes.
    A no is asked again: after the migration the answer is yes."""
    instance = _pooled(tmp_path)
    _run(instance)
    with _statements() as seen:
        assert _run(instance).success
    probes = [s for s in seen if 'table_xinfo("asset_keys")' in s or "secondary_indexes" in s]
    assert probes == [], probes
    storage = instance.event_log_storage
    assert not storage.has_secondary_index("osiris_test_migration")
    storage.enable_secondary_index("osiris_test_migration")
    assert storage.has_secondary_index("osiris_test_migration")
    storage.wipe()  # resets what is known: the probes run again
    with _statements() as seen:
        assert _run(instance).success
    assert any("table_xinfo(\"asset_keys\")" in s for s in seen)
    instance.dispose()


def _shard_layout(path: Path) -> tuple[Any, ...]:
    """What a run shard is, whoever built it: its schema, Alembic revision and journal mode."""
    with closing(sqlite3.connect(path)) as con:
        schema = con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master "
                             "ORDER BY type, name").fetchall()
        revision = con.execute("SELECT version_num FROM alembic_version").fetchall()
        journal = con.execute("PRAGMA journal_mode").fetchone()
    return schema, revision, journal


@contextmanager
def _alembic_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The SQLite storages' calls that load Alembic's migration scripts (to check or to stamp
    a file's revision), as ``module: function``."""
    calls: list[str] = []
    for module in (sqlite_event_log, sqlite_run_storage, sqlite_schedule_storage):
        for name in ("check_alembic_revision", "stamp_alembic_rev"):
            real = getattr(module, name)

            def counted(*args: Any, _real: Any = real,
                        _name: str = f"{module.__name__}: {name}", **kwargs: Any) -> Any:
                calls.append(_name)
                return _real(*args, **kwargs)

            monkeypatch.setattr(module, name, counted)
    yield calls


def test_a_new_process_opens_its_instance_and_run_shard_without_loading_migrations(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dagster loads Alembic's ~90 migration scripts for every SQLite file a process opens (run
    and schedule storages, the event index), twice for a new run's shard: all but the new shard
    are stamped already, and the new shard is a copy of the empty one Dagster built once, the
    same as Dagster builds it."""
    for name in ("pooled", "plain"):
        (tmp_path / name).mkdir()
    first = _pooled(tmp_path / "pooled")
    _run(first)  # the instance's first run: its index, and the empty shard, built by Dagster
    first.dispose()
    with _alembic_calls(monkeypatch) as calls:
        instance = _pooled(tmp_path / "pooled")  # as a second `osiris-dagster run` opens it
        result = _run(instance)
    assert result.success
    assert calls == []
    instance.dispose()
    shard = tmp_path / "pooled" / "history" / "runs" / f"{result.run_id}.db"

    plain = dg.DagsterInstance.local_temp(tempdir=str(tmp_path / "plain"))
    built = _run(plain).run_id  # Dagster's own class, on its own directory
    plain.dispose()
    dagsters = tmp_path / "plain" / "history" / "runs" / f"{built}.db"
    assert _shard_layout(shard) == _shard_layout(dagsters)
    assert _shard_layout(shard)[2] == ("wal",)

    reader = dg.DagsterInstance.local_temp(tempdir=str(tmp_path / "pooled"))  # `dagster dev`
    assert reader.get_run_by_id(result.run_id).is_success
    assert reader.get_latest_materialization_event(dg.AssetKey("doubled")).run_id == \
        result.run_id


def test_an_empty_shard_that_does_not_read_back_is_not_used(tmp_path: Path) -> None:
    runs = tmp_path / "history" / "runs"
    runs.mkdir(parents=True)
    template = runs / sqlite_events.TEMPLATE_NAME
    template.write_bytes(b"not a database\n" * 100)
    older = runs / sqlite_events.TEMPLATE_GLOB.replace("*", "0.0.1")  # an older Dagster's
    older.write_bytes(b"")
    instance = _pooled(tmp_path)
    result = _run(instance)  # Dagster builds the shard itself
    assert result.success
    assert instance.get_run_by_id(result.run_id).is_success
    assert not template.exists()  # removed, so that the next run builds a good one
    again = _run(instance)
    assert again.success
    instance.dispose()
    assert _shard_layout(template) == _shard_layout(runs / f"{again.run_id}.db")
    assert not older.exists()  # removed when this version's was built
    assert sorted(p.name for p in runs.iterdir()) == sorted(
        [template.name, "index.db", f"{result.run_id}.db", f"{again.run_id}.db",
         sqlite_events.TEMP_DIR])
    assert list((runs / sqlite_events.TEMP_DIR).iterdir()) == []


def test_a_copied_shard_has_the_mode_sqlite_gives_a_new_database(tmp_path: Path) -> None:
    """0644 less the umask, as Dagster's shards, also under a umask that lets the group write
    (a plain copy would be 0664 there)."""
    (tmp_path / "pooled").mkdir()
    (tmp_path / "plain").mkdir()
    previous = os.umask(0o002)
    try:
        instance = _pooled(tmp_path / "pooled")
        copied = [_run(instance).run_id for _ in range(2)][-1]
        instance.dispose()
        plain = dg.DagsterInstance.local_temp(tempdir=str(tmp_path / "plain"))
        built = _run(plain).run_id
        plain.dispose()
    finally:
        os.umask(previous)

    def mode(home: str, run_id: str) -> int:
        return stat.S_IMODE((tmp_path / home / "history" / "runs" / f"{run_id}.db").stat().st_mode)

    assert mode("pooled", copied) == mode("plain", built) == 0o644


def test_what_a_killed_copy_left_is_removed_by_the_next_new_shard(tmp_path: Path) -> None:
    """A process killed between linking its copy into place and removing it leaves a second
    link to a live shard (whose space ``wipe`` would then not free); killed earlier, a partial
    copy with SQLite's files beside it. The next process that makes a shard removes both. A
    running process' copy (this one's too), names that carry no pid, and anything else stay."""
    instance = _pooled(tmp_path)
    first = _run(instance).run_id
    runs = tmp_path / "history" / "runs"
    shard, temp = runs / f"{first}.db", runs / sqlite_events.TEMP_DIR
    dead = gone_pid()
    linked = temp / f".{first}.db.{dead}.1.tmp"
    os.link(shard, linked)
    partial = [temp / f".{'f' * 8}.db.{dead}.2.tmp{suffix}" for suffix in ("", "-wal", "-shm")]
    running = [temp / f".{'e' * 8}.db.{pid}.3.tmp" for pid in (os.getpid(), os.getppid())]
    stray = [temp / ".x.db.\u00b2.1.tmp", temp / ".x.db.99999999999.1.tmp", temp / "notes.txt"]
    for path in (*partial, *running, *stray):
        path.write_bytes(b"partial")
    assert shard.stat().st_nlink == 2

    second = _run(instance).run_id
    instance.dispose()
    assert shard.stat().st_nlink == 1
    assert sorted(p.name for p in temp.iterdir()) == sorted(p.name for p in (*running, *stray))
    assert sorted(p.name for p in runs.glob("*.db")) == sorted(
        ["index.db", f"{first}.db", f"{second}.db"])


def test_stamped_storages_open_the_file_dagster_would_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative base_dir with `..` after a symlink: Dagster resolves it by its text (as
    os.path.abspath does), so the file checked must be that one, not the symlink's sibling."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "home").mkdir(parents=True)
    work = tmp_path / "work"
    (work / "home").mkdir(parents=True)
    (work / "link").symlink_to(elsewhere / "sub", target_is_directory=True)
    (elsewhere / "sub").mkdir()
    for cls in (StampedSqliteRunStorage, StampedSqliteScheduleStorage):
        cls.from_local(str(elsewhere / "home"))  # a stamped file where the symlink leads
    monkeypatch.chdir(work)
    runs = StampedSqliteRunStorage.from_local("link/../home")
    assert runs.get_runs() == []  # its schema was built in work/home, as Dagster builds it
    assert (work / "home" / "runs.db").is_file()
    schedules = StampedSqliteScheduleStorage.from_local("link/../home")
    assert list(schedules.all_instigator_state()) == []
    assert (work / "home" / "schedules.db").is_file()


def test_dagsters_own_class_opens_a_connection_per_statement(tmp_path: Path) -> None:
    """The comparison the first test's bound rests on."""
    instance = dg.DagsterInstance.local_temp(tempdir=str(tmp_path))
    _run(instance)
    with _event_log_connects() as opened:
        _run(instance)
    assert opened[0] > 20, opened[0]


def test_only_the_newest_shards_stay_open(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_events, "MAX_OPEN_SHARDS", 3)
    instance = _pooled(tmp_path)
    storage = instance.event_log_storage
    run_ids = [_run(instance).run_id for _ in range(4)]
    assert len(storage._engines) == 3  # noqa: SLF001
    assert "index" in storage._engines and run_ids[-1] in storage._engines  # noqa: SLF001
    for run_id in run_ids:  # an evicted shard is opened again when read
        assert instance.get_run_by_id(run_id).is_success
        assert any(e.dagster_event_type == dg.DagsterEventType.RUN_SUCCESS
                   for e in instance.all_logs(run_id) if e.is_dagster_event)


WRITER_PROCESS = textwrap.dedent("""
    import sys
    from pathlib import Path
    from osiris_dagster import cli
    from osiris_dagster.core.settings import Settings
    from tests.test_sqlite_events import _run

    instance = cli._instance(Settings(sessions_dir=Path(sys.argv[1])))  # as `run` opens it
    print("ready", flush=True)
    sys.stdin.readline()  # both processes write at once
    for _ in range(3):
        assert _run(instance).success
    instance.dispose()
    print("done", flush=True)
""")
REPO = Path(__file__).resolve().parents[1]


def _processes_reading(path: Path) -> list[str]:
    """Command lines of the processes that name a file under ``path`` (e.g. a `tail -F` of a
    run's compute log left behind)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(cmdline)
    return found


def test_two_instances_on_one_directory_see_each_others_events(tmp_path: Path) -> None:
    """Two processes' CLI runs share a sessions root: a connection held by one must not hide
    or block the other's writes."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}  # the CLI's own instance
    writers = [subprocess.Popen([sys.executable, "-c", WRITER_PROCESS, str(tmp_path)], cwd=REPO,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
               for _ in range(2)]
    try:
        for writer in writers:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        for writer in writers:
            out, _ = writer.communicate(timeout=600)
            assert (writer.returncode, out.strip()) == (0, "done")
    finally:  # a failed test leaves no writer behind
        for writer in writers:
            writer.kill()
            writer.wait()
    home = tmp_path / ".dagster"
    for instance in (_pooled(home), dg.DagsterInstance.local_temp(tempdir=str(home))):
        records = instance.fetch_materializations(dg.AssetKey("doubled"), limit=10).records
        assert len(records) == 6
    assert _processes_reading(tmp_path) == []


def test_wipe_closes_the_connections_to_the_files_it_deletes(tmp_path: Path) -> None:
    instance = _pooled(tmp_path)
    _run(instance)
    instance.wipe()
    result = _run(instance)  # written to new files, not to the unlinked ones
    fresh = dg.DagsterInstance.local_temp(tempdir=str(tmp_path))
    assert fresh.get_latest_materialization_event(dg.AssetKey("doubled")).run_id == \
        result.run_id


def test_the_cli_instance_uses_it_and_keeps_dagsters_layout(tmp_path: Path) -> None:
    settings = Settings(sessions_dir=tmp_path / "sessions")
    instance = cli._instance(settings)  # noqa: SLF001
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    assert isinstance(instance.run_storage, StampedSqliteRunStorage)
    assert isinstance(instance.schedule_storage, StampedSqliteScheduleStorage)
    run_id = _run(instance).run_id
    shard = tmp_path / "sessions" / ".dagster" / "history" / "runs" / f"{run_id}.db"
    assert shard.is_file()


def test_a_dagster_home_with_dagsters_default_storage_is_opened_the_same_way(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$DAGSTER_HOME whose dagster.yaml leaves the storage to Dagster: the CLI opens the same
    files through its own storages (it used Dagster's, ~2x the cost per asset), keeps every
    other setting of the file, and Dagster's own instance of that home (what `dagster dev`
    opens) reads the run back."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "run_queue:\n  max_concurrent_runs: 3\ntelemetry:\n  enabled: false\n",
        encoding="utf-8")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = cli._instance(Settings(sessions_dir=tmp_path / "sessions"))  # noqa: SLF001
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    assert isinstance(instance.run_storage, StampedSqliteRunStorage)
    assert isinstance(instance.schedule_storage, StampedSqliteScheduleStorage)
    assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 3
    assert type(instance.compute_log_manager).__name__ == "LocalComputeLogManager"
    run_id = _run(instance).run_id
    instance.dispose()
    assert (home / "history" / "runs" / f"{run_id}.db").is_file()
    assert not (tmp_path / "sessions" / ".dagster").exists()

    plain = dg.DagsterInstance.get()
    assert type(plain.event_log_storage).__name__ == "SqliteEventLogStorage"
    assert plain.get_run_by_id(run_id).is_success
    assert plain.get_latest_materialization_event(dg.AssetKey("doubled")).run_id == run_id
    plain.dispose()


@pytest.mark.parametrize("storage", [
    "storage:\n  sqlite:\n    base_dir: {other}\n",
    "event_log_storage:\n  module: dagster._core.storage.event_log\n"
    "  class: ConsolidatedSqliteEventLogStorage\n  config:\n    base_dir: {other}\n",
], ids=["storage-sqlite-elsewhere", "event-log-storage-named"])
def test_a_dagster_home_that_configures_its_storage_is_opened_as_dagster_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: str) -> None:
    home, other = tmp_path / "home", tmp_path / "other"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n" + storage.format(
        other=other), encoding="utf-8")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = cli._instance(Settings(sessions_dir=tmp_path / "sessions"))  # noqa: SLF001
    expected = dg.DagsterInstance.get()
    assert type(instance.event_log_storage) is type(expected.event_log_storage)
    assert not isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    run_id = _run(instance).run_id
    assert expected.get_run_by_id(run_id).is_success
    assert not (home / "history" / "runs" / f"{run_id}.db").exists()
    instance.dispose()
    expected.dispose()


def test_a_dagster_home_without_dagster_yaml_warns_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = cli._instance(Settings(sessions_dir=tmp_path / "sessions"))  # noqa: SLF001
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    instance.dispose()
    assert [r.message for r in caplog.records].count(
        f"No dagster instance configuration file (dagster.yaml) found at {tmp_path}. Defaulting "
        f"to loading and storing all metadata with {tmp_path}. If this is the desired "
        f"behavior, create an empty dagster.yaml file in {tmp_path}.") == 1


def test_a_home_file_with_two_revisions_fails_as_dagster_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dagster's own concurrent set-up of a new home can stamp a file twice; Dagster refuses
    such a file, and `run` must not go on writing a home that `dagster dev` cannot open."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    settings = Settings(sessions_dir=tmp_path / "sessions")
    cli._instance(settings).dispose()  # noqa: SLF001
    assert home_is_set_up(tmp_path)
    with closing(sqlite3.connect(tmp_path / "history" / "runs.db")) as con, con:
        (revision,) = con.execute("SELECT version_num FROM alembic_version").fetchone()
        con.execute("INSERT INTO alembic_version VALUES (?)", [revision + "0"])
    assert not home_is_set_up(tmp_path)
    with pytest.raises(Exception, match="more than one head"):
        dg.DagsterInstance.get()
    with pytest.raises(Exception, match="more than one head"):
        cli._instance(settings)  # noqa: SLF001


_OPEN_HOME = textwrap.dedent("""
    from osiris_dagster import cli
    from osiris_dagster.core.settings import Settings
    cli._instance(Settings.from_env()).dispose()
""")


def _waiting_for_a_lock(pid: int) -> bool:
    """Whether process ``pid`` is blocked on a flock (a `->` line of /proc/locks)."""
    return any(" -> " in f" {line}" and f" {pid} " in line
               for line in Path("/proc/locks").read_text().splitlines())


def _wait_until(condition: Any, proc: subprocess.Popen[bytes]) -> None:
    while not condition():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)


@pytest.mark.parametrize("storages", ["dagster-default", "readme"])
def test_a_new_home_is_set_up_by_one_run_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storages: str) -> None:
    """Runs that start together on a new $DAGSTER_HOME create its SQLite files one at a time
    (Dagster's own set-up races); on a home that is set up, they do not wait on each other.
    The same with the storages `osiris-dagster init-home` names."""
    import fcntl

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    if storages == "readme":
        init_home(tmp_path)
    monkeypatch.setenv("OSIRIS_SESSIONS_DIR", str(tmp_path / "sessions"))
    with open(tmp_path / cli.HOME_SET_UP_LOCK, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.Popen([sys.executable, "-c", _OPEN_HOME], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        _wait_until(lambda: _waiting_for_a_lock(proc.pid), proc)
        assert not (tmp_path / "history" / "runs.db").exists()
        fcntl.flock(held, fcntl.LOCK_UN)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        assert home_is_set_up(tmp_path)

        fcntl.flock(held, fcntl.LOCK_EX)  # a set-up home is opened without the lock
        done = subprocess.run([sys.executable, "-c", _OPEN_HOME], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_readme_storages_are_dagsters_files_opened_as_run_opens_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`osiris-dagster init-home`, as the README says for `dagster dev`: Dagster opens the home
    with the storages `run` uses, on the home's default files, and a home written with them
    reads back without them."""
    from dagster._core.instance.config import dagster_instance_config

    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    init_home(tmp_path)
    config, _ = dagster_instance_config(str(tmp_path))
    assert storage_is_default_or(str(tmp_path), config)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = dg.DagsterInstance.get()  # what `dagster dev` opens
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    assert isinstance(instance.run_storage, StampedSqliteRunStorage)
    assert isinstance(instance.schedule_storage, StampedSqliteScheduleStorage)
    assert not instance.telemetry_enabled
    run_id = _run(instance).run_id
    instance.dispose()
    assert home_is_set_up(tmp_path)
    assert (tmp_path / "history" / "runs" / f"{run_id}.db").is_file()

    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    plain = dg.DagsterInstance.get()
    assert type(plain.event_log_storage).__name__ == "SqliteEventLogStorage"
    assert plain.get_run_by_id(run_id).is_success
    assert plain.get_latest_materialization_event(dg.AssetKey("doubled")).run_id == run_id
    plain.dispose()


@pytest.mark.parametrize(("key", "named", "same"), [
    ("event_log_storage", {}, True),
    ("run_storage", {"config": {"base_dir": "{home}/history/../history"}}, True),
    ("schedule_storage", {"config": {"base_dir": "{home}/schedules/"}}, True),
    ("event_log_storage", {"config": {"base_dir": "{home}/elsewhere"}}, False),
    ("event_log_storage", {"config": {"base_dir": {"env": "SOMEWHERE"}}}, False),
    ("event_log_storage", {"config": {"dagster_home": {"env": "DAGSTER_HOME"}}}, True),
    ("run_storage", {"config": {"dagster_home": "{home}"}}, True),
    ("run_storage", {"config": {"dagster_home": "{home}/elsewhere"}}, False),
    ("run_storage", {"config": {"dagster_home": "{home}", "base_dir": "{home}/history"}},
     False),
    ("run_storage", {"config": {"base_dir": "{home}/history", "extra": 1}}, False),
    ("run_storage", {"class": "SqliteRunStorage"}, False),
    ("schedule_storage", {"module": "dagster._core.storage.schedules"}, False),
    ("storage", None, False),
])
def test_a_dagster_yaml_is_opened_as_run_opens_it_only_with_its_storages(
        tmp_path: Path, key: str, named: dict[str, Any] | None, same: bool) -> None:
    """`run` opens a $DAGSTER_HOME through its own storages when each storage key of its
    dagster.yaml is absent or names the same class on the same directory as `run` would."""
    ours = cli_instance_overrides(str(tmp_path))
    config: dict[str, Any] = {k: v for k, v in ours.items()}
    if named is None:
        config[key] = {"sqlite": {"base_dir": str(tmp_path)}}
    else:
        entry = {**ours[key], **named}
        entry["config"] = {k: v.format(home=tmp_path) if isinstance(v, str) else v
                           for k, v in entry["config"].items()}
        config[key] = entry
    assert storage_is_default_or(str(tmp_path), config) is same
    assert storage_is_default_or(str(tmp_path), {})  # Dagster's default files


def test_a_dagster_without_the_private_parts_opens_the_home_as_dagster_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "dagster._core.instance.config", None)  # import fails
    instance = cli._instance(Settings(sessions_dir=tmp_path / "sessions"))  # noqa: SLF001
    assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
    instance.dispose()


def test_a_dagster_home_that_is_not_a_directory_fails_with_dagsters_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "missing"))
    with pytest.raises(dg.DagsterInvariantViolationError, match="is not a directory"):
        cli._instance(Settings(sessions_dir=tmp_path / "sessions"))  # noqa: SLF001


def test_a_dagster_yaml_can_name_it(tmp_path: Path) -> None:
    """What the module's docstring tells users to write in their dagster.yaml."""
    (tmp_path / "dagster.yaml").write_text(
        "event_log_storage:\n"
        "  module: osiris_dagster.dagster_layer.sqlite_events\n"
        "  class: PooledSqliteEventLogStorage\n"
        f"  config:\n    base_dir: {tmp_path / 'history' / 'runs'}\n", encoding="utf-8")
    instance = dg.DagsterInstance.local_temp(tempdir=str(tmp_path))
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    result = _run(instance)
    assert instance.get_latest_materialization_event(dg.AssetKey("doubled")).run_id == \
        result.run_id


def test_a_cli_run_leaves_the_instance_checkpointed(tmp_path: Path) -> None:
    """The kept connections close when the command ends: no write-ahead log is left behind
    (SQLite checkpoints it into the database when the last connection closes)."""
    pipeline = tmp_path / "one.yaml"
    pipeline.write_text('oml_version: "0.1.0"\nname: one\nsteps:\n  - {id: a, component: '
                        "duckdb.processor, mode: transform, config: {query: 'SELECT 1 AS x'}}\n",
                        encoding="utf-8")
    sessions = tmp_path / "sessions"
    assert cli.main(["run", str(pipeline), "--sessions-dir", str(sessions)]) == 0
    home = sessions / ".dagster"
    assert list(home.rglob("*.db"))
    assert not list(home.rglob("*.db-wal"))


def test_without_the_dagster_internals_it_relies_on_it_is_dagsters_own_class(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Dagster release that renames a private attribute slows the CLI down, never breaks it."""
    monkeypatch.setattr(PooledSqliteEventLogStorage, "DAGSTER_INTERNALS",
                        (*PooledSqliteEventLogStorage.DAGSTER_INTERNALS, "_renamed_in_dagster"))
    instance = _pooled(tmp_path)
    assert not instance.event_log_storage._pooled  # noqa: SLF001
    _run(instance)
    with _event_log_connects() as opened:
        assert _run(instance).success
    assert opened[0] > 20, opened[0]  # a connection per statement, as Dagster does it
    assert not instance.event_log_storage._engines  # noqa: SLF001
    instance.dispose()


def test_a_shard_copy_holds_its_lock_until_it_is_linked_into_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    held: list[bool] = []
    real = sqlite_events.publish_new

    def publish_new(tmp: Path, target: Path) -> bool:
        held.append(lock_is_held(tmp))
        return real(tmp, target)

    monkeypatch.setattr(sqlite_events, "publish_new", publish_new)
    instance = _pooled(tmp_path)
    _run(instance)
    _run(instance)
    instance.dispose()
    assert held == [True, True]
    assert list((tmp_path / "history" / "runs" / sqlite_events.TEMP_DIR).iterdir()) == []


def test_a_killed_copy_goes_though_another_process_has_its_pid(tmp_path: Path) -> None:
    """In a container every run is pid 1: a copy killed there carries a live pid. Its lock
    is free, so the next new shard removes it (and a second link to a live shard goes)."""
    instance = _pooled(tmp_path)
    first = _run(instance).run_id
    runs = tmp_path / "history" / "runs"
    shard, temp = runs / f"{first}.db", runs / sqlite_events.TEMP_DIR
    linked = temp / f".{first}.db.{os.getppid()}.1a.tmp"
    os.link(shard, linked)
    Path(f"{linked}.lock").write_text("")
    _run(instance)
    instance.dispose()
    assert shard.stat().st_nlink == 1
    assert list(temp.iterdir()) == []


def test_what_earlier_versions_left_beside_the_shards_is_removed_once(tmp_path: Path) -> None:
    """Before the copies moved to TEMP_DIR they were made beside the shards: a killed copy left
    a second link to a live shard there. The first new shard made by this code removes such
    files of processes that are gone (a live one's stays); later runs do not list the shards."""
    instance = _pooled(tmp_path)
    first = _run(instance).run_id
    instance.dispose()
    runs = tmp_path / "history" / "runs"
    shutil.rmtree(runs / sqlite_events.TEMP_DIR)  # as the earlier code left the directory
    shard, dead = runs / f"{first}.db", gone_pid()
    linked = runs / f".{first}.db.{dead}.1.tmp"
    os.link(shard, linked)
    template = runs / f".{sqlite_events.TEMPLATE_NAME}.{dead}.2.tmp"
    partial = [runs / f".{'f' * 8}.db.{dead}.3.tmp{suffix}" for suffix in ("", "-wal")]
    live = runs / f".{'e' * 8}.db.{os.getppid()}.4.tmp"
    for path in (template, *partial, live):
        path.write_bytes(b"partial")

    instance = _pooled(tmp_path)
    _run(instance)
    assert shard.stat().st_nlink == 1
    assert sorted(p.name for p in runs.glob(".*.tmp*")) == [live.name]
    later = runs / f".{'d' * 8}.db.{dead}.5.tmp"
    later.write_bytes(b"partial")
    _run(instance)
    instance.dispose()
    assert later.exists()  # only the first use lists the shards' directory



_WRITE_AND_HOLD = textwrap.dedent("""
    import sys, time
    import dagster as dg
    from dagster._core.events.log import EventLogEntry
    from osiris_dagster.dagster_layer.sqlite_events import cli_instance_overrides
    from osiris_dagster.dagster_layer.sqlite_files import sqlite_files_held_open
    home, run_id, writer = sys.argv[1:]
    overrides = cli_instance_overrides(home) if writer == "pooled" else None
    instance = dg.DagsterInstance.local_temp(tempdir=home, overrides=overrides)
    with sqlite_files_held_open(instance):  # as `osiris-dagster run` writes
        for text in ("one", "two", "three"):
            instance.event_log_storage.store_event(EventLogEntry(
                error_info=None, level=20, user_message=text, run_id=run_id,
                timestamp=time.time()))
            print("written", flush=True)
            sys.stdin.readline()  # the next one once the parent has seen this one
    instance.dispose()
""")


@pytest.mark.parametrize(("watcher", "writer"), [
    (sqlite_event_log.SqliteEventLogStorage, "pooled"),
    (PooledSqliteEventLogStorage, "pooled"),
    (sqlite_event_log.SqliteEventLogStorage, "dagster-own"),
], ids=["dagster-own-watches-pooled", "pooled-watches-pooled", "dagster-own-watches-dagster-own"])
def test_a_watcher_sees_each_event_while_its_writer_keeps_its_connections(
        tmp_path: Path, watcher: type, writer: str) -> None:
    """The UI's live run log: `dagster dev`'s webserver watches a run's shard file for changes
    while a run worker, or `osiris-dagster run` on the same home, writes it. Connections kept
    open (the pooled storage's own, the files the CLI holds during a run) leave new events in
    SQLite's write-ahead log, not in the file: each event must still reach the watcher while
    its writer is running, one at a time. (A pooled watcher with a writer using Dagster's class
    is the mix of Dagster versions the module's text describes: not supported.)"""
    base = tmp_path / "history" / "runs"
    base.mkdir(parents=True)
    run_id = "0123456789abcdef"
    storage = watcher(str(base))
    seen: list[str] = []
    storage.watch(run_id, None, lambda entry, cursor: seen.append(entry.user_message))
    proc = subprocess.Popen([sys.executable, "-c", _WRITE_AND_HOLD, str(tmp_path), run_id,
                             writer], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for count in (1, 2, 3):
            assert proc.stdout.readline() == "written\n"
            deadline = time.monotonic() + 60  # a failure bound only: the event comes at once
            while len(seen) < count and time.monotonic() < deadline:
                time.sleep(0.05)
            assert seen == ["one", "two", "three"][:count]
            proc.stdin.write("next\n")
            proc.stdin.flush()
    finally:
        proc.communicate("")
        storage.dispose()
