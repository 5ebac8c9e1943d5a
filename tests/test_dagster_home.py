"""`osiris-dagster init-home`: a Dagster home whose dagster.yaml opens Dagster's own SQLite files
through osiris-dagster's storages, made the same way whatever the home's path or its file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from osiris_dagster import cli
from osiris_dagster.dagster_layer.sqlite_events import PooledSqliteEventLogStorage
from osiris_dagster.dagster_layer.sqlite_storages import (
    StampedSqliteRunStorage,
    StampedSqliteScheduleStorage,
)


def _opened(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


# Not `[`: Dagster finds dagster.yaml with a glob, where `[...]` is a pattern
@pytest.mark.parametrize("name", ["plain", "a,b #c: d\"e {f} 'g'"],
                         ids=["plain", "yaml-special"])
def test_a_new_home_opens_its_default_files_through_osiris_storages(
        tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / name / "home"
    assert cli.main(["init-home", str(home)]) == 0
    assert "added run_storage, event_log_storage, schedule_storage" in capsys.readouterr().out
    with _opened(home) as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        assert isinstance(instance.run_storage, StampedSqliteRunStorage)
        assert isinstance(instance.schedule_storage, StampedSqliteScheduleStorage)
        assert instance.event_log_storage._base_dir == str(home / "history" / "runs")  # noqa: SLF001
        instance.get_runs(limit=1)
    assert (home / "history" / "runs.db").is_file()
    assert (home / "schedules" / "schedules.db").is_file()


def test_the_rest_of_an_existing_file_is_kept_and_a_second_run_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "dagster.yaml"
    config.write_text("# mine\ntelemetry:\n  enabled: false", encoding="utf-8")  # no last \n
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert cli.main(["init-home"]) == 0
    written = config.read_text(encoding="utf-8")
    assert written.startswith("# mine\ntelemetry:\n  enabled: false\n# Dagster's own")
    with _opened(tmp_path) as instance:
        assert not instance.telemetry_enabled
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    capsys.readouterr()
    assert cli.main(["init-home"]) == 0
    assert "already uses osiris-dagster's storages" in capsys.readouterr().out
    assert config.read_text(encoding="utf-8") == written


def test_keys_already_naming_osiris_storages_are_completed(tmp_path: Path) -> None:
    ours = ("event_log_storage:\n  module: osiris_dagster.dagster_layer.sqlite_events\n"
            "  class: PooledSqliteEventLogStorage\n"
            f"  config: {{base_dir: '{tmp_path}/history/runs/'}}\n")
    (tmp_path / "dagster.yaml").write_text(ours, encoding="utf-8")
    assert cli.main(["init-home", str(tmp_path)]) == 0
    text = (tmp_path / "dagster.yaml").read_text(encoding="utf-8")
    assert text.startswith(ours) and text.count("event_log_storage:") == 1
    with _opened(tmp_path) as instance:
        assert isinstance(instance.run_storage, StampedSqliteRunStorage)


@pytest.mark.parametrize(("text", "message"), [
    ("storage:\n  postgres:\n    postgres_url: postgresql://x/y\n",
     "storage names all of the storage at once"),
    ("event_log_storage:\n  module: dagster._core.storage.event_log\n"
     "  class: ConsolidatedSqliteEventLogStorage\n  config: {base_dir: /elsewhere}\n",
     "event_log_storage names another storage"),
    ("run_storage:\n  module: osiris_dagster.dagster_layer.sqlite_storages\n"
     "  class: StampedSqliteRunStorage\n  config: {base_dir: /copied/home/history}\n",
     "run_storage names osiris-dagster's storage on '/copied/home/history', not on"),
    ("telemetry: [unclosed\n", "not valid YAML"),
    ("- a list\n", "expected a mapping of settings"),
    ("{telemetry: {enabled: false}}\n", "add these yourself:\n# Dagster's own"),
    ("telemetry:\n  enabled: false\n...\n", "would not read back"),
], ids=["postgres", "another-event-log", "ours-elsewhere", "broken-yaml", "not-a-mapping",
        "flow-style", "end-marker"])
def test_a_file_that_cannot_take_them_is_left_as_it_is(
        tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "dagster.yaml"
    config.write_text(text, encoding="utf-8")
    assert cli.main(["init-home", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(config) in err
    assert config.read_text(encoding="utf-8") == text


def test_without_a_home_it_says_what_to_give(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert cli.main(["init-home"]) == 2
    assert "pass its directory or set DAGSTER_HOME" in capsys.readouterr().err


def test_the_file_keeps_its_mode_owner_line_endings_and_link(tmp_path: Path) -> None:
    """It may hold credentials (compute logs on S3, say): the rewrite must not make it readable
    by others, nor replace a link to a shared file with a copy."""
    shared = tmp_path / "shared.yaml"
    shared.write_bytes(b"telemetry:\r\n  enabled: false\r\n")
    shared.chmod(0o600)
    as_root = os.geteuid() == 0
    if as_root:  # only root may give a file away, and keep it given
        os.chown(shared, 65534, 65534)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(shared)
    assert cli.main(["init-home", str(home)]) == 0
    assert (home / "dagster.yaml").is_symlink()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o600
    if as_root:
        assert (shared.stat().st_uid, shared.stat().st_gid) == (65534, 65534)
    data = shared.read_bytes()
    assert data.startswith(b"telemetry:\r\n  enabled: false\r\n# Dagster's own")
    assert b"\n" not in data.replace(b"\r\n", b"")
    with _opened(home) as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)


def test_a_home_that_cannot_be_made_is_an_error_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    assert cli.main(["init-home", str(tmp_path / "a-file")]) == 2
    assert "a-file/dagster.yaml: cannot read or make it" in capsys.readouterr().err


def test_a_relative_dagster_home_gets_the_absolute_export_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Dagster refuses a relative DAGSTER_HOME: the command says what to set instead."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", "relative")
    assert cli.main(["init-home"]) == 0
    assert f"next: export DAGSTER_HOME={tmp_path / 'relative'}" in capsys.readouterr().out
