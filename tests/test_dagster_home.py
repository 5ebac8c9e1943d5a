"""`osiris-dagster init-home`: a Dagster home whose dagster.yaml opens Dagster's own SQLite files
through osiris-dagster's storages, made the same way whatever the home's path or its file."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import serialize_value

from osiris_dagster import cli
from osiris_dagster.dagster_layer.sqlite_events import PooledSqliteEventLogStorage
from osiris_dagster.dagster_layer.sqlite_storages import (
    StampedSqliteRunStorage,
    StampedSqliteScheduleStorage,
)


@contextmanager
def _opened(home: Path) -> Iterator[dg.DagsterInstance]:
    """The home's instance as `dagster dev` opens it: DAGSTER_HOME set, its dagster.yaml read."""
    before = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            yield instance
    finally:
        if before is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = before


# Not `[`: Dagster finds dagster.yaml with a glob, where `[...]` is a pattern
@pytest.mark.parametrize("name", ["plain", "a,b #c: d\"e {f} 'g'"],
                         ids=["plain", "yaml-special"])
def test_a_new_home_opens_its_default_files_through_osiris_storages(
        tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / name / "home"
    assert cli.main(["init-home", str(home)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [f"{home}/dagster.yaml: added run_storage, event_log_storage, "
                                "schedule_storage",
                                f"next: export DAGSTER_HOME={shlex.quote(str(home))}"]
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


def _run_example(project: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """`osiris-dagster run` of the bundled example, as a user runs it on that DAGSTER_HOME."""
    return subprocess.run(
        [sys.executable, "-m", "osiris_dagster.cli", "run", "pipelines/director_stats.yaml"],
        cwd=project, env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True,
        text=True, timeout=300)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = Path(__file__).resolve().parents[1]
    work = tmp_path / "project"
    work.mkdir()
    shutil.copytree(root / "pipelines", work / "pipelines")
    shutil.copy(root / "osiris_connections.yaml", work)
    return work


def test_a_home_moved_after_init_home_keeps_its_history(project: Path, tmp_path: Path) -> None:
    """Like Dagster's default storage, the files follow the home: a renamed project folder, a
    copied home or a container mount sees the runs it holds, and nothing is written where it
    was before."""
    home = tmp_path / "home"
    assert cli.main(["init-home", str(home)]) == 0
    assert _run_example(project, home).returncode == 0
    moved = tmp_path / "moved"
    home.rename(moved)
    done = _run_example(project, moved)
    assert done.returncode == 0, done.stderr
    assert not home.exists()
    with _opened(moved) as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        runs = instance.get_runs()
        assert len(runs) == 2 and all(r.is_success for r in runs)
        assert {p.stem for p in (moved / "history" / "runs").glob("*.db")} == \
            {r.run_id for r in runs} | {"index"}


def _block_an_earlier_init_home_wrote(home: Path) -> str:
    """Written out by hand (as 9802222 wrote it), not by the code under test."""
    def entry(key: str, module: str, cls: str, where: str) -> str:
        return (f"{key}:\n  module: osiris_dagster.dagster_layer.{module}\n  class: {cls}\n"
                f"  config:\n    base_dir: {home}/{where}\n")
    return ("# Dagster's own SQLite files under this home, opened through osiris-dagster's "
            "storages\n# (connections kept; written by `osiris-dagster init-home`)\n"
            + entry("run_storage", "sqlite_storages", "StampedSqliteRunStorage", "history/")
            + entry("event_log_storage", "sqlite_events", "PooledSqliteEventLogStorage",
                    "history/runs")
            + entry("schedule_storage", "sqlite_storages", "StampedSqliteScheduleStorage",
                    "schedules"))


def test_a_block_with_the_homes_paths_is_replaced_by_one_that_names_the_home(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    config = home / "dagster.yaml"
    config.write_text("telemetry:\n  enabled: false\n" + _block_an_earlier_init_home_wrote(home),
                      encoding="utf-8")
    assert cli.main(["init-home", str(home)]) == 0
    assert ("wrote run_storage, event_log_storage, schedule_storage again for this home"
            in capsys.readouterr().out)
    text = config.read_text(encoding="utf-8")
    assert "base_dir" not in text and text.count("env: DAGSTER_HOME") == 3
    assert text.count(f"dagster_home_if_unset: {home}") == 3
    assert text.startswith("telemetry:\n  enabled: false\n# Dagster's own")
    assert cli.main(["init-home", str(home)]) == 0
    assert "already uses osiris-dagster's storages" in capsys.readouterr().out
    assert config.read_text(encoding="utf-8") == text


def test_a_moved_home_that_names_its_old_paths_says_so(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A block with absolute paths, then the home moved: `run` warns where its history goes,
    init-home refuses and says why."""
    old, home = tmp_path / "old", tmp_path / "home"
    home.mkdir()
    block = _block_an_earlier_init_home_wrote(old)
    (home / "dagster.yaml").write_text(block, encoding="utf-8")
    done = _run_example(project, home)
    assert done.returncode == 0, done.stderr
    assert f"run_storage keeps this home's history in {old}/history/, not under {home}" \
        in done.stderr
    assert cli.main(["init-home", str(home)]) == 2
    err = capsys.readouterr().err
    assert f"names osiris-dagster's storage on '{old}/history/runs'" in err
    assert err.count("home moved or copied keeps the paths it was set up with") == 1
    assert "remove run_storage, event_log_storage, schedule_storage and run" in err
    assert (home / "dagster.yaml").read_text(encoding="utf-8") == block


@pytest.mark.parametrize("config", ["{}", "{base_dir: /x, dagster_home: /y}"])
def test_a_storage_config_naming_neither_or_both_directories_is_an_error(
        tmp_path: Path, config: str) -> None:
    (tmp_path / "dagster.yaml").write_text(
        "event_log_storage:\n  module: osiris_dagster.dagster_layer.sqlite_events\n"
        f"  class: PooledSqliteEventLogStorage\n  config: {config}\n", encoding="utf-8")
    with pytest.raises(Exception, match="needs base_dir .* or dagster_home") as raised, \
            _opened(tmp_path):
        pass
    assert "event_log_storage (PooledSqliteEventLogStorage)" in str(raised.value)


def test_a_home_named_with_a_tilde_is_the_one_dagster_and_run_use(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dagster expands `~` in DAGSTER_HOME; the storages expand it the same way, or Dagster
    would keep a second history in a directory named `~` under wherever it starts."""
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.chdir(project)
    assert cli.main(["init-home", "~/dh"]) == 0
    done = _run_example(project, Path("~/dh"))
    assert done.returncode == 0, done.stderr
    monkeypatch.setenv("DAGSTER_HOME", "~/dh")
    with dg.DagsterInstance.get() as instance:
        assert instance.event_log_storage._base_dir == \
            str(tmp_path / "user" / "dh" / "history" / "runs")  # noqa: SLF001
        assert len(instance.get_runs()) == 1
    assert not (project / "~").exists()


def test_without_dagster_home_dagster_opens_the_home_init_home_set_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`dagster dev` in the home's directory without DAGSTER_HOME: a temporary home, with the
    dagster.yaml of the directory it starts in."""
    home = tmp_path / "home"
    assert cli.main(["init-home", str(home)]) == 0
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path / "tmp_home"),
                                                          config_dir=str(home))) as instance:
        assert instance.event_log_storage._base_dir == \
            str(home / "history" / "runs")  # noqa: SLF001


def test_a_home_named_only_by_an_unset_variable_is_an_error_that_names_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dagster.yaml").write_text(
        "event_log_storage:\n  module: osiris_dagster.dagster_layer.sqlite_events\n"
        "  class: PooledSqliteEventLogStorage\n  config: {dagster_home: {env: MY_HOME}}\n",
        encoding="utf-8")
    monkeypatch.delenv("MY_HOME", raising=False)
    with pytest.raises(Exception, match=r"under \$MY_HOME, which is not set: export MY_HOME="):
        dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path)))


_CODE_SERVER = """
import sys
import dagster as dg
from dagster._serdes import deserialize_value
from dagster._core.instance.ref import InstanceRef
with dg.DagsterInstance.from_ref(deserialize_value(sys.stdin.read(), InstanceRef)) as instance:
    print(instance.event_log_storage._base_dir, len(instance.get_runs()))
"""


def _open_sent_instance(home: Path, dagster_home: Path | None) -> list[str]:
    """What a code server started with ``dagster_home`` (or none) opens of the instance that
    a process on ``home`` sends it."""
    with _opened(home) as instance:
        ref = serialize_value(instance.get_ref())
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    if dagster_home is not None:
        env["DAGSTER_HOME"] = str(dagster_home)
    done = subprocess.run([sys.executable, "-c", _CODE_SERVER], input=ref, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_copied_home_is_warned_of_until_init_home_writes_it_for_its_path(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A process without DAGSTER_HOME gets the path written at set-up; in a copy that is the
    original's, and nothing may go there unannounced."""
    home, copy = tmp_path / "home", tmp_path / "copy"
    assert cli.main(["init-home", str(home)]) == 0
    assert _run_example(project, home).returncode == 0
    shutil.copytree(home, copy)
    done = _run_example(project, copy)
    assert done.returncode == 0, done.stderr
    assert ("a process without DAGSTER_HOME (a code server started on its own, say) keeps this "
            f"home's history elsewhere (run_storage under {home}, event_log_storage under "
            f"{home}, schedule_storage under {home})") in done.stderr
    assert "`osiris-dagster init-home` writes this home's path there, or says how" in done.stderr
    assert _open_sent_instance(copy, None) == [str(home / "history" / "runs"), "1"]
    capsys.readouterr()
    assert cli.main(["init-home", str(copy)]) == 0
    assert "wrote run_storage, event_log_storage, schedule_storage again" in \
        capsys.readouterr().out
    text = (copy / "dagster.yaml").read_text(encoding="utf-8")
    assert str(home) + "\n" not in text and text.count(f"dagster_home_if_unset: {copy}") == 3
    assert _open_sent_instance(copy, None) == [str(copy / "history" / "runs"), "2"]
    done = _run_example(project, copy)
    assert done.returncode == 0 and "warning" not in done.stderr, done.stderr


@pytest.mark.parametrize("code_server_home", ["unset", "another home"])
def test_a_process_sent_the_instance_opens_the_same_history(
        project: Path, tmp_path: Path, code_server_home: str) -> None:
    """Dagster sends a code server started on its own (a `grpc_server` workspace entry) the
    instance as its dagster.yaml config; that process may have no DAGSTER_HOME."""
    home, other = tmp_path / "home", tmp_path / "other"
    for each in (home, other):
        assert cli.main(["init-home", str(each)]) == 0
    assert _run_example(project, home).returncode == 0
    if code_server_home == "unset":
        assert _open_sent_instance(home, None) == [str(home / "history" / "runs"), "1"]
    else:  # the README says so: the files follow $DAGSTER_HOME
        assert _open_sent_instance(home, other) == [str(other / "history" / "runs"), "0"]


@pytest.mark.parametrize(("config", "message"), [
    ("{dagster_home: .}", "the home must be an absolute path"),
    ("{dagster_home: {env: DAGSTER_HOME}, dagster_home_if_unset: rel/x}",
     "dagster_home_if_unset must be an absolute path"),
    ("{dagster_home: {env: OTHER_UNSET_VAR}}", "$OTHER_UNSET_VAR, which is not set"),
])
def test_a_config_of_ours_that_cannot_be_opened_says_why_wherever_it_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: str, message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("OTHER_UNSET_VAR", raising=False)
    text = ("run_storage:\n  module: osiris_dagster.dagster_layer.sqlite_storages\n"
            f"  class: StampedSqliteRunStorage\n  config: {config}\n")
    (tmp_path / "dagster.yaml").write_text(text, encoding="utf-8")
    for cwd in (tmp_path, tmp_path.parent):
        monkeypatch.chdir(cwd)
        assert cli.main(["init-home", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Fix or remove run_storage" in err
        assert "moved" not in err
    assert (tmp_path / "dagster.yaml").read_text(encoding="utf-8") == text


def test_a_home_named_by_its_own_path_is_kept_with_a_note(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dagster.yaml").write_text(
        "run_storage:\n  module: osiris_dagster.dagster_layer.sqlite_storages\n"
        f"  class: StampedSqliteRunStorage\n  config: {{dagster_home: '{tmp_path}'}}\n",
        encoding="utf-8")
    assert cli.main(["init-home", str(tmp_path)]) == 0
    assert "note: run_storage name this home by its path" in capsys.readouterr().out


def test_the_home_already_set_gets_no_export_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DAGSTER_HOME", f"{tmp_path}/./")
    assert cli.main(["init-home"]) == 0
    assert "next:" not in capsys.readouterr().out


@pytest.mark.parametrize("edit", ["header removed", "through a link"])
def test_keys_with_this_homes_paths_are_kept_with_a_note(
        tmp_path: Path, edit: str, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    written_as = home
    if edit == "through a link":
        written_as = tmp_path / "link"
        written_as.symlink_to(home)
    block = _block_an_earlier_init_home_wrote(written_as)
    if edit == "header removed":
        block = "".join(line for line in block.splitlines(keepends=True)
                        if not line.startswith("#"))
    (home / "dagster.yaml").write_text(block, encoding="utf-8")
    assert cli.main(["init-home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "already uses osiris-dagster's storages" in out
    assert ("note: run_storage, event_log_storage, schedule_storage name this home by its "
            "path and will not follow it if it moves") in out
    assert (home / "dagster.yaml").read_text(encoding="utf-8") == block


def test_a_dagster_yaml_shared_by_homes_is_never_pointed_at_one_of_them(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A home whose dagster.yaml links to another home's: init-home must not move the other
    home's history for processes without DAGSTER_HOME, and run says to set DAGSTER_HOME."""
    first, second = tmp_path / "first", tmp_path / "second"
    assert cli.main(["init-home", str(first)]) == 0
    second.mkdir()
    (second / "dagster.yaml").symlink_to(first / "dagster.yaml")
    text = (first / "dagster.yaml").read_text(encoding="utf-8")
    assert cli.main(["init-home", str(second)]) == 0
    out = capsys.readouterr().out
    assert "already uses" in out and "is a link to" in out and "DAGSTER_HOME set" in out
    assert (first / "dagster.yaml").read_text(encoding="utf-8") == text
    done = _run_example(project, second)
    assert done.returncode == 0, done.stderr
    assert f"this dagster.yaml is a link to {first / 'dagster.yaml'}" in done.stderr


def test_a_shared_dagster_yaml_gets_no_path_for_processes_without_dagster_home(
        tmp_path: Path) -> None:
    shared = tmp_path / "shared.yaml"
    shared.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(shared)
    assert cli.main(["init-home", str(home)]) == 0
    written = shared.read_text(encoding="utf-8")
    assert written.count("env: DAGSTER_HOME") == 3 and "dagster_home_if_unset" not in written


def test_each_key_is_named_with_the_directory_it_falls_back_to(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    assert cli.main(["init-home", str(home)]) == 0
    config = home / "dagster.yaml"
    text = config.read_text(encoding="utf-8")
    at = text.index("event_log_storage:")
    at = text.index(f"dagster_home_if_unset: {home}", at)
    config.write_text(text[:at] + f"dagster_home_if_unset: {elsewhere}" +
                      text[at + len(f"dagster_home_if_unset: {home}"):], encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["init-home", str(home)]) == 0
    out = capsys.readouterr().out
    assert f"(event_log_storage under {elsewhere})" in out


def test_a_link_to_a_file_inside_the_home_is_not_shared(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "dagster.yaml").write_text("", encoding="utf-8")
    (tmp_path / "dagster.yaml").symlink_to(Path("conf") / "dagster.yaml")
    assert cli.main(["init-home", str(tmp_path)]) == 0
    written = (tmp_path / "conf" / "dagster.yaml").read_text(encoding="utf-8")
    assert written.count(f"dagster_home_if_unset: {tmp_path}") == 3


def test_keys_without_a_path_for_processes_without_dagster_home_are_noted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Written while the file was shared, then made the home's own."""
    block = "".join(f"{key}:\n  module: osiris_dagster.dagster_layer.{module}\n  class: {cls}\n"
                    "  config:\n    dagster_home:\n      env: DAGSTER_HOME\n"
                    for key, module, cls in (
                        ("run_storage", "sqlite_storages", "StampedSqliteRunStorage"),
                        ("event_log_storage", "sqlite_events", "PooledSqliteEventLogStorage"),
                        ("schedule_storage", "sqlite_storages", "StampedSqliteScheduleStorage")))
    (tmp_path / "dagster.yaml").write_text(block, encoding="utf-8")
    assert cli.main(["init-home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert ("note: run_storage, event_log_storage, schedule_storage name no "
            "dagster_home_if_unset: a process without DAGSTER_HOME") in out


def test_a_shared_file_with_an_earlier_block_says_it_names_the_home_only_by_the_variable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home, shared = tmp_path / "home", tmp_path / "shared.yaml"
    home.mkdir()
    shared.write_text(_block_an_earlier_init_home_wrote(home), encoding="utf-8")
    (home / "dagster.yaml").symlink_to(shared)
    assert cli.main(["init-home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "again (they name the home as $DAGSTER_HOME only)" in out
    assert "every process of this home needs DAGSTER_HOME set" in out
    assert "dagster_home_if_unset" not in shared.read_text(encoding="utf-8")
