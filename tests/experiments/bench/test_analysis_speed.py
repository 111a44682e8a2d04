"""``optbench bench analysis``: the pipeline timed stage by stage on a generated store, and the
same rows as foreign wandb runs loaded with a map."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from analysis import frames as F
from analysis.load import load
from analysis.run_map import parse_map
from experiments.bench.analysis_speed import FOREIGN_MAP, OPTIMIZERS, generate, generate_foreign
from experiments.bench.commands import bench_analysis
from experiments.store import COMPLETED, FORMAT_VERSION, RunStore, find_runs

STAGES = ("generate the store", "naive read", "load, cold", "load, cached", "comparisons", "tables", "figures",
          "generate foreign wandb runs", "load foreign runs with a map, cold", "load foreign runs with a map, cached")


@pytest.mark.slow  # the figures stage alone takes seconds
def test_bench_analysis_times_every_stage(tmp_path):
    """A small store: every stage gets a row with its seconds, the load rows their ratio to the
    naive read, the foreign loads theirs to the store's; the directory given keeps the generated
    store, in the store's own layout, and the foreign runs beside it."""
    console = Console(file=io.StringIO(), width=200)
    rows = bench_analysis(runs=8, steps=100, directory=tmp_path, console=console)
    out = console.file.getvalue()
    for stage in STAGES:
        assert re.search(rf"│ {re.escape(stage)}[^│]*│\s+[0-9]+\.[0-9]+ │", out), (stage, out)
    assert re.search(r"load, cold.*[0-9.]+x naive \(goal <= 2\)", out)
    assert re.search(r"with a map, cold.*[0-9.]+x the store's cold load \(goal <= 2\)", out)
    assert re.search(r"with a map, cached.*[0-9.]+x the store's cached load", out)
    assert len(rows) == len(STAGES) and all(row[0].startswith(stage) for row, stage in zip(rows, STAGES))
    assert len(list((tmp_path / "store" / "bench").glob("*/summary.json"))) == 8
    assert len(list((tmp_path / "foreign" / "wandb").glob("offline-run-*/run-*.wandb"))) == 8


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


def test_generated_foreign_runs_read_with_the_map_as_generated(tmp_path):
    """generate_foreign writes .wandb files that the loader reads, with the benchmark's map, as
    finished comparable runs: the flat hyper-parameters (a key optbench does not know kept as a
    config column), trainer/global_step as the step, _runtime as the wall time, epoch, a train
    row per logged step and a validation row every 50, best and final from those rows."""
    generate_foreign(tmp_path, runs=5, steps=100)
    frames = load([tmp_path / "wandb"], cache_dir=None, run_map=parse_map(FOREIGN_MAP))
    runs = frames.runs.set_index(F.RUN_ID).sort_index()
    assert runs.index.tolist() == [f"r{n:07d}" for n in range(5)]
    assert runs[F.LEFT_OUT].isna().all() and set(runs[F.STATUS]) == {"completed"}
    assert runs[F.OPTIMIZER].tolist() == [OPTIMIZERS[n % 4] for n in range(5)]
    assert runs[F.SEED].tolist() == [n % 3 for n in range(5)]
    assert (runs[F.TASK].unique().tolist(), runs[F.BATCH_SIZE].unique().tolist(), runs[F.MAX_STEPS].unique().tolist(),
            runs[F.TARGET].unique().tolist(), runs["config.hidden"].unique().tolist()) == (
        ["vision"], [64], [1000], [0.93], [64])
    assert runs[F.LR].between(1e-4, 1e-1).all() and runs[F.LR].nunique() == 5
    for run_id, run in runs.iterrows():
        rows = frames.metrics[frames.metrics[F.RUN_ID] == run_id]
        loss = rows[rows[F.METRIC] == "train_loss"].sort_values(F.STEP)
        acc = rows[rows[F.METRIC] == "val_acc"].sort_values(F.STEP)
        assert loss[F.STEP].tolist() == list(range(10, 1001, 10)) and acc[F.STEP].tolist() == [500, 1000]
        assert (run[F.BEST], run[F.FINAL]) == (acc[F.VALUE].max(), acc[F.VALUE].iloc[-1])
        assert loss[F.WALL_TIME].tolist() == [step * 0.01 for step in loss[F.STEP]]
        assert loss[F.EPOCH].tolist() == [step // 1000 for step in loss[F.STEP]]
