"""``experiments.metric_curve``: the rules for best value and steps-to-target that training, the
tasks' running best and analysis share."""

from __future__ import annotations

import math

import pytest

from experiments.metric_curve import best, meets, steps_to_target

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize("value, target, higher, expected", [
    (0.6, 0.6, True, True), (0.59, 0.6, True, False), (1.9, 2.0, False, True), (2.0, 2.0, False, True),
    (2.1, 2.0, False, False), (NAN, 0.6, True, False), (INF, 0.6, True, False), (-INF, 2.0, False, False),
    (None, 0.6, True, False),
])
def test_meets_is_finite_and_on_the_targets_side(value, target, higher, expected):
    assert meets(value, target, higher) is expected


@pytest.mark.parametrize("values, higher, expected", [
    ([0.2, 0.7, 0.5], True, 0.7), ([3.0, 1.5, 2.0], False, 1.5), ([0.2, NAN, 0.1], True, 0.2),
    ([NAN, INF, 0.3], True, 0.3), ([-INF, 2.0], False, 2.0), ([None, 0.4], True, 0.4), ([NAN, None], True, None),
    ([], False, None),
])
def test_best_ignores_non_finite_values(values, higher, expected):
    assert best(values, higher) == expected


@pytest.mark.parametrize("curve, target, higher, expected", [
    ([(5, 0.2), (10, 0.6), (15, 0.7)], 0.6, True, 10),
    ([(5, 0.2), (10, 0.5)], 0.6, True, None),
    ([(5, NAN), (10, 0.9)], 0.6, True, 10),
    ([(5, 3.0), (10, 1.9)], 2.0, False, 10),
    ([], 0.5, True, None),
])
def test_steps_to_target_is_the_first_step_that_meets_it(curve, target, higher, expected):
    """The first step whose value reaches the target in the metric's direction, else None."""
    assert steps_to_target(curve, target, higher) == expected
