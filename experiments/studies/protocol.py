"""The batch-size scaling protocol of Shallue et al. (2018): which point a cell selects, and
where its search is extended.

In every cell (task, optimizer, batch size) the search's points are tried, each by one run (or by
``search.seeds`` runs). Which point is selected is ``experiments.best_point``'s definition, the
one the analysis uses too: with ``objective: steps_to_target`` the point whose runs reach the
target in the fewest steps on average; with ``objective: best`` the best mean validation metric;
a point with a diverged run is infeasible. A cell none of whose points is eligible selects
nothing. The selected point is then re-run with the spec's ``seeds``: the confirmation runs that
score it, the selecting runs left out.

When the selected value of a searched key is the smallest or largest value the cell tried, the
best value may lie outside the space: the study extends the search beyond that edge
(``space.extension_values``) and selects again, up to ``search.extend`` times.

``select`` is a pure function of the trials' summaries (``summary.json`` as ``RunStore.summary``
returns it), so it is tested on summaries written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

from experiments.best_point import RunResult, best_point
from experiments.store import COMPLETED, DIVERGED
from experiments.studies.space import edge_keys

__all__ = ["Selection", "select", "SELECTED", "PENDING", "NOT_REACHED", "INFEASIBLE"]

# Selection.state
SELECTED = "selected"
PENDING = "pending"  # a trial has no final result yet (not run, running, failed and to be retried)
NOT_REACHED = "target not reached"  # every trial finished; no point is eligible
INFEASIBLE = "all diverged"  # no trial completed

Summaries = Union[Mapping[str, Any], Sequence[Mapping[str, Any]], None]


@dataclass(frozen=True)
class Selection:
    state: str
    chosen: Optional[int] = None  # index of the selected point
    edges: tuple[str, ...] = ()  # searched keys whose selected value is the smallest or largest tried

    @property
    def warning(self) -> Optional[str]:
        if not self.edges:
            return None
        return (f"selected point on the edge of the search space in {', '.join(self.edges)}: "
                "the best value may lie outside it")


def _runs(summaries: Summaries) -> list[Mapping[str, Any]]:
    """A point's final summaries: one summary, or those of its runs (one per search seed)."""
    return [summaries] if isinstance(summaries, Mapping) else list(summaries or ())


def _result(summary: Mapping[str, Any]) -> RunResult:
    best = (summary.get("best") or {}).get(summary.get("metric"))
    return RunResult(diverged=summary["status"] == DIVERGED, best=best, steps_to_target=summary.get("steps_to_target"))


def select(points: Sequence[Mapping[str, Any]], summaries: Sequence[Summaries],
           objective: str = "steps_to_target") -> Selection:
    """The cell's selection from its search ``points`` and their runs' ``summaries``.

    ``summaries[i]`` is point i's summary (or the list of its runs' summaries) once final
    (completed, diverged, or failed with no retry left: left out), else None, and then the cell
    is still ``pending``.
    """
    if any(summary is None for summary in summaries):
        return Selection(PENDING)
    results = [[_result(s) for s in _runs(summary) if s["status"] in (COMPLETED, DIVERGED)] for summary in summaries]
    if not any(s["status"] == COMPLETED for summary in summaries for s in _runs(summary)):
        return Selection(INFEASIBLE)
    higher = next((s.get("higher_is_better", True) for summary in summaries for s in _runs(summary)
                   if s["status"] == COMPLETED), True)
    chosen = best_point(results, objective, bool(higher))
    if chosen is None:
        return Selection(NOT_REACHED)
    return Selection(SELECTED, chosen, tuple(edge_keys(points, chosen)))
