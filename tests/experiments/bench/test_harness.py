"""``optbench bench harness``: the bare loop computes what ``optbench train`` computes, and the
command prints its three rows."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from experiments.bench.commands import bench_harness
from experiments.bench.harness import BARE, TRAINING_STEPS, WHOLE_RUN, bare_loop
from experiments.config import load_config
from experiments.train import train
from tests.experiments.support import TINY
from tests.experiments.test_cli import assert_one_line_error, run_main

STEPS = ["trainer.max_steps=12", "trainer.log_every_n_steps=4"]


@pytest.mark.slow
def test_the_bare_loop_trains_what_optbench_train_trains(tmp_path):
    """Same initial weights, batches, optimizer and schedule: after 12 steps the bare loop's loss
    equals the loss optbench train records at its last step, to float32 rounding."""
    config = load_config([*TINY, *STEPS, f"out_dir={tmp_path}"])
    samples_per_s, loss = bare_loop(config)
    summary = train(config)
    assert samples_per_s > 0
    assert abs(loss - summary["final"]["train/loss"]) <= 1e-6 * abs(loss)


@pytest.mark.slow
def test_the_command_prints_three_rows_against_the_bare_loop():
    console = Console(file=io.StringIO(), width=200)
    bench_harness([*TINY, *STEPS], rounds=1, console=console)
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
            for line in console.file.getvalue().splitlines() if line.count("│") == 5}
    assert set(rows) == {BARE, TRAINING_STEPS, WHOLE_RUN}
    assert rows[BARE][1] == "1.000"
    assert all(float(samples) > 0 and float(ratio) > 0 for samples, ratio, _ in rows.values())


@pytest.mark.parametrize("setting, message", [
    ("trainer.accumulate_grad_batches=2", r"bench harness compares one device without gradient accumulation"),
    ("trainer.max_steps=6", r"bench harness times the steps after the first 5: trainer.max_steps must be over 6"),
])
def test_what_the_bare_loop_cannot_match_is_refused_in_one_line(setting, message, capsys):
    assert_one_line_error(run_main(capsys, "bench", "harness", *TINY, setting), message)
