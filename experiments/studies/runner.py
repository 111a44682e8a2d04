"""Running a study: the search phase, the selection in each cell (extending a search beyond an
edge its selection sits on, and selecting again), the seeds phase.

The run store is the only state. Before each phase every planned run is looked up in it:
completed and diverged runs are results (skipped); a run that a live process trains elsewhere
is left to it; a failed run is started again until it has been started ``max_attempts`` times
(then it is reported, not retried); any other run (never started, interrupted, killed) is run,
and ``optbench train`` resumes it from its checkpoint. So running the same command again after
a crash, a ``kill -9`` or a Ctrl-C of the study ends with the results of an uninterrupted one.
Seeds re-run the point each cell selects, so they wait for the cell's search to be final.
Extensions and selections are functions of the store too (``cell_selection``): every invocation,
and ``optbench study status``, plans the same ones. ``selections.json`` records them
(``experiments.studies.record``).
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

from experiments.store import EXIT_LOCKED, FAILED, FINISHED, RUNNING, RunStore, write_json_atomic
from experiments.studies.plan import EXTEND, GRID, SEARCH, SEEDS, Cell, PlannedRun, StudyPlan
from experiments.studies.protocol import SELECTED, Selection, select
from experiments.studies.record import RECORD, SELECTIONS

__all__ = ["Executor", "StudyLog", "StudyResult", "CellSelection", "run_study", "run_state", "cell_selection",
           "write_record", "write_selections", "edge_line", "RECORD"]

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


@dataclass(frozen=True)
class CellSelection(Selection):
    """A cell's selection (``chosen`` indexes ``points``), and the points its search tried to
    make it, extensions included."""

    points: tuple[dict, ...] = ()  # every point tried: the search's, then each extension's
    runs: tuple[tuple[PlannedRun, ...], ...] = ()  # each point's runs
    extensions: int = 0  # how many times the search was extended beyond an edge

    @property
    def chosen_runs(self) -> tuple[PlannedRun, ...]:
        """The runs of the selected point (empty if none is selected)."""
        return self.runs[self.chosen] if self.state == SELECTED else ()

    def trials(self) -> list[PlannedRun]:
        """Every run of the search, extensions included."""
        return [run for runs in self.runs for run in runs]


def _by_point(runs: Sequence[PlannedRun]) -> dict[tuple, list[PlannedRun]]:
    points: dict[tuple, list[PlannedRun]] = {}
    for run in runs:
        points.setdefault(run.point, []).append(run)
    return points


def cell_selection(plan: StudyPlan, cell: Cell) -> CellSelection:
    """The cell's selection from its trials' summaries (final ones only: see ``protocol.select``).

    While the selection sits on an edge of the space and the search was extended fewer than
    ``search.extend`` times, the search is extended (``StudyPlan.extension_runs``) and the
    selection made again over every point: pending until the extension's runs are final."""
    points = _by_point(cell.trials)
    objective = plan.spec.search.objective if plan.spec.search else "best"
    cap = plan.spec.search.extend if plan.spec.search else 0
    extensions = 0
    while True:
        summaries = [_final_summaries(plan, runs) for runs in points.values()]
        selection = select([dict(point) for point in points], summaries, objective)
        if selection.state == SELECTED and selection.edges and extensions < cap:
            tried = [dict(point) for point in points]
            new = plan.extension_runs(cell, tried, tried[selection.chosen], selection.edges)
            if new:
                points.update(_by_point(new))
                extensions += 1
                continue
        return CellSelection(selection.state, selection.chosen, selection.edges, tuple(dict(p) for p in points),
                             tuple(tuple(runs) for runs in points.values()), extensions)


def _final_summaries(plan: StudyPlan, runs: Sequence[PlannedRun]) -> Optional[list[dict]]:
    """The summaries of a point's runs once every one is final (finished, or failed past the
    retry cap), else None."""
    states = [run_state(run, plan.spec.max_attempts) for run in runs]
    if any(state not in (FINISHED_STATE, GIVEN_UP) for state in states):
        return None
    return [RunStore(run.root).summary() for run in runs]


def write_record(plan: StudyPlan) -> None:
    """``study.json``: the spec as written and the overrides, so that ``optbench study status``
    can list the runs still to come and each cell's selection."""
    plan.study_dir.mkdir(parents=True, exist_ok=True)
    record = {"source": plan.spec.source, "spec": plan.spec.raw, "overrides": list(plan.overrides)}
    (plan.study_dir / RECORD).write_text(json.dumps(record, indent=2) + "\n")


def write_selections(plan: StudyPlan) -> list[CellSelection]:
    """``selections.json``: per cell, its selection and which runs tried, selected, confirm and
    measure it (``record.run_roles`` reads the roles back); returns the selections."""
    cells, entries = [], []
    for cell in plan.cells:
        selection = cell_selection(plan, cell)
        entry = {"cell": dict(cell.key), "state": selection.state, "extensions": selection.extensions,
                 "edges": list(selection.edges), "trials": [run.run_id for run in selection.trials()]}
        if selection.state == SELECTED:
            chosen = selection.chosen_runs
            entry.update(point=selection.points[selection.chosen], selecting=[run.run_id for run in chosen],
                         confirming=[run.run_id for run in plan.seed_runs(cell, chosen[0])
                                     if run.run_id not in entry["trials"]],
                         measuring=[run.run_id for run in plan.noise_runs(cell, chosen[0])])
        cells.append(selection)
        entries.append(entry)
    plan.study_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(plan.study_dir / SELECTIONS, {"cells": entries})
    return cells


def run_study(plan: StudyPlan, executor: Executor, log: StudyLog) -> StudyResult:
    """Run the search phase, select in each cell (extending searches whose selection sits on an
    edge, as often as ``search.extend`` allows), run the seeds phase; return what was planned."""
    write_record(plan)
    result = StudyResult()
    search = plan.search_runs()
    _run_phase(SEARCH if plan.spec.search else GRID, search, plan, executor, log)
    result.runs += search
    if plan.spec.search is None:
        write_selections(plan)
        return result
    tried = {run.run_id for run in search}
    while True:  # each round extends the searches that still sit on an edge; a failed run waits for the next invocation
        extension = [run for cell in plan.cells for run in cell_selection(plan, cell).trials()
                     if run.run_id not in tried]
        result.runs += extension
        tried |= {run.run_id for run in extension}
        todo = [run for run in extension if run_state(run, plan.spec.max_attempts) == TO_RUN]
        if not todo:
            break
        _run_phase(EXTEND, todo, plan, executor, log)
    seeds: list[PlannedRun] = []
    selections = write_selections(plan)
    for cell, selection in zip(plan.cells, selections):
        if selection.state != SELECTED:
            log(f"cell {cell.label}: {selection.state}")
            continue
        chosen = selection.chosen_runs[0]
        point = " ".join(f"{k}={v}" for k, v in chosen.point)
        extended = f", search extended {selection.extensions}x" if selection.extensions else ""
        log(f"cell {cell.label}: selected {' '.join(run.run_id for run in selection.chosen_runs)} ({point}{extended})")
        if selection.warning:
            log(f"warning: cell {cell.label}: {selection.warning}", style="yellow")
        seeds += [run for run in [*plan.seed_runs(cell, chosen), *plan.noise_runs(cell, chosen)] if run.run_id not in tried]
    selected = [s for s in selections if s.state == SELECTED]
    log(edge_line(len(selected), sum(1 for s in selected if s.edges), plan.spec.search.extend))
    if seeds:
        _run_phase(SEEDS, seeds, plan, executor, log)
    result.runs += seeds
    write_selections(plan)
    return result


def edge_line(selected: int, on_edge: int, cap: int) -> str:
    """``3 of 20 selections remain on an edge of the search space (searches extended up to 2 times: search.extend)``."""
    return (f"{on_edge} of {selected} selections remain on an edge of the search space "
            f"(searches extended up to {cap} time{'s' if cap != 1 else ''}: search.extend)")


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
