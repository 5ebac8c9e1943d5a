"""A CSV sensor never archives a file whose run failed, never stops at one bad file, runs every
file that never ran (also one that appears with old times), keeps every archived copy, and a run
never reads a version of its file other than the one it was started for."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from osiris_dagster import build_definitions
from osiris_dagster.dagster_layer.automation import archive_file

from .helpers import events, failure_description, write
from .test_automation import _run, csv_file, make_defs, queue, tick

CHECKED = """\
oml_version: "0.1.0"
name: checked
params:
  input_path: {default: none.csv}
x-dagster:
  sensor: {watch: "incoming/*.csv", param: input_path, settle_seconds: 0, archive_to: processed}
  steps:
    summary:
      checks: {expression: "n < 3", blocking: true}
steps:
  - id: extract
    component: filesystem.csv_extractor
    mode: read
    config: {path: "${params.input_path}"}
  - id: summary
    component: duckdb.processor
    mode: transform
    config: {query: "SELECT count(*) AS n FROM input_df"}
"""


def _checked_run(workdir: Path, tmp_path: Path, instance: dg.DagsterInstance, rows: int
                 ) -> tuple[Path, dg.ExecuteInProcessResult]:
    defs = build_definitions([write(workdir / "checked.yaml", CHECKED)],
                             sessions_dir=str(tmp_path / "s"))
    src = csv_file(workdir / "incoming" / f"{rows} rows.csv", rows)
    (request,) = defs.get_sensor_def("checked_sensor").evaluate_tick(
        dg.build_sensor_context(instance=instance, definitions=defs)).run_requests or []
    tags = {**request.tags, "dagster/run_key": request.run_key,
            "dagster/sensor_name": "checked_sensor"}
    result = defs.resolve_job_def("checked").execute_in_process(
        instance=instance, run_config=request.run_config, tags=tags, raise_on_error=False)
    return src, result


def _run_end(tmp_path: Path, result: dg.ExecuteInProcessResult) -> list[dict[str, Any]]:
    return [e for e in events(tmp_path / "s" / result.run_id) if e["event"] == "run_end"]


def test_a_blocking_check_failing_on_the_last_step_leaves_the_file(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    src, result = _checked_run(workdir, tmp_path, instance, rows=5)
    assert not result.success
    assert src.exists() and not (workdir / "processed").exists()
    evs = events(tmp_path / "s" / result.run_id)
    assert not any(e["event"] == "file_archived" for e in evs)
    (end,) = _run_end(tmp_path, result)
    assert end["status"] == "failure" and end["steps_failed"] == ["summary"]
    # a file that passes the check is archived as before
    src, result = _checked_run(workdir, tmp_path, instance, rows=2)
    assert result.success, failure_description(result)
    assert not src.exists() and (workdir / "processed" / src.name).is_file()
    assert [e["status"] for e in _run_end(tmp_path, result)] == ["success"]


def test_an_io_manager_failing_on_the_last_step_leaves_the_file(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from osiris_dagster.dagster_layer.io_manager import OsirisIOManager

    store = OsirisIOManager.handle_output

    def failing(self: OsirisIOManager, context: dg.OutputContext, obj: Any) -> None:
        if context.step_key == "checked__summary":
            raise OSError("the session's store went away")
        store(self, context, obj)

    monkeypatch.setattr(OsirisIOManager, "handle_output", failing)
    src, result = _checked_run(workdir, tmp_path, instance, rows=2)
    assert not result.success
    assert src.exists() and not (workdir / "processed").exists()
    assert [e["status"] for e in _run_end(tmp_path, result)] == ["failure"]  # was none at all


# -- a file this process cannot read -----------------------------------------------------------
def _as_nobody(action: Callable[[], Any]) -> Any:
    """``action()`` as user and group 65534 in a forked child (root reads any file), its JSON
    result sent back through a pipe; as another user, in this process."""
    if os.geteuid() != 0:
        return action()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with os.fdopen(write_end, "w") as fh:
                json.dump(action(), fh)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as fh:
        data = fh.read()
    assert os.waitpid(pid, 0)[1] == 0, "the child failed"
    return json.loads(data)


def test_an_unreadable_file_is_skipped_and_newer_files_still_run(tmp_path: Path) -> None:
    # a directory user 65534 may enter (pytest's tmp_path is root's alone)
    shared = Path(tempfile.mkdtemp(prefix="osiris-sensor-"))
    try:
        shared.chmod(0o755)
        defs = make_defs(shared, tmp_path / "s")
        unreadable = csv_file(shared / "incoming" / "from another user.csv", 2)
        unreadable.chmod(0o000 if os.geteuid() else 0o600)  # root's, 0600: not nobody's
        good = csv_file(shared / "incoming" / "good.csv", 3)
        _after(good, unreadable)  # the unreadable one comes first in the scan

        def evaluate(cursor: str | None) -> Callable[[], dict[str, Any]]:
            def action() -> dict[str, Any]:
                os.chdir(shared)
                with dg.DagsterInstance.ephemeral() as instance:
                    requests, new_cursor, skip = tick(defs, instance, cursor)
                return {"files": [r.tags["osiris/file"] for r in requests],
                        "cursor": new_cursor, "skip": skip}
            return action

        first = _as_nobody(evaluate(None))
        assert first["files"] == [str(good)]
        second = _as_nobody(evaluate(first["cursor"]))
        assert second["files"] == []
        assert "from another user.csv (cannot be read: Permission denied)" in second["skip"]
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _after(path: Path, *earlier: Path) -> None:
    """Touch ``path`` until its version time (ctime) is later than every ``earlier`` file's:
    the kernel's clock for ctime is coarse, so files made one after another may share one."""
    mark = max(p.stat().st_ctime_ns for p in earlier)
    while path.stat().st_ctime_ns <= mark:
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same times, a new ctime


# -- files that appear behind the cursor's mark --------------------------------------------------
def test_files_with_old_times_that_never_ran_run_once(workdir: Path, tmp_path: Path,
                                                      instance: dg.DagsterInstance) -> None:
    defs = make_defs(workdir, tmp_path / "s", watch="incoming/**/*.csv")
    prepared = csv_file(workdir / "staging" / "batch" / "b1.csv", 2)  # a batch made elsewhere
    older = csv_file(workdir / "exports" / "old.csv", 3)  # an older file, linked in later
    inbox = workdir / "incoming"
    broken = write(inbox / "broken.csv", "v\n1\n2,3,4\n")  # its run fails: it stays
    first = csv_file(inbox / "first.csv", 1)
    for f in (broken, first):
        _after(f, prepared, older)
    requests, cursor, _ = tick(defs, instance, None)
    assert sorted(Path(r.tags["osiris/file"]).name for r in requests) == \
        ["broken.csv", "first.csv"]
    assert [_run(defs, instance, r).success for r in requests] == \
        [Path(r.tags["osiris/file"]).name == "first.csv" for r in requests]

    os.rename(prepared.parent, inbox / "batch")  # the files keep their (older) times
    os.symlink(older, inbox / "linked.csv")  # stat sees the target's times
    requests, cursor, _ = tick(defs, instance, cursor)
    assert sorted(r.tags["osiris/file"] for r in requests) == \
        [str(inbox / "batch" / "b1.csv"), str(inbox / "linked.csv")]  # not broken.csv: it ran
    for r in requests:
        result = _run(defs, instance, r)
        assert result.success, failure_description(result)
    assert (workdir / "out" / "b1.csv").read_text() == "n,total\n2,1\n"
    assert (workdir / "out" / "linked.csv").read_text() == "n,total\n3,3\n"

    requests, cursor, skip = tick(defs, instance, cursor)
    assert requests == [] and "broken.csv" in skip and "already" in skip
    assert len(cursor or "") < 1000


def test_the_cursor_stays_small_and_passed_files_are_not_looked_up_again(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch) -> None:
    defs = make_defs(workdir, tmp_path / "s")
    for i in range(20):
        csv_file(workdir / "incoming" / f"file {i:02}.csv", 1)
    requests, cursor, _ = tick(defs, instance, None)
    assert len(requests) == 20 and len(cursor or "") < 600  # not a key per file
    queue(defs, instance, requests)
    looked_up: list[int] = []
    get_runs = dg.DagsterInstance.get_runs

    def counting(self: dg.DagsterInstance, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(1)
        return get_runs(self, *args, **kwargs)

    monkeypatch.setattr(dg.DagsterInstance, "get_runs", counting)
    assert tick(defs, instance, cursor)[0] == [] and looked_up == []
    (workdir / "incoming" / "file 07.csv").unlink()  # one went: the others are looked up
    requests, cursor, skip = tick(defs, instance, cursor)
    assert requests == [] and "19 file(s) already have a run" in (skip or "")
    assert looked_up and tick(defs, instance, cursor)[0] == []


# -- two runs archiving files of one name at once ------------------------------------------------
def test_archiving_two_files_of_one_name_at_once_keeps_both(tmp_path: Path) -> None:
    for i in range(100):  # the old exists()-then-move lost one in about one try of five
        d = tmp_path / f"try{i}"
        sources = [d / side / "x.csv" for side in ("a", "b")]
        for side, src in zip("AB", sources, strict=True):
            write(src, side)
        dests = _archive_at_once(sources, d / "processed")
        kept = sorted(p.read_text() for p in (d / "processed").iterdir())
        assert kept == ["A", "B"], f"try {i}: {kept}"
        assert len(set(dests)) == 2 and not any(s.exists() for s in sources)


def _archive_at_once(sources: list[Path], archive_to: Path) -> list[Path]:
    """archive_file of each source, in threads that start it at the same moment."""
    barrier = threading.Barrier(len(sources))
    dests: list[Path] = []

    def archive(src: Path) -> None:
        barrier.wait()
        dests.append(archive_file(str(src), str(archive_to), str(uuid.uuid4())))

    threads = [threading.Thread(target=archive, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return dests


def test_a_second_run_for_an_archived_file_says_the_file_is_gone(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """A run for a version already delivered and archived (a re-execution from the UI) said
    the file had changed and the sensor would start a run for it; none follows."""
    defs = make_defs(workdir, tmp_path / "s")
    csv_file(workdir / "incoming" / "daily.csv", 3)
    (request,), _, _ = tick(defs, instance, None)
    assert _run(defs, instance, request).success
    again = _run(defs, instance, request)
    assert not again.success
    message = failure_description(again)
    assert "It is gone (archived by the run that read it, or deleted), so this run reads " \
           "nothing" in message, message
    assert "the sensor starts a run" not in message


# -- a queued run whose file was replaced before it started --------------------------------------
def test_a_run_whose_file_was_replaced_before_it_started_fails_and_keeps_it(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    defs = make_defs(workdir, tmp_path / "s")
    src = csv_file(workdir / "incoming" / "daily.csv", 3)
    (first,), cursor, _ = tick(defs, instance, None)  # the run waits in the queue
    new = csv_file(workdir / "incoming" / ".daily.csv.tmp", 5)  # the next export, same name
    os.replace(new, src)
    (second,), cursor, _ = tick(defs, instance, cursor)

    result = _run(defs, instance, first)
    assert not result.success
    message = failure_description(result)
    expected = first.tags["osiris/file_fingerprint"]
    found = second.tags["osiris/file_fingerprint"]
    assert str(src) in message and f"expected version {expected}" in message, message
    assert f"found {found}" in message, message
    assert src.exists() and not (workdir / "processed").exists()
    assert not (workdir / "out").exists()  # nothing read, nothing written
    evs = events(tmp_path / "s" / result.run_id)
    assert [e["status"] for e in evs if e["event"] == "run_end"] == ["failure"]
    assert any(e["event"] == "file_changed_before_run" for e in evs)
    tags = instance.get_run_by_id(result.run_id).tags
    assert tags.get("dagster/retry_on_asset_or_op_failure") == "false"

    result = _run(defs, instance, second)  # the new version's own run reads it, once
    assert result.success, failure_description(result)
    assert (workdir / "out" / "daily.csv").read_text() == "n,total\n5,10\n"
    assert not src.exists() and (workdir / "processed" / "daily.csv").is_file()


def test_a_file_appended_to_while_its_step_reads_it_is_not_passed_on(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The file matched its fingerprint when the step started, its writer appended a line
    while DuckDB read it: the table held the new line too, the writer after it wrote every row,
    the file (changed) stayed, and the next tick ran it again: every row written twice into an
    append target. Now the reading step fails and passes nothing on; the next version runs."""
    from osiris_dagster.drivers.csv import extractor as csv_extractor

    read = csv_extractor.run

    def appending_while_reading(ctx: Any, config: Any, inputs: Any) -> Any:
        result = read(ctx, config, inputs)
        with open(config["path"], "a", encoding="utf-8") as fh:
            fh.write("99\n")
        return result

    defs = make_defs(workdir, tmp_path / "s")
    src = csv_file(workdir / "incoming" / "daily.csv", 3)
    (request,), cursor, _ = tick(defs, instance, None)
    monkeypatch.setattr(csv_extractor, "run", appending_while_reading)
    result = _run(defs, instance, request)
    monkeypatch.setattr(csv_extractor, "run", read)
    assert not result.success
    message = failure_description(result)
    assert f"{src} changed while this step read it (expected version " in message, message
    assert "so it is not passed on" in message
    assert not (workdir / "out").exists()  # the writer never ran
    assert src.exists() and not (workdir / "processed").exists()
    evs = events(tmp_path / "s" / result.run_id)
    assert any(e["event"] == "file_changed_during_read" for e in evs)
    assert [e["status"] for e in evs if e["event"] == "run_end"] == ["failure"]

    (again,), cursor, _ = tick(defs, instance, cursor)  # the new version runs, once
    result = _run(defs, instance, again)
    assert result.success, failure_description(result)
    assert (workdir / "out" / "daily.csv").read_text() == "n,total\n4,102\n"


# -- a step that names its file by name_param (under a connection's base_dir) --------------------
BY_NAME = """\
oml_version: "0.1.0"
name: named
params:
  input_path: {{default: none.csv}}
  input_name: {{default: none.csv}}
x-dagster:
  sensor: {{watch: "in/*.csv", param: input_path, name_param: input_name, settle_seconds: 0,
           archive_to: done}}
steps:
  - id: load
    component: filesystem.csv_extractor
    mode: read
    config: {load}
  - id: save
    component: filesystem.csv_writer
    mode: write
    config: {{path: "out/all_${{params.input_name}}"}}
"""
READS_BY_NAME = {  # the step names the file by its name alone: the path is not in its config
    "connection base_dir": '{connection: "@filesystem.inbox", path: "${params.input_name}"}',
    "relative to the cwd": '{path: "in/${params.input_name}"}',
}


def _by_name_defs(workdir: Path, tmp_path: Path, load: str) -> dg.Definitions:
    conns = write(workdir / "osiris_connections.yaml",
                  "version: 1\nconnections:\n  filesystem:\n    inbox:\n      base_dir: in\n")
    return build_definitions([write(workdir / "named.yaml", BY_NAME.format(load=load))],
                             sessions_dir=str(tmp_path / "s"), connections_file=str(conns))


@pytest.mark.parametrize("load", READS_BY_NAME.values(), ids=READS_BY_NAME.keys())
def test_a_file_named_by_name_param_replaced_before_its_run_is_not_read(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance, load: str) -> None:
    """Only a step whose config held the absolute path was checked: this one read the next
    export, the run succeeded without archiving it, and the next tick delivered it again."""
    defs = _by_name_defs(workdir, tmp_path, load)
    src = csv_file(workdir / "in" / "a.csv", 3)
    (first,), cursor, _ = tick(defs, instance, None, "named_sensor")
    os.replace(csv_file(workdir / "in" / ".a.csv.tmp", 5), src)  # the next export
    result = _run(defs, instance, first, "named_sensor")
    assert not result.success
    message = failure_description(result)
    assert f"{src} is not the version of the file the sensor started this run for" in message
    assert not (workdir / "out").exists()  # nothing read, nothing written

    (second,), cursor, _ = tick(defs, instance, cursor, "named_sensor")
    result = _run(defs, instance, second, "named_sensor")
    assert result.success, failure_description(result)
    assert (workdir / "out" / "all_a.csv").read_text() == "v\n" + "".join(
        f"{i}\n" for i in range(5))
    assert not src.exists() and (workdir / "done" / "a.csv").is_file()
    assert tick(defs, instance, cursor, "named_sensor")[0] == []


@pytest.mark.parametrize("load", READS_BY_NAME.values(), ids=READS_BY_NAME.keys())
def test_a_file_named_by_name_param_appended_to_while_read_is_not_passed_on(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch, load: str) -> None:
    from osiris_dagster.drivers.csv import extractor as csv_extractor

    read = csv_extractor.run
    src = csv_file(workdir / "in" / "a.csv", 3)

    def appending_while_reading(ctx: Any, config: Any, inputs: Any) -> Any:
        result = read(ctx, config, inputs)
        with open(src, "a", encoding="utf-8") as fh:
            fh.write("99\n")
        return result

    defs = _by_name_defs(workdir, tmp_path, load)
    (request,), _, _ = tick(defs, instance, None, "named_sensor")
    monkeypatch.setattr(csv_extractor, "run", appending_while_reading)
    result = _run(defs, instance, request, "named_sensor")
    assert not result.success
    assert f"{src} changed while this step read it" in failure_description(result)
    assert not (workdir / "out").exists() and src.exists()


# -- the next export lands while the run archives its file ---------------------------------------
def _next_export(src: Path, rows: int) -> Callable[[], None]:
    """The producer's next version, written to a temporary file and renamed over ``src``,
    once (the first call)."""
    done: list[bool] = []

    def land() -> None:
        if not done:
            done.append(True)
            os.replace(csv_file(src.with_name(f".{src.name}.tmp"), rows), src)
    return land


def _archive_racing(workdir: Path, tmp_path: Path, instance: dg.DagsterInstance,
                    monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> tuple[Path, str]:
    """Run the version of incoming/daily.csv (3 rows) the sensor saw, with the next version (5
    rows) landing right after the archive calls ``module.name``; then the next tick's run.
    Returns the file's path and the first run's id."""
    defs = make_defs(workdir, tmp_path / "s")
    src = csv_file(workdir / "incoming" / "daily.csv", 3)
    (first,), cursor, _ = tick(defs, instance, None)
    land, real = _next_export(src, 5), getattr(module, name)

    def racing(*args: Any) -> Any:
        result = real(*args)
        land()
        return result

    monkeypatch.setattr(module, name, racing)
    result = _run(defs, instance, first)
    monkeypatch.setattr(module, name, real)
    assert result.success, failure_description(result)
    first_id = result.run_id
    assert src.read_text() == "v\n0\n1\n2\n3\n4\n"  # the next version is there, whole
    requests, cursor, _ = tick(defs, instance, cursor)
    assert [r.tags["osiris/file"] for r in requests] == [str(src)]  # it runs, once
    result = _run(defs, instance, requests[0])
    assert result.success, failure_description(result)
    assert (workdir / "out" / "daily.csv").read_text() == "n,total\n5,10\n"
    assert not src.exists() and tick(defs, instance, cursor)[0] == []
    return src, first_id


def test_a_version_landing_between_the_check_and_the_archive_is_not_archived(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """It was archived without ever running (the check had passed on the version before)."""
    from osiris_dagster.dagster_layer import assets

    src, first = _archive_racing(workdir, tmp_path, instance, monkeypatch, assets,
                                 "file_change")
    # only the version that ran was archived, by the second run: the first archived nothing
    assert sorted(p.name for p in (workdir / "processed").iterdir()) == ["daily.csv"]
    assert (workdir / "processed" / src.name).read_text() == "v\n0\n1\n2\n3\n4\n"
    (replaced,) = [e for e in events(tmp_path / "s" / first)
                   if e["event"] == "file_changed_during_run"]
    assert replaced["path"] == str(src) and "replaced by another file" in replaced["change"]


def test_a_version_landing_between_the_archive_link_and_unlink_is_kept(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The unlink of the watched name removed the next version, which never ran."""
    from osiris_dagster.dagster_layer import automation

    _archive_racing(workdir, tmp_path, instance, monkeypatch, automation, "publish_new")
    archived = sorted((workdir / "processed").iterdir())
    assert sorted(p.read_text() for p in archived) == ["v\n0\n1\n2\n", "v\n0\n1\n2\n3\n4\n"]


def test_a_taken_version_that_was_not_delivered_is_put_back_beside_an_even_newer_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from osiris_dagster.dagster_layer import automation
    from osiris_dagster.runtime.filewatch import fingerprint

    src = write(tmp_path / "in" / "x.csv", "v1\n")
    delivered = fingerprint(str(src))
    os.replace(write(tmp_path / "in" / ".x.tmp", "v2\n"), src)  # after the run's last check
    land = _next_export(src, 3)  # and v3 once the archive took v2 away

    def newest_lands(path: str) -> Any:
        land()
        return fingerprint(path)

    monkeypatch.setattr(automation, "fingerprint", newest_lands)
    run_id = str(uuid.uuid4())
    with pytest.raises(automation.NotTheDeliveredVersion) as caught:
        archive_file(str(src), str(tmp_path / "done"), run_id, delivered)
    assert "replaced by another file" in caught.value.change
    assert caught.value.kept == src.with_name(f"x.not-archived-{run_id[:8]}.csv")
    assert caught.value.kept.read_text() == "v2\n" and src.read_text() == "v\n0\n1\n2\n"
    assert list((tmp_path / "done").iterdir()) == []  # nothing archived, nothing left there


def test_archiving_across_filesystems_still_keeps_a_newer_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rename into another filesystem fails (EXDEV): the file is taken beside its name,
    copied into the archive, and a version landing meanwhile stays."""
    import errno

    from osiris_dagster.dagster_layer import automation
    from osiris_dagster.runtime.filewatch import fingerprint

    done = tmp_path / "done"
    rename = os.rename

    def other_device(a: Any, b: Any) -> None:
        if Path(a).parent != done and Path(b).parent == done:  # from in/ into done/
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        rename(a, b)

    monkeypatch.setattr(os, "rename", other_device)
    monkeypatch.setattr(automation, "publish_new", _racing(automation.publish_new, done))
    src = write(tmp_path / "in" / "x.csv", "v1\n")
    dest = archive_file(str(src), str(done), str(uuid.uuid4()), fingerprint(str(src)))
    assert dest == done / "x.csv" and dest.read_text() == "v1\n"
    assert src.read_text() == "v\n0\n1\n2\n"  # the version that landed while it was copied
    assert sorted(p.name for p in src.parent.iterdir()) == ["x.csv"]


def _racing(publish: Callable[[Path, Path], bool], into: Path) -> Callable[[Path, Path], bool]:
    """``publish``, and the first time it links a file into ``into``, the next version of the
    watched file lands (``in/x.csv``, beside the archive)."""
    def racing(tmp: Path, target: Path) -> bool:
        ok = publish(tmp, target)
        if target.parent == into:
            _next_export(into.parent / "in" / "x.csv", 3)()
        return ok
    return racing


def test_a_version_kept_beside_an_even_newer_one_is_not_promised_to_run_next(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The warning said the version put back beside the newer one would run next: only if the
    watch glob matches its `<stem>.not-archived-<run>.<suffix>` name."""
    import logging

    from osiris_dagster.dagster_layer import automation

    defs = make_defs(workdir, tmp_path / "s")
    src = csv_file(workdir / "incoming" / "daily.csv", 3)
    (first,), _, _ = tick(defs, instance, None)
    real_take = automation._take

    def take(path: Path, dest_dir: Path, run_id: str) -> Path:
        os.replace(csv_file(src.with_name(".v2.tmp"), 4), src)  # after the run's last check
        held = real_take(path, dest_dir, run_id)
        os.replace(csv_file(src.with_name(".v3.tmp"), 5), src)  # once the archive took v2
        return held

    monkeypatch.setattr(automation, "_take", take)
    result = _run(defs, instance, first)
    assert result.success, failure_description(result)
    kept = src.with_name(f"daily.not-archived-{result.run_id[:8]}.csv")
    assert kept.read_text() == "v\n0\n1\n2\n3\n"
    (warning,) = [e.user_message for e in instance.all_logs(result.run_id)
                  if e.level == logging.WARNING and "last check" in e.user_message]
    assert f"kept at {kept}" in warning and "only if its watch pattern matches" in warning
    assert "which runs it" not in warning


# -- a run stopped between taking its file and archiving it ---------------------------------------
def _leftovers(workdir: Path) -> list[str]:
    return sorted(p.name for p in (workdir / "processed").glob(".*.archiving"))


def test_a_delivered_file_left_mid_archive_is_archived_by_the_next_tick(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's process died after it took its file to a private name: the file stayed hidden
    there for good. Once that run is over, the next tick archives it (it is the version the run
    delivered), and nothing runs it again."""
    from osiris_dagster.dagster_layer import automation

    defs = make_defs(workdir, tmp_path / "s")
    src = csv_file(workdir / "incoming" / "daily.csv", 3)
    (first,), cursor, _ = tick(defs, instance, None)
    real = automation._archive_held
    monkeypatch.setattr(automation, "_archive_held", lambda *args: Path("/nowhere"))  # died
    result = _run(defs, instance, first)
    monkeypatch.setattr(automation, "_archive_held", real)
    assert result.success, failure_description(result)
    assert not src.exists() and len(_leftovers(workdir)) == 1
    requests, _, _ = tick(defs, instance, cursor)
    assert requests == [] and _leftovers(workdir) == []
    assert (workdir / "processed" / "daily.csv").read_text() == "v\n0\n1\n2\n"


def test_another_version_left_mid_archive_is_put_back_and_runs(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The version taken was a next export that landed after the run's last check, and the
    process died before putting it back: that export never ran, unseen."""
    from osiris_dagster.dagster_layer import automation

    defs = make_defs(workdir, tmp_path / "s")
    src = csv_file(workdir / "incoming" / "daily.csv", 3)
    (first,), cursor, _ = tick(defs, instance, None)
    real_take, real_put_back = automation._take, automation._put_back

    def take(path: Path, dest_dir: Path, run_id: str) -> Path:
        os.replace(csv_file(src.with_name(".v2.tmp"), 4), src)  # after the run's last check
        return real_take(path, dest_dir, run_id)

    monkeypatch.setattr(automation, "_take", take)
    monkeypatch.setattr(automation, "_put_back", lambda held, *args: held)  # died
    result = _run(defs, instance, first)
    monkeypatch.setattr(automation, "_take", real_take)
    monkeypatch.setattr(automation, "_put_back", real_put_back)
    assert result.success, failure_description(result)
    assert not src.exists() and len(_leftovers(workdir)) == 1
    requests, _, _ = tick(defs, instance, cursor)
    assert [r.tags["osiris/file"] for r in requests] == [str(src)]
    assert src.read_text() == "v\n0\n1\n2\n3\n" and _leftovers(workdir) == []
    assert not (workdir / "processed" / "daily.csv").exists()


def test_a_file_taken_by_a_run_still_going_is_left_alone(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    defs = make_defs(workdir, tmp_path / "s")
    src = csv_file(workdir / "incoming" / "daily.csv", 3)
    (first,), cursor, _ = tick(defs, instance, None)
    queue(defs, instance, [first])  # a run of the file that has not ended
    (run,) = instance.get_runs()
    taken = workdir / "processed" / f".daily.csv.{run.run_id}-0123abcd.archiving"
    taken.parent.mkdir()
    os.rename(src, taken)
    assert tick(defs, instance, cursor)[0] == [] and taken.exists()


def test_a_file_whose_archive_failed_is_not_run_again_until_it_changes(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The run succeeded, then archiving failed (a full disk, a name too long, no permission)
    and the file was put back: the rename moved its ctime, so every tick took it for a new
    version and ran it again, each run SUCCESS, an append writer writing its rows each time."""
    import errno

    from osiris_dagster.dagster_layer import automation

    defs = make_defs(workdir, tmp_path / "s")
    src = csv_file(workdir / "incoming" / "daily.csv", 3)
    (first,), cursor, _ = tick(defs, instance, None)

    def full_disk(*args: Any) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    real = automation._archive_held
    monkeypatch.setattr(automation, "_archive_held", full_disk)
    result = _run(defs, instance, first)
    monkeypatch.setattr(automation, "_archive_held", real)
    assert result.success, failure_description(result)
    assert src.read_text() == "v\n0\n1\n2\n" and not (workdir / "processed" / "daily.csv").exists()
    after = tick(defs, instance, cursor)[1]
    for from_cursor in (cursor, after, None):  # on every tick, also with the cursor lost
        requests, _, skip = tick(defs, instance, from_cursor)
        assert requests == []
        assert skip is not None and "1 file(s) read by a successful run but not archived" in skip
        assert f"daily.csv (run {result.run_id[:8]} read it, archiving failed: " in skip
        assert "No space left on device" in skip
    csv_file(src, 4)  # a new version runs
    requests, _, _ = tick(defs, instance, cursor)
    assert [r.tags["osiris/file"] for r in requests] == [str(src)]


def test_a_long_file_name_met_twice_is_archived_under_a_name_that_fits(
        workdir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """The second version of a 255-byte name needs `<stem>.<run>.csv`, 9 bytes more: archiving
    failed with ENAMETOOLONG."""
    defs = make_defs(workdir, tmp_path / "s")
    src = workdir / "incoming" / ("é" * 125 + "m.csv")  # 256 - 1 bytes
    cursor = None
    for rows in (3, 4):
        csv_file(src, rows)
        (request,), cursor, _ = tick(defs, instance, cursor)
        assert _run(defs, instance, request).success
        assert not src.exists()
    archived = sorted((workdir / "processed").iterdir(), key=lambda p: len(p.name))
    assert [p.read_text() for p in archived] == ["v\n0\n1\n2\n", "v\n0\n1\n2\n3\n"]
    assert archived[0].name == src.name and len(os.fsencode(archived[1].name)) <= 255
    assert archived[1].name.startswith("é" * 120) and archived[1].suffix == ".csv"
