"""`osiris-dagster validate FILE...`: output format, exit codes, no tracebacks."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from osiris_dagster.cli import main

VALID = """\
oml_version: "0.1.0"
name: csv-demo
steps:
  - id: extract-movies
    component: filesystem.csv_extractor
    mode: read
    config: {path: data/movies.csv}
  - id: stats
    component: duckdb.processor
    mode: transform
    config:
      query: SELECT director_id, COUNT(*) AS n FROM df_extract_movies GROUP BY 1
  - id: write
    component: filesystem.csv_writer
    mode: write
    config: {path: out/stats.csv}
"""

INVALID = """\
oml_version: "0.1.0"
name: Bad Pipeline
version: 2
steps:
  - id: extract
    component: mysql.extractor
    mode: read
    config:
      connection: "@mysql.db"
      query: SELECT 1
      password: hunter2hunter2
  - id: stats
    component: duckdb.processor
    mode: read
    needs: [extract, missing]
    config: {query: SELECT 1}
  - id: out
    component: filesystem.csv_writer
    mode: write
    retry: 2
    config:
      path: out.csv
      newline: cr
"""

LINE_RE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?: step '(?P<step>[^']+)':)? (?P<msg>.+)$")


def write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["validate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_valid_file_exit_0(tmp_path, capsys):
    path = write(tmp_path, VALID)
    code, out, err = run_main(capsys, str(path))
    assert code == 0
    assert out.strip() == f"{path}: valid (3 steps, 0 warnings)"
    assert err == ""


def test_invalid_file_reports_every_error_with_file_line_step(tmp_path, capsys):
    path = write(tmp_path, INVALID)
    code, out, err = run_main(capsys, str(path))
    assert code == 2
    lines = out.strip().splitlines()
    parsed = [LINE_RE.match(line) for line in lines]
    assert all(parsed), lines
    assert all(m["file"] == str(path) for m in parsed)
    got = sorted((int(m["line"]), m["step"]) for m in parsed)
    assert got == [(3, None), (11, "extract"), (11, "extract"), (14, "stats"), (15, "stats"),
                   (23, "out")]
    text = out
    assert f"{path}:3: legacy key 'version'" in text
    assert "osiris_connections.yaml" in text
    assert "hunter2hunter2" not in out + err
    assert f"{path}:14: step 'stats': mode 'read'" in text
    assert f"{path}:15: step 'stats': needs unknown step 'missing'" in text
    assert f"{path}:23: step 'out': config 'newline'" in text
    # warnings go to stderr, prefixed, also in FILE:LINE form
    err_lines = err.strip().splitlines()
    warnings = [ln for ln in err_lines if ln.startswith("warning: ")]
    assert f"warning: {path}:2: name 'Bad Pipeline'" in err
    assert any(f"{path}:20: step 'out':" in w and "retry" in w for w in warnings)
    assert not any(ln.startswith("warning: ") for ln in lines)
    assert f"{path}: 6 error(s)" in err
    assert "Traceback" not in out + err


def test_warnings_only_is_valid(tmp_path, capsys):
    path = write(tmp_path, VALID.replace('"0.1.0"', '"0.2.0"') + "extra: 1\n")
    code, out, err = run_main(capsys, str(path))
    assert code == 0
    assert out.strip() == f"{path}: valid (3 steps, 2 warnings)"
    assert f"warning: {path}:1: " in err
    assert f"warning: {path}:17: unknown top-level key 'extra'" in err


def test_several_files_all_reported(tmp_path, capsys):
    good = write(tmp_path, VALID, "good.yaml")
    bad = write(tmp_path, INVALID, "bad.yaml")
    missing = tmp_path / "missing.yaml"
    code, out, err = run_main(capsys, str(bad), str(good), str(missing))
    assert code == 2
    assert f"{good}: valid (3 steps, 0 warnings)" in out
    assert f"{bad}: 6 error(s)" in err
    assert f"{missing}: file not found" in out
    assert f"{missing}: 1 error(s)" in err
    assert "Traceback" not in out + err


def test_bad_yaml_syntax(tmp_path, capsys):
    path = write(tmp_path, 'oml_version: "0.1.0"\nname: x\nsteps:\n  - id: a\n    mode: [read\n')
    code, out, err = run_main(capsys, str(path))
    assert code == 2
    m = LINE_RE.match(out.strip())
    assert m and m["file"] == str(path)
    assert int(m["line"]) >= 5
    assert "invalid YAML" in m["msg"]
    assert "Traceback" not in out + err


def test_non_mapping_document(tmp_path, capsys):
    path = write(tmp_path, "- just\n- a list\n")
    code, out, err = run_main(capsys, str(path))
    assert code == 2
    assert out.startswith(f"{path}:1: ")
    assert "mapping" in out
    assert "Traceback" not in out + err


def test_binary_file(tmp_path, capsys):
    path = tmp_path / "blob.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00" + bytes(range(256)))
    code, out, err = run_main(capsys, str(path))
    assert code == 2
    assert out.startswith(str(path))
    assert "Traceback" not in out + err


def test_bad_param_value(tmp_path, capsys):
    path = write(tmp_path, VALID.replace("steps:", "params:\n  n: 5\nsteps:", 1)
                 .replace("config: {path: data/movies.csv}",
                          "config: {path: data/movies.csv, limit: '${params.n}'}"))
    code, out, err = run_main(capsys, str(path), "--param", "n=7")
    assert code == 0, out + err
    code, out, err = run_main(capsys, str(path), "--param", "n=abc")
    assert code == 2
    assert f"{path}:4: parameter 'n' expects an integer, got 'abc'" in out
    assert "Traceback" not in out + err


def test_malformed_param_option(tmp_path, capsys):
    path = write(tmp_path, VALID)
    code, out, err = run_main(capsys, str(path), "--param", "novalue")
    assert code == 2
    assert "error:" in err and "KEY=VALUE" in err
    assert "Traceback" not in out + err


def test_unknown_profile(tmp_path, capsys):
    path = write(tmp_path, VALID)
    code, out, err = run_main(capsys, str(path), "--profile", "prod")
    assert code == 2
    assert "profile 'prod'" in out


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "osiris_dagster.cli", "validate", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=60)


def test_subprocess_valid(tmp_path):
    path = write(tmp_path, VALID)
    proc = _cli(str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{path}: valid (3 steps, 0 warnings)" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_subprocess_bad_inputs_no_traceback(tmp_path):
    bad_yaml = write(tmp_path, "a: [1, 2\n", "bad.yaml")
    scalar = write(tmp_path, "hello\n", "scalar.yaml")
    invalid = write(tmp_path, INVALID, "invalid.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(bytes(range(256)))
    proc = _cli(str(bad_yaml), str(scalar), str(invalid), str(binary),
                str(tmp_path / "missing.yaml"), str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    for f in (bad_yaml, scalar, invalid, binary, tmp_path / "missing.yaml"):
        assert f"{f}: " in proc.stdout or f"{f}:" in proc.stdout
        assert f"{f}: " in proc.stderr  # the per-file error count
    assert f"{invalid}:15: step 'stats': needs unknown step 'missing'" in proc.stdout


SCHEDULED = VALID.replace("steps:\n", "x-dagster:\n  schedule: {cron: \"*/90 6 * * 1-5\"}\n"
                          "steps:\n", 1)


def test_validate_imports_no_dagster(tmp_path: Path) -> None:
    """`validate` (also of a pipeline with a schedule, whose cron Dagster's rule judges) loads no
    Dagster module: Dagster's import costs about a second, more than validation itself."""
    plain, scheduled = tmp_path / "plain.yaml", tmp_path / "scheduled.yaml"
    plain.write_text(VALID)
    scheduled.write_text(SCHEDULED)
    code = textwrap.dedent("""\
        import sys
        from osiris_dagster.cli import main
        rc = main(["validate", *sys.argv[1:]])
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in
                        ("dagster", "dagster_shared", "dagster_pipes", "dagster_webserver"))
        print("exit", rc, "dagster modules:", loaded)
        """)
    proc = subprocess.run([sys.executable, "-c", code, str(plain), str(scheduled)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "scheduled.yaml: valid (3 steps, 1 warnings)" in proc.stdout, proc.stdout
    assert "fires more often than it reads" in proc.stderr  # the cron was judged
    assert proc.stdout.splitlines()[-1] == "exit 0 dagster modules: []", proc.stdout


CONNECTED = """\
oml_version: "0.1.0"
name: connected
steps:
  - id: orders
    component: mysql.extractor
    mode: read
    config: {connection: "@mysql.shop", query: SELECT 1}
  - id: people
    component: supabase.extractor
    mode: read
    config: {table: people}
  - id: local
    component: filesystem.csv_extractor
    mode: read
    config: {path: data/movies.csv}
"""


def test_validate_checks_the_connection_names_without_reading_secrets(
        tmp_path, capsys, monkeypatch):
    """An undefined alias, or a family without a default, passed `validate` and failed the
    run; now each names its step and line. `${VAR}`s are not read (the secrets may be set only
    where the pipeline runs)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OSIRIS_CONNECTIONS", raising=False)
    path = write(tmp_path, CONNECTED)
    code, out, err = run_main(capsys, str(path))
    assert code == 0 and "valid (3 steps, 1 warnings)" in out
    assert "no osiris_connections.yaml found" in err and "orders, people are not checked" in err

    write(tmp_path, "version: 1\nconnections:\n  mysql:\n    main: {host: h, password: "
                    "'${UNSET_SECRET_XYZ}'}\n", "osiris_connections.yaml")
    code, out, err = run_main(capsys, str(path))
    lines = {m["step"]: m for m in map(LINE_RE.match, out.splitlines()) if m}
    assert code == 2 and set(lines) == {"orders", "people"}
    assert lines["orders"]["line"] == "4" and "'@mysql.shop' is not defined (aliases of " \
        "'mysql': main)" in lines["orders"]["msg"]
    assert "family 'supabase' is not defined" in lines["people"]["msg"]

    other = write(tmp_path, "version: 1\nconnections:\n  mysql:\n    shop: {host: h, password: "
                            "'${UNSET_SECRET_XYZ}'}\n  supabase:\n    main: {default: true, url: "
                            "u}\n", "elsewhere.yaml")
    code, out, err = run_main(capsys, "--connections", str(other), str(path))
    assert code == 0 and "valid (3 steps, 0 warnings)" in out and err == ""


def test_a_parameter_the_sensor_gives_needs_no_value_to_validate(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`validate` refused a sensor pipeline whose file parameter has no default ('has no
    value'), while its definitions load and its sensor runs it; `run` still needs the value."""
    pipeline = tmp_path / "watch.yaml"
    pipeline.write_text(textwrap.dedent("""\
        oml_version: "0.1.0"
        name: watchp
        params:
          input_path: {type: string}
          unset: {type: string}
        x-dagster:
          sensor: {watch: "incoming/*.csv", param: input_path, archive_to: processed}
        steps:
          - id: read
            component: filesystem.csv_extractor
            mode: read
            config: {path: "${params.input_path}"}
        """), encoding="utf-8")
    assert main(["validate", str(pipeline)]) == 0
    assert "watch.yaml: valid (1 steps" in capsys.readouterr().out
    assert main(["run", str(pipeline), "--sessions-dir", str(tmp_path / "s")]) == 2
    assert "parameter 'input_path' has no value" in capsys.readouterr().err
    pipeline.write_text(pipeline.read_text(encoding="utf-8").replace(
        '"${params.input_path}"', '"${params.unset}"'), encoding="utf-8")
    assert main(["validate", str(pipeline)]) == 2  # one no run gives still needs a value
    assert "parameter 'unset' has no value" in capsys.readouterr().out
    pipeline.write_text(pipeline.read_text(encoding="utf-8").replace(
        '"${params.unset}"', '"${params.input_path}"').replace(
        "x-dagster:\n", "x-dagster:\n  schedule: {cron: '0 6 * * *'}\n"), encoding="utf-8")
    assert main(["validate", str(pipeline)]) == 2  # a schedule's run does not set it
    assert "parameter 'input_path' has no value" in capsys.readouterr().out
