"""The croniter that Dagster vendors, loaded without importing Dagster.

Dagster judges a schedule's cron with its vendored copy of croniter
(`dagster/_vendored/croniter`), but `import dagster._vendored.croniter` runs `dagster/__init__`
first: the whole Dagster import, about a second, for `osiris-dagster validate` of a pipeline with
a schedule. This module executes those same vendored files (croniter, and the vendored dateutil
it imports) under private module names, so the parser is byte for byte the one Dagster uses and
nothing named `dagster` enters `sys.modules`. `None` when the files are not where this Dagster
release keeps them: the caller then asks Dagster itself.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

_PRIVATE = "osiris_dagster.oml._dagster_vendored"
# croniter.py imports the vendored dateutil by its absolute name (its only Dagster imports)
_DAGSTER_DATEUTIL = "dagster._vendored.dateutil"


@cache
def vendored_croniter() -> Any | None:
    """Dagster's vendored `croniter` class, or None when it cannot be loaded on its own."""
    try:
        spec = importlib.util.find_spec("dagster")  # locates the package, does not import it
        if spec is None or spec.origin is None:
            return None
        vendored = Path(spec.origin).parent / "_vendored"
        source = (vendored / "croniter" / "croniter.py").read_text(encoding="utf-8")
        if f"from {_DAGSTER_DATEUTIL}." not in source:
            return None
        _load_package(_PRIVATE, vendored)
        _load_package(f"{_PRIVATE}.dateutil", vendored / "dateutil")
        module = ModuleType(f"{_PRIVATE}.croniter")
        module.__file__ = str(vendored / "croniter" / "croniter.py")
        sys.modules[module.__name__] = module
        code = compile(source.replace(f"from {_DAGSTER_DATEUTIL}.", f"from {_PRIVATE}.dateutil."),
                       module.__file__, "exec")
        exec(code, module.__dict__)  # noqa: S102 - Dagster's own installed file, import paths only
        return module.croniter
    except Exception:  # noqa: BLE001 - any surprise: the caller falls back to Dagster itself
        for name in [n for n in sys.modules if n.startswith(_PRIVATE)]:
            del sys.modules[name]
        return None


def _load_package(name: str, directory: Path) -> ModuleType:
    """Register `directory` as package `name` (its `__init__` runs) so relative imports inside it
    resolve under `name`."""
    init = directory / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        name, init if init.exists() else None, submodule_search_locations=[str(directory)])
    if spec is None:
        raise ImportError(f"cannot load {directory} as {name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    if spec.loader is not None and init.exists():
        spec.loader.exec_module(module)
    return module
