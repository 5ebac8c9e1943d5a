"""`osiris-dagster sessions list|show|clean` on the ducklake store: a real PostgreSQL catalog
(one metadata schema per test, dropped afterwards) and data files in a temporary directory.

Run in the lake virtualenv (duckdb 1.5.5 with DuckDB's extension wheels); without PostgreSQL or
the extensions these tests fail, they never skip."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from osiris_dagster.runtime.stores.ducklake_records import STATE_SCHEMA

from ..test_cli_run import CONNECTIONS, EXAMPLE, cli

PG_DSN = os.environ.get("OSIRIS_TEST_PG_DSN", "dbname=test host=127.0.0.1 user=postgres")


class Lake:
    """One test's lake: its settings as environment variables and views of what it holds."""

    def __init__(self, root: Path) -> None:
        self.schema = f"osiris_sessions_test_{uuid.uuid4().hex[:12]}"
        self.data = root / "lake_data"
        self.sessions = root / "sessions"
        self.env = {"OSIRIS_SESSION_STORE": "ducklake",
                    "OSIRIS_DUCKLAKE_CATALOG": f"postgres:{PG_DSN}",
                    "OSIRIS_DUCKLAKE_DATA_PATH": str(self.data),
                    "OSIRIS_DUCKLAKE_METADATA_SCHEMA": self.schema,
                    "OSIRIS_HEARTBEAT_SECONDS": "0"}

    def pg(self, sql: str) -> list[tuple[object, ...]]:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as con:
            cur = con.execute(sql)
            return list(cur.fetchall()) if cur.description else []

    def live_schemas(self) -> set[str]:
        """Schemas of the lake's current snapshot, read from the catalog itself."""
        rows = self.pg(f'SELECT schema_name FROM "{self.schema}".ducklake_schema '
                       "WHERE end_snapshot IS NULL")
        return {str(r[0]) for r in rows} - {"main", STATE_SCHEMA}  # ours: not a session

    def parquet(self, session_id: str | None = None) -> list[Path]:
        root = self.data / session_id if session_id else self.data
        return sorted(root.rglob("*.parquet")) if root.exists() else []

    def sessions_cli(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return cli("sessions", "--sessions-dir", str(self.sessions), *args, cwd=cwd,
                   env=self.env)

    def run_example(self, cwd: Path) -> str:
        out = cli("run", str(EXAMPLE), "--connections", str(CONNECTIONS), "--sessions-dir",
                  str(self.sessions), cwd=cwd, env=self.env)
        assert out.returncode == 0, out.stdout + out.stderr
        return next(line.split()[1] for line in out.stdout.splitlines()
                    if line.startswith("session "))


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[Lake]:
    lake = Lake(tmp_path)
    lake.pg("SELECT 1")  # PostgreSQL must be up: fail here, loudly, when it is not
    try:
        yield lake
    finally:
        lake.pg(f'DROP SCHEMA IF EXISTS "{lake.schema}" CASCADE')


def _write_unfinished_session(lake: Lake, session_id: str, cwd: Path) -> None:
    """A run killed after its first step: run_start and a step table, no run_end (written by
    another process, as a worker would)."""
    script = (
        "from osiris_dagster.core.settings import Settings\n"
        "from osiris_dagster.runtime.session import Session\n"
        f"s = Session(Settings.from_env({str(lake.sessions)!r}), {session_id!r})\n"
        "s.log_event('run_start', pipeline='crashing')\n"
        "con = s.open_workspace_connection()\n"
        "con.execute(f'CREATE TABLE {s.table_prefix}.first_step AS "
        "SELECT range AS i FROM range(50000)')\n"
        "con.close()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_")}
    env.update(lake.env)
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_list_show_clean_on_ducklake_free_the_data_files(lake: Lake, tmp_path: Path) -> None:
    oldest = lake.run_example(tmp_path)
    newest = lake.run_example(tmp_path)
    assert lake.live_schemas() == {oldest, newest}
    assert lake.parquet(oldest) and lake.parquet(newest)

    listed = lake.sessions_cli("list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = [ln.split() for ln in listed.stdout.splitlines() if ln.strip()]
    assert [ln[0] for ln in lines] == [newest, oldest]
    for ln in lines:
        assert ln[3] == "success" and ln[-1] == "director-stats"
        assert ln[5] in ("KB", "MB") and float(ln[4]) > 0, ln  # data files + local directory

    shown = lake.sessions_cli("show", newest, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"location ducklake:{newest}" in shown.stdout
    assert shown.stdout.count("step_complete") == 4 and "run_end" in shown.stdout
    assert "table extract_movies: 60 rows" in shown.stdout
    assert "table extract_directors: 12 rows" in shown.stdout
    assert "table compute_director_stats: 12 rows" in shown.stdout
    assert "__osiris" not in shown.stdout  # records and claim markers are ours, not steps'
    assert "file  manifest.yaml" in shown.stdout

    missing = lake.sessions_cli("show", "no-such-session", cwd=tmp_path)
    assert missing.returncode == 2 and "no session no-such-session" in missing.stderr
    assert "no-such-session" not in lake.live_schemas()  # looking created nothing

    dry = lake.sessions_cli("clean", "--older-than", "0s", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert f"would delete {oldest}" in dry.stdout
    assert f"kept    {newest} (latest materialisation" in dry.stdout
    assert lake.live_schemas() == {oldest, newest} and lake.parquet(oldest)

    # a writer killed mid-step leaves a file the catalog never heard of
    orphan = lake.parquet(oldest)[0].parent / "ducklake-killed-writer.parquet"
    orphan.write_bytes(lake.parquet(oldest)[0].read_bytes())
    oldest_files = lake.parquet(oldest)
    real = lake.sessions_cli("clean", "--older-than", "0s", cwd=tmp_path)
    assert real.returncode == 0, real.stderr
    assert f"deleted {oldest}" in real.stdout and "expired" in real.stdout
    assert lake.live_schemas() == {newest}
    assert not (lake.sessions / oldest).exists()
    assert lake.parquet(newest) and (lake.sessions / newest).is_dir()
    listed = lake.sessions_cli("list", cwd=tmp_path)
    assert oldest not in listed.stdout and newest in listed.stdout
    # the runs committed seconds ago: their snapshots (which still reference the dropped
    # tables) are younger than the default 10m margin, so the files wait for a later clean
    assert lake.parquet(oldest) == oldest_files
    assert "stay while snapshots younger than 600s" in real.stdout, real.stdout

    forced = lake.sessions_cli("clean", "--keep", "0", "--force", "--keep-snapshots", "0s",
                               cwd=tmp_path)
    assert f"deleted {newest}" in forced.stdout, forced.stdout + forced.stderr
    assert "killed writers" in forced.stdout and "stay while" not in forced.stdout
    assert lake.live_schemas() == set() and lake.parquet() == []
    assert not (lake.data / oldest).exists() and not (lake.data / newest).exists()
    assert not (lake.sessions / newest).exists()
    empty = lake.sessions_cli("list", cwd=tmp_path)
    assert empty.returncode == 0 and "no sessions in the DuckLake catalog" in empty.stdout
    # the catalog no longer lists a file of either session
    assert lake.pg(f'SELECT count(*) FROM "{lake.schema}".ducklake_data_file') == [(0,)]

def test_an_unfinished_lake_session_stays_unless_forced(lake: Lake, tmp_path: Path) -> None:
    _write_unfinished_session(lake, "crashed-run", tmp_path)
    assert lake.parquet("crashed-run")
    listed = lake.sessions_cli("list", cwd=tmp_path)
    assert listed.stdout.split()[0] == "crashed-run" and "unfinished" in listed.stdout

    kept = lake.sessions_cli("clean", "--keep", "0", cwd=tmp_path)
    assert "kept    crashed-run (unfinished" in kept.stdout, kept.stdout + kept.stderr
    assert lake.live_schemas() == {"crashed-run"}

    shown = lake.sessions_cli("show", "crashed-run", cwd=tmp_path)
    assert "run_start" in shown.stdout and "table first_step: 50000 rows" in shown.stdout

    forced = lake.sessions_cli("clean", "--keep", "0", "--force", "--keep-snapshots", "0s",
                               cwd=tmp_path)
    assert "deleted crashed-run" in forced.stdout, forced.stdout + forced.stderr
    assert lake.live_schemas() == set() and lake.parquet() == []


def test_object_storage_orphans_go_only_when_all_are_the_dropped_sessions(
        lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On S3 a session has no directory to remove: DuckLake's orphan sweep deletes its killed
    writers' files, but only when no other session's uncommitted file would go with them."""
    from osiris_dagster.core.settings import Settings
    from osiris_dagster.runtime.stores.ducklake import DuckLakeStore
    from osiris_dagster.runtime.stores.ducklake_sessions import LakeSessions

    for name in ("gone", "busy"):
        _write_unfinished_session(lake, name, tmp_path)
    for key, value in lake.env.items():
        monkeypatch.setenv(key, value)
    store = DuckLakeStore(Settings.from_env(lake.sessions))
    as_if_remote = LakeSessions(store._records_connection, "osiris_lake", store.data_path,
                                lake.sessions, remote=True)
    def orphan(session_id: str) -> Path:
        path = lake.parquet(session_id)[0].parent / f"ducklake-orphan-{uuid.uuid4().hex}.parquet"
        path.write_bytes(lake.parquet(session_id)[0].read_bytes())
        return path

    # sizes come from DuckLake's catalog tables; DuckLake's own per-table listing agrees
    sizes = {s.session_id: s.size_bytes for s in as_if_remote.list_sessions()}
    con = store._records_connection()
    try:
        listed = as_if_remote._data_files(con, {sid: ["first_step"] for sid in sizes})
    finally:
        con.close()
    assert sum(listed.values()) > 0
    assert {sid: sum(v for p, v in listed.items() if f"/{sid}/" in p) for sid in sizes} == {
        sid: size - _directory_size(lake.sessions / sid) for sid, size in sizes.items()}

    gone_orphan, busy_orphan = orphan("gone"), orphan("busy")
    (gone,) = [s for s in as_if_remote.list_sessions() if s.session_id == "gone"]
    report = as_if_remote.drop_sessions([gone], keep_snapshots=0)
    assert lake.live_schemas() == {"busy"}
    assert gone_orphan.exists() and busy_orphan.exists()  # the busy session's file: a writer?
    assert any("left 1 file(s)" in note for note in report.notes), report.notes

    busy_orphan.unlink()
    (busy,) = as_if_remote.list_sessions()
    report = as_if_remote.drop_sessions([busy], keep_snapshots=0)
    assert not gone_orphan.exists(), report.notes
    assert str(gone_orphan) in report.files_deleted
    assert lake.live_schemas() == set()


def _directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0
