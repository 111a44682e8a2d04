"""``optbench bench optimizers`` on the CPU: its rows, the bandwidth-floor rows, and the one-line
error for a CUDA run where no GPU is visible."""

from __future__ import annotations

import io

from rich.console import Console

from experiments.bench.commands import bench_optimizers
from tests.experiments.test_cli import assert_one_line_error, run_main

QUICK = ["bench", "optimizers", "--small", "--rounds", "1", "--steps", "1", "--warmup", "1", "--no-peers"]


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
