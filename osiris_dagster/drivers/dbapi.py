"""DB-API (PEP 249) connections as the database drivers end them: closed without letting a second
exception hide the failure that ended the step."""

from __future__ import annotations

import contextlib
from typing import Any


def close_quietly(conn: Any) -> None:
    """Close a DB-API connection without draining an unfinished result (no exception)."""
    if conn is None:
        return
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing after a failure must not hide the failure
        force = getattr(conn, "_force_close", None)
        if force is not None:
            with contextlib.suppress(Exception):
                force()


def rollback_quietly(conn: Any) -> None:
    """Roll a failed write's transaction back without hiding its error: on a lost connection
    (killed, a failover) the rollback raises too, and the server has rolled it back already."""
    with contextlib.suppress(Exception):
        conn.rollback()
