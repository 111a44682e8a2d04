"""``optbench bench analysis``: the analysis pipeline on a generated store, against a naive read.

Writes N runs × M logged steps through the run store (config.yaml, meta.json, summary.json,
metrics.jsonl with a train row per logged step and a validation row every 50, layers.jsonl),
then times: the naive read (one ``pd.read_json(lines=True)`` per metrics file, ``json`` per
summary), a cold load (empty cache), a cached load, the comparisons, the tables and the
figures. Goals: cold ≤ 2× naive, cached ≤ 0.5× naive and ≤ 10 s on 2 cores.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, TypeVar

import pandas as pd
import yaml

from analysis.compare import compare
from analysis.load import load
from analysis.report import write_figures, write_tables
from experiments.store import COMPLETED, FORMAT_VERSION, RunStore, find_runs

__all__ = ["generate", "time_analysis"]

T = TypeVar("T")
OPTIMIZERS = ("novograd", "adamw", "sgd", "larc_sgd")


def generate(root: Path, runs: int, steps: int, seed: int = 0) -> None:
    """``runs`` finished runs under ``root/bench`` with ``steps`` logged steps each, written
    through ``RunStore`` as ``optbench train`` writes them."""
    rng = random.Random(seed)
    for number in range(runs):
        store = RunStore(root / "bench" / f"{number:012x}")
        optimizer, lr = OPTIMIZERS[number % 4], 10 ** rng.uniform(-4, -1)
        config = {"task": "vision", "size": "default", "seed": number % 3, "target": None, "study": "bench",
                  "data": {"batch_size": 64, "source": "builtin"},
                  "optimizer": {"name": optimizer, "lr": lr, "weight_decay": None, "lr_scaling": "none",
                                "reference_batch_size": 64, "options": {}},
                  "trainer": {"max_steps": steps * 10, "accumulate_grad_batches": 1, "devices": 1}}
        store.begin(yaml.safe_dump(config), {"store_format": FORMAT_VERSION}, resume=False)
        rows, best = [], 0.0
        for i in range(1, steps + 1):
            step = i * 10
            loss = 2.5 * math.exp(-step / 20000) + rng.random() * 0.05
            rows.append({"step": step, "epoch": step // 1000, "wall_time": step * 0.01,
                         "train/loss": loss, "lr": lr, "throughput": 6400.0 + rng.random()})
            if i % 50 == 0:
                acc = 1 - loss / 2.5
                best = max(best, acc)
                rows.append({"step": step, "epoch": step // 1000, "wall_time": step * 0.01 + 0.1,
                             "val/acc": acc, "val/acc_best": best})
        store.append("metrics.jsonl", rows)
        store.append("layers.jsonl", ({"step": s, "layer": f"layer{k}", "grad_norm": 1.0, "weight_norm": 2.0,
                                       "update_norm": 0.01, "update_ratio": 0.005}
                                      for s in range(500, steps * 10 + 1, 500) for k in range(20)))
        store.finish({
            "status": COMPLETED, "run_id": store.run_id, "task": "vision", "optimizer": optimizer, "lr": lr,
            "effective_batch_size": 64, "seed": number % 3, "global_step": steps * 10, "metric": "val/acc",
            "higher_is_better": True, "best": {"val/acc": best}, "final": {"val/acc": best}, "target": 0.93,
            "steps_to_target": None, "wall_time_s": steps * 0.1, "throughput_samples_per_s": 6400.0,
            "peak_memory_bytes": 10**9, "optimizer_state_bytes": 10**6})


def naive(root: Path) -> float:
    start = time.perf_counter()
    for run in find_runs(root):
        pd.read_json(run / "metrics.jsonl", lines=True)
        json.loads((run / "summary.json").read_text())
    return time.perf_counter() - start


def time_analysis(runs: int, steps: int, root: Path | None = None,
                  progress: Callable[[str], None] = lambda text: None) -> list[tuple[str, float, str]]:
    """Generate the store under ``root`` (a temporary directory, removed after, when None) and
    time each stage; returns rows (stage, seconds, note)."""
    keep = root is not None
    root = root or Path(tempfile.mkdtemp(prefix="optbench-bench-"))
    try:
        progress(f"generating {runs} runs x {steps} steps")
        seconds, _ = _timed(generate, root / "store", runs, steps)
        rows = [("generate the store", seconds, f"{runs} runs x {steps} logged steps")]
        progress("naive read")
        naive_s, _ = _timed(naive, root / "store")
        rows.append(("naive read (read_json per file)", naive_s, "the yardstick"))
        progress("cold load")
        cold, frames = _timed(load, [root / "store"], cache_dir=root / "cache")
        rows.append(("load, cold (empty cache)", cold, f"{cold / naive_s:.2f}x naive (goal <= 2)"))
        progress("cached load")
        cached, _ = _timed(load, [root / "store"], cache_dir=root / "cache")
        rows.append(("load, cached", cached, f"{cached / naive_s:.2f}x naive (goal <= 0.5 and <= 10 s)"))
        progress("comparisons")
        seconds, comparison = _timed(compare, frames)
        rows.append(("comparisons", seconds, f"{len(frames.metrics):,} metric rows"))
        progress("tables")
        seconds, _ = _timed(write_tables, comparison, root / "report")
        rows.append(("tables", seconds, ""))
        progress("figures")
        seconds, (figures, _) = _timed(write_figures, comparison, root / "report")
        rows.append(("figures (PNG and SVG)", seconds, f"{len(figures)} figures"))
        return rows
    finally:
        if not keep:
            shutil.rmtree(root)


def _timed(function: Callable[..., T], *args: object, **kwargs: object) -> tuple[float, T]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result
