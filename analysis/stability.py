"""Stability: how often an optimizer diverges as its learning rate grows, the largest learning
rate at which it never did, and how its metric responds to the learning rate (sensitivity)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import frames as F
from analysis.cells import finished

__all__ = ["stability_table", "largest_stable_lr"]


def stability_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task × optimizer × lr over finished runs: ``n_runs``, ``n_diverged``,
    ``divergence_rate`` (= n_diverged / n_runs), and the ``best_mean``, ``best_std`` (the spread
    over seeds and batch sizes) and ``final_mean`` of the metric over the runs that have one."""
    results = finished(runs)
    table = results.groupby([F.TASK, F.OPTIMIZER, F.LR], sort=True).agg(
        n_runs=(F.STATUS, "size"), n_diverged=("diverged", "sum"),
        best_mean=(F.BEST, "mean"), best_std=(F.BEST, "std"), final_mean=(F.FINAL, "mean"),
    ).reset_index()
    table.insert(5, "divergence_rate", table["n_diverged"] / table["n_runs"])
    return table


def largest_stable_lr(stability: pd.DataFrame) -> pd.DataFrame:
    """Per task × optimizer: ``largest_stable_lr`` (the largest lr none of whose runs diverged),
    ``smallest_diverging_lr`` (the smallest lr with a divergence, NaN if none) and ``bounded``
    (whether a divergence above the largest stable lr shows the grid reached the edge of
    stability; if not, the true limit lies beyond the grid)."""
    rows = []
    for (task, optimizer), group in stability.groupby([F.TASK, F.OPTIMIZER], sort=True):
        stable = group.loc[group["n_diverged"] == 0, F.LR]
        diverging = group.loc[group["n_diverged"] > 0, F.LR]
        largest = stable.max() if len(stable) else np.nan
        rows.append({F.TASK: task, F.OPTIMIZER: optimizer, "largest_stable_lr": largest,
                     "smallest_diverging_lr": diverging.min() if len(diverging) else np.nan,
                     "bounded": bool((diverging > largest).any()) if len(stable) else True})
    return pd.DataFrame(rows, columns=[F.TASK, F.OPTIMIZER, "largest_stable_lr", "smallest_diverging_lr", "bounded"])
