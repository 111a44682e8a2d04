"""The local executor: every run its own process, at most ``max_parallel`` at a time.

A crash, an out-of-memory kill or a ``kill -9`` of one run ends that process only; the executor
reports its exit code and goes on. With N runs in parallel each gets max(1, cores // N) torch
threads (``OMP_NUM_THREADS``), so that N processes do not oversubscribe the cores. On Linux a
run dies with the executor's process (``PR_SET_PDEATHSIG``): a study killed with ``kill -9``
leaves no orphans training on, and its runs resume from their checkpoints when it is run again.
An interrupted study (Ctrl-C, SIGTERM) passes the signal on to its runs and waits for them to
record themselves as interrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

__all__ = ["LocalExecutor", "available_cores", "die_with_parent"]

_PR_SET_PDEATHSIG = 1
_GRACE_S = 60  # how long an interrupted run may take to write its summary before it is killed


def available_cores() -> int:
    """The CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def die_with_parent(signum: int) -> Callable[[], None]:
    """A ``preexec_fn`` (Linux) under which the child gets ``signum`` when this process dies, so
    that a ``kill -9`` of the parent leaves no orphan behind (``prctl(PR_SET_PDEATHSIG)``)."""
    def set_death_signal() -> None:  # runs in the child between fork and exec
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)

    return set_death_signal


class LocalExecutor:
    """Runs commands as subprocesses of this process, ``max_parallel`` at a time.

    Each command's stdout and stderr go to ``<log_dir>/<label>.log`` (label: the one given to
    ``run``, else the command's position).
    """

    def __init__(self, log_dir: Path | str, max_parallel: int = 1, threads: Optional[int] = None) -> None:
        if max_parallel < 1:
            raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
        self.log_dir = Path(log_dir)
        self.max_parallel = max_parallel
        self.threads = threads or max(1, available_cores() // max_parallel)

    def run(self, commands: Sequence[Sequence[str]], on_done: Callable[[int, int], None],
            labels: Optional[Sequence[str]] = None) -> list[int]:
        """Run every command; call ``on_done(index, exit_code)`` as each ends; return the exit
        codes in the commands' order (negative: killed by that signal)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        codes: list[Optional[int]] = [None] * len(commands)
        queue = list(range(len(commands)))
        running: dict[int, subprocess.Popen] = {}
        try:
            while queue or running:
                while queue and len(running) < self.max_parallel:
                    index = queue.pop(0)
                    label = labels[index] if labels is not None else str(index)
                    running[index] = self._start(commands[index], env, self.log_dir / f"{label}.log")
                for index, process in list(running.items()):
                    if process.poll() is not None:
                        del running[index]
                        codes[index] = process.returncode
                        on_done(index, process.returncode)
                time.sleep(0.1)
        except BaseException as error:  # Ctrl-C, or SystemExit from a SIGTERM handler: stop the runs
            _stop(running.values(), signal.SIGINT if isinstance(error, KeyboardInterrupt) else signal.SIGTERM)
            raise
        return [int(code) for code in codes]

    @staticmethod
    def _start(command: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        with open(log, "ab") as handle:
            return subprocess.Popen(list(command), stdout=handle, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL,
                                    preexec_fn=die_with_parent(signal.SIGKILL) if sys.platform.startswith("linux") else None)


def _stop(processes, signum: int) -> None:
    """Pass ``signum`` on to each run still going after a second (a Ctrl-C on the terminal has
    reached them already), then wait; a run that has not ended after ``_GRACE_S`` is killed."""
    processes = list(processes)
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline and any(p.poll() is None for p in processes):
        time.sleep(0.1)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signum)
    deadline = time.monotonic() + _GRACE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
