"""A Dagster home whose ``dagster.yaml`` opens Dagster's own SQLite files through osiris-dagster's
storages (``osiris-dagster init-home``), and how ``osiris-dagster run`` recognises one.

The storages are those of :func:`~.sqlite_events.cli_instance_overrides`: the pooled event log
and the stamped run and schedule storages, on the directories Dagster's default SQLite storage
uses under the home. Same files, same schema: a home written with them reads back without them
and the other way round. ``dagster dev`` on such a home runs its runs (UI, sensors, schedules) at
the per-asset cost of ``osiris-dagster run``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from osiris_dagster.core.atomic_files import write_text_atomic
from osiris_dagster.core.errors import OsirisError
from osiris_dagster.dagster_layer.sqlite_events import cli_instance_overrides

# Keys of dagster.yaml that choose where and how an instance stores its history.
STORAGE_KEYS = ("storage", "run_storage", "event_log_storage", "schedule_storage")
HEADER = ("# Dagster's own SQLite files under this home, opened through osiris-dagster's "
          "storages\n# (connections kept; written by `osiris-dagster init-home`)\n")


class DagsterHomeError(OsirisError):
    """The home's dagster.yaml cannot take osiris-dagster's storages as it is."""


def storage_is_default_or(ours: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether each storage key of a dagster.yaml is absent (Dagster's default SQLite files) or
    names the same class on the same directory as ``ours``; ``storage`` (all three at once) is
    always Dagster's."""
    if "storage" in config:
        return False
    return all(key not in config or _same_storage(config[key], ours[key])
               for key in STORAGE_KEYS if key != "storage")


def _same_storage(named: Any, ours: dict[str, Any]) -> bool:
    if not isinstance(named, dict) or {k: v for k, v in named.items() if k != "config"} != \
            {k: v for k, v in ours.items() if k != "config"}:
        return False
    where = named.get("config")
    if not isinstance(where, dict) or set(where) != {"base_dir"} or \
            not isinstance(where["base_dir"], str):
        return False  # e.g. {env: VAR}: Dagster resolves it
    return os.path.realpath(where["base_dir"]) == os.path.realpath(ours["config"]["base_dir"])


def init_home(home: Path) -> tuple[Path, list[str]]:
    """Make ``home`` (if missing) and add to its ``dagster.yaml`` (made if missing) the storage
    keys it lacks; every other line of the file is kept as written. Returns the file and the
    keys added (none when it already names them). Raises :class:`DagsterHomeError` when the
    file is not a YAML mapping or already names another storage."""
    home = Path(os.path.abspath(home))
    home.mkdir(parents=True, exist_ok=True)
    config_file = home / "dagster.yaml"
    text = config_file.read_text(encoding="utf-8") if config_file.exists() else ""
    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise DagsterHomeError(f"{config_file}: not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise DagsterHomeError(f"{config_file}: expected a mapping of settings, found "
                               f"{type(config).__name__}")
    ours = cli_instance_overrides(str(home))
    if not storage_is_default_or(ours, config):
        named = ", ".join(k for k in STORAGE_KEYS if k in config)
        raise DagsterHomeError(
            f"{config_file} already names its storage ({named}); osiris-dagster's would "
            "replace it. Keep it as it is (runs use that storage, at Dagster's cost), or "
            "remove those keys and run `osiris-dagster init-home` again")
    missing = [k for k in STORAGE_KEYS if k in ours and k not in config]
    if missing:
        added = yaml.safe_dump({k: ours[k] for k in missing}, sort_keys=False)
        gap = "\n" if text and not text.endswith("\n") else ""
        write_text_atomic(config_file, f"{text}{gap}{HEADER}{added}")
    return config_file, missing
