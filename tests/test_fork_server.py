"""The multiprocess executor's fork server (osiris_dagster.core.fork_server, executors.py): the
processes it forks die with it, nothing else is touched, and a run's process waits for the
server it started before it exits.

Each case runs in a Python process of its own: a fork server and its preload are per process
(multiprocessing keeps one), and some cases need a process that is a child subreaper."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A process started by `start` reports its PR_SET_PDEATHSIG signal, that of a process it forks
# itself (a step's own fork), its pid and its parent's pid; then waits.
CHILDREN = textwrap.dedent("""
    import ctypes, json, multiprocessing as mp, os, signal, sys, time

    def death_signal():
        value = ctypes.c_int()
        ctypes.CDLL(None).prctl(2, ctypes.byref(value), 0, 0, 0)  # PR_GET_PDEATHSIG
        return value.value

    def report(queue, release):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(write, str(death_signal()).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        queue.put({"signal": death_signal(), "own_fork": int(os.read(read, 16)),
                   "pid": os.getpid(), "parent": os.getppid()})
        release.wait()

    def running(pid):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    def start(method, preload=()):
        ctx = mp.get_context(method)
        if preload:
            ctx.set_forkserver_preload(list(preload))
        queue, release = ctx.Queue(), ctx.Event()
        process = ctx.Process(target=report, args=(queue, release))
        process.start()
        return process, queue.get(timeout=120), release
    """)


def run_script(directory: Path, body: str) -> dict:
    """Run CHILDREN + ``body`` as a script file (spawn and forkserver children import the
    main module by its path) and return the JSON it prints last."""
    script = directory / "script.py"
    script.write_text(CHILDREN + textwrap.dedent(body), encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_process_the_server_forks_dies_with_the_server(tmp_path: Path) -> None:
    result = run_script(tmp_path, """
        if __name__ == "__main__":
            process, seen, release = start("forkserver", ["osiris_dagster.core.fork_server"])
            os.kill(seen["parent"], signal.SIGKILL)  # the fork server
            deadline = time.monotonic() + 120
            while running(seen["pid"]) and time.monotonic() < deadline:
                time.sleep(0.05)
            print(json.dumps({**seen, "still_running": running(seen["pid"])}))
        """)
    assert result["signal"] == 9  # SIGKILL when its parent, the server, exits
    assert result["own_fork"] == 0  # a process the step forks itself is left alone
    assert result["still_running"] is False


def test_nothing_changes_where_it_is_not_a_fork_servers_preload(tmp_path: Path) -> None:
    result = run_script(tmp_path, """
        if __name__ == "__main__":
            import osiris_dagster.core.fork_server  # imported by a process that is no server
            spawned, seen_spawned, release = start("spawn")
            release.set()
            spawned.join()
            forked, seen_forked, release = start("fork")
            release.set()
            forked.join()
            served, seen_served, release = start("forkserver")  # a server without our preload
            release.set()
            served.join()
            print(json.dumps({"spawn": seen_spawned["signal"], "fork": seen_forked["signal"],
                              "forkserver": seen_served["signal"]}))
        """)
    assert result == {"spawn": 0, "fork": 0, "forkserver": 0}


def test_a_runs_process_waits_for_its_helper_processes_before_it_exits(tmp_path: Path) -> None:
    """The fork server and multiprocessing's resource tracker: otherwise they outlive the run's
    process and are left to the init process, which in a container without an init never reaps
    them: zombies per run. Here a subreaper stands in for init."""
    run = textwrap.dedent("""
        import multiprocessing as mp, os
        from osiris_dagster.dagster_layer.executors import FORKSERVER_PRELOAD, executor_from_env
        if __name__ == "__main__":
            executor_from_env({"OSIRIS_SESSION_STORE": "ducklake"})  # as a run's process does
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(list(FORKSERVER_PRELOAD))
            step = ctx.Process(target=os.getpid)
            step.start()
            step.join()
            print(mp.forkserver._forkserver._forkserver_pid)
        """)
    result = run_script(tmp_path, f"""
        if __name__ == "__main__":
            import subprocess
            ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
            out = subprocess.run([sys.executable, "-c", {run!r}], capture_output=True,
                                 text=True, check=True)
            server = int(out.stdout.strip().splitlines()[-1])
            try:
                left = os.waitpid(-1, os.WNOHANG)  # an orphan came to us: (0, 0) or its exit
            except ChildProcessError:
                left = None
            print(json.dumps({{"server": server, "left": left}}))
        """)
    assert result["server"] > 0
    assert result["left"] is None, f"a helper process (fork server {result['server']}) " \
                                   "outlived the run"
