"""``optbench bench analysis``: the pipeline timed stage by stage on a generated store."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from experiments.bench.commands import bench_analysis

STAGES = ("generate the store", "naive read", "load, cold", "load, cached", "comparisons", "tables", "figures")


@pytest.mark.slow  # the figures stage alone takes seconds
def test_bench_analysis_times_every_stage(tmp_path):
    """A small store: every stage gets a row with its seconds, the load rows their ratio to the
    naive read; the directory given keeps the generated store, in the store's own layout."""
    console = Console(file=io.StringIO(), width=200)
    rows = bench_analysis(runs=8, steps=100, directory=tmp_path, console=console)
    out = console.file.getvalue()
    for stage in STAGES:
        assert re.search(rf"│ {re.escape(stage)}[^│]*│\s+[0-9]+\.[0-9]+ │", out), (stage, out)
    assert re.search(r"load, cold.*[0-9.]+x naive \(goal <= 2\)", out)
    assert len(rows) == len(STAGES) and all(row[0].startswith(stage) for row, stage in zip(rows, STAGES))
    assert len(list((tmp_path / "store" / "bench").glob("*/summary.json"))) == 8
