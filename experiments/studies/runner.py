"""Running a study: the search phase, the selection in each cell, the seeds phase.

The run store is the only state. Before each phase every planned run is looked up in it:
completed and diverged runs are results (skipped); a run that a live process trains elsewhere
is left to it; a failed run is started again until it has been started ``max_attempts`` times
(then it is reported, not retried); any other run (never started, interrupted, killed) is run,
and ``optbench train`` resumes it from its checkpoint. So running the same command again after
a crash, a ``kill -9`` or a Ctrl-C of the study ends with the results of an uninterrupted one.
Seeds re-run the point each cell selects, so they wait for the cell's search to be final.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Protocol, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from experiments.store import EXIT_LOCKED, FAILED, FINISHED, RUNNING, RunStore
from experiments.studies.plan import Cell, PlannedRun, StudyPlan
from experiments.studies.protocol import SELECTED, Selection, select

__all__ = ["Executor", "StudyLog", "StudyResult", "run_study", "run_state", "cell_selection", "RECORD",
           "write_record"]

RECORD = "study.json"  # the spec and overrides of the study's last invocation, beside its runs

# run_state values
TO_RUN, FINISHED_STATE, RUNNING_ELSEWHERE, GIVEN_UP = "to run", "finished", "running elsewhere", "given up"


class Executor(Protocol):
    def run(self, commands: list[list[str]], on_done: Callable[[int, int], None],
            labels: Optional[Sequence[str]] = None) -> list[int]: ...


class StudyLog:
    """Lines for the user (on the console) and for the record (``<study dir>/study.log``)."""

    def __init__(self, path: Optional[Path], console: Console) -> None:
        self.path = path
        self.console = console

    def __call__(self, message: str, style: str = "") -> None:
        self.console.print(message, style=style or None, markup=False, highlight=False, soft_wrap=True)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as handle:
                handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


@dataclass
class StudyResult:
    runs: list[PlannedRun] = field(default_factory=list)  # every run planned (search, then seeds)

    def unfinished(self) -> list[PlannedRun]:
        return [run for run in self.runs if RunStore(run.root).status() not in FINISHED]


def run_state(run: PlannedRun, max_attempts: int) -> str:
    """What the study does with ``run`` now, from the store alone."""
    store = RunStore(run.root)
    status = store.status()
    if status in FINISHED:
        return FINISHED_STATE
    if status == RUNNING:
        return RUNNING_ELSEWHERE
    if status == FAILED and store.attempts() >= max_attempts:
        return GIVEN_UP
    return TO_RUN


def cell_selection(plan: StudyPlan, cell: Cell) -> Selection:
    """The cell's selection from its trials' summaries (final ones only: see ``protocol.select``)."""
    summaries = []
    for trial in cell.trials:
        state = run_state(trial, plan.spec.max_attempts)
        summaries.append(RunStore(trial.root).summary() if state in (FINISHED_STATE, GIVEN_UP) else None)
    objective = plan.spec.search.objective if plan.spec.search else "best"
    return select([dict(t.point) for t in cell.trials], summaries, objective)


def write_record(plan: StudyPlan) -> None:
    """``study.json``: the spec as written and the overrides, so that ``optbench study status``
    can list the runs still to come and each cell's selection."""
    plan.study_dir.mkdir(parents=True, exist_ok=True)
    record = {"source": plan.spec.source, "spec": plan.spec.raw, "overrides": list(plan.overrides)}
    (plan.study_dir / RECORD).write_text(json.dumps(record, indent=2) + "\n")


def run_study(plan: StudyPlan, executor: Executor, log: StudyLog) -> StudyResult:
    """Run the search phase, select in each cell, run the seeds phase; return what was planned."""
    write_record(plan)
    result = StudyResult()
    search = plan.search_runs()
    phase = "search" if plan.spec.search else "grid"
    _run_phase(phase, search, plan, executor, log)
    result.runs += search
    if plan.spec.search is None:
        return result
    seeds: list[PlannedRun] = []
    for cell in plan.cells:
        selection = cell_selection(plan, cell)
        if selection.state != SELECTED:
            log(f"cell {cell.label}: {selection.state}")
            continue
        chosen = cell.trials[selection.chosen]
        point = " ".join(f"{k}={v}" for k, v in chosen.point)
        log(f"cell {cell.label}: selected {chosen.run_id} ({point})")
        if selection.warning:
            log(f"warning: cell {cell.label}: {selection.warning}", style="yellow")
        seeds += plan.seed_runs(cell, chosen)
    if seeds:
        _run_phase("seeds", seeds, plan, executor, log)
    result.runs += seeds
    return result


def _run_phase(phase: str, runs: list[PlannedRun], plan: StudyPlan, executor: Executor, log: StudyLog) -> None:
    states = {run.run_id: run_state(run, plan.spec.max_attempts) for run in runs}
    todo = [run for run in runs if states[run.run_id] == TO_RUN]
    count = {state: sum(1 for s in states.values() if s == state) for state in set(states.values())}
    log(f"{phase}: {len(runs)} runs, {count.get(FINISHED_STATE, 0)} finished, {len(todo)} to run"
        + "".join(f", {count[s]} {s}" for s in (RUNNING_ELSEWHERE, GIVEN_UP) if count.get(s)))
    for run in runs:
        if states[run.run_id] == GIVEN_UP:
            log(f"not retried (started {plan.spec.max_attempts} times): {run.run_id} {_describe(run)}: "
                f"{_error(run)}", style="red")
    if not todo:
        return
    with _progress(log.console, phase, len(todo)) as advance:
        def on_done(index: int, code: int) -> None:
            run = todo[index]
            status = RunStore(run.root).status()
            message = status or _exit_text(code)
            if code == EXIT_LOCKED:
                message = "running elsewhere (another process holds its lock)"
            line = f"[{phase}] {message}: {run.run_id} {_describe(run)}"
            if status == FAILED or (status is None and code != EXIT_LOCKED):
                line += f": {_error(run) or _exit_text(code)}"
            log(line, style="" if status in FINISHED else "red")
            advance()

        executor.run([run.command() for run in todo], on_done, labels=[run.run_id for run in todo])


def _describe(run: PlannedRun) -> str:
    return " ".join(f"{k}={v}" for k, v in run.swept.items())


def _error(run: PlannedRun) -> Optional[str]:
    summary = RunStore(run.root).summary()
    return summary.get("error") if summary else None


def _exit_text(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


@contextmanager
def _progress(console: Console, phase: str, total: int) -> Iterator[Callable[[], None]]:
    """A rich progress bar over the phase's runs on a terminal; nothing otherwise (the log's
    lines are the progress there). Yields the function that advances it by one run."""
    if not console.is_terminal:
        yield lambda: None
        return
    with Progress(TextColumn(f"[bold]{phase}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(phase, total=total)
        yield lambda: bar.advance(task)
