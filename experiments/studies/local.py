"""The local executor: every run its own process, at most ``max_parallel`` at a time.

A crash, an out-of-memory kill or a ``kill -9`` of one run ends that process only; the executor
reports its exit code and goes on. With N runs in parallel each gets max(1, cores // N) torch
threads (``OMP_NUM_THREADS``), so that N processes do not oversubscribe the cores. On Linux a
run dies with the executor's process (``PR_SET_PDEATHSIG``): a study killed with ``kill -9``
leaves no orphans training on, and its runs resume from their checkpoints when it is run again.
An interrupted study (Ctrl-C, SIGTERM) passes the signal on to its runs and waits for them to
record themselves as interrupted.

With ``warm`` (the default, on systems with ``fork``), the commands that run a Python module
with this interpreter (``python -m experiments.cli train ...``: every study run) start as
children of one warm worker (``experiments.studies.warm_worker``), which has imported torch,
Lightning and optbench once, instead of as new interpreters that import them again; everything
above holds for them as well. Other commands, and every command without ``warm``, start as new
processes. A run's result is the same either way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from experiments.studies.warm_worker import WarmRun, WarmWorker, warm_module

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


Process = Union[subprocess.Popen, WarmRun]


class LocalExecutor:
    """Runs commands as processes of this machine, ``max_parallel`` at a time.

    Each command's stdout and stderr go to ``<log_dir>/<label>.log`` (label: the one given to
    ``run``, else the command's position). With ``warm``, module commands start in a warm
    worker, kept from one ``run`` to the next until ``close`` (or until the executor is
    collected); a worker that dies is replaced, and one that cannot start a run leaves the
    remaining commands to new processes.
    """

    def __init__(self, log_dir: Path | str, max_parallel: int = 1, threads: Optional[int] = None,
                 warm: bool = True) -> None:
        if max_parallel < 1:
            raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
        self.log_dir = Path(log_dir)
        self.max_parallel = max_parallel
        self.threads = threads or max(1, available_cores() // max_parallel)
        self.warm = warm and hasattr(os, "fork")
        self._worker: Optional[WarmWorker] = None
        self._closer: Optional[weakref.finalize] = None

    def run(self, commands: Sequence[Sequence[str]], on_done: Callable[[int, int], None],
            labels: Optional[Sequence[str]] = None) -> list[int]:
        """Run every command; call ``on_done(index, exit_code)`` as each ends; return the exit
        codes in the commands' order (negative: killed by that signal)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        codes: list[Optional[int]] = [None] * len(commands)
        queue = list(range(len(commands)))
        running: dict[int, Process] = {}
        try:
            while queue or running:
                ended = [index for index, process in running.items() if process.poll() is not None]
                for index in ended:
                    codes[index] = running.pop(index).returncode
                while queue and len(running) < self.max_parallel:  # the freed slots first, then the records
                    index = queue.pop(0)
                    label = labels[index] if labels is not None else str(index)
                    running[index] = self._start(commands[index], env, self.log_dir / f"{label}.log")
                for index in ended:
                    on_done(index, codes[index])
                if running and not ended:
                    self._wait(0.1)
        except BaseException as error:  # Ctrl-C, or SystemExit from a SIGTERM handler: stop the runs
            _stop(running.values(), signal.SIGINT if isinstance(error, KeyboardInterrupt) else signal.SIGTERM)
            self.close()
            raise
        return [int(code) for code in codes]

    def _wait(self, seconds: float) -> None:
        """Wait ``seconds``, or less: a warm run's end (its worker's event) ends the wait at once,
        so that its slot takes the next command at once. A process started cold is seen at the
        next look."""
        if self._worker is not None and self._worker.alive:
            self._worker.collect(timeout=seconds)
        else:
            time.sleep(seconds)

    def close(self) -> None:
        """End the warm worker, if one is running (the next ``run`` starts another)."""
        if self._closer is not None:
            self._closer()
        self._worker = self._closer = None

    def _start(self, command: Sequence[str], env: dict[str, str], log: Path) -> Process:
        module = warm_module(command) if self.warm else None
        if module is not None:
            if self._worker is None or not self._worker.alive:
                self.close()
                self._worker = WarmWorker(env, preexec_fn=_death_signal())
                self._closer = weakref.finalize(self, self._worker.close)
            try:
                return self._worker.start(*module, log)
            except RuntimeError:  # the worker died before it could start the run: no warm workers now
                self.close()
                self.warm = False
        with open(log, "ab") as handle:
            return subprocess.Popen(list(command), stdout=handle, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL, preexec_fn=_death_signal())


def _death_signal() -> Optional[Callable[[], None]]:
    """The ``preexec_fn`` that makes a child die with this process, where the OS has one."""
    return die_with_parent(signal.SIGKILL) if sys.platform.startswith("linux") else None


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
