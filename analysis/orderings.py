"""Which optimizer is ahead of which on a task, as far as the seeds support it.

Per task, the optimizer whose scored runs have the best mean is the *leader*; every other is
compared with it by ``analysis.significance`` (Welch's t-interval of the difference of means,
censored runs handled for steps- and time-to-target). Each gets a ``claim``:

- ``best``: the leader;
- ``behind``: the leader is ahead of it at 95%;
- ``tie``: the interval contains 0 ("within noise");
- ``censored``: the interval excludes 0 but a censored run on the leader's side could reverse it;
- ``too few seeds``: it or the leader has fewer than ``MIN_SEEDS`` scored runs: no ordering.

The findings, the paper table's bold and the paper-claims check read these claims.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import frames as F
from analysis.significance import Difference, welch_stats

__all__ = ["against_leader", "difference", "CLAIMS", "BEST", "BEHIND", "TIE", "CENSORED", "TOO_FEW"]

BEST, BEHIND, TIE, CENSORED, TOO_FEW = "best", "behind", "tie", "censored", "too few seeds"
CLAIMS = (BEST, BEHIND, TIE, CENSORED, TOO_FEW)


def difference(stats: pd.DataFrame, a: str, b: str) -> Difference:
    """optimizer ``a`` − optimizer ``b`` from one task's per-optimizer ``stats`` (``mean``,
    ``std``, ``n`` and, for targets, ``n_censored``)."""
    rows = stats.set_index(F.OPTIMIZER)
    censored = rows["n_censored"] if "n_censored" in rows else pd.Series(0, index=rows.index)
    return welch_stats(rows.at[a, "mean"], rows.at[a, "std"], rows.at[a, "n"], rows.at[b, "mean"], rows.at[b, "std"],
                       rows.at[b, "n"], int(censored[a]), int(censored[b]))


def _claim(d: Difference, leader_smaller: bool) -> str:
    """The claim about the other optimizer, from d = leader − other."""
    if not d.testable:
        return TOO_FEW
    if d.a_smaller if leader_smaller else d.a_larger:
        return BEHIND
    return CENSORED if (d.high < 0 if leader_smaller else d.low > 0) else TIE


def against_leader(stats: pd.DataFrame, higher_is_better: dict[str, bool]) -> pd.DataFrame:
    """``stats`` (one row per task × optimizer: ``mean``, ``std``, ``n`` and, for targets,
    ``n_censored``) with, per row, the task's ``leader`` (the best mean in the direction
    ``higher_is_better[task]``), the difference leader − optimizer (``estimate``, ``ci_low``,
    ``ci_high``; NaN for the leader) and its ``claim``."""
    out = []
    for task, group in stats.dropna(subset=["mean"]).groupby(F.TASK, sort=False):
        up = higher_is_better[task]
        leader = group.loc[(group["mean"] if up else -group["mean"]).idxmax(), F.OPTIMIZER]
        rows = []
        for optimizer in group[F.OPTIMIZER]:
            d = difference(group, leader, optimizer)
            if optimizer == leader:
                rows.append((leader, np.nan, np.nan, np.nan, BEST))
            else:
                rows.append((leader, d.estimate, d.low, d.high, _claim(d, leader_smaller=not up)))
        out.append(group.assign(**dict(zip(["leader", "estimate", "ci_low", "ci_high", "claim"], zip(*rows)))))
    columns = [*stats.columns, "leader", "estimate", "ci_low", "ci_high", "claim"]
    return pd.concat(out, ignore_index=True)[columns] if out else pd.DataFrame(columns=columns)
