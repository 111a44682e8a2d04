"""``optbench bench analysis``: the pipeline timed stage by stage on a generated store."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from experiments.bench.analysis_speed import generate
from experiments.bench.commands import bench_analysis
from experiments.store import COMPLETED, FORMAT_VERSION, RunStore, find_runs

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


def test_generated_store_is_what_the_store_reads(tmp_path):
    """generate writes finished runs through RunStore: each directory holds the files a run
    leaves, a completed summary, a train row per logged step plus a validation row every 50,
    and 20 layers every 500 steps."""
    generate(tmp_path, runs=3, steps=100)
    runs = find_runs(tmp_path)
    assert [run.name for run in runs] == [f"{n:012x}" for n in range(3)]
    for run in runs:
        store = RunStore(run)
        assert sorted(p.name for p in run.iterdir()) == [
            "config.yaml", "layers.jsonl", "meta.json", "metrics.jsonl", "summary.json"]
        assert store.status() == COMPLETED and store.meta() == {"store_format": FORMAT_VERSION}
        assert store.summary()["global_step"] == store.config()["trainer"]["max_steps"] == 1000
        rows = list(store.rows())
        assert (sum("train/loss" in r for r in rows), sum("val/acc" in r for r in rows)) == (100, 2)
        assert len(list(store.rows("layers.jsonl"))) == 2 * 20
