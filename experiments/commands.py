"""The one-run commands, ``optbench train``, ``config`` and ``optimizers``, as plain functions
(``experiments.cli`` parses the command line and calls them; tests call them directly).

Each prints its result on ``console`` (stdout by default) and its problems on stderr, one line
each, and returns what the command computed, or, for ``train``, the process's exit status.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from experiments.store import EXIT_FAILED, EXIT_RESULT, FINISHED

__all__ = ["train_command", "config_command", "optimizers_command", "result_line"]


def _launch_rank_zero() -> bool:
    """Whether this process reports (progress, interruptions), decided before Lightning knows its
    rank: not a process that Lightning's DDP launcher, torchrun or srun started as another rank.
    Only what is printed depends on this; the trainer's global rank decides what is written."""
    return all(int(os.environ.get(name, 0)) == 0 for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"))


def _number(value: Optional[float]) -> str:
    return "none" if value is None else f"{value:.4g}"


def result_line(summary: dict[str, Any], where: str) -> str:
    """The one line ``optbench train`` ends with, e.g. ``completed: runs/default/0a1b2c3d4e5f
    val/acc best=0.9612  steps_to_target=600 (target 0.93)  300 steps in 37.2s`` (a diverged
    run's step count is where it stopped). Printed as plain text: never wrapped."""
    from experiments.callbacks.progress import format_duration

    metric = summary["metric"]
    reached = summary["steps_to_target"]
    reached_text = reached if reached is not None else "not reached"
    target = f"steps_to_target={reached_text} (target {_number(summary['target'])})"
    return (f"{summary['status']}: {where}  {metric} best={_number(summary['best'][metric])}  {target}  "
            f"{summary['global_step']} steps in {format_duration(summary['wall_time_s'])}")


def train_command(overrides: Sequence[str] = (), *, config_file: Optional[str | Path] = None, force: bool = False,
                  progress_every_s: float = 5.0, report_progress: bool = False,
                  console: Optional[Console] = None) -> int:
    """``optbench train``: train the run that ``config_file`` and ``overrides`` describe and
    return the exit status: 0 completed, diverged or already finished (the result line on
    ``console``); 1 failed; 128 + the signal's number when SIGINT or SIGTERM interrupted it
    (the same call resumes it). The failure and the interruption are one line on stderr.

    Bad input raises ``ValueError`` before Lightning loads; a run that another live process
    trains raises ``RunLockedError``. ``report_progress``: print the run directory and progress
    on stderr, every ``progress_every_s`` seconds (a bar on a terminal); it adds a logging
    handler, so a process asks for it once (the CLI does).
    """
    from experiments.config import load_config, run_dir

    config = load_config(overrides, path=config_file)  # bad input fails before Lightning loads
    from experiments.callbacks import progress
    from experiments.callbacks.interrupt import Interrupted
    from experiments.train import train

    console = console or Console()
    reporter = _launch_rank_zero()
    if report_progress and reporter:  # DDP children build the same data: one report is enough
        progress.report_to(sys.stderr)
    where = run_dir(config)
    try:
        summary = train(config, force=force, progress_every_s=progress_every_s)
    except Interrupted as interrupted:
        if reporter:
            resumes = "resumes it" if (where / "config.yaml").is_file() else "starts it again"
            print(f"optbench: run {interrupted} ({where}); the same command {resumes}", file=sys.stderr)
        return interrupted.exit_code
    if summary is None:
        return EXIT_RESULT  # another process of a multi-process run: the global rank 0 reports
    if summary.get("skipped"):
        console.out(f"already {summary['status']}: {where} (use --force to run it again)", highlight=False)
        return EXIT_RESULT
    if summary["status"] in FINISHED:
        console.out(result_line(summary, str(where)), highlight=False)
        return EXIT_RESULT
    print(f"optbench: run {summary['status']}: {summary['error'] or 'stopped early'} ({where})", file=sys.stderr)
    return EXIT_FAILED


def config_command(overrides: Sequence[str] = (), *, config_file: Optional[str | Path] = None,
                   console: Optional[Console] = None) -> DictConfig:
    """``optbench config``: the config ``train_command`` would run for the same arguments,
    printed as YAML on ``console``; nothing is trained or written."""
    from experiments.config import load_config, to_yaml

    config = load_config(overrides, path=config_file)
    (console or Console()).out(to_yaml(config), end="", highlight=False)
    return config


def optimizers_command(*, console: Optional[Console] = None) -> Table:
    """``optbench optimizers``: the registered optimizers and their defaults, as a table."""
    from experiments.optimizer_listing import optimizer_table

    table = optimizer_table()
    (console or Console()).print(table)
    return table
