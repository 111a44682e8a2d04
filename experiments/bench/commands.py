"""The ``optbench bench`` commands, ``optimizers``, ``harness`` and ``analysis``, as plain
functions (``experiments.cli`` parses the command line and calls them; tests call them
directly). Each times its target, prints a table on ``console`` and returns the rows."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # the benchmarks import torch: only when one runs
    from experiments.bench.harness import HarnessRow
    from experiments.bench.optimizer_steps import BenchRow

__all__ = ["bench_optimizers", "bench_harness", "bench_analysis"]


def bench_optimizers(*, small: bool = False, steps: int = 10, warmup: int = 3, rounds: int = 3, threads: int = 2,
                     only: Optional[Sequence[str]] = None, peers: bool = True, markdown: bool = False,
                     device: str = "cpu", console: Optional[Console] = None) -> list[BenchRow]:
    """``optbench bench optimizers``: time one ``step()`` of every optimizer (``only``: of these
    rows, beside torch's Adam) on ResNet-50's parameter shapes (``small``: channels / 8), then
    the bandwidth-floor rows; ``peers``: also the peer packages' implementations, where
    installed (a line names those that are not); on a CPU, then the goals' paired ratios
    (``experiments.bench.optimizer_goals``). ``markdown``: the tables again, as Markdown.
    Returns the ``BenchRow``s; an unknown row or ``device="cuda"`` without a GPU raise
    ``ValueError``."""
    import torch

    from experiments.bench.optimizer_goals import goal_results, goals_markdown
    from experiments.bench.optimizer_step_table import bench_markdown, bench_table
    from experiments.bench.optimizer_steps import missing_peers, time_optimizer_steps

    console = console or Console()
    threads_before = torch.get_num_threads()  # the timing sets ``threads``: the caller's setting comes back
    try:
        with console.status("benchmarking") as status:
            rows = time_optimizer_steps(small=small, steps=steps, warmup=warmup, rounds=rounds, threads=threads,
                                        only=list(only) if only else None, include_peers=peers,
                                        progress=lambda text: status.update(text), device=device)
    finally:
        torch.set_num_threads(threads_before)
    size = "ResNet-50/8 shapes (--small)" if small else "ResNet-50 shapes, 25.6M params in 161 tensors"
    where = "CUDA events" if device == "cuda" else f"{threads} threads"
    console.print(bench_table(rows, title=f"optimizer step on {size}; median of {rounds}x{steps} steps, {where}"))
    missing = missing_peers()
    if missing and peers:
        console.out(f"peer rows left out, not installed: {', '.join(missing)}", highlight=False)
    if device == "cpu":
        goals = Table(title="goals on a CPU: paired ratios, the median of the rounds' ratios")
        for column in ("goal", "rows", "ratio", "rounds", ""):
            goals.add_column(column)
        for goal, reference, ratio, per_round in goal_results(rows):
            goals.add_row(goal.text, f"{goal.row} / {reference}", f"{ratio:.2f}",
                          " ".join(f"{r:.2f}" for r in per_round), "met" if ratio <= goal.bound else "missed")
        console.print(goals)
    if markdown:
        console.out(bench_markdown(rows), highlight=False)
        if device == "cpu":
            console.out("\n" + goals_markdown(rows), highlight=False)
    return rows


def bench_harness(overrides: Sequence[str] = (), *, rounds: int = 5,
                  console: Optional[Console] = None) -> list[HarnessRow]:
    """``optbench bench harness``: ``optbench train`` against a bare PyTorch loop on the same
    run (``overrides`` on top of ``task=vision optimizer.name=adamw trainer.max_steps=300``),
    ``rounds`` alternating rounds; prints samples/s and the ratio to the bare loop, returns the
    ``HarnessRow``s. A setting the bare loop cannot match raises ``ValueError``."""
    from experiments.bench.harness import ratios, setting, time_harness

    console = console or Console()
    with console.status("benchmarking") as status:
        rows = time_harness(overrides, rounds, progress=lambda text: status.update(text))
    table = Table(title=f"optbench train vs a bare loop ({setting(overrides)}); medians of {rounds} rounds")
    for column, justify in (("row", "left"), ("samples/s", "right"), ("x bare", "right"), ("rounds", "left")):
        table.add_column(column, justify=justify)
    relative = ratios(rows)
    for row in rows:
        table.add_row(row.name, f"{row.median:.0f}", f"{relative[row.name]:.3f}",
                      " ".join(f"{value:.0f}" for value in row.samples_per_s))
    console.print(table)
    return rows


def bench_analysis(*, runs: int = 1000, steps: int = 5000, directory: Optional[str | Path] = None,
                   console: Optional[Console] = None) -> list[tuple[str, float, str]]:
    """``optbench bench analysis``: generate a store of ``runs`` runs x ``steps`` logged steps
    (in ``directory``, kept; default a temporary directory) and time each stage of the analysis
    on it; prints and returns the rows (stage, seconds, note)."""
    from experiments.bench.analysis_speed import time_analysis

    console = console or Console()
    with console.status("benchmarking") as status:
        rows = time_analysis(runs, steps, Path(directory) if directory else None,
                             progress=lambda text: status.update(text))
    table = Table(title=f"analysis of {runs} runs x {steps} logged steps")
    for column, justify in (("stage", "left"), ("seconds", "right"), ("", "left")):
        table.add_column(column, justify=justify)
    for stage, seconds, note in rows:
        table.add_row(stage, f"{seconds:.2f}", note)
    console.print(table)
    return rows
