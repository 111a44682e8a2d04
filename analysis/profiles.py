"""Performance profiles (Dolan & Moré, 2002), as AlgoPerf scores training algorithms.

For problems p (tasks) and solvers s (optimizers) with costs t_{p,s} (steps or time to reach the
task's target; ∞ where a solver never reached it), the performance ratio is
r_{p,s} = t_{p,s} / min_s t_{p,s}, and the profile of solver s is the step function
ρ_s(τ) = |{p : r_{p,s} ≤ τ}| / |P|: ρ_s(1) is the share of tasks s wins, and the τ at which
ρ_s reaches 1 is how far behind the best it is on its worst task.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import frames as F

__all__ = ["task_costs", "performance_ratios", "performance_profile"]


def task_costs(cell_targets: pd.DataFrame, cost: str = "steps_mean") -> pd.DataFrame:
    """Per task × optimizer, the cost of its best cell: the smallest ``cost`` (a column of
    ``convergence.target_summary``) among the cells all of whose runs reached the target; ∞
    where no cell did. Columns: task, optimizer, cost."""
    pairs = cell_targets[[F.TASK, F.OPTIMIZER]].drop_duplicates()
    complete = cell_targets[cell_targets["n_censored"] == 0]
    best = complete.groupby([F.TASK, F.OPTIMIZER], sort=True)[cost].min().rename("cost").reset_index()
    costs = pairs.merge(best, on=[F.TASK, F.OPTIMIZER], how="left").astype({"cost": float})
    return costs.fillna({"cost": np.inf}).sort_values([F.TASK, F.OPTIMIZER]).reset_index(drop=True)


def performance_ratios(costs: pd.DataFrame) -> pd.DataFrame:
    """``ratio`` = cost / the task's smallest cost (∞ for an unsolved task, or for every
    optimizer on a task none solved)."""
    smallest = costs.groupby(F.TASK)["cost"].transform("min")
    ratio = np.where(np.isfinite(costs["cost"]) & np.isfinite(smallest), costs["cost"] / smallest, np.inf)
    return costs.assign(ratio=ratio)


def performance_profile(costs: pd.DataFrame) -> pd.DataFrame:
    """ρ_s(τ) at every τ where some profile steps (each finite ratio, and 1): columns optimizer,
    tau, rho. Every task counts in |P|, solved or not."""
    ratios = performance_ratios(costs)
    n_tasks = costs[F.TASK].nunique()
    taus = np.unique(np.concatenate([[1.0], ratios.loc[np.isfinite(ratios["ratio"]), "ratio"].to_numpy(float)]))
    rows = [{F.OPTIMIZER: optimizer, "tau": tau, "rho": float((group["ratio"] <= tau).sum()) / n_tasks}
            for optimizer, group in ratios.groupby(F.OPTIMIZER, sort=True) for tau in taus]
    return pd.DataFrame(rows, columns=[F.OPTIMIZER, "tau", "rho"])
