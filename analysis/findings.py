"""The report's headline sentences: which optimizer wins where, and by how much."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import frames as F
from analysis.compare import Comparison
from analysis.paper_table import format_mean_std

__all__ = ["findings"]


def findings(c: Comparison) -> list[str]:
    """Plain sentences, per task: the best final quality and its margin, the fastest to the
    target and its margin; then memory, stability and critical batch sizes."""
    out: list[str] = []
    for task, rows in c.paper.groupby(F.TASK, sort=True):
        out += _quality(task, rows)
    for task, costs in c.costs["steps to target"].groupby(F.TASK, sort=True):
        out += _speed(task, costs, c)
    out += _memory(c.memory) + _stability(c.stable_lr) + _critical(c.critical_batch)
    return out


def _quality(task: str, rows: pd.DataFrame) -> list[str]:
    up = bool(rows[F.HIGHER_IS_BETTER].iloc[0])
    rows = rows.sort_values("mean", ascending=not up)
    first = rows.iloc[0]
    head = (f"On {task}, {first[F.OPTIMIZER]} reaches the best {first[F.METRIC]} "
            f"({format_mean_std(first['mean'], first['std'])}, {int(first['n_seeds'])} seed(s), "
            f"batch {int(first[F.BATCH_SIZE])}, lr {first[F.LR]:g})")
    if len(rows) < 2:
        return [head + "."]
    second = rows.iloc[1]
    gap = abs(first["mean"] - second["mean"])
    relative = f" ({gap / abs(second['mean']):.1%})" if second["mean"] else ""
    return [head + f", ahead of {second[F.OPTIMIZER]} ({second['mean']:.4g}) by {gap:.3g}{relative}."]


def _speed(task: str, costs: pd.DataFrame, c: Comparison) -> list[str]:
    solved = costs[np.isfinite(costs["cost"])].sort_values("cost")
    never = sorted(costs.loc[~np.isfinite(costs["cost"]), F.OPTIMIZER])
    target = c.targets.loc[c.targets[F.TASK] == task, F.TARGET]
    goal = f"the target {target.iloc[0]:g}" if len(target) else "the target"
    lines = []
    if len(solved):
        first = solved.iloc[0]
        line = f"On {task}, {first[F.OPTIMIZER]} reaches {goal} in the fewest steps ({first['cost']:.0f}, mean over seeds)"
        if len(solved) > 1:
            second = solved.iloc[1]
            line += f": {second['cost'] / first['cost']:.2f}× fewer than {second[F.OPTIMIZER]} ({second['cost']:.0f})"
        lines.append(line + ".")
    if never:
        lines.append(f"On {task}, no configuration of {', '.join(never)} reached {goal} with every seed.")
    return lines


def _memory(memory: pd.DataFrame) -> list[str]:
    rows = memory[(memory["reference"] != "") & (memory[F.OPTIMIZER] != memory["reference"])].dropna(subset=["state_ratio"])
    summary = rows.groupby([F.OPTIMIZER, "reference"])["state_ratio"].median().reset_index()
    return [f"{r[F.OPTIMIZER]} keeps {r['state_ratio']:.2f}× the optimizer state of {r['reference']}."
            for _, r in summary.iterrows()]


def _stability(stable: pd.DataFrame) -> list[str]:
    lines = []
    for _, r in stable.iterrows():
        if math.isnan(r["largest_stable_lr"]):
            lines.append(f"On {r[F.TASK]}, {r[F.OPTIMIZER]} diverged at every learning rate tried.")
        elif r["bounded"]:
            lines.append(f"On {r[F.TASK]}, the largest stable learning rate of {r[F.OPTIMIZER]} is "
                         f"{r['largest_stable_lr']:g} (it diverged at {r['smallest_diverging_lr']:g}).")
    return lines


def _critical(fits: pd.DataFrame) -> list[str]:
    lines = []
    for _, r in fits.iterrows():
        noise = "" if math.isnan(r[F.GRAD_NOISE_SCALE]) else f"; measured gradient noise scale {r[F.GRAD_NOISE_SCALE]:.3g}"
        lines.append(f"On {r[F.TASK]}, {r[F.OPTIMIZER]}'s critical batch size is {r['b_crit']:.3g} ± {r['b_crit_se']:.2g} "
                     f"(S_min = {r['s_min']:.3g} ± {r['s_min_se']:.2g} steps, fit over {int(r['n_batch_sizes'])} batch sizes)"
                     f"{noise}.")
    return lines
