"""The folder list is the architecture: each layer imports only from the layers below it, and
nothing outside the Dagster layer imports Dagster (so validating a pipeline, or reusing a driver,
never pays for it)."""

from __future__ import annotations

import ast
from pathlib import Path

import osiris_dagster

PACKAGE = Path(osiris_dagster.__file__).parent
# lowest first; a module may import from its own layer and the layers before it
LAYERS = ["core", "oml", "drivers", "runtime", "dagster_layer", "cli"]
WITHOUT_DAGSTER = {"core", "oml", "drivers", "runtime"}
# the one exception, imported inside the function that needs it: a schedule's cron is judged by
# Dagster's own rule, so `validate` accepts exactly what Dagster does
DAGSTER_ALLOWED = {("oml/cron.py", "dagster._utils.schedules")}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "osiris_dagster":
        return None
    if len(parts) == 1:
        return "cli"  # the package's public API sits on top
    return parts[1] if parts[1] in LAYERS else "cli"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            found.append((node.lineno, node.module or ""))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if node.module == "osiris_dagster"]
    return found


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        out.append((".".join(parts), path))
    return out


def test_every_module_sits_in_a_layer_folder() -> None:
    top = {p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or
           (p.is_dir() and (p / "__init__.py").exists())}
    assert top == {"__init__.py", "cli.py", *LAYERS[:-1]}


def test_no_module_reaches_up_a_layer() -> None:
    problems = []
    for module, path in _modules():
        own = LAYERS.index(_layer(module))
        for line, imported in _imports(path):
            layer = _layer(imported)
            if layer is not None and LAYERS.index(layer) > own:
                problems.append(f"{path.relative_to(PACKAGE)}:{line} ({LAYERS[own]}) imports "
                                f"{imported} ({layer})")
    assert not problems, "\n".join(problems)


def test_only_the_dagster_layer_imports_dagster() -> None:
    problems = []
    for module, path in _modules():
        if _layer(module) not in WITHOUT_DAGSTER:
            continue
        for line, imported in _imports(path):
            where = str(path.relative_to(PACKAGE))
            if imported.split(".")[0] in {"dagster", "dagster_webserver", "dagster_dg_cli"} \
                    and (where, imported) not in DAGSTER_ALLOWED:
                problems.append(f"{path.relative_to(PACKAGE)}:{line} imports {imported}")
    assert not problems, "\n".join(problems)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The rule above must be able to fail: an upward import in a driver is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from osiris_dagster.runtime.session import Session\nimport dagster\n")
    imported = [name for _, name in _imports(bad)]
    assert imported == ["osiris_dagster.runtime.session", "dagster"]
    assert LAYERS.index(_layer(imported[0])) > LAYERS.index("drivers")
