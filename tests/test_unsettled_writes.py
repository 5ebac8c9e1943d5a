"""The record of writes that may have landed although their step failed (local store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from osiris_dagster.cli import main
from osiris_dagster.drivers import repeats_safely
from osiris_dagster.runtime.unsettled_writes import (
    UnreadableRecordError,
    UnsettledWrites,
    new_record,
    refusal,
    write_key,
)

INPUTS = [("load", "s1", "load")]


def test_a_record_is_found_by_its_key_listed_and_settled(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    writes = UnsettledWrites(tmp_path, None)
    key = write_key("mysql.writer", INPUTS)
    assert writes.find("p/1", "w", key) is None
    writes.record(new_record("p/1", "w", key, "s1", INPUTS, "lost during COMMIT"))
    writes.record(new_record("p/1", "w", key, "s1", INPUTS, "again"))  # one per key
    found = writes.find("p/1", "w", key)
    assert found is not None and found.error == "again" and found.inputs == ("load = s1/load",)
    assert writes.find("p/1", "other", key) is None
    assert [w.step_id for w in writes.all()] == ["w"]

    sessions = ["unsettled", "--sessions-dir", str(tmp_path)]
    assert main([*sessions, "list"]) == 0
    out = capsys.readouterr().out
    assert "pipeline 'p/1', step 'w': failed in session s1" in out and "input load = s1/load" \
        in out and "error: again" in out
    assert main([*sessions, "settle", "p/1", "w"]) == 0
    assert writes.find("p/1", "w", key) is None and writes.all() == []
    assert not list(tmp_path.glob(".state/*/*/unsettled_writes.json"))
    assert main([*sessions, "settle", "p/1", "w"]) == 2
    assert "no unsettled write of pipeline 'p/1', step 'w'" in capsys.readouterr().err


def test_the_key_is_the_input_not_the_config() -> None:
    """Another alias of the same database, or another batch size, must not let the same rows
    through again: the key is the component and the upstream tables."""
    base = write_key("mysql.writer", INPUTS)
    assert base == write_key("mysql.writer", list(reversed(INPUTS)))
    assert base != write_key("mysql.writer", [("load", "s2", "load")])
    assert base != write_key("supabase.writer", INPUTS)
    assert repeats_safely("mysql.writer", {"mode": "upsert"})
    assert repeats_safely("mysql.writer", {"mode": "append", "truncate_before": True})
    assert not repeats_safely("mysql.writer", {"mode": "append"})
    assert repeats_safely("supabase.writer", {"write_mode": "replace"})
    assert not repeats_safely("supabase.writer", {})
    assert not repeats_safely("graphql.extractor", {"query": "mutation { x }"})


def test_names_are_kept_apart_and_quoted_for_the_shell(tmp_path: Path) -> None:
    """Pipelines a-b and a_b share one sanitised directory: each settles only its own; a
    name with a quote is quoted for the shell in the refusal."""
    writes = UnsettledWrites(tmp_path, None)
    key = write_key("mysql.writer", INPUTS)
    for name in ("a-b", "a_b"):
        writes.record(new_record(name, "w", key, "s1", INPUTS, name))
    assert [w.error for w in writes.settle("a_b", "w")] == ["a_b"]
    assert writes.find("a-b", "w", key) is not None and writes.find("a_b", "w", key) is None
    text = refusal(new_record("it's a/x", "w", key, "s1", INPUTS, "e"))
    assert "`osiris-dagster unsettled settle 'it'\"'\"'s a/x' w`" in text


def test_a_wrong_name_or_directory_makes_nothing_and_a_broken_file_can_be_settled(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["unsettled", "--sessions-dir", str(tmp_path / "typo"), "list"]) == 2
    assert "no sessions directory" in capsys.readouterr().err
    assert main(["unsettled", "--sessions-dir", str(tmp_path), "settle", "nope", "w"]) == 2
    assert not (tmp_path / ".state").exists()
    broken = tmp_path / ".state" / "p" / "w" / "unsettled_writes.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("[{\"pipeline\": ")
    writes = UnsettledWrites(tmp_path, None)
    with pytest.raises(UnreadableRecordError, match=r"unsettled_writes.json cannot be read"):
        writes.find("p", "w", "k")
    assert main(["unsettled", "--sessions-dir", str(tmp_path), "list"]) == 2
    assert "cannot be read" in capsys.readouterr().err
    assert main(["unsettled", "--sessions-dir", str(tmp_path), "settle", "p", "w"]) == 0
    assert not broken.exists()


def test_only_a_writer_stopped_after_it_finished_is_recorded() -> None:
    """An extractor that finished while its run was stopped wrote only its session table; it
    was recorded, and every later run of it was refused until settled."""
    from types import SimpleNamespace

    from osiris_dagster.core.errors import NotRetryableError
    from osiris_dagster.runtime.runner import _may_have_landed
    from osiris_dagster.runtime.unsettled_writes import UnsettledWriteError

    stopped = KeyboardInterrupt()
    stopped.osiris_finished = object()  # type: ignore[attr-defined]
    assert _may_have_landed(SimpleNamespace(mode="write"), stopped)
    assert not _may_have_landed(SimpleNamespace(mode="read"), stopped)
    assert not _may_have_landed(SimpleNamespace(mode="write"), KeyboardInterrupt())
    assert _may_have_landed(SimpleNamespace(mode="read"), NotRetryableError("mutation"))
    assert not _may_have_landed(SimpleNamespace(mode="write"), UnsettledWriteError("not run"))


def test_a_write_still_going_on_is_not_taken_for_one_that_ended(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A started record could not tell a writer still writing from one whose process died:
    `unsettled list` called it ended, `settle` then let a second run write the same input
    while the first still wrote (both committed: every row twice, an independent review)."""
    from osiris_dagster.core.errors import StepRefused
    from osiris_dagster.core.settings import Settings
    from osiris_dagster.oml.model import Step
    from osiris_dagster.runtime.runner import _writing
    from osiris_dagster.runtime.session import Session
    from osiris_dagster.runtime.unsettled_writes import STARTED

    writes = UnsettledWrites(tmp_path, None)
    key = write_key("mysql.writer", INPUTS)
    sessions = ["unsettled", "--sessions-dir", str(tmp_path)]
    with writes.writing("p", "w", key):  # what the writing process holds
        writes.record(new_record("p", "w", key, "s1", INPUTS, STARTED))
        (record,) = writes.all()
        assert writes.still_writing(record)
        assert main([*sessions, "list"]) == 0
        assert "pipeline 'p', step 'w': still writing in session s1" in capsys.readouterr().out
        assert main([*sessions, "settle", "p", "w"]) == 2
        assert "is still writing (the run of session s1" in capsys.readouterr().err
        assert writes.all() == [record]  # left alone

        class _Pipeline:  # what _writing reads of a pipeline
            name = "p"

        step = Step(id="w", component="mysql.writer", mode="write", config={}, needs=(),
                    implicit_needs=(), line=1)
        session = Session(Settings.from_env(tmp_path), "s2")
        refused = r"not run: step 'w' is still writing the same input in session s1"
        with pytest.raises(StepRefused, match=refused), \
                _writing(session, _Pipeline(), step, (key, INPUTS)):  # type: ignore[arg-type]
            pass
    assert not writes.still_writing(record)  # its process ended: a started record, unsure
    assert main([*sessions, "list"]) == 0
    assert "failed in session s1" in capsys.readouterr().out
    with writes.writing("p", "w", key):  # and a new attempt may take the lock
        assert list(tmp_path.glob(".state/*/*/.writing-*.lock"))
    assert not list(tmp_path.glob(".state/*/*/.writing-*.lock"))  # none left behind


def test_a_written_record_of_a_step_that_reads_no_table_says_how_to_run_it_again() -> None:
    """A GraphQL mutation settled --written was refused on every later run with "A new run's
    input runs", though a step without input never gets a new one (found by a review)."""
    from osiris_dagster.runtime.unsettled_writes import UnsettledWrite, refusal

    mutation = UnsettledWrite("p", "add", "k", "s1", "2026-12-08T00:00:00Z", (), "HTTP 500",
                              written=True)
    text = refusal(mutation)
    assert "reads no table, so every run of it sends the same request" in text
    assert "run `osiris-dagster unsettled settle p add` first" in text
    assert "A new run's input runs" not in text
    writer = UnsettledWrite("p", "w", "k", "s1", "2026-12-08T00:00:00Z", ("x = s0/t",), "e",
                            written=True)
    assert "A new run's input runs" in refusal(writer)
