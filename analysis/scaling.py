"""Batch-size scaling: the best learning rate and steps-to-target per batch size, and the
critical batch size of McCandlish et al. (2018, "An Empirical Model of Large-Batch Training").

Their model: the steps S and samples E = S·B needed to reach a given loss obey
(S/S_min − 1)(E/E_min − 1) = 1, i.e. S(B) = S_min·(1 + B_crit/B) with B_crit = E_min/S_min.
Below B_crit doubling the batch nearly halves the steps (perfect scaling, S ∝ 1/B); above it
the steps approach S_min. B_crit is predicted by the gradient noise scale B_simple = tr(Σ)/|G|²:
where runs measured it (``trainer.grad_noise_scale``) the two are set side by side, each with its
interval, and compared.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit

from analysis import frames as F
from analysis.cells import CELL, choose_cells, finished
from analysis.convergence import target_summary
from analysis.intervals import t_half_width
from analysis.roles import HELD_OUT, SCORES
from analysis.significance import CONFIDENCE, estimate_difference

__all__ = ["scaling_table", "CriticalBatchFit", "fit_critical_batch", "critical_batch_table", "steps_model"]


def scaling_table(runs: pd.DataFrame, targets: pd.DataFrame) -> pd.DataFrame:
    """Per task × optimizer × batch_size: ``best_lr`` (the best point of the batch size's lrs for
    ``steps_to_target`` by ``experiments.best_point``, over the runs that select: the lr a study
    selected), ``steps_to_target`` (the mean over the runs that score that lr, censored ones at
    their budget; NaN, as best_lr, where no selecting run reached the target), ``censored`` (how
    many of those did not reach it), ``n_runs`` and ``n_diverged`` (over all finished runs and
    lrs at that batch size), ``steps_std``, ``n_scored`` and ``held_out`` (scored by confirmation
    runs only).

    ``targets``: ``convergence.run_targets``."""
    by = [F.TASK, F.OPTIMIZER, F.BATCH_SIZE]
    counts = finished(runs).groupby(by, sort=True).agg(
        n_runs=(F.STATUS, "size"), n_diverged=("diverged", "sum")).reset_index()
    cells = choose_cells(runs, by, "steps_to_target")
    scored = target_summary(targets[targets[SCORES]].merge(cells[CELL], on=CELL))
    held = targets[targets[SCORES]].merge(cells[CELL], on=CELL).groupby(CELL)[HELD_OUT].any().rename("held_out")
    best = cells.merge(scored, on=CELL, how="left").merge(held.reset_index(), on=CELL, how="left").rename(
        columns={F.LR: "best_lr", "steps_mean": F.STEPS_TO_TARGET, "n_censored": "censored", "n_runs": "n_scored"})
    table = counts.merge(best, on=by, how="left")
    return table[[*by, "best_lr", F.STEPS_TO_TARGET, "censored", "n_runs", "n_diverged", "steps_std", "n_scored",
                  "held_out"]]


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

    with warnings.catch_warnings(), np.errstate(over="ignore"):
        # Steps that do not fall with the batch drive B_crit to 0 or ∞: the fit then has no
        # covariance, and its standard errors are NaN (no interval, no claim), not a warning.
        warnings.simplefilter("ignore", OptimizeWarning)
        (log_s, log_b), covariance = curve_fit(model, batch, np.log(steps), p0=np.log(start))
    se = np.sqrt(np.diag(covariance)) if np.all(np.isfinite(covariance)) else np.full(2, np.nan)
    s_min, b_crit = math.exp(log_s), math.exp(log_b)
    return CriticalBatchFit(s_min, s_min * se[0], b_crit, b_crit * se[1])  # delta method


def critical_batch_table(runs: pd.DataFrame, scaling: pd.DataFrame) -> pd.DataFrame:
    """Per task × optimizer with ≥ 3 batch sizes whose scored runs all reached the target: the
    fit (``s_min``, ``s_min_se``, ``b_crit``, ``b_crit_se``, and ``b_crit_low``, ``b_crit_high``:
    its 95% t-interval with n_batch_sizes − 2 degrees of freedom, taken in log B_crit, the
    parameter the fit estimates, so that it is asymmetric and never reaches below 0), ``n_batch_sizes``,
    ``min_seeds`` (the fewest scored runs behind a point), and the gradient noise scale measured
    by its finished runs: ``grad_noise_scale`` (the mean B_simple), ``noise_low``, ``noise_high``
    (its 95% t-interval over runs), ``n_noise``; then B_crit − B_simple with its interval
    (``b_diff``, ``b_diff_low``, ``b_diff_high``): McCandlish et al. predict B_crit ≈ B_simple."""
    columns = [F.TASK, F.OPTIMIZER, "s_min", "s_min_se", "b_crit", "b_crit_se", "b_crit_low", "b_crit_high",
               "n_batch_sizes", "min_seeds", F.GRAD_NOISE_SCALE, "noise_low", "noise_high", "n_noise", "b_diff",
               "b_diff_low", "b_diff_high"]
    rows = []
    reached = scaling.dropna(subset=[F.STEPS_TO_TARGET])
    reached = reached[reached["censored"] == 0]
    own = finished(runs)
    for (task, optimizer), group in reached.groupby([F.TASK, F.OPTIMIZER], sort=True):
        if group[F.BATCH_SIZE].nunique() < 3:
            continue
        fit = fit_critical_batch(group[F.BATCH_SIZE].to_numpy(float), group[F.STEPS_TO_TARGET].to_numpy(float))
        df = len(group) - 2
        # b_crit_se / b_crit is the standard error of log B_crit (the delta method undone)
        t = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) if df >= 1 else math.nan
        spread = math.exp(t * fit.b_crit_se / fit.b_crit)
        noise = own.loc[(own[F.TASK] == task) & (own[F.OPTIMIZER] == optimizer), F.GRAD_NOISE_SCALE].dropna()
        n_noise, noise_mean = len(noise), noise.mean() if len(noise) else math.nan
        noise_se = noise.std() / math.sqrt(n_noise) if n_noise > 1 else math.nan
        noise_half = float(t_half_width(noise.std(), n_noise)) if n_noise > 1 else math.nan
        min_seeds = int(group["n_scored"].min()) if "n_scored" in group else 0
        diff = estimate_difference(fit.b_crit, fit.b_crit_se, df, noise_mean, noise_se, n_noise - 1, min_seeds, n_noise)
        rows.append([task, optimizer, fit.s_min, fit.s_min_se, fit.b_crit, fit.b_crit_se, fit.b_crit / spread,
                     fit.b_crit * spread, len(group), min_seeds, noise_mean, noise_mean - noise_half,
                     noise_mean + noise_half, n_noise, diff.estimate, diff.low, diff.high])
    return pd.DataFrame(rows, columns=columns)
