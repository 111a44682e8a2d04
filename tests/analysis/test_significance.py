"""Tests over seeds: Welch's interval against scipy's, ties, too few seeds, censoring, and the
per-task orderings built on them."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from analysis import frames as F
from analysis.orderings import BEHIND, BEST, CENSORED, TIE, TOO_FEW, against_leader
from analysis.significance import MIN_SEEDS, censored_welch, estimate_difference, welch

CASES = [([1.0, 2.0, 3.5], [2.0, 4.0, 6.0, 7.0]), ([0.91, 0.93, 0.92], [0.95, 0.96, 0.94]),
         ([10.0, 12.0, 11.0, 30.0], [5.0, 5.5, 6.0])]


@pytest.mark.parametrize("a, b", CASES)
def test_welch_interval_is_scipys(a, b):
    reference = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    d = welch(a, b)
    assert d.estimate == pytest.approx(sum(a) / len(a) - sum(b) / len(b), rel=1e-12)
    assert (d.low, d.high) == (pytest.approx(reference.low, rel=1e-10), pytest.approx(reference.high, rel=1e-10))
    assert d.significant == (reference.low > 0 or reference.high < 0)


def test_a_difference_whose_interval_holds_zero_is_a_tie_and_text_says_so():
    d = welch([0.90, 0.95, 0.93], [0.92, 0.91, 0.96])
    assert d.testable and not d.significant and d.low < 0 < d.high
    assert d.seeds() == "3 seeds each"
    assert d.interval() == f"difference {d.estimate:.3g}, 95% CI [{d.low:.3g}, {d.high:.3g}]"


@pytest.mark.parametrize("a, b", [([1.0, 1.1], [5.0, 5.1, 5.2]), ([1.0], [5.0, 5.1, 5.2]), ([], [1.0, 2.0, 3.0])])
def test_fewer_than_three_seeds_claim_no_ordering(a, b):
    d = welch(a, b)
    assert MIN_SEEDS == 3 and not d.testable and not d.significant
    assert d.needs().endswith("an ordering needs 3 seeds per cell")


def test_values_without_spread_have_a_zero_width_interval():
    d = welch([50.0, 50.0, 50.0], [60.0, 60.0, 60.0])
    assert (d.estimate, d.low, d.high) == (-10.0, -10.0, -10.0) and d.a_smaller


def test_censoring_refuses_the_claim_a_censored_run_could_reverse():
    budget = 500.0
    fast, slow = [100.0, 110.0, 120.0], [480.0, 490.0, budget]
    d = censored_welch(fast, [False] * 3, slow, [False, False, True])
    # censored on the slower side: a lower bound of it, so a's lead stands if the interval says so
    assert d.censored_b == 1 and d.high < 0 and d.a_smaller
    # the censored run on the side the interval calls faster: it could be slower than counted, no ordering
    d = censored_welch(slow, [False, False, True], [600.0, 610.0, 620.0], [False] * 3)
    assert d.high < 0 and not d.a_smaller and not d.significant


def test_estimates_with_standard_errors():
    d = estimate_difference(100.0, 20.0, 3, 60.0, 10.0, 4, n_a=3, n_b=5)
    half = stats.t.ppf(0.975, 3) * math.hypot(20.0, 10.0)
    assert (d.low, d.high) == (pytest.approx(40.0 - half), pytest.approx(40.0 + half)) and not d.significant
    assert not estimate_difference(100.0, 1.0, 3, 60.0, 1.0, 4, n_a=2, n_b=5).testable


def _stats(rows: list[tuple]) -> pd.DataFrame:
    values = pd.DataFrame(rows, columns=[F.OPTIMIZER, "v", "censored"]).assign(**{F.TASK: "t"})
    out = values.groupby([F.TASK, F.OPTIMIZER]).agg(mean=("v", "mean"), std=("v", "std"), n=("v", "size"),
                                                    n_censored=("censored", "sum")).reset_index()
    return out


def test_orderings_against_the_leader_in_each_direction():
    rows = ([("a", v, False) for v in (0.95, 0.96, 0.955)] + [("b", v, False) for v in (0.90, 0.91, 0.905)]
            + [("c", v, False) for v in (0.93, 0.97, 0.95)] + [("d", v, False) for v in (0.99, 0.5)])
    out = against_leader(_stats(rows), {"t": True}).set_index(F.OPTIMIZER)
    assert out["claim"].to_dict() == {"a": BEST, "b": BEHIND, "c": TIE, "d": TOO_FEW}
    reference = stats.ttest_ind([0.95, 0.96, 0.955], [0.90, 0.91, 0.905], equal_var=False).confidence_interval()
    assert out.loc["b", "ci_low"] == pytest.approx(reference.low) and out.loc["b", "leader"] == "a"
    # lower is better: the leader is the smallest mean, d's, with 2 seeds: nothing is ordered
    out = against_leader(_stats(rows), {"t": False}).set_index(F.OPTIMIZER)
    assert out["claim"].to_dict() == {"a": TOO_FEW, "b": TOO_FEW, "c": TOO_FEW, "d": BEST}
    out = against_leader(_stats(rows[:9]), {"t": False}).set_index(F.OPTIMIZER)
    assert out["claim"].to_dict() == {"a": BEHIND, "b": BEST, "c": TIE}


def test_a_censored_leader_is_not_claimed_ahead():
    rows = [("a", v, c) for v, c in ((100, False), (110, False), (1000, True))] + \
           [("b", v, False) for v in (2000, 2100, 2050)]
    out = against_leader(_stats(rows), {"t": False}).set_index(F.OPTIMIZER)
    assert out.loc["b", "claim"] == CENSORED and out.loc["b", "ci_high"] < 0
