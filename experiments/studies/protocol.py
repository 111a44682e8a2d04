"""The batch-size scaling protocol of Shallue et al. (2018): which trial a cell selects.

In every cell (task, optimizer, batch size) the search's trials are independent runs. A trial
that diverged is infeasible (a result, not a crash). With ``objective: steps_to_target`` the
cell's steps-to-result is the smallest ``steps_to_target`` (first step whose validation metric
reaches the target) over its completed trials; ties go to the better best validation metric,
then to the trial earlier in the search's order. A cell none of whose trials reaches the target
has no steps-to-result and selects nothing. With ``objective: best`` the trial with the best
validation metric is selected (ties: the earlier trial). The selected point is then re-run with
the spec's seeds.

A pure function of the trials' summaries (``summary.json`` as ``RunStore.summary`` returns it),
so it is tested on summaries written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from experiments.store import COMPLETED
from experiments.studies.space import edge_keys

__all__ = ["Selection", "select"]

# Selection.state
SELECTED = "selected"
PENDING = "pending"  # a trial has no final result yet (not run, running, failed and to be retried)
NOT_REACHED = "target not reached"  # every trial finished; none (that did not diverge) reached the target
INFEASIBLE = "all diverged"  # no trial completed


@dataclass(frozen=True)
class Selection:
    state: str
    chosen: Optional[int] = None  # index of the selected trial
    edges: tuple[str, ...] = ()  # searched keys whose selected value is the smallest or largest tried

    @property
    def warning(self) -> Optional[str]:
        if not self.edges:
            return None
        return (f"selected point on the edge of the search space in {', '.join(self.edges)}: "
                "the best value may lie outside it")


def select(points: Sequence[Mapping[str, Any]], summaries: Sequence[Optional[Mapping[str, Any]]],
           objective: str = "steps_to_target") -> Selection:
    """The cell's selection from its trials' search ``points`` and ``summaries``.

    ``summaries[i]`` is trial i's summary once it is final (completed, diverged, or failed with
    no retry left: left out), else None, and then the cell is still ``pending``.
    """
    if any(summary is None for summary in summaries):
        return Selection(PENDING)
    completed = [(i, s) for i, s in enumerate(summaries) if s["status"] == COMPLETED]
    if not completed:
        return Selection(INFEASIBLE)
    if objective == "steps_to_target":
        candidates = [(s["steps_to_target"], _best_key(s), i) for i, s in completed
                      if s.get("steps_to_target") is not None]
    else:
        candidates = [(_best_key(s), i) for i, s in completed if _best(s) is not None]
    if not candidates:
        return Selection(NOT_REACHED)
    chosen = min(candidates)[-1]
    return Selection(SELECTED, chosen, tuple(edge_keys(points, chosen)))


def _best(summary: Mapping[str, Any]) -> Optional[float]:
    return (summary.get("best") or {}).get(summary.get("metric"))


def _best_key(summary: Mapping[str, Any]) -> float:
    """The best metric as a quantity to minimise (missing: worst)."""
    best = _best(summary)
    if best is None:
        return float("inf")
    return -best if summary.get("higher_is_better", True) else best
