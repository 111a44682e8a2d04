"""What a run without a summary (still running, killed, or not written by optbench) can still
tell, from its metrics rows.

Its metric is the ``val/<m>`` it logged beside a ``val/<m>_best`` (optbench's), else the one
validation metric its keys name (``analysis.conventions``: ``val_acc``, ``accuracy/val``; none
if it logged several). The metric's direction and the task's target come from summarised runs
that share them (the task classes hold both, and analysis never imports them), else the
direction from how ``val/<m>_best`` moved (a running maximum or minimum of ``val/<m>``), else
from the metric's name. Best and steps-to-target then follow by the summary's own rules
(``experiments.metric_curve``), final as the summary takes it; global_step and wall_time_s are
the last logged ones.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from analysis import conventions
from analysis import frames as F
from analysis.run_map import convert
from experiments import metric_curve

__all__ = ["complete_unfinished", "infer_direction", "curve_results", "metric_of"]


def infer_direction(values: pd.Series, best: pd.Series) -> Optional[bool]:
    """True if ``best`` is the running maximum of ``values``, False if the running minimum,
    None if both or neither (too few or constant values)."""
    v, b = values.to_numpy(float), best.to_numpy(float)
    if len(v) != len(b) or len(v) == 0:
        return None
    up = np.allclose(np.fmax.accumulate(v), b, equal_nan=True)
    down = np.allclose(np.fmin.accumulate(v), b, equal_nan=True)
    return up if up != down else None


def curve_results(steps: np.ndarray, values: np.ndarray, higher_is_better: Optional[bool],
                  target: Optional[float]) -> dict[str, float]:
    """Best, final and steps-to-target of a metric's curve (``values`` at ``steps``, in step
    order) by the summary's rules: final the last value (NaN if not finite); best, and
    steps-to-target where there is a target, only with a known direction (NaN otherwise)."""
    out = {F.BEST: np.nan, F.FINAL: np.nan, F.STEPS_TO_TARGET: np.nan}
    if len(values) and math.isfinite(values[-1]):
        out[F.FINAL] = float(values[-1])
    if higher_is_better is None:
        return out
    best = metric_curve.best(values, higher_is_better)
    if best is not None:
        out[F.BEST] = best
    if target is not None and not pd.isna(target):
        reached = metric_curve.steps_to_target(zip(steps, values), target, higher_is_better)
        out[F.STEPS_TO_TARGET] = np.nan if reached is None else reached
    return out


def metric_of(names: set[str]) -> Optional[str]:
    """The validation metric among a run's logged ``names``: optbench's ``val/<m>`` beside its
    ``val/<m>_best``, else the one validation metric named (None if there are several)."""
    ours = next((n for n in sorted(names) if n.startswith("val/") and f"{n}_best" in names), None)
    if ours is not None:
        return ours
    named = conventions.validation_metrics(names)
    return named[0] if len(named) == 1 else None


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
        metric = metric_of(names)
        if metric is None:
            continue
        values = rows[rows[F.METRIC] == metric].sort_values(F.STEP)
        higher = directions.get(metric)
        if higher is None and f"{metric}_best" in names:
            best_rows = rows[rows[F.METRIC] == f"{metric}_best"].sort_values(F.STEP)
            higher = infer_direction(values[F.VALUE], best_rows[F.VALUE])
        if higher is None:
            higher = conventions.higher_is_better(metric)
        configured = convert(run.get(f"{F.CONFIG_PREFIX}target"), "number")
        target = configured if configured is not None else targets.get((run[F.TASK], run[F.SIZE]))
        runs.loc[index, [F.METRIC, F.TARGET]] = [metric, target]
        runs.loc[index, F.HIGHER_IS_BETTER] = higher
        results = curve_results(values[F.STEP].to_numpy(), values[F.VALUE].to_numpy(float), higher, target)
        for column, value in results.items():
            if not (column == F.BEST and np.isnan(value)):
                runs.loc[index, column] = value
    return runs
