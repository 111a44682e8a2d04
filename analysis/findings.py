"""The report's headline sentences: which optimizer is ahead where, by how much, and how sure.

Every ordering rests on ``analysis.orderings`` (Welch's t-interval of the difference of means over
the seeds that score each optimizer's best cell, 95%): a difference whose interval contains 0 is
reported as a tie ("within noise"), and with fewer than ``MIN_SEEDS`` seeds per compared cell no
ordering is stated, only how many seeds it would need. Each sentence says which runs scored the
cells (confirmation seeds, or the runs that selected them too).
"""

from __future__ import annotations

import math

import pandas as pd

from analysis import frames as F
from analysis.compare import Comparison
from analysis.orderings import BEHIND, BEST, CENSORED, TIE, TOO_FEW
from analysis.paper_table import format_mean_std
from analysis.significance import MIN_SEEDS, TEST, Difference

__all__ = ["findings"]


def findings(c: Comparison) -> list[str]:
    """Plain sentences, per task: the best quality and how it compares with the others, the
    fewest steps to the target and how it compares; then memory, stability and critical batch
    sizes."""
    out: list[str] = []
    for task, rows in c.paper.groupby(F.TASK, sort=True):
        out += _quality(task, rows)
    targets = c.targets.dropna(subset=[F.TARGET]).groupby(F.TASK)[F.TARGET].first()
    for task, rows in c.speed["steps to target"].groupby(F.TASK, sort=True):
        out += _speed(task, rows, targets.get(task))
    out += _memory(c.memory) + _stability(c.stable_lr) + _critical(c.critical_batch)
    return out


def _difference(row: pd.Series, leader: pd.Series, n: str) -> Difference:
    return Difference(row["estimate"], row["ci_low"], row["ci_high"], int(leader[n]), int(row[n]),
                      int(leader.get("n_censored", 0)), int(row.get("n_censored", 0)))


def _scored(row: pd.Series, n: str) -> str:
    seeds = f"{int(row[n])} seed{'s' if int(row[n]) != 1 else ''}"
    return f"{seeds}, held out" if row["held_out"] else f"{seeds}, the selecting runs included"


def _compared(task: str, what: str, leader: pd.Series, rows: pd.DataFrame, n: str, value: str) -> list[str]:
    """The sentences comparing every other optimizer of ``rows`` with the ``leader``."""
    lines = []
    ahead = rows[rows["claim"] == BEHIND]
    if len(ahead):
        parts = [f"{r[F.OPTIMIZER]} ({value.format(r)}; {_difference(r, leader, n).interval()}, "
                 f"{_difference(r, leader, n).seeds()})" for _, r in ahead.iterrows()]
        lines.append(f"On {task}, {leader[F.OPTIMIZER]} is ahead in {what} of {', '.join(parts)} ({TEST}).")
    for _, r in rows[rows["claim"] == TIE].iterrows():
        d = _difference(r, leader, n)
        lines.append(f"On {task}, {leader[F.OPTIMIZER]} and {r[F.OPTIMIZER]} are within noise in {what}: "
                     f"{d.interval()}, {d.seeds()}.")
    for _, r in rows[rows["claim"] == CENSORED].iterrows():
        d = _difference(r, leader, n)
        lines.append(f"On {task}, {leader[F.OPTIMIZER]} and {r[F.OPTIMIZER]} are not ranked in {what}: "
                     f"{d.interval()}, {d.seeds()}, but {d.censored_a} run(s) of {leader[F.OPTIMIZER]} never reached "
                     f"the target and count at their budget, so its true mean may be the larger.")
    for _, r in rows[rows["claim"] == TOO_FEW].iterrows():
        lines.append(f"On {task}, {leader[F.OPTIMIZER]} and {r[F.OPTIMIZER]} are not ranked in {what}: "
                     f"{_difference(r, leader, n).needs()}.")
    return lines


def _quality(task: str, rows: pd.DataFrame) -> list[str]:
    leader = rows[rows["claim"] == BEST].iloc[0]
    metric = leader[F.METRIC]
    head = (f"On {task}, the best mean {metric} is {leader[F.OPTIMIZER]}'s "
            f"({format_mean_std(leader['mean'], leader['std'])}, {_scored(leader, 'n_seeds')}, "
            f"batch {int(leader[F.BATCH_SIZE])}, lr {leader[F.LR]:g})")
    others = rows[rows["claim"] != BEST]
    if len(others) and leader["n_seeds"] < MIN_SEEDS:
        return [head + f"; no ordering is claimed: it has {int(leader['n_seeds'])} seed(s), and an ordering needs "
                f"{MIN_SEEDS} per cell."]
    return [head + "."] + _compared(task, metric, leader, others, "n_seeds",
                                    "{0[mean]:.4g} ± {0[std]:.2g}")


def _speed(task: str, rows: pd.DataFrame, target: float | None) -> list[str]:
    goal = f"steps to the target {target:g}" if target is not None else "steps to the target"
    leader = rows[rows["claim"] == BEST].iloc[0]
    lines = [f"On {task}, the fewest mean {goal} are {leader[F.OPTIMIZER]}'s ({leader['mean']:.0f}, "
             f"{_scored(leader, 'n')}, batch {int(leader[F.BATCH_SIZE])}, lr {leader[F.LR]:g}"
             + (f"; {int(leader['n_censored'])} never reached it and count at their budget" if leader["n_censored"] else "")
             + ")"]
    others = rows[rows["claim"] != BEST]
    if len(others) and leader["n"] < MIN_SEEDS:
        lines[0] += (f"; no ordering is claimed: it has {int(leader['n'])} seed(s), and an ordering needs "
                     f"{MIN_SEEDS} per cell.")
        return lines
    lines[0] += "."
    return lines + _compared(task, goal, leader, others, "n", "{0[mean]:.0f}")


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
    """The fitted B_crit with its interval and, where runs measured it, B_simple beside it and
    whether the two agree (McCandlish et al. predict B_crit ≈ B_simple)."""
    lines = []
    for _, r in fits.iterrows():
        line = (f"On {r[F.TASK]}, {r[F.OPTIMIZER]}'s critical batch size B_crit is {r['b_crit']:.3g} "
                f"(95% CI [{r['b_crit_low']:.3g}, {r['b_crit_high']:.3g}]; S_min = {r['s_min']:.3g} ± "
                f"{r['s_min_se']:.2g} steps; fit over {int(r['n_batch_sizes'])} batch sizes, "
                f"{int(r['min_seeds'])}+ seeds each)")
        if r["n_noise"] > 0:
            d = Difference(r["b_diff"], r["b_diff_low"], r["b_diff_high"], int(r["min_seeds"]), int(r["n_noise"]))
            verdict = ("they differ at 95%" if d.significant else "consistent with B_crit ≈ B_simple"
                       if d.testable else f"not compared: {d.needs()}")
            line += (f"; the measured gradient noise scale B_simple is {r[F.GRAD_NOISE_SCALE]:.3g} (95% CI "
                     f"[{r['noise_low']:.3g}, {r['noise_high']:.3g}], {int(r['n_noise'])} runs): B_crit − B_simple = "
                     f"{d.interval()[len('difference '):]}, {verdict}")
        lines.append(line + ".")
    return lines
