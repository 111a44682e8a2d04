"""Every comparison of a set of runs, computed once from the frames: what tables, figures,
findings and the report read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd

from analysis import frames as F
from analysis.cells import CELL, best_cells, choose_cells, direction_of, finished
from analysis.convergence import convergence_curves, run_targets, target_summary
from analysis.frames import Frames
from analysis.layer_stats import layer_trajectories
from analysis.memory import memory_table
from analysis.orderings import against_leader
from analysis.profiles import performance_profile, task_costs
from analysis.roles import HELD_OUT, SCORES, with_roles
from analysis.scaling import critical_batch_table, scaling_table
from analysis.stability import largest_stable_lr, stability_table
from analysis.paper_table import paper_table
from analysis.tuning import tuning_budget, tuning_curves

__all__ = ["Comparison", "compare", "PROFILE_COSTS"]

PROFILE_COSTS = {"steps to target": "steps_mean", "time to target": "time_mean"}


@dataclass(frozen=True)
class Comparison:
    """The frames of every comparison (each documented where it is computed)."""

    runs: pd.DataFrame            # the loaded runs frame, with each run's role (roles.with_roles)
    metrics: dict[str, str]       # task → its validation metric
    directions: dict[str, bool]   # task → higher is better
    cells: pd.DataFrame           # cells.best_cells: the best cell per task × optimizer
    targets: pd.DataFrame         # convergence.run_targets: per run, censored at the budget
    cell_targets: pd.DataFrame    # convergence.target_summary per cell (all its runs)
    best_targets: pd.DataFrame    # fastest_targets: per task × optimizer, its fastest cell over its scoring runs
    speed: dict[str, pd.DataFrame]     # orderings.against_leader of best_targets, by PROFILE_COSTS name
    curves: pd.DataFrame          # convergence.convergence_curves of the best cells
    stability: pd.DataFrame       # stability.stability_table
    stable_lr: pd.DataFrame       # stability.largest_stable_lr
    memory: pd.DataFrame          # memory.memory_table
    scaling: pd.DataFrame         # scaling.scaling_table
    critical_batch: pd.DataFrame  # scaling.critical_batch_table
    costs: dict[str, pd.DataFrame]     # profiles.task_costs, by PROFILE_COSTS name
    profiles: dict[str, pd.DataFrame]  # profiles.performance_profile, by PROFILE_COSTS name
    layers: pd.DataFrame          # layer_stats.layer_trajectories of the best cells
    paper: pd.DataFrame           # paper_table.paper_table (its claims are the quality orderings)
    budget: pd.DataFrame          # tuning.tuning_budget
    tuning: pd.DataFrame          # tuning.tuning_curves


def fastest_targets(runs: pd.DataFrame, targets: pd.DataFrame) -> pd.DataFrame:
    """Per task × optimizer, the cell that reaches the target in the fewest steps
    (``cells.choose_cells``) with ``convergence.target_summary`` over the runs that score it and
    ``held_out``."""
    cells = choose_cells(runs, [F.TASK, F.OPTIMIZER], "steps_to_target")
    scored = targets[targets[SCORES]].merge(cells[CELL], on=CELL)
    held = scored.groupby(CELL)[HELD_OUT].any().rename("held_out").reset_index()
    return target_summary(scored).merge(held, on=CELL)


def _speed(best_targets: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """``orderings.against_leader`` of the ``steps`` or ``time`` to target (lower is better)."""
    stats = best_targets[[*CELL, f"{prefix}_mean", f"{prefix}_std", "n_runs", "n_censored", "held_out"]]
    stats = stats.rename(columns={f"{prefix}_mean": "mean", f"{prefix}_std": "std", "n_runs": "n"})
    return against_leader(stats, {task: False for task in stats[F.TASK].unique()})


def compare(frames: Frames, roles: Optional[pd.DataFrame] = None) -> Comparison:
    """All comparisons of ``frames`` (pure: reads the frames, writes nothing); ``roles``: each
    run's role and optimizer variant in its study (``roles.read_roles``), none if not given."""
    runs = with_roles(frames.runs, roles)
    results = finished(runs)
    metrics = {task: group[F.METRIC].mode().iloc[0] for task, group in results.dropna(subset=[F.METRIC]).groupby(F.TASK)}
    directions = direction_of(runs)
    cells = best_cells(runs)
    targets = run_targets(runs, frames.metrics)
    cell_targets = target_summary(targets)
    best_targets = fastest_targets(runs, targets)
    scaling = scaling_table(runs, targets)
    costs = {name: task_costs(best_targets, column) for name, column in PROFILE_COSTS.items()}
    return Comparison(
        runs=runs, metrics=metrics, directions=directions, cells=cells, targets=targets, cell_targets=cell_targets,
        best_targets=best_targets, speed={name: _speed(best_targets, column.split("_")[0])
                                          for name, column in PROFILE_COSTS.items()},
        curves=convergence_curves(runs, frames.metrics, cells),
        stability=(stability := stability_table(runs)), stable_lr=largest_stable_lr(stability),
        memory=memory_table(runs), scaling=scaling, critical_batch=critical_batch_table(runs, scaling),
        costs=costs, profiles={name: performance_profile(c) for name, c in costs.items()},
        layers=layer_trajectories(runs, frames.layers, cells),
        paper=paper_table(cells, metrics, directions), budget=tuning_budget(runs), tuning=tuning_curves(targets),
    )
