"""The executors a study can run on, by name: ``local`` (a process pool) and ``slurm`` (submitit)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from experiments.studies.local import LocalExecutor
from experiments.studies.runner import Executor
from experiments.studies.spec import StudyError

__all__ = ["EXECUTORS", "LOCAL_OPTIONS", "build_executor"]

EXECUTORS = ("local", "slurm")
# The local executor's --executor-options: warm=false starts every run as a new process
LOCAL_OPTIONS = {"warm": "start runs from a warm worker that imported torch and Lightning once (default true)"}


def build_executor(name: str, log_dir: Path, *, max_parallel: int = 1, options: dict[str, Any]) -> Executor:
    """The executor ``name``; bad input (an unknown name, options the executor does not take, no
    ``sbatch`` on this machine) is a one-line ``StudyError`` before anything runs."""
    if name == "local":
        unknown = [key for key in options if key not in LOCAL_OPTIONS]
        if unknown:
            raise StudyError(f"the local executor takes no --executor-options {', '.join(unknown)} "
                             f"(valid: {', '.join(LOCAL_OPTIONS)}; runs at a time: --max-parallel)")
        warm = options.get("warm", True)
        if not isinstance(warm, bool):
            raise StudyError(f"--executor-options warm={warm} is not a boolean (true or false)")
        return LocalExecutor(log_dir, max_parallel=max_parallel, warm=warm)
    if name == "slurm":
        if shutil.which("sbatch") is None:
            raise StudyError("--executor slurm needs SLURM's sbatch on PATH; it is not found on this machine")
        from experiments.studies.slurm import SlurmExecutor

        try:  # --max-parallel is the array's parallelism unless the options set it themselves
            return SlurmExecutor(log_dir, options={"max_parallel": max_parallel, **options})
        except ValueError as error:
            raise StudyError(str(error)) from None
    raise StudyError(f"unknown executor {name!r} (valid: {', '.join(EXECUTORS)})")
