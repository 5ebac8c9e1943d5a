"""What a database writer says when the connection broke during its COMMIT: the server may have
applied it and lost only its answer, and nothing can tell which from the client."""

from __future__ import annotations


def lost_commit_note(rows: int, table_sql: str, *, same_end_state: str | None,
                     append_option: str, make_safe: str) -> str:
    """The note for a COMMIT of ``rows`` rows into ``table_sql`` (quoted, for the check query)
    whose answer never came. ``same_end_state``: the write mode for which running the step
    again gives the same end state, None for an append (a second run writes the rows twice);
    ``append_option`` names that mode as the step's config spells it, ``make_safe`` how to
    make such a write safe to repeat."""
    head = (f"The connection broke during COMMIT, so the {rows} rows may or may not have been "
            "written.")
    check = (f"Check whether the {rows} rows were added (SELECT count(*) FROM {table_sql} gives "
             f"{rows} more than before the run) before running the step again")
    if same_end_state is not None:
        return (f"{head} Running the step again is safe ({same_end_state} gives the same end "
                f"state). {check}.")
    return (f"{head} {check}: with {append_option} a second run writes them twice. To make the "
            f"write safe to repeat, use {make_safe}.")
