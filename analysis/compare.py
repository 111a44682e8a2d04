"""Every comparison of a set of runs, computed once from the frames: what tables, figures,
findings and the report read."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis import frames as F
from analysis.cells import CELL, best_cells, direction_of, finished
from analysis.convergence import convergence_curves, run_targets, target_summary
from analysis.frames import Frames
from analysis.layer_stats import layer_trajectories
from analysis.memory import memory_table
from analysis.profiles import performance_profile, task_costs
from analysis.scaling import critical_batch_table, scaling_table
from analysis.stability import largest_stable_lr, stability_table
from analysis.paper_table import paper_table

__all__ = ["Comparison", "compare", "PROFILE_COSTS"]

PROFILE_COSTS = {"steps to target": "steps_mean", "time to target": "time_mean"}


@dataclass(frozen=True)
class Comparison:
    """The frames of every comparison (each documented where it is computed)."""

    runs: pd.DataFrame            # the loaded runs frame
    metrics: dict[str, str]       # task → its validation metric
    directions: dict[str, bool]   # task → higher is better
    cells: pd.DataFrame           # cells.best_cells: the best cell per task × optimizer
    targets: pd.DataFrame         # convergence.run_targets: per run, censored at the budget
    cell_targets: pd.DataFrame    # convergence.target_summary per cell
    best_targets: pd.DataFrame    # cell_targets of the best cells
    curves: pd.DataFrame          # convergence.convergence_curves of the best cells
    stability: pd.DataFrame       # stability.stability_table
    stable_lr: pd.DataFrame       # stability.largest_stable_lr
    memory: pd.DataFrame          # memory.memory_table
    scaling: pd.DataFrame         # scaling.scaling_table
    critical_batch: pd.DataFrame  # scaling.critical_batch_table
    costs: dict[str, pd.DataFrame]     # profiles.task_costs, by PROFILE_COSTS name
    profiles: dict[str, pd.DataFrame]  # profiles.performance_profile, by PROFILE_COSTS name
    layers: pd.DataFrame          # layer_stats.layer_trajectories of the best cells
    paper: pd.DataFrame           # tables.paper_table


def compare(frames: Frames) -> Comparison:
    """All comparisons of ``frames`` (pure: reads the frames, writes nothing)."""
    runs = frames.runs
    results = finished(runs)
    metrics = {task: group[F.METRIC].mode().iloc[0] for task, group in results.dropna(subset=[F.METRIC]).groupby(F.TASK)}
    directions = direction_of(runs)
    cells = best_cells(runs)
    targets = run_targets(runs, frames.metrics)
    cell_targets = target_summary(targets)
    scaling = scaling_table(runs, cell_targets)
    costs = {name: task_costs(cell_targets, column) for name, column in PROFILE_COSTS.items()}
    return Comparison(
        runs=runs, metrics=metrics, directions=directions, cells=cells, targets=targets, cell_targets=cell_targets,
        best_targets=cell_targets.merge(cells[CELL], on=CELL),
        curves=convergence_curves(runs, frames.metrics, cells),
        stability=(stability := stability_table(runs)), stable_lr=largest_stable_lr(stability),
        memory=memory_table(runs), scaling=scaling, critical_batch=critical_batch_table(runs, scaling),
        costs=costs, profiles={name: performance_profile(c) for name, c in costs.items()},
        layers=layer_trajectories(runs, frames.layers, cells),
        paper=paper_table(cells, metrics, directions),
    )
