"""Processes a multiprocessing fork server forks die with it.

The multiprocess executor (``dagster_layer/executors.py``) starts each step's process from a fork
server, and Dagster follows a step through that server: when the server dies (killed, or picked
by the out-of-memory killer), Dagster marks the step and the run failed at once, while the step's
own process would go on running and could still write its target after its run failed.

Imported by the fork server (its preload list names this module), this module makes every
process the server forks receive SIGKILL when the server exits (Linux' ``PR_SET_PDEATHSIG``), so
such a step ends as a step killed mid-query does: what it had not committed is not written.
Imported anywhere else (any process that is not a fork server preloading it) it does nothing,
and a step's own forks are left alone. Where ``prctl`` does not exist (not Linux) it does
nothing either.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def _in_fork_server_preload() -> bool:
    """True when the fork server's own preload loop imports this module: the first frame below
    the import machinery is ``multiprocessing.forkserver.main``. (``main`` is also on the stack
    of every process the server forks, under ``_serve_one``; an import there, or by another
    module, does not count.)"""
    server = sys.modules.get("multiprocessing.forkserver")
    main = getattr(server, "main", None)
    frame = sys._getframe(2)  # what runs this module's body (1 is the body itself)
    while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
        frame = frame.f_back
    return main is not None and frame is not None and frame.f_code is main.__code__


def _die_with_parent() -> bool:
    """Ask the kernel for SIGKILL when this process' parent exits; False where it cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class _ServerChildren:
    """The at-fork hooks of one fork server: only processes the server itself forks."""

    def __init__(self) -> None:
        self.server_pid = os.getpid()
        self.forking_pid = 0

    def before_fork(self) -> None:
        self.forking_pid = os.getpid()

    def after_fork_in_child(self) -> None:
        if self.forking_pid != self.server_pid:  # forked by a step, not by the server
            return
        if _die_with_parent() and os.getppid() != self.server_pid:
            os.kill(os.getpid(), signal.SIGKILL)  # the server died before the kernel knew


if _in_fork_server_preload():
    _HOOKS = _ServerChildren()
    os.register_at_fork(before=_HOOKS.before_fork, after_in_child=_HOOKS.after_fork_in_child)
