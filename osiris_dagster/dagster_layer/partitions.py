"""Dagster partitions from `x-dagster.partitions`, and the params a partitioned run gets."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg

from osiris_dagster.oml.model import PartitionSettings, Pipeline

_TIME = {
    "hourly": dg.HourlyPartitionsDefinition,
    "daily": dg.DailyPartitionsDefinition,
    "weekly": dg.WeeklyPartitionsDefinition,
    "monthly": dg.MonthlyPartitionsDefinition,
}


@cache
def _definition(settings: PartitionSettings) -> dg.PartitionsDefinition:
    if settings.kind == "static":
        return dg.StaticPartitionsDefinition(list(settings.keys))
    if settings.kind == "dynamic":
        return dg.DynamicPartitionsDefinition(name=settings.name)
    cls = _TIME[settings.kind]
    kwargs: dict[str, Any] = {"start_date": settings.start}
    if settings.end:
        kwargs["end_date"] = settings.end
    if settings.timezone:
        kwargs["timezone"] = settings.timezone
    return cls(**kwargs)


def partitions_definition(pipeline: Pipeline) -> dg.PartitionsDefinition | None:
    settings = pipeline.dagster.partitions
    return _definition(settings) if settings else None


def partition_params(pipeline: Pipeline, context: dg.AssetExecutionContext) -> dict[str, str]:
    """`partition_key` (and `partition_start`/`partition_end` for time partitions). A dynamic
    partition is a file the sensor found: its key is the file's path, so the sensor's `param`
    (and `name_param`) get it from the key, as in the sensor's own run; a backfill or a
    re-materialisation of the partition, which has no run config, then reads that file, not the
    parameter's default."""
    settings = pipeline.dagster.partitions
    if settings is None or not context.has_partition_key:
        return {}
    params = {"partition_key": context.partition_key}
    if settings.kind == "dynamic":
        for sensor in pipeline.dagster.sensors:  # (validate: all set the same parameters)
            params[sensor.param] = context.partition_key
            if sensor.name_param:
                params[sensor.name_param] = Path(context.partition_key).name
    if settings.is_time:
        window = context.partition_time_window
        params["partition_start"] = window_bound(settings, window.start)
        params["partition_end"] = window_bound(settings, window.end)
    return params


def window_bound(settings: PartitionSettings, moment: datetime) -> str:
    """A time partition's start or end. Days, weeks and months: the date `YYYY-MM-DD`, local
    to the partitions' time zone (a window runs from that date's midnight there). Hours: ISO
    8601 `YYYY-MM-DDTHH:MM:SS`, with the UTC offset (`+02:00`) unless the partitions are in UTC,
    so each hour names one instant: on a DST fall-back day the repeated hour (02:00+02:00 then
    02:00+01:00) is two partitions with bounds of their own."""
    if settings.kind != "hourly":
        return moment.date().isoformat()
    text = moment.isoformat(timespec="seconds")
    return text[:19] if (settings.timezone or "UTC") == "UTC" else text
