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

    def own_fork_signal():
        # the death signal of a process this one forks itself (as a step may)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(write, str(death_signal()).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        return int(os.read(read, 16))

    def report(queue, release):
        queue.put({"signal": death_signal(), "own_fork": own_fork_signal(),
                   "pid": os.getpid(), "parent": os.getppid()})
        release.wait()

    def import_then_fork(queue):
        import osiris_dagster.core.fork_server  # noqa: F401
        queue.put(own_fork_signal())

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
        process = ctx.Process(target=report, args=(queue, release), daemon=True)
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
            # a process a fork server forked imports it (main is on its stack too)
            queue = mp.get_context("forkserver").Queue()
            importer = mp.get_context("forkserver").Process(target=import_then_fork,
                                                            args=(queue,))
            importer.start()
            seen_importer = queue.get(timeout=120)
            importer.join()
            print(json.dumps({"spawn": seen_spawned["signal"], "fork": seen_forked["signal"],
                              "forkserver": seen_served["signal"],
                              "imported_in_a_served_process": seen_importer}))
        """)
    assert result == {"spawn": 0, "fork": 0, "forkserver": 0,
                      "imported_in_a_served_process": 0}


def test_a_runs_process_waits_for_its_fork_server_before_it_exits(tmp_path: Path) -> None:
    """Otherwise the server outlives it and is left to the init process, which in a container
    without an init never reaps it: a zombie per run. Here a subreaper stands in for init."""
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
                os.waitpid(server, os.WNOHANG)  # the server came to us: it outlived the run
                orphaned = True
            except ChildProcessError:  # the run's process waited for it
                orphaned = False
            print(json.dumps({{"server": server, "orphaned": orphaned}}))
        """)
    assert result["server"] > 0
    assert result["orphaned"] is False, f"the fork server {result['server']} outlived the run"


def test_a_steps_own_fork_does_not_hold_the_runs_exit(tmp_path: Path) -> None:
    """A step that leaves a forked helper running: the run's process still exits at once (it
    waits for the fork server, which exits when the run's process closes its pipe, and not for
    anything that merely inherited a pipe from a step, as multiprocessing's resource tracker
    would)."""
    fifo = tmp_path / "helper.fifo"
    result = run_script(tmp_path, f"""
        def step_with_helper(fifo):
            if os.fork() == 0:  # a helper the step leaves running until the test lets it go
                with open(fifo, "rb") as released:
                    released.read()
                os._exit(0)

        if __name__ == "__main__":
            import subprocess
            from osiris_dagster.dagster_layer.executors import (
                FORKSERVER_PRELOAD, executor_from_env)
            fifo = {str(fifo)!r}
            if sys.argv[1:] == ["run"]:
                executor_from_env({{"OSIRIS_SESSION_STORE": "ducklake"}})
                ctx = mp.get_context("forkserver")
                ctx.set_forkserver_preload(list(FORKSERVER_PRELOAD))
                step = ctx.Process(target=step_with_helper, args=(fifo,))
                step.start()
                step.join()
                sys.exit(0)
            os.mkfifo(fifo)
            run = subprocess.Popen([sys.executable, __file__, "run"])
            try:
                run.wait(timeout=60)  # far more than an exit takes
                held = False
            except subprocess.TimeoutExpired:
                held = True
            with open(fifo, "wb"):  # lets the helper go (it waits for a writer to open)
                pass
            run.wait()
            print(json.dumps({{"held": held}}))
        """)
    assert result["held"] is False
