"""osiris_connections.yaml: finding it, `@family.alias` resolution, `${VAR}` substitution.

Errors name the file, family, alias, field and variable, never a value. The resolved values go to
the driver and nowhere else; their secrets are registered with the Masker first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from osiris_dagster.core.environment import environment, substitute_env
from osiris_dagster.core.errors import ConnectionError_
from osiris_dagster.core.masking import Masker
from osiris_dagster.oml.yaml_lines import load_yaml_with_lines, to_plain

FILE_NAME = "osiris_connections.yaml"
# a step of these families without a `connection` runs without one (local files, DuckDB, a
# GraphQL endpoint in its config); the others use their family's default alias
CONNECTION_OPTIONAL = frozenset({"filesystem", "duckdb", "graphql"})


@dataclass(frozen=True)
class ResolvedConnection:
    family: str
    alias: str
    values: Mapping[str, Any] = field(repr=False)  # secrets inside: never print
    source: Path | None = None

    @property
    def ref(self) -> str:
        return f"@{self.family}.{self.alias}"

    @property
    def base_dir(self) -> Path | None:
        """`base_dir` made absolute (a relative one is relative to the connections file)."""
        raw = self.values.get("base_dir")
        if not raw:
            return None
        p = Path(str(raw)).expanduser()
        if not p.is_absolute():
            p = ((self.source.parent if self.source else Path.cwd()) / p)
        return p.resolve()


def find_connections_file(explicit: str | os.PathLike[str] | None = None,
                          pipeline_path: Path | None = None,
                          env: Mapping[str, str] | None = None) -> Path | None:
    """--connections FILE, else $OSIRIS_CONNECTIONS, else ./, else the pipeline's directory."""
    env = os.environ if env is None else env
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ConnectionError_(f"connections file {p} does not exist")
        return p.resolve()
    if env.get("OSIRIS_CONNECTIONS"):
        p = Path(env["OSIRIS_CONNECTIONS"]).expanduser()
        if not p.is_file():
            raise ConnectionError_(f"OSIRIS_CONNECTIONS points to {p}, which does not exist")
        return p.resolve()
    candidates = [Path.cwd() / FILE_NAME]
    if pipeline_path is not None:
        candidates.append(pipeline_path.resolve().parent / FILE_NAME)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    return None


class Connections:
    """One connections file, loaded lazily, resolving references on demand."""

    def __init__(self, path: Path | None, env: Mapping[str, str] | None = None) -> None:
        self.path = path
        self._env = env
        self._data: dict[str, Any] | None = None

    @property
    def env(self) -> Mapping[str, str]:
        if self._env is None:
            self._env = environment()
        return self._env

    def _families(self) -> dict[str, Any]:
        if self._data is None:
            if self.path is None:
                self._data = {}
            else:
                try:
                    text = self.path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConnectionError_(f"{self.path}: cannot read the connections file "
                                           f"({type(exc).__name__}); it must be UTF-8 YAML"
                                           ) from None
                try:
                    doc = to_plain(load_yaml_with_lines(text)) or {}
                except RecursionError:
                    raise ConnectionError_(f"{self.path}: nested too deeply") from None
                except yaml.YAMLError as exc:
                    mark = getattr(exc, "problem_mark", None)
                    where = f"{self.path}:{mark.line + 1}" if mark else str(self.path)
                    problem = getattr(exc, "problem", None) or "syntax error"
                    raise ConnectionError_(f"{where}: invalid YAML in the connections file: "
                                           f"{problem}") from None
                conns = doc.get("connections") if isinstance(doc, dict) else None
                if not isinstance(conns, dict):
                    raise ConnectionError_(f"{self.path}: expected a top-level 'connections:' "
                                           "mapping of family -> alias -> fields")
                self._data = conns
        return self._data

    def resolve(self, family: str, ref: str | None, masker: Masker | None = None
                ) -> ResolvedConnection:
        """Resolve `@family.alias` (or the family's default alias when ref is None)."""
        alias, body = self._lookup(family, ref)
        values = {k: self._substitute(v, family, alias, str(k)) for k, v in body.items()
                  if k != "default"}
        if masker is not None:
            masker.add_from_connection(values)
        return ResolvedConnection(family, alias, values, self.path)

    def check(self, family: str, ref: str | None) -> None:
        """Raise what :meth:`resolve` would raise for a reference that names no connection
        of the file; its `${VAR}`s are not read (a check may run where the secrets are not
        set)."""
        self._lookup(family, ref)

    def _lookup(self, family: str, ref: str | None) -> tuple[str, dict[str, Any]]:
        """(alias, its fields as written) for `@family.alias` or the family's default."""
        where = str(self.path) if self.path else "(no connections file)"
        if ref is not None:
            m = re.fullmatch(r"@([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)", ref)
            if not m:
                raise ConnectionError_(f"connection reference {ref!r} must look like "
                                       "'@family.alias'")
            if m.group(1) != family:
                raise ConnectionError_(f"connection '{ref}' is of family '{m.group(1)}' but this "
                                       f"component needs family '{family}'")
            alias: str | None = m.group(2)
        else:
            alias = None
        if self.path is None:
            raise ConnectionError_(
                f"no {FILE_NAME} found for connection '{ref or '@' + family}': pass "
                "--connections FILE, set OSIRIS_CONNECTIONS, or put the file in the working "
                "directory or next to the pipeline")
        families = self._families()
        aliases = families.get(family)
        if family in families and not isinstance(aliases, dict):
            raise ConnectionError_(f"{where}: connection family '{family}' must map alias "
                                   "names to fields (e.g. main: {host: ...}), got "
                                   f"{type(aliases).__name__}")
        if not isinstance(aliases, dict) or not aliases:
            known = ", ".join(sorted(families)) or "none"
            raise ConnectionError_(f"{where}: connection family '{family}' is not defined "
                                   f"(families: {known})")
        if alias is None:
            alias = _default_alias(aliases)
            if alias is None:
                raise ConnectionError_(
                    f"{where}: no default connection for family '{family}'; mark one alias "
                    f"'default: true' or reference it explicitly (aliases: "
                    f"{', '.join(sorted(aliases))})")
        body = aliases.get(alias)
        if body is None:
            raise ConnectionError_(f"{where}: connection '@{family}.{alias}' is not defined "
                                   f"(aliases of '{family}': {', '.join(sorted(aliases))})")
        if not isinstance(body, dict):
            raise ConnectionError_(f"{where}: connection '@{family}.{alias}' must be a mapping")
        return alias, body

    def _substitute(self, value: Any, family: str, alias: str, field_name: str) -> Any:
        return substitute_env(value, self.env, field_name,
                              f"of connection '@{family}.{alias}' in {self.path}")


def _default_alias(aliases: Mapping[str, Any]) -> str | None:
    for name, body in aliases.items():
        if isinstance(body, dict) and body.get("default") is True:
            return str(name)
    if "default" in aliases:
        return "default"
    return None

