"""`osiris-dagster validate` refuses a CSV step whose `path` escapes its connection's base_dir,
at the line of that `path`, with the run's own words: it passed validation and failed the run
only when the step ran."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from osiris_dagster.cli import main
from osiris_dagster.core.errors import DriverError
from osiris_dagster.runtime.workspace import resolve_step_path

CONNECTIONS = """\
version: 1
connections:
  filesystem:
    data: {base_dir: data}
"""

ESCAPING = """\
oml_version: "0.1.0"
name: escapes
params:
  target: {default: ../escaped.csv}
steps:
  - id: extract
    component: filesystem.csv_extractor
    mode: read
    config:
      connection: "@filesystem.data"
      path: ../../outside.csv
  - id: write
    component: filesystem.csv_writer
    mode: write
    needs: [extract]
    config:
      connection: "@filesystem.data"
      path: ${params.target}
  - id: fine
    component: filesystem.csv_writer
    mode: write
    needs: [extract]
    config: {connection: "@filesystem.data", path: out/inside.csv}
  - id: absolute
    component: filesystem.csv_writer
    mode: write
    needs: [extract]
    config: {connection: "@filesystem.data", path: /tmp/absolute.csv}
  - id: no-connection
    component: filesystem.csv_writer
    mode: write
    needs: [extract]
    config: {path: ../cwd-relative.csv}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "osiris_connections.yaml").write_text(CONNECTIONS, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _write(project: Path, text: str) -> Path:
    path = project / "pipeline.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _run_rule(path: str, base_dir: Path) -> str:
    """What the run says of ``path`` (the one rule, runtime/workspace.py)."""
    with pytest.raises(DriverError) as exc:
        resolve_step_path(path, base_dir)
    return str(exc.value)


def test_validate_reports_paths_escaping_base_dir_at_their_line(project: Path, capsys) -> None:
    path = _write(project, ESCAPING)
    code = main(["validate", str(path)])
    out, _err = capsys.readouterr()
    assert code == 2, out
    errors = [ln for ln in out.splitlines() if ln.startswith(f"{path}:")]
    assert len(errors) == 2, out  # inside, absolute and without a connection: no error
    base = project / "data"
    extract, write = errors
    assert extract.startswith(f"{path}:11: step 'extract': ")
    assert _run_rule("../../outside.csv", base) in extract
    assert "@filesystem.data" in extract
    # a parameter with its value here: the path the run would use (its default)
    assert write.startswith(f"{path}:18: step 'write': ")
    assert _run_rule("../escaped.csv", base) in write

    code = main(["validate", "--param", "target=out/ok.csv", str(path)])
    out, _err = capsys.readouterr()
    assert code == 2 and "step 'write'" not in out and "step 'extract'" in out


def test_a_path_inside_base_dir_is_valid(project: Path, capsys) -> None:
    path = _write(project, ESCAPING.replace("../../outside.csv", "in/../movies.csv")
                  .replace("../escaped.csv", "out/x.csv"))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().out


def test_a_path_a_run_is_given_is_not_checked(project: Path, capsys) -> None:
    """A sensor's file parameter gets the file's absolute path with each run: the default the
    pipeline declares for it says nothing of where the run reads."""
    path = _write(project, """\
        oml_version: "0.1.0"
        name: watched
        params: {input_path: {default: ../samples/none.csv}}
        x-dagster:
          sensor: {watch: "inbox/*.csv", param: input_path}
        steps:
          - id: load
            component: filesystem.csv_extractor
            mode: read
            config: {connection: "@filesystem.data", path: "${params.input_path}"}
        """)
    code = main(["validate", str(path)])
    assert code == 0, capsys.readouterr().out


def test_the_run_refuses_what_validate_reports(project: Path, capsys) -> None:
    """The same words from both: validate's error is the run's, with its line."""
    (project / "data" / "movies.csv").write_text("id\n1\n", encoding="utf-8")
    path = _write(project, """\
        oml_version: "0.1.0"
        name: escapes-run
        steps:
          - id: extract
            component: filesystem.csv_extractor
            mode: read
            config: {connection: "@filesystem.data", path: movies.csv}
          - id: write
            component: filesystem.csv_writer
            mode: write
            config:
              connection: "@filesystem.data"
              path: ../escaped.csv
        """)
    assert main(["validate", str(path)]) == 2
    validated = capsys.readouterr().out
    assert main(["run", str(path), "--sessions-dir", str(project / "s")]) == 1
    ran = capsys.readouterr().err
    said = _run_rule("../escaped.csv", project / "data")
    (line,) = [ln for ln in validated.splitlines() if ln.startswith(f"{path}:")]
    assert line.startswith(f"{path}:13: step 'write': ") and line.endswith(said)
    assert said in ran
    assert not (project / "escaped.csv").exists()
