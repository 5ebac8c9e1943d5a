"""Dagster's SQLite run and schedule storages, opened without checking a schema that is in place.

Before Dagster opens ``history/runs.db`` or ``schedules/schedules.db`` it loads Alembic's ~90
migration scripts (~15 ms per storage) to learn the head revision; it then creates and stamps
the schema only when the file carries no revision, and opens a file that carries one as it is.
:class:`StampedSqliteRunStorage` and :class:`StampedSqliteScheduleStorage` open such a file
directly. Anything else goes through Dagster's own code: a new file, one without a revision, or a
run storage without the ``instance_info`` table, which Dagster would add. Same files, same schema.

``osiris-dagster run`` opens its instance with them
(:func:`~osiris_dagster.dagster_layer.sqlite_events.cli_instance_overrides`).

In ``dagster.yaml`` each of osiris-dagster's storages takes either ``base_dir`` (the directory
of its files, as Dagster's own classes) or ``dagster_home`` (an instance's home: its files are
where Dagster's default SQLite storage keeps them under it, :data:`HOME_LAYOUT`), with
``dagster_home_if_unset`` for a process where that names an unset variable.
``osiris-dagster init-home`` writes ``dagster_home: {env: DAGSTER_HOME}`` and the home's path as
``dagster_home_if_unset``: like Dagster's default storage, the files follow the home when it is
moved, copied or mounted elsewhere (see :mod:`.dagster_home`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from dagster import Any as AnyValue
from dagster import Field, StringSource
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite import create_db_conn_string
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import make_url

from osiris_dagster.core.errors import OsirisError

# Where Dagster's default SQLite storage (``DagsterSqliteStorage``) keeps each storage's files
# under an instance's home, by the dagster.yaml key that names the storage.
HOME_LAYOUT: dict[str, tuple[str, ...]] = {
    "run_storage": ("history", ""),
    "event_log_storage": ("history", "runs"),
    "schedule_storage": ("schedules",),
}
HOME_KEY = "dagster_home"
HOME_IF_UNSET_KEY = "dagster_home_if_unset"


class StorageConfigError(OsirisError):
    """A storage's config in dagster.yaml does not name a directory that can be opened."""


def directory_config_type() -> dict[str, Field]:
    """The config of osiris-dagster's storages: ``base_dir``, or ``dagster_home`` (a path, or
    ``{env: VAR}`` resolved here to name the variable when it is not set) with, optionally,
    ``dagster_home_if_unset`` (the home when that variable is not set)."""
    return {"base_dir": Field(StringSource, is_required=False),
            HOME_KEY: Field(AnyValue, is_required=False),
            HOME_IF_UNSET_KEY: Field(AnyValue, is_required=False)}


def configured_base_dir(storage: str, key: str, config_value: dict[str, Any],
                        environ: Mapping[str, str] = os.environ) -> str:
    """The directory of ``storage``'s files (named in dagster.yaml by ``key``): its ``base_dir``,
    or the directory under its ``dagster_home`` that Dagster's default storage uses. A home is
    read as Dagster reads ``$DAGSTER_HOME`` (``~`` expanded, absolute). Raises
    :class:`StorageConfigError` saying what to change."""
    where = f"dagster.yaml: {key} ({storage})"
    names = set(config_value)
    if names not in ({"base_dir"}, {HOME_KEY}, {HOME_KEY, HOME_IF_UNSET_KEY}):
        raise StorageConfigError(
            f"{where} needs base_dir (the directory of its files) or {HOME_KEY} (the instance's "
            f"home, e.g. {{env: DAGSTER_HOME}}, with {HOME_IF_UNSET_KEY} for when that variable "
            f"is not set); it has {', '.join(sorted(names)) or 'neither'}")
    if names == {"base_dir"}:
        directory = _value(config_value["base_dir"], environ)
        if not directory:
            raise StorageConfigError(f"{where}: base_dir names an unset variable or nothing: "
                                     f"{config_value['base_dir']!r}")
        return directory
    named = config_value[HOME_KEY]
    if_unset = config_value.get(HOME_IF_UNSET_KEY)
    if if_unset is not None and not os.path.isabs(os.path.expanduser(_value(if_unset, environ)
                                                                     or "")):
        raise StorageConfigError(f"{where}: {HOME_IF_UNSET_KEY} must be an absolute path; it is "
                                 f"{if_unset!r}")
    value = _value(named, environ)
    if value is None:
        value = _value(if_unset, environ)
    if value is None:
        if isinstance(named, dict) and set(named) == {"env"}:
            raise StorageConfigError(
                f"{where} keeps the history under ${named['env']}, which is not set: export "
                f"{named['env']}=<the home's directory> before starting Dagster, or add "
                f"{HOME_IF_UNSET_KEY}: <the home's directory> (`osiris-dagster init-home` "
                "writes both, except in a dagster.yaml that links to a file outside the home)")
        raise StorageConfigError(
            f"{where}: {HOME_KEY} must be a directory or {{env: VAR}}; it is {named!r}")
    home = os.path.expanduser(value)
    if not os.path.isabs(home):
        raise StorageConfigError(f"{where}: the home must be an absolute path (as Dagster "
                                 f"requires of DAGSTER_HOME); it is {value!r}")
    return os.path.join(home, *HOME_LAYOUT[key])


def _value(named: Any, environ: Mapping[str, str]) -> str | None:
    """A path, or ``{env: VAR}``'s value; None for an unset variable or anything else."""
    if isinstance(named, dict) and set(named) == {"env"} and isinstance(named["env"], str):
        named = environ.get(named["env"])
    return named if isinstance(named, str) and named else None


def stamped(path: str | os.PathLike[str], *tables: str) -> bool:
    """Whether the SQLite file at ``path`` exists, carries exactly one Alembic revision and has
    ``tables`` (never creates the file). A file with two revisions (left by Dagster's own
    concurrent creation of a schema) is not: Dagster refuses it ("more than one head"), and so
    does a storage that is handed it."""
    try:
        with closing(sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=rw", uri=True,
                                     timeout=SQLITE_BUSY_TIMEOUT_SECONDS)) as con:
            rows = con.execute("SELECT version_num FROM alembic_version LIMIT 2").fetchall()
            present = {name for (name,) in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error:
        return False
    return len(rows) == 1 and bool(rows[0][0]) and set(tables) <= present


def home_is_set_up(home: str | os.PathLike[str]) -> bool:
    """Whether Dagster's default SQLite files under the instance directory ``home`` (run
    storage, schedule storage, event index) all exist with their schema stamped."""
    root = Path(home)
    return (stamped(root / "history" / "runs.db", *StampedSqliteRunStorage.TABLES)
            and stamped(root / "schedules" / "schedules.db")
            and stamped(root / "history" / "runs" / "index.db"))


class _OpensStampedFile:
    """``from_local`` that opens ``<base_dir>/<DATABASE>.db`` directly when it is stamped and
    has ``TABLES``; otherwise Dagster's own ``from_local`` (of the storage class after this one
    in the bases)."""

    DATABASE: str
    TABLES: tuple[str, ...] = ()
    KEY: str  # the dagster.yaml key that names it

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return directory_config_type()

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,
                          config_value: Any) -> Any:
        return cls.from_local(configured_base_dir(cls.__name__, cls.KEY, config_value),
                              inst_data=inst_data)

    @classmethod
    def from_local(cls, base_dir: str, inst_data: ConfigurableClassData | None = None) -> Any:
        conn_string = create_db_conn_string(base_dir, cls.DATABASE)
        database = make_url(conn_string).database  # the file the storage will open, as written
        if database and stamped(database, *cls.TABLES):
            return cls(conn_string, inst_data)  # type: ignore[call-arg]
        return super().from_local(base_dir, inst_data)  # type: ignore[misc]


class StampedSqliteRunStorage(_OpensStampedFile, SqliteRunStorage):
    """``SqliteRunStorage`` that opens a stamped ``runs.db`` without loading the migrations
    (Dagster adds ``instance_info`` to one that lacks it: that one goes through Dagster)."""

    DATABASE = "runs"
    TABLES = ("instance_info",)
    KEY = "run_storage"


class StampedSqliteScheduleStorage(_OpensStampedFile, SqliteScheduleStorage):
    """``SqliteScheduleStorage`` that opens a stamped ``schedules.db`` without loading the
    migrations."""

    DATABASE = "schedules"
    KEY = "schedule_storage"
