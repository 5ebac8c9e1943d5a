"""Exceptions with enough context (pipeline, step, file, line) to act on without a traceback."""

from __future__ import annotations

from pathlib import Path


class OsirisError(Exception):
    """Base class: a message meant for the person running the pipeline."""


class PipelineInvalidError(OsirisError):
    """The pipeline file has validation errors; `diagnostics` lists every one of them."""

    def __init__(self, path: str, diagnostics: list) -> None:  # list[Diagnostic]
        self.path = path
        self.diagnostics = diagnostics
        lines = "\n".join(str(d) for d in diagnostics if d.severity == "error")
        super().__init__(f"{path} is not a valid Osiris pipeline:\n{lines}")


class ConnectionError_(OsirisError):
    """A connection reference could not be resolved (names the family, alias, field, variable)."""


class StepError(OsirisError):
    """A step failed while running; the message names the pipeline and step."""

    def __init__(self, pipeline: str, step_id: str, message: str, retryable: bool = True
                 ) -> None:
        self.pipeline = pipeline
        self.step_id = step_id
        self.reason = message
        self.retryable = retryable  # False: a retry could duplicate data (NotRetryableError)
        super().__init__(f"pipeline '{pipeline}', step '{step_id}': {message}")


class DriverError(OsirisError):
    """Raised by drivers for problems the user can fix (bad file, bad SQL, missing column)."""


class SessionLockedError(OsirisError):
    """The session database is held by another process for longer than the lock timeout."""


class SessionStoreError(OsirisError):
    """The session store's settings are wrong or it cannot be reached (names the setting)."""


class UpstreamMissingError(OsirisError):
    """An upstream table needed by a step is gone (its session was deleted)."""

    @classmethod
    def session_gone(cls, upstream: str, rematerialise: str, session_id: str,
                     db_path: str) -> UpstreamMissingError:
        """The upstream was materialised, but its session is gone: say which session, whether
        its whole directory went (`sessions clean`, or deleted by hand) or only its database,
        and what to materialise again. `upstream` names it, e.g. "upstream step 'x'"."""
        directory = Path(db_path).parent
        if directory.exists():
            what = f"whose database {db_path} is missing"
        else:
            what = f"whose directory {directory} is gone (cleaned or deleted)"
        return cls(f"{upstream} was materialised in session {session_id}, {what}; "
                   f"materialise '{rematerialise}' again")


class UpstreamRefusedError(OsirisError):
    """An upstream table failed a blocking check: it is not passed on to another run's step."""


class StepCancelled(OsirisError):
    """The step was interrupted (run terminated) while a driver was working."""


class StepTimeout(OsirisError):
    """The step ran longer than its `x-dagster` timeout_seconds."""


class NotRetryableError(DriverError):
    """A failure that running the step again would make worse (rows written twice): the step
    fails without Dagster's retry policy, and the message says what to check first."""


class FailedAfterCommitError(NotRetryableError):
    """The step failed after its write's COMMIT succeeded: the rows are in the target, so
    running the step again would write them twice."""


class StepRefused(NotRetryableError):
    """The step was not run (nothing was written): running it would write rows twice or lose
    them. Not retried either: the same refusal would come."""


class OutcomeUnknownError(NotRetryableError):
    """A request that changes data was sent, and then the answer was an error or never came: it
    may have taken effect. Repeating it could apply it twice, so nothing retries it, neither the
    driver nor Dagster. ``reason`` is what went wrong (status or timeout), without context."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message
