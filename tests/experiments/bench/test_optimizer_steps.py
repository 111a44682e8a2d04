"""``optbench bench optimizers`` on the CPU: its rows, the bandwidth-floor rows, and the one-line
error for a CUDA run where no GPU is visible."""

from __future__ import annotations

import io

import pytest
import torch

from rich.console import Console

from experiments.bench.commands import bench_optimizers
from tests.experiments.test_cli import assert_one_line_error, run_main

QUICK = ["bench", "optimizers", "--small", "--rounds", "1", "--steps", "1", "--warmup", "1", "--no-peers"]


@pytest.mark.slow
def test_cpu_bench_prints_the_rows_and_the_bandwidth_floor():
    """The small CPU bench times the asked rows beside torch's Adam and ends with the two
    bandwidth-floor rows (24 and 28 bytes per value), the 28-byte one the slower; no state there."""
    console = Console(file=io.StringIO(), width=200)
    bench_optimizers(small=True, rounds=1, steps=1, warmup=1, threads=1, peers=False,
                     only=["novograd", "lars", "larc_sgd"], markdown=True, console=console)
    table = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in console.file.getvalue().splitlines() if line.startswith("| ") and "---" not in line}
    assert {"novograd", "lars", "larc_sgd", "torch Adam (fused)", "torch Adam (foreach)"} <= set(table)
    floor_24, floor_28 = table["bandwidth floor (24 B/value)"], table["bandwidth floor (28 B/value)"]
    assert 0 < float(floor_24[0]) < float(floor_28[0])
    assert floor_24[2] == floor_24[3] == ""
    assert float(table["novograd"][0]) > 0


def test_cuda_bench_without_a_gpu_is_a_one_line_error(capsys):
    """``--device cuda`` where no CUDA device is visible (the suite hides them) exits 2 saying so."""
    assert_one_line_error(run_main(capsys, *QUICK, "--device", "cuda"), r"--device cuda: no CUDA device")


@pytest.mark.slow
def test_the_peers_are_rows_with_their_state_bytes_measured():
    """LAMB, Lion, Muon, Schedule-Free AdamW and Adafactor are rows like the others, their state
    measured the same way: Lion keeps one float32 buffer per value, LAMB and Schedule-Free AdamW
    two (plus step counters), Adafactor's factored moments less than one."""
    from experiments.bench.optimizer_steps import resnet50_shapes, time_optimizer_steps

    names = ["lamb", "lion", "muon", "schedule_free_adamw", "adafactor"]
    rows = {row.name: row for row in time_optimizer_steps(small=True, steps=1, warmup=1, rounds=1, threads=1,
                                                          only=names, include_peers=False)}
    values = sum(torch.Size(shape).numel() for shape in resnet50_shapes(small=True))
    assert all(rows[name].median_ms > 0 for name in names)
    assert 4 * values <= rows["lion"].state_bytes < 4 * values + 4096
    for name in ("lamb", "schedule_free_adamw"):
        assert 8 * values <= rows[name].state_bytes < 8 * values + 4096, name
    assert 0 < rows["adafactor"].state_bytes < 4 * values
    assert 4 * values < rows["muon"].state_bytes <= 8 * values + 4096  # momentum on matrices, AdamW's two elsewhere


def test_ratios_are_paired_by_round_and_goals_say_met_or_missed():
    """A row's ratio is the median of its per-round ratios to the reference, so drift that slows
    both rows of a round cancels (here the medians of all steps would say 1.5×, the rounds 1.2×);
    each goal is met at or under its bound, and the markdown lists the rounds."""
    from experiments.bench.optimizer_goals import goal_results, goals_markdown
    from experiments.bench.optimizer_steps import BenchRow

    def row(name, rounds, state=0):
        return BenchRow(name, None, ms=list(rounds), state_bytes=state, round_ms=list(rounds))

    adam = row("torch Adam (fused)", [10.0, 20.0, 30.0])
    rows = [adam, row("torch Adam (foreach)", [40.0, 40.0, 40.0], state=200),
            row("novograd", [12.0, 24.0, 39.0], state=100), row("sgd", [10.0, 10.0, 10.0]),
            row("larc_sgd", [19.0, 17.0, 21.0])]
    assert rows[2].ratio_to(adam) == pytest.approx(1.2)
    results = {goal.row: (ratio, rounds) for goal, _, ratio, rounds in goal_results(rows)}
    assert set(results) == {"novograd", "larc_sgd"}  # goals whose rows were not timed are left out
    assert results["larc_sgd"][0] == pytest.approx(1.9) and results["novograd"][1] == pytest.approx([1.2, 1.2, 1.3])
    text = goals_markdown(rows)
    assert "**1.20×** (1.20, 1.20, 1.30) | met" in text
    assert "**1.90×** (1.90, 1.70, 2.10) | missed" in text
    assert "**0.500×** | met" in text
