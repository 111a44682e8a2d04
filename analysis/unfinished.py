"""What a run without a summary (still running, killed) can still tell, from its metrics rows.

Its metric is the ``val/<m>`` it logged beside a ``val/<m>_best``; the metric's direction and the
task's target come from summarised runs that share them (the task classes hold both, and
analysis never imports them), else the direction from how ``val/<m>_best`` moved (a running
maximum or minimum of ``val/<m>``). Best and steps-to-target then follow by the summary's own
rules (``experiments.metric_curve``), final as the summary takes it; global_step and wall_time_s
are the last logged ones.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from analysis import frames as F
from experiments import metric_curve

__all__ = ["complete_unfinished", "infer_direction"]


def infer_direction(values: pd.Series, best: pd.Series) -> Optional[bool]:
    """True if ``best`` is the running maximum of ``values``, False if the running minimum,
    None if both or neither (too few or constant values)."""
    v, b = values.to_numpy(float), best.to_numpy(float)
    if len(v) != len(b) or len(v) == 0:
        return None
    up = np.allclose(np.fmax.accumulate(v), b, equal_nan=True)
    down = np.allclose(np.fmin.accumulate(v), b, equal_nan=True)
    return up if up != down else None


def complete_unfinished(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with the summary columns of runs that have none filled from ``metrics``."""
    todo = runs.index[runs[F.METRIC].isna()]
    if len(todo) == 0:
        return runs
    runs = runs.copy()
    known = runs.dropna(subset=[F.METRIC])
    directions = known.dropna(subset=[F.HIGHER_IS_BETTER]).groupby(F.METRIC)[F.HIGHER_IS_BETTER].first().to_dict()
    defaults = known[known[f"{F.CONFIG_PREFIX}target"].isna()] if f"{F.CONFIG_PREFIX}target" in known else known
    targets = defaults.dropna(subset=[F.TARGET]).groupby([F.TASK, F.SIZE])[F.TARGET].first().to_dict()
    wanted = metrics[metrics[F.RUN_ID].isin(runs.loc[todo, F.RUN_ID])]
    groups = dict(iter(wanted.groupby([F.STUDY, F.RUN_ID], observed=True)))
    for index in todo:
        run = runs.loc[index]
        rows = groups.get((run[F.STUDY], run[F.RUN_ID]))
        if rows is None or rows.empty:
            continue
        runs.loc[index, [F.GLOBAL_STEP, F.WALL_TIME_S]] = [rows[F.STEP].max(), rows[F.WALL_TIME].max()]
        names = set(rows[F.METRIC].astype(str))
        metric = next((n for n in sorted(names) if n.startswith("val/") and f"{n}_best" in names), None)
        if metric is None:
            continue
        values = rows[rows[F.METRIC] == metric].sort_values(F.STEP)
        higher = directions.get(metric)
        if higher is None:
            best_rows = rows[rows[F.METRIC] == f"{metric}_best"].sort_values(F.STEP)
            higher = infer_direction(values[F.VALUE], best_rows[F.VALUE])
        configured = run.get(f"{F.CONFIG_PREFIX}target")
        target = configured if configured is not None and not pd.isna(configured) else targets.get(
            (run[F.TASK], run[F.SIZE]))
        runs.loc[index, [F.METRIC, F.TARGET]] = [metric, target]
        runs.loc[index, F.HIGHER_IS_BETTER] = higher
        final = values[F.VALUE].iloc[-1]
        runs.loc[index, F.FINAL] = final if math.isfinite(final) else np.nan
        if higher is None:
            continue
        best_value = metric_curve.best(values[F.VALUE], higher)
        if best_value is not None:
            runs.loc[index, F.BEST] = best_value
        if target is not None and not pd.isna(target):
            reached = metric_curve.steps_to_target(zip(values[F.STEP], values[F.VALUE]), target, higher)
            runs.loc[index, F.STEPS_TO_TARGET] = np.nan if reached is None else reached
    return runs
