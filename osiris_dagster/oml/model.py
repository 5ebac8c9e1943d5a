"""The validated, resolved pipeline: immutable, no line bookkeeping, no Dagster, no DuckDB."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from osiris_dagster.oml.diagnostics import Diagnostic


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_hex(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RetrySettings:
    """`retry: {max_retries, delay_seconds, backoff, jitter}` (a Dagster RetryPolicy)."""

    max_retries: int = 0
    delay_seconds: float = 0.0
    backoff: str | None = None  # exponential | linear
    jitter: str | None = None  # full | plus_minus


@dataclass(frozen=True)
class StepDagster:
    """Per-step settings from `x-dagster.steps.<id>`."""

    description: str | None = None
    owners: tuple[str, ...] = ()
    tags: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    timeout_seconds: float | None = None
    retry: RetrySettings | None = None
    checks: MappingProxyType | None = None  # validated `checks:` block
    schema: str | None = None  # "strict": a column change fails the step
    deps: tuple[str, ...] = ()  # extra upstream asset keys ("a/b") outside the pipeline
    columns: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    # column name -> description (shown in the asset's column schema)


@dataclass(frozen=True)
class ScheduleSettings:
    """One entry of `x-dagster.schedule`."""

    cron: str
    timezone: str | None = None
    params: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    running: bool = False
    line: int = 0


@dataclass(frozen=True)
class SensorSettings:
    """One entry of `x-dagster.sensor`: start a run per new or changed file."""

    watch: str
    param: str
    settle_seconds: float = 10.0
    minimum_interval_seconds: int = 30
    max_runs_per_tick: int = 20
    running: bool = False
    archive_to: str | None = None
    connection: str | None = None
    name_param: str | None = None  # receives the file's base name (for per-file output paths)
    line: int = 0


@dataclass(frozen=True)
class PartitionSettings:
    """`x-dagster.partitions`: hourly/daily/weekly/monthly from `start`, static keys, or
    dynamic (e.g. `files`, one partition per input file added by the sensor)."""

    kind: str  # hourly | daily | weekly | monthly | static | dynamic
    start: str | None = None
    end: str | None = None
    timezone: str | None = None
    keys: tuple[str, ...] = ()
    name: str | None = None  # dynamic partitions definition name

    @property
    def is_time(self) -> bool:
        return self.kind in TIME_PARTITION_KINDS

    @property
    def param_names(self) -> tuple[str, ...]:
        """The parameters a run of one partition sets: its key, and a time partition's
        bounds."""
        return TIME_PARTITION_PARAMS if self.is_time else TIME_PARTITION_PARAMS[:1]


TIME_PARTITION_KINDS = ("hourly", "daily", "weekly", "monthly")
TIME_PARTITION_PARAMS = ("partition_key", "partition_start", "partition_end")


@dataclass(frozen=True)
class DagsterSettings:
    """The top-level `x-dagster:` block."""

    group: str | None = None
    owners: tuple[str, ...] = ()
    tags: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    steps: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    schedules: tuple[ScheduleSettings, ...] = ()
    sensors: tuple[SensorSettings, ...] = ()
    timeout_seconds: float | None = None
    retry: RetrySettings | None = None
    partitions: PartitionSettings | None = None

    def sensor_param_names(self) -> set[str]:
        """The parameters a sensor's run sets: the file's path, and its name."""
        return {n for sensor in self.sensors
                for n in (sensor.param, sensor.name_param) if n}

    def partition_param_names(self) -> set[str]:
        """The parameters a partitioned run takes from its partition (a dynamic partition is
        a sensor's file: its parameters too)."""
        if self.partitions is None:
            return set()
        names = set(self.partitions.param_names)
        if self.partitions.kind == "dynamic":
            names |= self.sensor_param_names()
        return names

    def run_param_names(self) -> set[str]:
        """The parameters whose value comes with each run: its partition's, a sensor's (the
        file it found), a schedule's."""
        names = self.partition_param_names() | self.sensor_param_names()
        for schedule in self.schedules:
            names |= set(schedule.params)
        return names

    def for_step(self, step_id: str) -> StepDagster:
        return self.steps.get(step_id, StepDagster())

    def step_timeout(self, step_id: str) -> float | None:
        own = self.for_step(step_id).timeout_seconds
        return own if own is not None else self.timeout_seconds


@dataclass(frozen=True)
class Step:
    id: str
    component: str
    mode: str  # OML mode: read / transform / write
    needs: tuple[str, ...]  # effective needs, implicit ones included
    implicit_needs: bool  # True when `needs` was absent and the previous step was injected
    config: MappingProxyType  # params substituted; `connection` kept as the @ref string
    line: int

    @property
    def connection_ref(self) -> str | None:
        ref = self.config.get("connection")
        return ref if isinstance(ref, str) else None

    def definition(self) -> dict[str, Any]:
        return {"id": self.id, "component": self.component, "mode": self.mode,
                "needs": list(self.needs), "config": _thaw(self.config)}

    @property
    def fingerprint(self) -> str:
        """Changes exactly when the step's resolved definition changes (its code_version)."""
        return sha256_hex(self.definition())[:16]


@dataclass(frozen=True)
class Pipeline:
    path: Path
    name: str
    oml_version: str
    description: str | None
    steps: tuple[Step, ...]
    params: MappingProxyType  # effective parameter values
    profile: str | None
    dagster: DagsterSettings
    resolved: MappingProxyType  # the whole resolved document (for the manifest)
    warnings: tuple[Diagnostic, ...] = ()
    # parameters whose values are secrets (`sensitive: true`, or a secret-looking name): every
    # output of a run masks their values
    sensitive_params: frozenset[str] = frozenset()

    def sensitive_values(self) -> list[Any]:
        return [self.params[n] for n in sorted(self.sensitive_params) if n in self.params]

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    @property
    def fingerprint(self) -> str:
        return "sha256:" + sha256_hex(_thaw(self.resolved))

    def structure(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """What Dagster definitions are built from; parameters must not change it."""
        return [(s.id, s.component, s.needs) for s in self.steps]


def freeze(obj: Any) -> Any:
    if isinstance(obj, dict):
        return MappingProxyType({k: freeze(v) for k, v in obj.items()})
    if isinstance(obj, list):
        return tuple(freeze(v) for v in obj)
    return obj


def _thaw(obj: Any) -> Any:
    if isinstance(obj, MappingProxyType | dict):
        return {k: _thaw(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [_thaw(v) for v in obj]
    return obj


thaw = _thaw
