"""Cells: the configurations whose seeds are repeats of one another, and the best one per
optimizer on each task (the tuned point that convergence curves, the paper table and the
performance profiles compare).

A cell is (task, optimizer, batch_size, lr). Only finished runs (completed or diverged) are
results; failed, interrupted, running and incomplete runs are listed by the report, never
averaged.
"""

from __future__ import annotations

import pandas as pd

from analysis import frames as F
from experiments.store import DIVERGED, FINISHED

__all__ = ["CELL", "finished", "best_cells", "direction_of"]

CELL = [F.TASK, F.OPTIMIZER, F.BATCH_SIZE, F.LR]


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that are results (completed or diverged), with a boolean column ``diverged``
    (so that counting divergences is a sum, typed even over no runs)."""
    results = runs[runs[F.STATUS].isin(FINISHED)]
    return results.assign(diverged=results[F.STATUS].eq(DIVERGED).astype(bool))


def direction_of(runs: pd.DataFrame) -> dict[str, bool]:
    """Per task, whether its metric is better higher (tasks whose runs never say are left out)."""
    known = runs.dropna(subset=[F.HIGHER_IS_BETTER])
    return {task: bool(group[F.HIGHER_IS_BETTER].mode().iloc[0]) for task, group in known.groupby(F.TASK)}


def best_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task × optimizer, the cell with the best mean ``best`` metric over its seeds, among
    the cells none of whose runs diverged (cells with a diverged seed only if every cell has
    one). Columns: task, optimizer, batch_size, lr, best_mean, best_std, n_seeds, n_diverged."""
    results = finished(runs).dropna(subset=[F.BEST])
    directions = direction_of(runs)
    results = results[results[F.TASK].isin(list(directions))]
    if results.empty:
        return results[CELL].assign(best_mean=0.0, best_std=0.0, n_seeds=0, n_diverged=0)  # typed, empty
    cells = results.groupby(CELL, sort=True).agg(
        best_mean=(F.BEST, "mean"), best_std=(F.BEST, "std"), n_seeds=(F.BEST, "size"),
        n_diverged=("diverged", "sum"),
    ).reset_index()
    sign = cells[F.TASK].map(lambda task: -1.0 if directions[task] else 1.0)
    ranked = cells.assign(_diverged=cells["n_diverged"] > 0, _score=sign * cells["best_mean"])
    chosen = ranked.sort_values(["_diverged", "_score"], kind="stable").groupby([F.TASK, F.OPTIMIZER]).head(1)
    return chosen.drop(columns=["_diverged", "_score"]).sort_values([F.TASK, F.OPTIMIZER]).reset_index(drop=True)
