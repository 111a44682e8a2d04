"""Batch-size scaling: the best learning rate and steps-to-target per batch size, and the
critical batch size of McCandlish et al. (2018, "An Empirical Model of Large-Batch Training").

Their model: the steps S and samples E = S·B needed to reach a given loss obey
(S/S_min − 1)(E/E_min − 1) = 1, i.e. S(B) = S_min·(1 + B_crit/B) with B_crit = E_min/S_min.
Below B_crit doubling the batch nearly halves the steps (perfect scaling, S ∝ 1/B); above it
the steps approach S_min. B_crit is predicted by the gradient noise scale B_simple = tr(Σ)/|G|²,
shown beside the fit where runs logged it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import curve_fit

from analysis import frames as F
from analysis.cells import finished

__all__ = ["scaling_table", "CriticalBatchFit", "fit_critical_batch", "critical_batch_table", "steps_model"]


def scaling_table(runs: pd.DataFrame, cell_targets: pd.DataFrame) -> pd.DataFrame:
    """Per task × optimizer × batch_size: ``best_lr`` (the lr whose runs reach the target in the
    fewest steps averaged over seeds, censored seeds counted at their budget, among the lrs with
    at least one run reaching it), ``steps_to_target`` (that average; NaN, as best_lr, where no
    run at that batch size reached the target), ``censored`` (how many of that lr's runs did not
    reach it), ``n_runs`` and ``n_diverged`` (over all finished runs and lrs at that batch size).

    ``cell_targets``: ``convergence.target_summary`` per cell."""
    by = [F.TASK, F.OPTIMIZER, F.BATCH_SIZE]
    counts = finished(runs).groupby(by, sort=True).agg(
        n_runs=(F.STATUS, "size"), n_diverged=("diverged", "sum")).reset_index()
    reaching = cell_targets[cell_targets["n_reached"] > 0]
    best = reaching.sort_values("steps_mean", kind="stable").groupby(by, sort=True).head(1)
    best = best[[*by, F.LR, "steps_mean", "n_censored"]].rename(
        columns={F.LR: "best_lr", "steps_mean": F.STEPS_TO_TARGET, "n_censored": "censored"})
    table = counts.merge(best, on=by, how="left")
    return table[[*by, "best_lr", F.STEPS_TO_TARGET, "censored", "n_runs", "n_diverged"]]


def steps_model(batch: np.ndarray, s_min: float, b_crit: float) -> np.ndarray:
    """S(B) = S_min·(1 + B_crit/B)."""
    return s_min * (1.0 + b_crit / np.asarray(batch, dtype=float))


@dataclass(frozen=True)
class CriticalBatchFit:
    """S_min and B_crit with their standard errors (from the fit's covariance)."""

    s_min: float
    s_min_se: float
    b_crit: float
    b_crit_se: float


def fit_critical_batch(batch: np.ndarray, steps: np.ndarray) -> CriticalBatchFit:
    """Least-squares fit of log S = log S_min + log(1 + B_crit/B) (relative errors: S spans
    orders of magnitude) to ≥ 3 points; standard errors from ``curve_fit``'s covariance. The
    start is the exact fit of the linear form S = S_min + (S_min·B_crit)/B."""
    batch, steps = np.asarray(batch, dtype=float), np.asarray(steps, dtype=float)
    if len(batch) < 3 or len(np.unique(batch)) < 3:
        raise ValueError(f"a critical-batch fit needs 3 or more batch sizes, got {len(np.unique(batch))}")
    slope, intercept = np.polyfit(1.0 / batch, steps, 1)
    start = (max(intercept, steps.min() * 0.5), max(slope / max(intercept, 1e-12), 1e-6))

    def model(b: np.ndarray, log_s_min: float, log_b_crit: float) -> np.ndarray:
        return log_s_min + np.log1p(np.exp(log_b_crit) / b)

    (log_s, log_b), covariance = curve_fit(model, batch, np.log(steps), p0=np.log(start))
    se = np.sqrt(np.diag(covariance)) if np.all(np.isfinite(covariance)) else np.full(2, np.nan)
    s_min, b_crit = math.exp(log_s), math.exp(log_b)
    return CriticalBatchFit(s_min, s_min * se[0], b_crit, b_crit * se[1])  # delta method


def critical_batch_table(runs: pd.DataFrame, scaling: pd.DataFrame) -> pd.DataFrame:
    """Per task × optimizer with ≥ 3 batch sizes that reached the target: the fit (``s_min``,
    ``s_min_se``, ``b_crit``, ``b_crit_se``), ``n_batch_sizes``, and the median measured
    ``grad_noise_scale`` of its finished runs (NaN where none logged one)."""
    rows = []
    reached = scaling.dropna(subset=[F.STEPS_TO_TARGET])
    for (task, optimizer), group in reached.groupby([F.TASK, F.OPTIMIZER], sort=True):
        if group[F.BATCH_SIZE].nunique() < 3:
            continue
        fit = fit_critical_batch(group[F.BATCH_SIZE].to_numpy(float), group[F.STEPS_TO_TARGET].to_numpy(float))
        own = finished(runs)
        noise = own.loc[(own[F.TASK] == task) & (own[F.OPTIMIZER] == optimizer), F.GRAD_NOISE_SCALE].median()
        rows.append({F.TASK: task, F.OPTIMIZER: optimizer, "s_min": fit.s_min, "s_min_se": fit.s_min_se,
                     "b_crit": fit.b_crit, "b_crit_se": fit.b_crit_se, "n_batch_sizes": len(group),
                     F.GRAD_NOISE_SCALE: noise})
    return pd.DataFrame(rows, columns=[F.TASK, F.OPTIMIZER, "s_min", "s_min_se", "b_crit", "b_crit_se",
                                       "n_batch_sizes", F.GRAD_NOISE_SCALE])
