"""The SLURM executor: a study's commands as one job array, submitted and watched by submitit.

Each array task runs one command (an ``optbench train`` argv) as a child process, its output
appended to ``<log_dir>/<label>.log``; submitit's own files (sbatch scripts, pickles, the tasks'
logs) go to ``<log_dir>/submitit/``, which must sit on a file system the compute nodes share.

Requeue: SLURM sends the preemption/time-limit signal (submitit's ``USR2``, ``signal_delay_s``
seconds before the limit) to every process of the task. The child ignores it; submitit's handler
in the task calls ``checkpoint()``, which passes SIGTERM on to the child and waits for it, so
``optbench train`` records itself as interrupted, and then submitit requeues the task with the
same command, which resumes the run from its checkpoint (the run store's business). A task that
SLURM ends itself (``scontrol requeue``, preemption with requeue, ``scancel``, the time limit)
sends SIGTERM to child and task alike: the task then leaves no result, so a requeued task is
waited for and a cancelled one is reported from ``sacct``. A task requeued near its time limit
counts against ``max_num_timeout``, a preempted one does not; submitit tells them apart by the
time run so far, and with a ``time`` of 10 minutes or less it counts every requeue as a time-out.

Everything reaches SLURM through its commands (sbatch, sacct, scancel, scontrol), run with this
process's environment, which sbatch also passes on to the tasks: a cluster other than
/etc/slurm's is chosen by exporting ``SLURM_CONF``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError

__all__ = ["NO_EXIT_CODE", "OPTIONS", "SlurmExecutor"]

# Options that differ from submitit's SlurmExecutor parameters (the others pass through under
# their submitit names: partition, gpus_per_node, cpus_per_task, account, qos, constraint,
# signal_delay_s, setup, additional_parameters (extra #SBATCH flags), ...).
OPTIONS = {
    "time": "the time limit of each task in minutes (default 60)",
    "mem_gb": "memory per node in GB",
    "max_parallel": "how many array tasks run at once (SLURM's --array=...%N)",
    "max_num_timeout": "how many times a task that reaches its time limit is requeued (default 3)",
}
DEFAULTS = {"time": 60, "job_name": "optbench"}

# The code reported for a task that ended without its command's exit code: cancelled, out of
# time (requeues spent), out of memory, node failure. SLURM stops a job with SIGTERM, so it reads
# as a kill by SIGTERM, as a local run stopped that way does (negative: killed by that signal).
NO_EXIT_CODE = -int(signal.SIGTERM)

_POLL_S = 2.0  # how often finished tasks are looked for (a file check each; sacct less often)
_GRACE_S = 60  # how long an interrupted command may take to save before it is killed
# SLURM states in which a task ended without submitit writing its result: no need to wait for
# one (submitit waits 15 s for a result file a slow shared file system may not show yet).
_ENDED_BY_SLURM = {"CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}


def _ignore_requeue_signal() -> None:  # runs in the child between fork and exec
    signal.signal(getattr(signal, f"SIG{submitit.JobEnvironment.USR_SIG}"), signal.SIG_IGN)


class _Command(submitit.helpers.Checkpointable):
    """One array task: run ``argv`` as a child process and return its exit code."""

    def __init__(self, argv: Sequence[str], log: Path) -> None:
        self.argv = list(argv)
        self.log = log
        self._child: Optional[subprocess.Popen] = None
        self._stopped_by_slurm = False

    def __call__(self) -> int:
        signal.signal(signal.SIGTERM, self._on_sigterm)  # after submitit's handlers, which log it only
        with open(self.log, "ab") as log:
            self._child = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                           preexec_fn=_ignore_requeue_signal)
            code = self._child.wait()
        if self._stopped_by_slurm:
            # SLURM is ending this task (cancel, requeue, time limit): no result, so that a
            # requeued task is waited for, not taken as done with the interrupted run's code.
            sys.exit(128 + signal.SIGTERM)
        return code

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        # SLURM signals every process of the task, the child included: only note it here.
        self._stopped_by_slurm = True

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on preemption or near the time limit: stop the child with SIGTERM
        (it records itself as interrupted and keeps its checkpoint), then requeue the same command.

        The child is reaped with ``os.waitpid``: this runs inside a signal handler that may have
        interrupted ``Popen.wait`` in ``__call__``, which holds the Popen's lock.
        """
        if self._child is not None:
            self._child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + _GRACE_S
            try:
                while os.waitpid(self._child.pid, os.WNOHANG) == (0, 0):
                    if time.monotonic() > deadline:
                        self._child.kill()
                        os.waitpid(self._child.pid, 0)
                        break
                    time.sleep(0.1)
            except ChildProcessError:  # already reaped by __call__
                pass
        return submitit.helpers.DelayedSubmission(_Command(self.argv, self.log))


class SlurmExecutor:
    """Runs commands as one SLURM job array through submitit.

    ``options``: submitit's SlurmExecutor parameters plus ``OPTIONS``; an unknown name or no
    ``sbatch`` on PATH is a one-line ``ValueError`` here, before anything is submitted. SLURM's
    commands reach the cluster that ``SLURM_CONF`` (or /etc/slurm) names, in this process and in
    the jobs, which inherit its environment.
    """

    def __init__(self, log_dir: Path, *, options: dict[str, Any]) -> None:
        valid = sorted(set(OPTIONS) | submitit.SlurmExecutor._valid_parameters())
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(f"unknown slurm executor option(s) {', '.join(unknown)} (valid: {', '.join(valid)})")
        if shutil.which("sbatch") is None:
            raise ValueError("the slurm executor needs SLURM's sbatch on PATH; it is not found on this machine")
        self.log_dir = Path(log_dir)
        parameters = {**DEFAULTS, **options}
        if "mem_gb" in parameters:
            parameters["mem"] = f"{round(float(parameters.pop('mem_gb')) * 1024)}M"
        if "max_parallel" in parameters:
            parameters["array_parallelism"] = parameters.pop("max_parallel")
        self._executor = submitit.SlurmExecutor(self.log_dir / "submitit",
                                                max_num_timeout=parameters.pop("max_num_timeout", 3))
        try:  # submitit checks the values by writing an sbatch script
            self._executor.update_parameters(**parameters)
        except (ValueError, TypeError) as error:
            raise ValueError(f"bad slurm executor options: {str(error).splitlines()[0]}") from None

    def run(self, commands: Sequence[Sequence[str]], on_done: Callable[[int, int], None],
            labels: Optional[Sequence[str]] = None) -> list[int]:
        """Submit ``commands`` as one job array, wait for every task, call ``on_done(index,
        exit_code)`` as each ends and return the exit codes in the commands' order
        (``NO_EXIT_CODE`` for a task that SLURM ended). A task's output goes to
        ``<log_dir>/<label>.log`` (label: the one given, else the command's position).

        If waiting is interrupted (Ctrl-C, an exception from ``on_done``), the unfinished tasks are
        cancelled: SLURM sends their commands SIGTERM, so the runs record themselves as interrupted
        and resume when the study is run again, as with the local executor."""
        if not commands:
            return []
        labels = labels if labels is not None else [str(index) for index in range(len(commands))]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self._executor.batch():
            jobs = [self._executor.submit(_Command(argv, (self.log_dir / f"{label}.log").absolute()))
                    for argv, label in zip(commands, labels)]
        index = {job.job_id: position for position, job in enumerate(jobs)}
        codes = [NO_EXIT_CODE] * len(jobs)
        waiting = set(index)
        try:
            for job in submitit.helpers.as_completed(jobs, poll_frequency=_POLL_S):
                position = index[job.job_id]
                waiting.discard(job.job_id)
                codes[position] = _exit_code(job)
                on_done(position, codes[position])
        except BaseException:  # Ctrl-C, a failing on_done: leave nothing running unwatched
            if waiting:
                subprocess.run(["scancel", *sorted(waiting)], capture_output=True)
            raise
        return codes


def _exit_code(job: submitit.Job) -> int:
    """The command's exit code from the task's result, or ``NO_EXIT_CODE`` when it left none."""
    if not job.paths.result_pickle.exists() and job.state.split()[0] in _ENDED_BY_SLURM:
        return NO_EXIT_CODE
    try:
        return job.result()
    except (UncompletedJobError, FailedJobError):  # ended by SLURM, or submitit's wrapper failed
        return NO_EXIT_CODE
