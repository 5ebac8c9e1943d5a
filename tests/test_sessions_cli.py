"""`osiris-dagster sessions list|show|clean`."""

from __future__ import annotations

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
