"""Run one command in a fresh subprocess and measure it: wall time, CPU time and the peak RSS of
its whole process tree.

The measuring happens in a small, long-lived *spawner* process (``MeasureServer``, this file run
as a script) rather than in the harness: Linux charges a child's ``ru_maxrss`` with the RSS of
the process it was forked from, so a harness that has loaded DuckDB would make even ``cat`` look
like 175 MB. The spawner imports only the standard library and psutil (about 20 MB), below the
peak of any Python contender.

Peak memory is the largest of three figures, all for the contender's own process tree:

* the largest *sum* of RSS over the process and all its descendants, sampled every
  ``interval`` seconds with psutil (sees a tree of processes; may miss a spike between samples);
* the largest ``VmHWM`` (the kernel's exact per-process RSS high-water mark, read from
  ``/proc/PID/status`` at each sample): catches spikes between samples, one process at a time;
* ``ru_maxrss`` from ``os.wait4`` on the child: exact for the child and the descendants it
  waited for, per process (never a sum); includes the spawner's RSS inherited at fork (~20 MB).

CPU time is that of the child and every descendant: the spawner is a child subreaper (Linux), so
a descendant the child leaves running when it exits (a multiprocessing fork server, which is
never waited for, and the step processes it forked) becomes the spawner's child and is waited
for, and counted, before the measurement ends.

For the single-process contenders (all but ``cat``, which runs under ``sh``) the last two are the
exact peak; for a tree the first is the one that sums.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Measurement:
    cmd: list[str]
    returncode: int
    wall_s: float
    peak_rss_mb: float
    sampled_sum_mb: float
    hwm_mb: float
    maxrss_mb: float
    cpu_user_s: float
    cpu_sys_s: float
    samples: int
    timed_out: bool = False
    stdout_tail: str = ""
    stderr_tail: str = ""
    result: dict = field(default_factory=dict)  # the contender's BENCH_RESULT line, if any


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class _TreeSampler(threading.Thread):
    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.pid = pid
        self.interval = interval
        self.peak_sum = 0
        self.peak_hwm_kb = 0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop_event.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                procs = [root]
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    continue
                self.peak_hwm_kb = max(self.peak_hwm_kb, _vm_hwm_kb(p.pid))
            self.peak_sum = max(self.peak_sum, total)
            self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_measured(cmd: list[str], *, env: dict[str, str], cwd: str, log_prefix: str,
                 timeout_s: float = 1800.0, interval: float = 0.05) -> Measurement:
    """Run ``cmd`` to completion (stdout/stderr go to ``<log_prefix>.out/.err``)."""
    out_path = Path(log_prefix + ".out")
    err_path = Path(log_prefix + ".err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        sampler = _TreeSampler(proc.pid, interval)
        sampler.start()
        timer = threading.Timer(timeout_s, _kill_group, args=(proc.pid,))
        timer.daemon = True
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - started
            orphans = _wait_for_orphans(started + timeout_s)
        finally:
            timer.cancel()
        sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
    timed_out = proc.returncode == -signal.SIGKILL and wall >= timeout_s
    cpu_user_s = usage.ru_utime + sum(u.ru_utime for u in orphans)
    cpu_sys_s = usage.ru_stime + sum(u.ru_stime for u in orphans)
    maxrss_mb = max([usage.ru_maxrss, *(u.ru_maxrss for u in orphans)]) / 1024.0  # Linux: KiB
    sum_mb = sampler.peak_sum / (1024.0 * 1024.0)
    hwm_mb = sampler.peak_hwm_kb / 1024.0
    stdout = _tail(out_path)
    result: dict = {}
    for line in reversed(stdout.splitlines()):
        if line.startswith("BENCH_RESULT "):
            with contextlib.suppress(ValueError):
                result = json.loads(line[len("BENCH_RESULT "):])
            break
    return Measurement(cmd=cmd, returncode=proc.returncode, wall_s=wall,
                       peak_rss_mb=max(maxrss_mb, sum_mb, hwm_mb), sampled_sum_mb=sum_mb,
                       hwm_mb=hwm_mb, maxrss_mb=maxrss_mb, cpu_user_s=cpu_user_s,
                       cpu_sys_s=cpu_sys_s, samples=sampler.samples, timed_out=timed_out,
                       stdout_tail=stdout[-1500:], stderr_tail=_tail(err_path, 3000),
                       result=result)


_IS_SUBREAPER = False  # set by the spawner (_serve): its children are measured commands only


def _become_subreaper() -> bool:
    """Make orphaned descendants of this process its own children (Linux' PR_SET_CHILD_SUBREAPER)
    instead of init's, so that their CPU time can be counted."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # 36: PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _wait_for_orphans(deadline: float) -> list[resource.struct_rusage]:
    """Once the measured command exited: wait for the descendants it left running (they were
    re-parented to this subreaper) and return their resource usage. Only in the spawner, whose
    every child is part of the measured command. At ``deadline`` (the measurement's timeout)
    what is still running is killed, also a descendant that left the command's process group."""
    usages: list[resource.struct_rusage] = []
    while _IS_SUBREAPER:
        try:
            pid, _, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            break  # none left
        if pid:
            usages.append(usage)
            continue
        if time.perf_counter() >= deadline:
            _kill_children()
        time.sleep(0.02)
    return usages


def _kill_children() -> None:
    import psutil

    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            child.kill()


def _kill_group(pid: int) -> None:
    """Timeout: end the contender's own process group (it was started in a new session)."""
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


class MeasureServer:
    """The harness side: a spawner process that runs one measurement per request."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1)

    def run(self, cmd: list[str], *, env: dict[str, str], cwd: Path, log_prefix: Path,
            timeout_s: float = 1800.0) -> Measurement:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        req = {"cmd": cmd, "env": env, "cwd": str(cwd), "log_prefix": str(log_prefix),
               "timeout_s": timeout_s}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the measuring process died")
        data = json.loads(line)
        if "error" in data:
            raise RuntimeError(data["error"])
        return Measurement(**data)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _serve() -> None:
    global _IS_SUBREAPER
    _IS_SUBREAPER = _become_subreaper()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            m = run_measured(req["cmd"], env=req["env"], cwd=req["cwd"],
                             log_prefix=req["log_prefix"], timeout_s=req["timeout_s"])
            reply = asdict(m)
        except Exception as exc:  # report, keep serving
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        _serve()
