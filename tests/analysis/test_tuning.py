"""Tuning budget and tuning variance on hand-built runs with known answers."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis import frames as F
from analysis.convergence import run_targets
from analysis.frames import typed_runs
from analysis.roles import with_roles
from analysis.tuning import expected_best_of, tuning_budget, tuning_curves
from tests.analysis.synthetic import metrics_frame, run_record


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_expected_best_of_k_is_the_mean_over_every_subset(k):
    values = np.array([300.0, 120.0, 1000.0, 250.0])
    subsets = [min(s) for s in itertools.combinations(values, k)]
    assert expected_best_of(values, k) == pytest.approx(sum(subsets) / len(subsets), rel=1e-12)
    with pytest.raises(ValueError, match="k must be in 1..4"):
        expected_best_of(values, 5)


def _runs() -> pd.DataFrame:
    """One search of 4 lrs (one never reaches the target, one diverges) and 3 confirmation runs."""
    rows = [(0.001, 300, "completed", ""), (0.01, 100, "completed", ""), (0.1, None, "completed", ""),
            (1.0, None, "diverged", ""), (0.01, 110, "completed", "confirming"), (0.01, 120, "completed", "confirming"),
            (0.01, 90, "completed", "confirming")]
    records = [run_record(**{F.RUN_ID: f"r{i}", F.LR: lr, F.SEED: i, F.STEPS_TO_TARGET: steps, F.STATUS: status,
                             F.BEST: 0.9, F.GLOBAL_STEP: 1000 if status == "completed" else 100, F.WALL_TIME_S: 10.0})
               for i, (lr, steps, status, _) in enumerate(rows)]
    runs = typed_runs(records)
    return with_roles(runs, pd.DataFrame({"role": [r[3] for r in rows], "variant": ""}, index=runs.index))


def test_tuning_budget_separates_the_search_from_the_confirmation():
    budget = tuning_budget(_runs()).iloc[0]
    assert budget[["n_trials", "trial_steps", "trial_wall_time_s"]].tolist() == [4, 3100, 40.0]
    assert budget[["n_confirming", "confirming_steps", "confirming_wall_time_s"]].tolist() == [3, 3000, 30.0]


def test_tuning_curves_count_unreached_and_diverged_points_at_their_budget():
    runs = _runs()
    curves = tuning_curves(run_targets(runs, metrics_frame([]))).set_index("k")
    points = np.array([300.0, 100.0, 1000.0, 1000.0])  # the confirmation runs are not trials
    assert curves["n_points"].tolist() == [4] * 4
    assert curves["expected_steps"].tolist() == pytest.approx([expected_best_of(points, k) for k in range(1, 5)])
    assert curves["p_reached"].tolist() == pytest.approx([0.5, 1 - 1 / 6, 1.0, 1.0])  # 2 of 4 points never reach
