"""A validation metric's curve (its values at the steps they were measured) and what a run
reports from it: the best value and the steps to a target.

One owner for the rules, so that a summary written by training, the running best a task logs
beside its metric and what analysis recovers from the rows of a run without a summary agree:

- a value *meets* a target when it is finite and on the target's side in the metric's direction
  (``value >= target`` when higher is better, ``value <= target`` otherwise);
- the best value is the maximum (or minimum) of the finite values, None if there is none;
- steps-to-target is the first step whose value meets the target, None if none does.

Torch-free: analysis imports it.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

__all__ = ["meets", "best", "steps_to_target"]


def meets(value: Optional[float], target: float, higher_is_better: bool) -> bool:
    """Whether ``value`` reaches ``target`` in the metric's direction (NaN, inf and None never do)."""
    if value is None or not math.isfinite(value):
        return False
    return value >= target if higher_is_better else value <= target


def best(values: Iterable[Optional[float]], higher_is_better: bool) -> Optional[float]:
    """The largest (``higher_is_better``) or smallest of the finite ``values``; None if none is."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if higher_is_better else min(finite)


def steps_to_target(curve: Iterable[tuple[int, Optional[float]]], target: float,
                    higher_is_better: bool) -> Optional[int]:
    """The first step of ``curve`` ((step, value) pairs in step order) whose value meets
    ``target``; None if none does."""
    return next((step for step, value in curve if meets(value, target, higher_is_better)), None)
