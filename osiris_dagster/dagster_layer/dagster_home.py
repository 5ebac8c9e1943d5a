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
    return not _storages_not_ours(ours, config)


def _storages_not_ours(ours: dict[str, Any], config: dict[str, Any]) -> dict[str, str]:
    """The storage keys of a dagster.yaml that are neither absent nor ``ours``, each with why."""
    return {k: _why_not_ours(config[k], ours.get(k)) for k in STORAGE_KEYS
            if k in config and not (k in ours and _same_storage(config[k], ours[k]))}


def _same_class(named: Any, ours: dict[str, Any]) -> bool:
    """Whether a storage entry names exactly ``ours``' module and class (and maybe a config)."""
    return isinstance(named, dict) and \
        {k: v for k, v in named.items() if k != "config"} == \
        {k: v for k, v in ours.items() if k != "config"}


def _same_storage(named: Any, ours: dict[str, Any]) -> bool:
    if not _same_class(named, ours):
        return False
    where = named.get("config")
    if not isinstance(where, dict) or set(where) != {"base_dir"} or \
            not isinstance(where["base_dir"], str):
        return False  # e.g. {env: VAR}: Dagster resolves it
    return os.path.realpath(where["base_dir"]) == os.path.realpath(ours["config"]["base_dir"])


def init_home(home: Path) -> tuple[Path, list[str]]:
    """Make ``home`` (if missing) and add to its ``dagster.yaml`` (made if missing) the storage
    keys it lacks. The rest of the file is kept as written (its line endings, mode, owner, and
    the file a symbolic link points to); the result is checked to read back as the old settings
    plus the new keys before it replaces the file. Returns the file and the keys added (none
    when it already names them). Raises :class:`DagsterHomeError` when the home or its file
    cannot be read or written, or the file is not a YAML mapping, names another storage, or is
    laid out so that keys cannot be added at its end (nothing is changed then)."""
    home = Path(os.path.abspath(home))
    config_file = home / "dagster.yaml"
    try:
        home.mkdir(parents=True, exist_ok=True)
        target = config_file.resolve() if config_file.is_symlink() else config_file
        before = target.stat() if target.exists() else None
        text = ""
        if before is not None:
            with open(target, encoding="utf-8", newline="") as fh:  # line endings as they are
                text = fh.read()
    except (OSError, UnicodeError) as exc:
        raise DagsterHomeError(f"{config_file}: cannot read or make it: {exc}") from exc
    config = _settings(config_file, text)
    ours = cli_instance_overrides(str(home))
    wrong = _storages_not_ours(ours, config)
    if wrong:
        raise DagsterHomeError(
            f"{config_file}: " + "; ".join(f"{k} {why}" for k, why in wrong.items()) +
            ". init-home adds osiris-dagster's storages only where the file names none or the "
            "same ones: keep the file as it is (runs use that storage, at Dagster's cost), or "
            f"remove {', '.join(wrong)} and run `osiris-dagster init-home` again")
    missing = [k for k in STORAGE_KEYS if k in ours and k not in config]
    if not missing:
        return config_file, missing
    added = {k: ours[k] for k in missing}
    block = HEADER + yaml.safe_dump(added, sort_keys=False)
    newline = "\r\n" if "\r\n" in text else "\n"
    gap = newline if text and not text.endswith("\n") else ""
    result = text + gap + block.replace("\n", newline)
    try:
        reads_back = yaml.safe_load(result) == {**config, **added}
    except yaml.YAMLError:
        reads_back = False
    if not reads_back:  # e.g. a flow mapping `{...}` or an end marker `...` at the end
        raise DagsterHomeError(
            f"{config_file}: keys added at its end would not read back as its settings (a "
            "flow-style mapping or an end-of-document marker?); add these yourself:\n" + block)
    try:
        write_text_atomic(target, result, like=before)
    except OSError as exc:
        raise DagsterHomeError(f"{config_file}: cannot write it: {exc}") from exc
    return config_file, missing


def _settings(config_file: Path, text: str) -> dict[str, Any]:
    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise DagsterHomeError(f"{config_file}: not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise DagsterHomeError(f"{config_file}: expected a mapping of settings, found "
                               f"{type(config).__name__}")
    return config


def _why_not_ours(named: Any, ours: dict[str, Any] | None) -> str:
    """Why a storage key of dagster.yaml is not one :func:`init_home` can keep."""
    if ours is None:
        return "names all of the storage at once"
    if _same_class(named, ours):
        where = named["config"].get("base_dir") if isinstance(named.get("config"), dict) \
            else None
        return (f"names osiris-dagster's storage on {where!r}, not on this home's "
                f"{ours['config']['base_dir']!r}")
    return "names another storage"
