"""The ``optbench study`` commands, ``run``, ``status`` and ``list``, as plain functions
(``experiments.cli`` parses the command line and calls them; tests call them directly)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console
from rich.table import Table

from experiments.store import EXIT_FAILED, EXIT_RESULT, EXIT_SIGINT, EXIT_SIGTERM
from experiments.studies.executors import build_executor
from experiments.studies.plan import EXTEND, StudyPlan, plan_study
from experiments.studies.protocol import SELECTED
from experiments.studies.runner import TO_RUN, StudyLog, cell_selection, edge_line, run_state, run_study
from experiments.studies.spec import StudyError, builtin_names, builtin_path, load_spec
from experiments.studies import status as study_dir

__all__ = ["study_run", "study_status", "study_list", "executor_options"]


def executor_options(items: Sequence[str]) -> dict[str, Any]:
    """``k=v`` pairs, values typed as YAML reads them (``gpus_per_node=1`` is an int)."""
    for item in items:
        if "=" not in item:
            raise StudyError(f"--executor-options {item!r} is not of the form key=value")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(items)))
    except OmegaConfBaseException as error:
        raise StudyError(f"--executor-options: {str(error).splitlines()[0]}") from None


def study_run(spec: str | Path, overrides: Sequence[str] = (), *, executor: str = "local",
              executor_options: Optional[Mapping[str, Any]] = None, max_parallel: int = 1, dry_run: bool = False,
              console: Optional[Console] = None) -> int:
    """``optbench study run``: plan the study ``spec`` (a YAML file or a built-in name) with
    ``overrides`` applied to every run, say what exists and what will run, then run it on
    ``executor`` (``dry_run``: list the planned runs instead, and train nothing).

    Returns the exit status: 0 when every planned run has finished (completed or diverged), 1
    when some have not, 130 on Ctrl-C; SIGTERM ends the process with 143 (``SystemExit``). The
    same call resumes an interrupted study. Bad input raises ``ValueError`` (``StudyError``,
    ``ConfigError``) before anything is written.
    """
    console = console or Console()
    plan = plan_study(load_spec(str(spec)), overrides)
    console.print(_plan_line(plan), highlight=False, soft_wrap=True)
    if dry_run:
        console.print(_plan_table(plan))
        return EXIT_RESULT
    runner = build_executor(executor, plan.study_dir / "logs", max_parallel=max_parallel,
                            options=dict(executor_options or {}))
    log = StudyLog(plan.study_dir / "study.log", console)
    # SIGTERM (a scheduler's stop) unwinds through the executor, which stops its runs, as Ctrl-C does
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(EXIT_SIGTERM))
    try:
        result = run_study(plan, runner, log)
    except KeyboardInterrupt:
        log("study interrupted; run the same command again to resume it", style="red")
        return EXIT_SIGINT
    finally:
        signal.signal(signal.SIGTERM, previous)
    unfinished = result.unfinished()
    if unfinished:
        log(f"{len(unfinished)} of {len(result.runs)} runs not finished: `optbench study status "
            f"{plan.study_dir}` lists them; run the same command again to resume", style="red")
        return EXIT_FAILED
    log(f"all {len(result.runs)} runs finished: {plan.study_dir}")
    return EXIT_RESULT


def _plan_line(plan: StudyPlan) -> str:
    runs = plan.search_runs()
    finished = sum(1 for run in runs if run_state(run, plan.spec.max_attempts) == "finished")
    to_run = sum(1 for run in runs if run_state(run, plan.spec.max_attempts) == TO_RUN)
    phase = "search" if plan.spec.search else "grid"
    line = (f"study {plan.spec.name}: {len(plan.cells)} cells, {len(runs)} {phase} runs "
            f"({finished} finished, {to_run} to run)")
    if plan.spec.search and plan.spec.search.extend:
        line += f", extended past an edge up to {plan.spec.search.extend} times per cell"
    if plan.spec.seeds:
        seeds = len(plan.spec.seeds) + plan.spec.measure_noise_scale
        line += f", then up to {seeds} seed runs per cell at its selected point"
    return f"{line} -> {plan.study_dir}"


def _plan_table(plan: StudyPlan) -> Table:
    """Every planned run with its state now; the extension and seed runs of the cells whose
    search has come that far."""
    runs = list(plan.search_runs())
    waiting = 0
    for cell in plan.cells if plan.spec.search else ():
        selection = cell_selection(plan, cell)
        runs += [run for run in selection.trials() if run.phase == EXTEND]
        if selection.state == SELECTED:
            runs += [*plan.seed_runs(cell, selection.chosen_runs[0]), *plan.noise_runs(cell, selection.chosen_runs[0])]
        elif plan.spec.seeds:
            waiting += 1
    swept = list(dict.fromkeys(key for run in runs for key in run.swept))
    title = f"{len(runs)} planned runs" + (f"; seed runs of {waiting} cells follow their search" if waiting else "")
    table = Table(title=title, title_justify="left")
    for column in ["run_id", "phase", "state", *swept]:
        table.add_column(column, overflow="fold")
    for run in runs:
        table.add_row(run.run_id, run.phase, run_state(run, plan.spec.max_attempts),
                      *(str(run.swept.get(key, "")) for key in swept))
    return table


def study_status(directory: str | Path, *, as_json: bool = False,
                 console: Optional[Console] = None) -> dict[str, Any]:
    """``optbench study status``: the runs of the study in ``directory`` and their status, each
    cell's selection, printed as a table and one line per cell (``as_json``: as JSON, the keys
    ``runs``, ``cells``, ``counts`` and ``study``); returns that status."""
    console = console or Console()
    status = study_dir.study_status(directory)
    if as_json:
        console.out(json.dumps({"runs": status["runs"], "cells": status["cells"], "counts": status["counts"],
                                "study": status["study"]}, indent=2), highlight=False)
        return status
    if not console.is_terminal:  # a log or a pipe: one line per run rather than folded cells
        console.width = max(console.width, 200)
    console.print(study_dir.status_table(status))
    for cell in status["cells"]:
        label = " ".join(f"{k}={v}" for k, v in cell["cell"].items())
        extended = f", search extended {cell['extensions']}x" if cell["extensions"] else ""
        if cell["state"] == SELECTED:
            point = " ".join(f"{k}={v}" for k, v in cell["point"].items())
            console.print(f"cell {label}: selected {cell['selected']} ({point}), "
                          f"steps_to_target={cell['steps_to_target']}{extended}", highlight=False)
            if cell["warning"]:
                console.print(f"  warning: {cell['warning']}", style="yellow", highlight=False)
        else:
            console.print(f"cell {label}: {cell['state']}{extended}", highlight=False)
    selected = [cell for cell in status["cells"] if cell["state"] == SELECTED]
    if selected:
        console.print(edge_line(len(selected), sum(1 for cell in selected if cell["edges"]), status["extend"]),
                      highlight=False)
    return status


def study_list(*, console: Optional[Console] = None) -> list[str]:
    """``optbench study list``: the built-in studies and what each is for; returns their names."""
    table = Table(title="built-in studies (optbench study run NAME)", title_justify="left")
    table.add_column("name")
    table.add_column("description", overflow="fold")
    names = builtin_names()
    for name in names:
        table.add_row(name, load_spec(builtin_path(name)).description)
    (console or Console()).print(table)
    return names
