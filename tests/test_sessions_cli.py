"""`osiris-dagster sessions list|show|clean`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from .test_cli_run import CONNECTIONS, EXAMPLE, cli


def test_list_show_and_clean_keep_referenced_sessions(tmp_path: Path) -> None:
    sessions = str(tmp_path / "s")
    base = ["--sessions-dir", sessions]
    for _ in range(2):
        out = cli("run", str(EXAMPLE), "--connections", str(CONNECTIONS), *base, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
    listed = cli("sessions", *base, "list", cwd=tmp_path)
    lines = [ln for ln in listed.stdout.splitlines() if ln.strip()]
    assert len(lines) == 2 and all("success" in ln and "director-stats" in ln for ln in lines)
    newest, oldest = lines[0].split()[0], lines[1].split()[0]

    shown = cli("sessions", *base, "show", newest, cwd=tmp_path)
    assert "step_complete" in shown.stdout and "table extract_movies" in shown.stdout

    dry = cli("sessions", *base, "clean", "--older-than", "0s", "--dry-run", cwd=tmp_path)
    assert f"would delete {oldest}" in dry.stdout
    assert f"kept    {newest}" in dry.stdout
    assert (tmp_path / "s" / oldest).is_dir()

    real = cli("sessions", *base, "clean", "--older-than", "0s", cwd=tmp_path)
    assert real.returncode == 0
    assert not (tmp_path / "s" / oldest).exists() and (tmp_path / "s" / newest).is_dir()

    forced = cli("sessions", *base, "clean", "--keep", "0", "--force", cwd=tmp_path)
    assert f"deleted {newest}" in forced.stdout
    assert not (tmp_path / "s" / newest).exists()


def test_clean_needs_a_criterion_and_valid_age(tmp_path: Path) -> None:
    assert cli("sessions", "clean", cwd=tmp_path).returncode == 2
    bad = cli("sessions", "clean", "--older-than", "soon", cwd=tmp_path)
    assert bad.returncode == 2 and "must look like" in bad.stderr
    assert cli("sessions", "show", "nope", cwd=tmp_path).returncode == 2


def _run_in_background(pipeline: Path, sessions: Path, cwd: Path) -> subprocess.Popen[str]:
    """`osiris-dagster run` in a process group of its own (killed as a group), without the
    environment's OSIRIS_* settings and Dagster home."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OSIRIS_") and k != "DAGSTER_HOME"}
    return subprocess.Popen(
        [sys.executable, "-m", "osiris_dagster.cli", "run", str(pipeline),
         "--sessions-dir", str(sessions)], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def test_clean_keeps_the_session_of_a_run_still_going(tmp_path: Path) -> None:
    """A run waiting at a gate is in progress: `clean` must not pull its session away."""
    from .gate import Gate, gate_step
    from .helpers import write

    gate = Gate()
    try:
        pipeline = write(tmp_path / "waits.yaml", (
            'oml_version: "0.1.0"\nname: waits\nsteps:\n' + gate_step("wait", gate.url, []) +
            "  - id: after\n    component: duckdb.processor\n    mode: transform\n"
            "    needs: [wait]\n    config: {query: 'SELECT count(*) AS n FROM input_df'}\n"))
        sessions = tmp_path / "s"
        run = _run_in_background(pipeline, sessions, tmp_path)
        try:
            assert gate.hit.wait(120), "the run never reached its gate step"
            (session,) = [d for d in sessions.iterdir() if not d.name.startswith(".")]
            listed = cli("sessions", "--sessions-dir", str(sessions), "list", cwd=tmp_path)
            assert "unfinished" in listed.stdout

            cleaned = cli("sessions", "--sessions-dir", str(sessions), "clean",
                          "--older-than", "0s", cwd=tmp_path)
            assert cleaned.returncode == 0, cleaned.stderr
            assert f"kept    {session.name} (unfinished" in cleaned.stdout
            assert "--force" in cleaned.stdout and "0 session(s)" in cleaned.stdout
            assert session.is_dir()
            gate.open()
            out, err = run.communicate(timeout=300)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
        assert run.returncode == 0, out + err
    finally:
        gate.close()
    # finished now: an ordinary candidate (still protected as the latest materialisation)
    assert "(unfinished" not in cli("sessions", "--sessions-dir", str(sessions), "clean",
                                    "--older-than", "0s", cwd=tmp_path).stdout


def test_clean_deletes_the_session_of_a_run_killed_outright(tmp_path: Path) -> None:
    """`osiris-dagster run` killed with SIGKILL (the OOM killer) left its run STARTED in the
    instance and its session unfinished: `clean` kept it for good, and only `--force` (which
    also takes the sessions of runs still going) removed it."""
    from .gate import Gate, gate_step
    from .helpers import write

    gate = Gate()
    try:
        pipeline = write(tmp_path / "waits.yaml", (
            'oml_version: "0.1.0"\nname: waits\nsteps:\n' + gate_step("wait", gate.url, [])))
        sessions = tmp_path / "s"
        run = _run_in_background(pipeline, sessions, tmp_path)
        try:
            assert gate.hit.wait(120), "the run never reached its gate step"
            (session,) = [d for d in sessions.iterdir() if not d.name.startswith(".")]
            going = cli("sessions", "--sessions-dir", str(sessions), "clean", "--keep", "0",
                        cwd=tmp_path)
            assert f"kept    {session.name} (unfinished" in going.stdout and session.is_dir()
        finally:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    finally:
        gate.close()
    listed = cli("sessions", "--sessions-dir", str(sessions), "list", cwd=tmp_path)
    assert session.name in listed.stdout and "unfinished" in listed.stdout
    dry = cli("sessions", "--sessions-dir", str(sessions), "clean", "--keep", "0", "--dry-run",
              cwd=tmp_path)
    assert f"would delete {session.name} (" in dry.stdout and session.is_dir()
    young = cli("sessions", "--sessions-dir", str(sessions), "clean", "--older-than", "7d",
                cwd=tmp_path)  # (a nightly clean: too young yet)
    assert "0 session(s)" in young.stdout and session.is_dir()
    cleaned = cli("sessions", "--sessions-dir", str(sessions), "clean", "--keep", "0",
                  cwd=tmp_path)
    assert cleaned.returncode == 0, cleaned.stderr
    assert (f"deleted {session.name} (" in cleaned.stdout and
            "unfinished: the `osiris-dagster run` that ran it was killed)" in cleaned.stdout)
    assert not session.exists()
    assert list((sessions / ".dagster" / "running").iterdir()) == []


def test_clean_force_deletes_an_unfinished_session(tmp_path: Path) -> None:
    from osiris_dagster.core.settings import Settings
    from osiris_dagster.runtime.session import Session

    sessions = tmp_path / "s"
    crashed = Session(Settings(sessions_dir=sessions), "crashed-run").ensure()
    crashed.log_event("run_start", pipeline="p")  # and never run_end: killed, or still going
    kept = cli("sessions", "--sessions-dir", str(sessions), "clean", "--keep", "0",
               cwd=tmp_path)
    assert "kept    crashed-run (unfinished" in kept.stdout and crashed.dir.is_dir()
    dry = cli("sessions", "--sessions-dir", str(sessions), "clean", "--keep", "0", "--force",
              "--dry-run", cwd=tmp_path)
    assert "would delete crashed-run" in dry.stdout and crashed.dir.is_dir()
    forced = cli("sessions", "--sessions-dir", str(sessions), "clean", "--keep", "0",
                 "--force", cwd=tmp_path)
    assert "deleted crashed-run" in forced.stdout and not crashed.dir.exists()


def test_negative_keep_is_an_error(tmp_path: Path) -> None:
    sessions = tmp_path / "s"
    from osiris_dagster.core.settings import Settings
    from osiris_dagster.runtime.session import Session

    Session(Settings(sessions_dir=sessions), "one").ensure().log_event("run_start")
    for value in ("-5", "-1", "x"):
        out = cli("sessions", "--sessions-dir", str(sessions), "clean", "--keep", value,
                  cwd=tmp_path)
        assert out.returncode == 2, (value, out.stdout)
        assert "--keep" in out.stderr and "0 or more" in out.stderr
    assert (sessions / "one").is_dir()


def test_clean_deletes_an_unfinished_session_whose_dagster_run_is_over(tmp_path: Path) -> None:
    """A run that failed or was canceled outside the session (its worker killed, then marked
    failed by Dagster) left it unfinished forever: only --force deleted it, with the sessions
    of runs still going. Now Dagster's word that the run is over counts as its end."""
    import uuid

    import dagster as dg

    from osiris_dagster.core.settings import Settings
    from osiris_dagster.runtime.session import Session

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    runs = {status: str(uuid.uuid4()) for status in ("FAILURE", "CANCELED", "STARTED")}
    with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance:
        for status, run_id in runs.items():
            instance.add_run(dg.DagsterRun(job_name="j", run_id=run_id,
                                           status=dg.DagsterRunStatus[status]))
    sessions = tmp_path / "s"
    ids = {"failed": runs["FAILURE"], "canceled": f"{runs['CANCELED']}-other_pipeline",
           "started": runs["STARTED"], "unknown": str(uuid.uuid4())}
    for sid in ids.values():
        Session(Settings(sessions_dir=sessions), sid).ensure().log_event("run_start",
                                                                         pipeline="p")
    out = cli("sessions", "--sessions-dir", str(sessions), "clean", "--keep", "0",
              cwd=tmp_path, env={"DAGSTER_HOME": str(home)})
    assert out.returncode == 0, out.stderr
    for name in ("failed", "canceled"):
        assert f"deleted {ids[name]} " in out.stdout, out.stdout
        assert "its Dagster run is over" in out.stdout
        assert not (sessions / ids[name]).exists()
    for name in ("started", "unknown"):  # still going, or killed: Dagster cannot tell
        assert f"kept    {ids[name]} (unfinished" in out.stdout, out.stdout
        assert (sessions / ids[name]).is_dir()
