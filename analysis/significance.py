"""Tests over seeds: what every ordering the report states rests on.

Two optimizers' cells are compared by **Welch's t-interval of the difference of their means**
(unequal variances; Welch–Satterthwaite degrees of freedom): for samples a and b with means
ā, b̄, variances s_a², s_b² (ddof 1) and sizes n_a, n_b,

    d = ā − b̄,   se² = s_a²/n_a + s_b²/n_b,
    ν = se⁴ / ((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1)),
    95% CI = d ± t_{0.975, ν} · se.

Why Welch's t rather than a bootstrap or a rank test: with the 3 to 5 seeds a study affords, a
bootstrap has only a handful of distinct resamples (its percentile interval is too narrow), and a
rank test cannot reach 95% at all with 3 seeds per side (the smallest two-sided exact p is
2/C(6,3) = 0.1). The t-interval is exact for normal noise and is the interval papers print.

An ordering is claimed only when the interval excludes 0 and both cells have at least
``MIN_SEEDS`` (3) values; an interval that contains 0 is a tie ("within noise"); with fewer
seeds no ordering is claimed at all. Two cells whose values have no spread (every seed the same
number, as steps counted at a validation every 10 steps can be) have a zero-width interval.

**Censoring** (steps- or time-to-target of a run that never reached the target): such a run's
value is only bounded below, by its budget. It enters the interval at its budget, and an
ordering "a needs fewer steps than b" is claimed only when every run of a reached the target. A
censored run can only be slower than counted: on b's side it can only hide part of a's lead,
while on a's side it could hide that a is the slower one. So the claim that is made rests on
values that favour the other side, and the claim that a censored run could reverse is refused.

Estimates with standard errors rather than samples (a fitted critical batch size, a mean noise
scale) are compared the same way: d ± t_{0.975, ν}·√(se_a² + se_b²) with ν the smaller of their
degrees of freedom (conservative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

__all__ = ["MIN_SEEDS", "CONFIDENCE", "TEST", "Difference", "welch_stats", "welch", "censored_welch",
           "estimate_difference"]

MIN_SEEDS = 3  # per compared cell, for any ordering
CONFIDENCE = 0.95
TEST = "Welch's t-interval of the difference of means, 95%"


@dataclass(frozen=True)
class Difference:
    """a − b with its interval, and what may be claimed from it."""

    estimate: float
    low: float
    high: float
    n_a: int
    n_b: int
    censored_a: int = 0  # runs of a that never reached the target (counted at their budget)
    censored_b: int = 0

    @property
    def testable(self) -> bool:
        """Both sides have ``MIN_SEEDS`` values and the interval is defined."""
        return min(self.n_a, self.n_b) >= MIN_SEEDS and math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def a_smaller(self) -> bool:
        """A supported claim that a's mean is smaller than b's (a's runs all uncensored)."""
        return self.testable and self.high < 0 and self.censored_a == 0

    @property
    def a_larger(self) -> bool:
        """A supported claim that a's mean is larger than b's (b's runs all uncensored)."""
        return self.testable and self.low > 0 and self.censored_b == 0

    @property
    def significant(self) -> bool:
        """An ordering is supported, in either direction."""
        return self.a_smaller or self.a_larger

    def seeds(self) -> str:
        """``3 seeds each`` or ``3 and 4 seeds``."""
        if self.n_a == self.n_b:
            return f"{self.n_a} seed{'s' if self.n_a != 1 else ''} each"
        return f"{self.n_a} and {self.n_b} seeds"

    def interval(self) -> str:
        """``difference 0.004, 95% CI [-0.03, 0.04]`` (the difference a − b)."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f"difference {self.estimate:.3g}, no interval"
        return f"difference {self.estimate:.3g}, 95% CI [{self.low:.3g}, {self.high:.3g}]"

    def needs(self) -> str:
        """Why no ordering could be tested: how many seeds each side has and needs."""
        return f"{self.seeds()}; an ordering needs {MIN_SEEDS} seeds per cell"


def welch_stats(mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int,
                censored_a: int = 0, censored_b: int = 0, confidence: float = CONFIDENCE) -> Difference:
    """Welch's t-interval of mean_a − mean_b from each side's mean, standard deviation (ddof 1)
    and size; ``censored_*``: how many of each side's values are censored (see the module)."""
    n_a, n_b = int(n_a), int(n_b)
    if n_a == 0 or n_b == 0:
        return Difference(math.nan, math.nan, math.nan, n_a, n_b, censored_a, censored_b)
    estimate = float(mean_a - mean_b)
    if n_a < 2 or n_b < 2:
        return Difference(estimate, math.nan, math.nan, n_a, n_b, censored_a, censored_b)
    va, vb = std_a ** 2 / n_a, std_b ** 2 / n_b
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(estimate, estimate, estimate, n_a, n_b, censored_a, censored_b)
    df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * se
    return Difference(estimate, estimate - half, estimate + half, n_a, n_b, censored_a, censored_b)


def _stats(values: Sequence[float]) -> tuple[float, float, int]:
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    return (float(array.mean()) if len(array) else math.nan,
            float(array.std(ddof=1)) if len(array) > 1 else math.nan, len(array))


def welch(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Difference:
    """Welch's t-interval of mean(a) − mean(b) (non-finite values left out; see the module)."""
    return welch_stats(*_stats(a), *_stats(b), confidence=confidence)


def censored_welch(a: Sequence[float], a_censored: Sequence[bool], b: Sequence[float], b_censored: Sequence[bool],
                   confidence: float = CONFIDENCE) -> Difference:
    """``welch`` of steps- or time-to-target whose censored runs are given at their budget;
    the result refuses an ordering that a censored run could reverse (see the module)."""
    return welch_stats(*_stats(a), *_stats(b), int(np.sum(a_censored)), int(np.sum(b_censored)), confidence)


def estimate_difference(a: float, se_a: float, df_a: float, b: float, se_b: float, df_b: float, n_a: int, n_b: int,
                        confidence: float = CONFIDENCE) -> Difference:
    """a − b for two estimates with standard errors and degrees of freedom; ``n_a``, ``n_b``:
    the fewest seeds behind each (for the ``MIN_SEEDS`` rule)."""
    estimate = a - b
    se = math.hypot(se_a, se_b)
    df = min(df_a, df_b)
    if not (math.isfinite(se) and df >= 1):
        return Difference(estimate, math.nan, math.nan, n_a, n_b)
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * se
    return Difference(estimate, estimate - half, estimate + half, n_a, n_b)
