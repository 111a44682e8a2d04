"""Convergence: metric curves over seeds, and steps- and time-to-target per run and per cell.

Time-to-target is the wall time of the first logged row whose metric meets the target (never the
time of the best value). A run that never meets it is *censored*: it counts at its budget —
``max_steps`` steps, and the time the whole budget takes (``wall_time_s`` scaled by
``max_steps / global_step`` for a run that stopped early, e.g. by diverging) — and is marked,
never dropped; a mean over censored runs is then a lower bound of the true mean.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import frames as F
from analysis.cells import CELL, finished, scoring_runs
from analysis.intervals import mean_ci
from analysis.roles import HELD_OUT, ROLE, SCORES, SELECTS

__all__ = ["run_targets", "target_summary", "convergence_curves"]

_RUN_KEY = [F.STUDY, F.RUN_ID]


def _meets(values: pd.Series, target: pd.Series, higher_is_better: pd.Series) -> pd.Series:
    hib = higher_is_better.astype("boolean").fillna(True).to_numpy(bool)
    return pd.Series(np.where(hib, values >= target, values <= target), index=values.index)


def _metric_rows(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """The metrics rows of each run's own validation metric, joined with the run's columns."""
    wanted = metrics[metrics[F.METRIC].astype(str).isin(set(runs[F.METRIC].dropna()))]
    rows = wanted.astype({F.STUDY: str, F.RUN_ID: str, F.METRIC: str})
    return rows.merge(runs, on=[*_RUN_KEY, F.METRIC], suffixes=("", "_run"))


def run_targets(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per finished run with a target: the cell, seed, status and role
    (``analysis.roles``), then ``reached``, ``censored`` (= not reached), ``steps_to_target`` and
    ``time_to_target`` (censored ones at the budget)."""
    keep = [*_RUN_KEY, *CELL, F.SEED, F.STATUS, ROLE, SELECTS, SCORES, HELD_OUT, F.METRIC, F.HIGHER_IS_BETTER,
            F.TARGET, F.STEPS_TO_TARGET, F.GLOBAL_STEP, F.MAX_STEPS, F.WALL_TIME_S]
    out = finished(runs).dropna(subset=[F.TARGET, F.METRIC])[keep].copy()
    rows = _metric_rows(out[[*_RUN_KEY, F.METRIC, F.TARGET, F.HIGHER_IS_BETTER]], metrics)
    hits = rows[_meets(rows[F.VALUE], rows[F.TARGET], rows[F.HIGHER_IS_BETTER])]
    first = hits.sort_values(F.STEP).groupby(_RUN_KEY, sort=False)[F.WALL_TIME].first().rename("_hit_time")
    out = out.merge(first.reset_index(), on=_RUN_KEY, how="left")
    out["reached"] = out[F.STEPS_TO_TARGET].notna()
    out["censored"] = ~out["reached"]
    budget = out[F.MAX_STEPS].astype(float).fillna(out[F.GLOBAL_STEP].astype(float))
    taken = out[F.GLOBAL_STEP].astype(float)
    scale = np.where((taken > 0) & (taken < budget), budget / taken, 1.0)
    out[F.STEPS_TO_TARGET] = out[F.STEPS_TO_TARGET].where(out["reached"], budget)
    out["time_to_target"] = out["_hit_time"].where(out["reached"], out[F.WALL_TIME_S] * scale)
    return out.drop(columns=["_hit_time", F.HIGHER_IS_BETTER, F.GLOBAL_STEP, F.WALL_TIME_S]).reset_index(drop=True)


def target_summary(targets: pd.DataFrame, by: list[str] = CELL) -> pd.DataFrame:
    """Per group (default: cell): ``n_runs``, ``n_reached``, ``n_censored``, and mean with a 95%
    t-interval of steps (``steps_mean``, ``steps_ci_low``, ...) and time (``time_...``) to target,
    censored runs counted at their budget."""
    counts = targets.groupby(by, sort=True).agg(n_runs=("reached", "size"), n_reached=("reached", "sum"))
    counts["n_censored"] = counts["n_runs"] - counts["n_reached"]
    out = counts.reset_index()
    for column, prefix in ((F.STEPS_TO_TARGET, "steps"), ("time_to_target", "time")):
        stats = mean_ci(targets, by, column).drop(columns="n")
        out = out.merge(stats.rename(columns={c: f"{prefix}_{c}" for c in ("mean", "std", "ci_low", "ci_high")}),
                        on=by, how="left")
    return out


def convergence_curves(runs: pd.DataFrame, metrics: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """The validation metric of each chosen cell (``cells``: task, optimizer, batch_size, lr)
    over the seeds that score it at every logged step: ``mean``, ``ci_low``, ``ci_high``, ``n``,
    with the x axes ``step``, ``samples`` (step × batch size) and ``wall_time`` (mean over seeds)."""
    chosen = scoring_runs(runs, cells)[[*_RUN_KEY, *CELL, F.METRIC]]
    rows = _metric_rows(chosen, metrics).dropna(subset=[F.VALUE])
    by = [F.TASK, F.OPTIMIZER, F.BATCH_SIZE, F.METRIC, F.STEP]
    curves = mean_ci(rows, by, F.VALUE)
    wall = rows.groupby(by, sort=True)[F.WALL_TIME].mean().reset_index()
    curves = curves.merge(wall, on=by)
    curves["samples"] = curves[F.STEP] * curves[F.BATCH_SIZE].astype(float)
    return curves
