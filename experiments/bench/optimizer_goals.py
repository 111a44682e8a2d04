"""The optimizer-step goals on a CPU, each a paired ratio of two rows of the benchmark (see
``BenchRow.ratio_to``), printed after its table by ``optbench bench optimizers``.

A goal is met when the median of its per-round ratios is at or under the bound; the per-round
ratios are printed beside it, so a reader sees how much the machine's drift moved them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from experiments.bench.optimizer_steps import ADAM_STATE_ROW, REFERENCE_ROW, BenchRow

__all__ = ["Goal", "GOALS", "STATE_GOAL", "goal_results", "goals_markdown"]


@dataclass(frozen=True)
class Goal:
    text: str
    row: str
    reference: str  # a row name; "the faster peer NovoGrad" is resolved from the rows
    bound: float


PEER_NOVOGRAD = "the faster peer NovoGrad"
GOALS = (
    Goal("NovoGrad ≤ 1.0× torch's fused Adam", "novograd (fused)", REFERENCE_ROW, 1.0),
    Goal("NovoGrad ≤ 0.5× the faster peer NovoGrad", "novograd (fused)", PEER_NOVOGRAD, 0.5),
    Goal("NovoGrad's default path ≤ 1.5× torch's fused Adam", "novograd", REFERENCE_ROW, 1.5),
    Goal("LARC over NovoGrad ≤ 1.2× NovoGrad", "larc_novograd (fused)", "novograd (fused)", 1.2),
    Goal("LARC over NovoGrad's default path ≤ 1.2× NovoGrad's", "larc_novograd", "novograd", 1.2),
    Goal("LARC over SGD ≤ 1.8× SGD", "larc_sgd", "sgd", 1.8),
)
STATE_GOAL = 0.51  # NovoGrad's optimizer state over Adam's


def goal_results(rows: list[BenchRow]) -> list[tuple[Goal, str, float, list[float]]]:
    """(goal, the reference row's name, the paired ratio, the per-round ratios) for each goal
    whose rows were timed."""
    by_name = {row.name: row for row in rows}
    results = []
    for goal in GOALS:
        reference = goal.reference
        if reference == PEER_NOVOGRAD:
            peers = [row for row in rows if row.name.endswith("optimizer NovoGrad")]
            reference = min(peers, key=lambda row: row.median_ms).name if peers else None
        row, base = by_name.get(goal.row), by_name.get(reference) if reference else None
        if row is None or base is None:
            continue
        results.append((goal, base.name, row.ratio_to(base), row.round_ratios(base)))
    return results


def goals_markdown(rows: list[BenchRow]) -> str:
    """The goals as a Markdown table: goal, paired ratio with its rounds, met or missed."""
    lines = ["| goal | rows | paired ratio (rounds) | |", "|---|---|---|---|"]
    for goal, reference, ratio, per_round in goal_results(rows):
        rounds = ", ".join(f"{r:.2f}" for r in per_round)
        lines.append(f"| {goal.text} | {goal.row} / {reference} | **{ratio:.2f}×** ({rounds}) | "
                     f"{'met' if ratio <= goal.bound else 'missed'} |")
    state = _state_ratio(rows)
    if state is not None:
        lines.append(f"| NovoGrad state ≤ {STATE_GOAL}× Adam's | novograd / {ADAM_STATE_ROW} | **{state:.3f}×** | "
                     f"{'met' if state <= STATE_GOAL else 'missed'} |")
    return "\n".join(lines)


def _state_ratio(rows: list[BenchRow]) -> Optional[float]:
    by_name = {row.name: row for row in rows}
    novograd, adam = by_name.get("novograd"), by_name.get(ADAM_STATE_ROW)
    if novograd is None or adam is None or not adam.state_bytes:
        return None
    return novograd.state_bytes / adam.state_bytes
