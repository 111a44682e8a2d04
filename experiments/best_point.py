"""The best point of a cell: one definition, shared by a study's selection
(``experiments.studies.protocol``) and the analysis (``analysis.cells``, ``analysis.scaling``), so
that the point a study selected and the point its report calls best are the same.

A cell's candidate *points* (its learning rates, or its search points) each have one or more
finished runs (seeds; a study's search trial is one run, or ``search.seeds`` of them). For an
objective:

- ``steps_to_target``: a point is *eligible* when none of its runs diverged and at least one
  reached the target. Its score is the mean steps-to-target over its runs, a run that never
  reached the target counted at its budget (``max_steps``: a lower bound of its steps). The
  eligible point with the smallest score is best; ties go to the better mean best metric, then
  to the earlier point.
- ``best``: a point is eligible when none of its runs diverged and at least one has a best
  metric; the best mean best metric (in the metric's direction) wins; ties go to the earlier point.

A diverged run makes its point infeasible (a result, not a crash): a learning rate that diverges
with some seeds is not one a reader could use. Torch-free: analysis imports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

__all__ = ["OBJECTIVES", "RunResult", "point_key", "best_point"]

OBJECTIVES = ("steps_to_target", "best")


@dataclass(frozen=True)
class RunResult:
    """What the definition reads of one finished run."""

    diverged: bool
    best: Optional[float] = None  # the run's best validation metric; None if it has none
    steps_to_target: Optional[float] = None  # None: the target was never reached
    budget: float = math.inf  # the steps a run that never reached the target counts at


def _finite(value: Optional[float]) -> bool:
    return value is not None and math.isfinite(value)


def point_key(runs: Sequence[RunResult], objective: str, higher_is_better: bool) -> Optional[tuple[float, ...]]:
    """The point's rank as a tuple to minimise, or None if it is not eligible (see the module)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r} (valid: {', '.join(OBJECTIVES)})")
    if not runs or any(run.diverged for run in runs):
        return None
    bests = [run.best for run in runs if _finite(run.best)]
    quality = (-1.0 if higher_is_better else 1.0) * sum(bests) / len(bests) if bests else math.inf
    if objective == "best":
        return None if not bests else (quality,)
    if not any(_finite(run.steps_to_target) for run in runs):
        return None
    steps = [run.steps_to_target if _finite(run.steps_to_target) else run.budget for run in runs]
    return (sum(steps) / len(steps), quality)


def best_point(points: Sequence[Sequence[RunResult]], objective: str, higher_is_better: bool) -> Optional[int]:
    """The index of the best of ``points`` (each its runs' results), None if none is eligible."""
    keys = [(key, index) for index, runs in enumerate(points)
            if (key := point_key(runs, objective, higher_is_better)) is not None]
    return min(keys)[1] if keys else None
