"""Means with Student-t confidence intervals over seeds, the error bars of every comparison.

For n values with sample mean x̄ and sample standard deviation s (ddof 1), the two-sided
interval at confidence c is x̄ ± t_{(1+c)/2, n−1} · s/√n. One value has no interval (NaN
half-width): plots draw its line without a band, tables show its mean alone.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["t_half_width", "mean_ci"]


def t_half_width(std: np.ndarray | pd.Series | float, n: np.ndarray | pd.Series | int,
                 confidence: float = 0.95) -> np.ndarray:
    """Half-width t_{(1+c)/2, n−1} · std/√n of the t-interval (NaN where n < 2)."""
    n = np.asarray(n, dtype=float)
    std = np.asarray(std, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        quantile = stats.t.ppf((1 + confidence) / 2, np.where(n >= 2, n - 1, np.nan))
        return quantile * std / np.sqrt(n)


def mean_ci(frame: pd.DataFrame, by: Sequence[str], value: str, confidence: float = 0.95) -> pd.DataFrame:
    """Per group of ``by``: ``mean``, ``std`` (ddof 1), ``n`` (finite values), ``ci_low`` and
    ``ci_high`` of column ``value``; NaN values are left out of each group."""
    grouped = frame.groupby(list(by), observed=True, sort=True)[value]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    half = t_half_width(out["std"], out["n"], confidence)
    out["ci_low"], out["ci_high"] = out["mean"] - half, out["mean"] + half
    return out
