"""A Dagster home whose ``dagster.yaml`` opens Dagster's own SQLite files through osiris-dagster's
storages (``osiris-dagster init-home``), and how ``osiris-dagster run`` recognises one.

The storages are those of :func:`~.sqlite_events.cli_instance_overrides`: the pooled event log
and the stamped run and schedule storages, on the directories Dagster's default SQLite storage
uses under the home. Same files, same schema: a home written with them reads back without them
and the other way round. ``dagster dev`` on such a home runs its runs (UI, sensors, schedules) at
the per-asset cost of ``osiris-dagster run``.

The file names the home as ``dagster_home: {env: DAGSTER_HOME}``, not by its path, so that like
Dagster's default storage the files follow the home when it is moved, copied or mounted
elsewhere; ``dagster_home_if_unset`` is the home's path, for a process that opens the home
without DAGSTER_HOME (a code server started on its own gets the file's config in the instance
Dagster sends it). A block that an earlier osiris-dagster wrote with the home's absolute paths
(:func:`_block_with_paths`) is replaced by that one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from osiris_dagster.core.atomic_files import write_text_atomic
from osiris_dagster.core.errors import OsirisError
from osiris_dagster.dagster_layer.sqlite_events import STORAGE_CLASSES, cli_instance_overrides
from osiris_dagster.dagster_layer.sqlite_storages import (
    HOME_IF_UNSET_KEY,
    HOME_KEY,
    StorageConfigError,
    configured_base_dir,
)

# Keys of dagster.yaml that choose where and how an instance stores its history.
STORAGE_KEYS = ("storage", "run_storage", "event_log_storage", "schedule_storage")
HEADER = ("# Dagster's own SQLite files under this home, opened through osiris-dagster's "
          "storages\n# (connections kept; written by `osiris-dagster init-home`)\n")


class DagsterHomeError(OsirisError):
    """The home's dagster.yaml cannot take osiris-dagster's storages as it is."""


def storage_is_default_or(home: str, config: dict[str, Any]) -> bool:
    """Whether each storage key of the dagster.yaml of ``home`` is absent (Dagster's default
    SQLite files) or names the class that :func:`cli_instance_overrides` names, on the same
    directory; ``storage`` (all three at once) is always Dagster's."""
    return not _storages_not_ours(home, config)


def ours_elsewhere(home: str, config: dict[str, Any]) -> dict[str, str]:
    """The storage keys of the dagster.yaml of ``home`` that name osiris-dagster's storages on
    directories other than the home's own (a home moved or copied after an earlier init-home
    wrote its paths), each with the directory it names."""
    ours = cli_instance_overrides(home)
    found = {k: _named_directory(home, k, config[k]) for k in STORAGE_KEYS
             if k in ours and k in config and _same_class(config[k], ours[k])}
    return {k: where for k, where in found.items()
            if where is not None and not _same_directory(where, ours[k])}


def _storages_not_ours(home: str, config: dict[str, Any]) -> dict[str, str]:
    """The storage keys of a dagster.yaml that are neither absent nor ours, each with why."""
    ours = cli_instance_overrides(home)
    return {k: _why_not_ours(home, k, config[k], ours.get(k)) for k in STORAGE_KEYS
            if k in config and not (k in ours and _same_storage(home, k, config[k], ours[k]))}


def _same_class(named: Any, ours: dict[str, Any]) -> bool:
    """Whether a storage entry names exactly ``ours``' module and class (and maybe a config)."""
    return isinstance(named, dict) and \
        {k: v for k, v in named.items() if k != "config"} == \
        {k: v for k, v in ours.items() if k != "config"}


def _same_storage(home: str, key: str, named: Any, ours: dict[str, Any]) -> bool:
    if not _same_class(named, ours):
        return False
    directory = _named_directory(home, key, named)
    return directory is not None and _same_directory(directory, ours)


def _same_directory(directory: str, ours: dict[str, Any]) -> bool:
    return os.path.realpath(directory) == os.path.realpath(ours["config"]["base_dir"])


def _named_directory(home: str, key: str, named: dict[str, Any]) -> str | None:
    """The directory that osiris-dagster's storage ``named`` in the dagster.yaml of ``home``
    opens when Dagster opens that home (``$DAGSTER_HOME`` is ``home`` then); None if it opens
    none (:func:`_config_problem` says why)."""
    try:
        return _resolved(home, key, named)
    except StorageConfigError:
        return None


def _config_problem(home: str, key: str, named: dict[str, Any]) -> str | None:
    try:
        _resolved(home, key, named)
    except StorageConfigError as exc:
        return str(exc)
    return None


def _resolved(home: str, key: str, named: dict[str, Any]) -> str:
    config = named.get("config")
    if not isinstance(config, dict):
        raise StorageConfigError(f"dagster.yaml: {key}: its config is not a mapping: {config!r}")
    return configured_base_dir(str(named.get("class")), key, config,
                               environ={**os.environ, "DAGSTER_HOME": home})


def _notes(home: str, config: dict[str, Any]) -> list[str]:
    """What init-home keeps but a user should know: keys naming this home by its path (right
    while the home stays where it is, not after it moves) and a ``dagster_home_if_unset``
    that is another directory (see :func:`stale_fallbacks`)."""
    kept = _kept(home, config)
    pinned = [k for k, c in kept.items() if "base_dir" in c or isinstance(c.get(HOME_KEY), str)]
    notes = []
    if pinned:
        notes.append(f"{', '.join(pinned)} name this home by its path and will not follow it if "
                     "it moves; to name it by $DAGSTER_HOME, remove them and run "
                     "`osiris-dagster init-home` again")
    stale = stale_fallbacks_message(home, config, "remove them and run `osiris-dagster "
                                    "init-home` again to write this home's path there")
    if stale:
        notes.append(stale)
    without = [k for k, c in kept.items() if HOME_IF_UNSET_KEY not in c
               and c.get(HOME_KEY) == {"env": "DAGSTER_HOME"}]
    if without and linked_elsewhere(home) is None:
        notes.append(f"{', '.join(without)} name no {HOME_IF_UNSET_KEY}: a process without "
                     "DAGSTER_HOME (a code server started on its own, say) stops with an error; "
                     "to write this home's path there, remove them and run `osiris-dagster "
                     "init-home` again")
    return notes


def linked_elsewhere(home: str) -> Path | None:
    """The file the home's dagster.yaml is a symbolic link to, when that is outside the home
    (a file shared by several homes): its ``dagster_home_if_unset`` cannot be right for all of
    them, so init-home writes none there and never rewrites one."""
    config_file = Path(home) / "dagster.yaml"
    if not config_file.is_symlink():
        return None
    target = config_file.resolve()
    return None if target.is_relative_to(Path(home).resolve()) else target


def stale_fallbacks_message(home: str, config: dict[str, Any], advice: str) -> str | None:
    """What :func:`stale_fallbacks` found, each key with its directory, and what to do
    (``advice``, unless the file is shared by homes: then only DAGSTER_HOME helps)."""
    stale = stale_fallbacks(home, config)
    if not stale:
        return None
    where = ", ".join(f"{k} under {d}" for k, d in stale.items())
    shared = linked_elsewhere(home)
    why = "the home was moved or copied"
    if shared is not None:
        why = f"this dagster.yaml is a link to {shared}, which other homes may share"
        advice = (f"start every process of this home with DAGSTER_HOME set, or remove "
                  f"{HOME_IF_UNSET_KEY} from that file (a process without DAGSTER_HOME then "
                  "stops with an error that says so)")
    return ("a process without DAGSTER_HOME (a code server started on its own, say) keeps this "
            f"home's history elsewhere ({where}): {why}; {advice}")


def stale_fallbacks(home: str, config: dict[str, Any]) -> dict[str, str]:
    """Keys of ours that follow ``home`` as ``$DAGSTER_HOME`` but whose
    ``dagster_home_if_unset`` is another directory (the home was moved or copied): a process
    without DAGSTER_HOME (a code server started on its own, ``dagster dev`` without it) keeps
    the history there. Each with that directory."""
    ours = cli_instance_overrides(home)
    return {key: where for key, named in _kept(home, config).items()
            if isinstance(where := named.get(HOME_IF_UNSET_KEY), str) and not _same_directory(
                configured_base_dir("", key, {HOME_KEY: where}), ours[key])}


def _kept(home: str, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The storage keys of ``config`` that name osiris-dagster's storages on this home's
    directories (:func:`_same_storage`), each with its config."""
    ours = cli_instance_overrides(home)
    return {k: config[k]["config"] for k in STORAGE_KEYS
            if k in ours and k in config and _same_storage(home, k, config[k], ours[k])}


def home_entries(home: Path, if_unset: bool = True) -> dict[str, dict[str, Any]]:
    """What init-home writes: each storage on ``dagster_home: {env: DAGSTER_HOME}``, and (with
    ``if_unset``) on ``home`` in processes that have no DAGSTER_HOME (a code server started on
    its own, say: an instance sent to another process carries the file's config, not the
    directories)."""
    def config() -> dict[str, Any]:  # new objects for each key: YAML would write aliases
        named: dict[str, Any] = {HOME_KEY: {"env": "DAGSTER_HOME"}}
        if if_unset:
            named[HOME_IF_UNSET_KEY] = str(home)
        return named

    return {key: {"module": cls.__module__, "class": cls.__name__, "config": config()}
            for key in STORAGE_KEYS if (cls := STORAGE_CLASSES.get(key))}  # the file's order


def _block_with_paths(home: Path) -> str:
    """The block init-home wrote before it named the home by ``{env: DAGSTER_HOME}``."""
    ours = cli_instance_overrides(str(home))
    return HEADER + yaml.safe_dump({k: ours[k] for k in STORAGE_KEYS if k in ours},
                                   sort_keys=False)


class HomeSetUp(NamedTuple):
    config_file: Path
    added: list[str]  # keys added (none when the file names them all)
    replaced: bool  # the keys replace a block with the home's paths that init-home wrote before
    notes: list[str]  # what a user should know of the keys it kept (see _notes)
    shared: bool  # the file links outside the home: no dagster_home_if_unset written


def init_home(home: Path) -> HomeSetUp:
    """Make ``home`` (if missing) and add to its ``dagster.yaml`` (made if missing) the storage
    keys it lacks. The rest of the file is kept as written (its line endings, mode, owner, and
    the file a symbolic link points to); the result is checked to read back as the old settings
    plus the new keys before it replaces the file. Returns what it did (:class:`HomeSetUp`).
    Raises :class:`DagsterHomeError` when the home or its file
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
    newline = "\r\n" if "\r\n" in text else "\n"
    shared = linked_elsewhere(str(home)) is not None
    entries = home_entries(home, if_unset=not shared)
    # A block init-home wrote, as it wrote it, for this home's path (an earlier version) or, as
    # now, on another path (the home was moved or copied): written again for this home.
    earlier = [_block_with_paths(home)] + [
        HEADER + yaml.safe_dump(home_entries(Path(where)), sort_keys=False)
        for where in ([] if shared else sorted(set(stale_fallbacks(str(home), config).values())))]
    replacing = False
    for block in (b.replace("\n", newline) for b in earlier):
        if block in text:
            text = text.replace(block, "")
            config = {k: v for k, v in config.items() if k not in entries}
            replacing = True
    wrong = _storages_not_ours(str(home), config)
    if wrong:
        elsewhere = ours_elsewhere(str(home), config)
        foreign = [k for k in wrong if k not in ours or not _same_class(config[k], ours[k])]
        advice = (
            "a home moved or copied keeps the paths it was set up with: remove "
            f"{', '.join(wrong)} and run `osiris-dagster init-home` again to name this home by "
            "$DAGSTER_HOME (the runs written to the old paths stay there)"
            if set(wrong) == set(elsewhere) else
            "init-home adds osiris-dagster's storages only where the file names none or the "
            "same ones: keep the file as it is (runs use that storage), or "
            f"remove {', '.join(wrong)} and run `osiris-dagster init-home` again"
            if set(wrong) == set(foreign) else
            f"fix or remove {', '.join(wrong)} and run `osiris-dagster init-home` again")
        raise DagsterHomeError(
            f"{config_file}: " + "; ".join(f"{k} {why}" for k, why in wrong.items()) +
            f". {advice[0].upper()}{advice[1:]}")
    notes = _notes(str(home), config)
    missing = [k for k in STORAGE_KEYS if k in ours and k not in config]
    if not missing:
        return HomeSetUp(config_file, missing, False, notes, shared)
    added = {k: entries[k] for k in missing}
    block = HEADER + yaml.safe_dump(added, sort_keys=False)
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
    return HomeSetUp(config_file, missing, replacing, notes, shared)


def _settings(config_file: Path, text: str) -> dict[str, Any]:
    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise DagsterHomeError(f"{config_file}: not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise DagsterHomeError(f"{config_file}: expected a mapping of settings, found "
                               f"{type(config).__name__}")
    return config


def _why_not_ours(home: str, key: str, named: Any, ours: dict[str, Any] | None) -> str:
    """Why a storage key of dagster.yaml is not one :func:`init_home` can keep."""
    if ours is None:
        return "names all of the storage at once"
    if _same_class(named, ours):
        where = _named_directory(home, key, named)
        if where is None:
            problem = _config_problem(home, key, named)
            return f"names osiris-dagster's storage with a config it cannot open ({problem})"
        return (f"names osiris-dagster's storage on {where!r}, not on this home's "
                f"{ours['config']['base_dir']!r}")
    return "names another storage"
