"""What tuning cost, and how much an optimizer's result depends on the luck of its search.

**Budget**, per task × optimizer: the runs that tuned it (every run but the confirmation and
noise-measuring runs of a study's seeds phase), the optimizer steps they took and their wall
time; the confirmation runs' beside them.

**Tuning variance** (as AlgoPerf scores it), per task × optimizer × batch size: a search tried n
points (learning rates); had it tried only k of them, drawn at random, how many steps would the
best of those k need to reach the target? Over all C(n, k) subsets, with the points' steps sorted
x_(1) ≤ … ≤ x_(n), the best of a subset is x_(i) with probability C(n − i, k − 1) / C(n, k),
so E[best of k] = Σ_i C(n − i, k − 1) / C(n, k) · x_(i): the exact mean of resampling k trials
without replacement. A point is each lr's selecting runs (``analysis.roles``): its steps are their
mean, censored runs at their budget, and it *reaches* the target when ``experiments.best_point``
would call it eligible (one of its runs reached the target, none diverged); a point that does not
counts at its budget, so E is then a lower bound, and ``p_reached`` = 1 − C(m, k) / C(n, k) (m
points not reaching) is the chance that k trials find a point that reaches the target. An
optimizer whose curve falls at k = 1 is easy to tune; one that needs every trial is not.
"""

from __future__ import annotations

from math import comb

import numpy as np
import pandas as pd

from analysis import frames as F
from analysis.cells import CELL
from analysis.roles import ROLE, SELECTS, with_roles
from experiments.store import DIVERGED
from experiments.studies.record import CONFIRMING

__all__ = ["tuning_budget", "expected_best_of", "tuning_curves"]


def tuning_budget(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task × optimizer: ``n_trials``, ``trial_steps`` and ``trial_wall_time_s`` (the runs
    that tuned it, whatever their status), ``n_confirming``, ``confirming_steps`` and
    ``confirming_wall_time_s`` (its confirmation runs)."""
    runs = runs if SELECTS in runs else with_roles(runs)
    steps = runs[F.GLOBAL_STEP].astype(float).fillna(0.0)
    wall = runs[F.WALL_TIME_S].astype(float).fillna(0.0)
    frame = runs[[F.TASK, F.OPTIMIZER]].assign(
        n_trials=runs[SELECTS].astype(int), trial_steps=steps.where(runs[SELECTS], 0.0),
        trial_wall_time_s=wall.where(runs[SELECTS], 0.0), n_confirming=runs[ROLE].eq(CONFIRMING).astype(int),
        confirming_steps=steps.where(runs[ROLE].eq(CONFIRMING), 0.0),
        confirming_wall_time_s=wall.where(runs[ROLE].eq(CONFIRMING), 0.0))
    return frame.dropna(subset=[F.TASK, F.OPTIMIZER]).groupby([F.TASK, F.OPTIMIZER], sort=True).sum().reset_index()


def expected_best_of(values: np.ndarray, k: int) -> float:
    """The mean of the smallest of k values drawn without replacement from ``values`` (see the
    module): Σ_i C(n − i, k − 1) / C(n, k) · x_(i)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    weights = np.array([comb(n - i, k - 1) for i in range(1, n + 1)], dtype=float) / comb(n, k)
    return float(weights @ x)


def tuning_curves(targets: pd.DataFrame) -> pd.DataFrame:
    """Per task × optimizer × batch size × k = 1 … n points tried: ``expected_steps`` (E[best of
    k], points not reaching the target at their budget) and ``p_reached`` (the chance that k
    trials find a point reaching it), with ``n_points``. ``targets``: ``convergence.run_targets``."""
    columns = [F.TASK, F.OPTIMIZER, F.BATCH_SIZE, "k", "expected_steps", "p_reached", "n_points"]
    selecting = targets[targets[SELECTS]]
    if selecting.empty:
        return pd.DataFrame(columns=columns)
    points = selecting.assign(diverged=selecting[F.STATUS].eq(DIVERGED)).groupby(CELL, sort=True).agg(
        steps=(F.STEPS_TO_TARGET, "mean"), budget=(F.MAX_STEPS, "mean"), reached=("reached", "any"),
        diverged=("diverged", "any")).reset_index()
    points["eligible"] = points["reached"] & ~points["diverged"]
    rows = []
    for (task, optimizer, batch), group in points.groupby([F.TASK, F.OPTIMIZER, F.BATCH_SIZE], sort=True):
        n, missing = len(group), int((~group["eligible"]).sum())
        steps = np.where(group["eligible"], group["steps"], group["budget"].astype(float))
        for k in range(1, n + 1):
            rows.append([task, optimizer, batch, k, expected_best_of(steps, k), 1 - comb(missing, k) / comb(n, k), n])
    return pd.DataFrame(rows, columns=columns)
