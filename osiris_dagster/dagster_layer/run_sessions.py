"""Which session a step of a Dagster run writes: one for each pipeline in the run.

A run that executes the steps of one pipeline (its job, ``osiris-dagster run``, a schedule, a
sensor's run, any selection within one pipeline) has one session named by the run id. A run that
executes steps of several pipelines ("Materialize all", a selection across pipelines) gives each
pipeline a session of its own, ``<run id>-<pipeline>`` (the name as Dagster's op tag spells it,
at most 64 characters): two pipelines may have steps with the same
id, and each pipeline's tables, manifest and logs belong to it alone. Every process of the run
decides the same way, from the run's (possibly subsetted) job.
"""

from __future__ import annotations

from collections.abc import Collection

import dagster as dg

from osiris_dagster.core.naming import bounded_name

PIPELINE_TAG = "osiris/pipeline"  # on each step's op: dagster_name(pipeline name)
_NAME_IN_SESSION_ID = 64  # characters of the pipeline's name in a session id (a directory name)


def pipelines_in_job(job: dg.JobDefinition) -> frozenset[str]:
    """The pipelines (as their op tag spells them) whose steps the job executes."""
    return frozenset(node.tags[PIPELINE_TAG] for node in job.nodes if PIPELINE_TAG in node.tags)


def run_session_id(run_id: str, pipeline_tag: str, pipelines_in_run: Collection[str]) -> str:
    """The session of the pipeline whose steps' op tag is ``pipeline_tag`` in the run
    ``run_id``; a long pipeline name is shortened (and kept apart by a hash of it)."""
    if set(pipelines_in_run) <= {pipeline_tag}:
        return run_id
    return f"{run_id}-{bounded_name(pipeline_tag, _NAME_IN_SESSION_ID)}"
