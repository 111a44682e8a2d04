"""Time ``analysis.load`` on a generated run store against a naive pandas read of the same files.

    python scripts/bench_analysis.py [--runs 1000] [--steps 5000] [--dir DIR]

Writes N runs × M logged steps in the store's real format (config.yaml, meta.json, summary.json,
metrics.jsonl with a train row per logged step and a validation row every 50, layers.jsonl),
then times: the naive read (one ``pd.read_json(lines=True)`` per metrics file, ``json`` per
summary), a cold load (empty cache) and a cached load. Goal: cold ≤ 2× naive, cached ≤ 0.5×
naive and ≤ 10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from analysis.load import load
from experiments.store import find_runs

OPTIMIZERS = ("novograd", "adamw", "sgd", "larc_sgd")


def generate(root: Path, runs: int, steps: int, seed: int = 0) -> None:
    """``runs`` run directories under ``root/bench`` with ``steps`` logged steps each."""
    rng = random.Random(seed)
    for number in range(runs):
        run = root / "bench" / f"{number:012x}"
        run.mkdir(parents=True)
        optimizer, lr = OPTIMIZERS[number % 4], 10 ** rng.uniform(-4, -1)
        config = {"task": "vision", "size": "default", "seed": number % 3, "target": None, "study": "bench",
                  "data": {"batch_size": 64, "source": "builtin"},
                  "optimizer": {"name": optimizer, "lr": lr, "weight_decay": None, "lr_scaling": "none",
                                "reference_batch_size": 64, "options": {}},
                  "trainer": {"max_steps": steps * 10, "accumulate_grad_batches": 1, "devices": 1}}
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        (run / "meta.json").write_text(json.dumps({"store_format": 2}))
        lines, best = [], 0.0
        for i in range(1, steps + 1):
            step = i * 10
            loss = 2.5 * math.exp(-step / 20000) + rng.random() * 0.05
            lines.append(json.dumps({"step": step, "epoch": step // 1000, "wall_time": step * 0.01,
                                     "train/loss": loss, "lr": lr, "throughput": 6400.0 + rng.random()}))
            if i % 50 == 0:
                acc = 1 - loss / 2.5
                best = max(best, acc)
                lines.append(json.dumps({"step": step, "epoch": step // 1000, "wall_time": step * 0.01 + 0.1,
                                         "val/acc": acc, "val/acc_best": best}))
        (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        (run / "layers.jsonl").write_text("".join(
            json.dumps({"step": s, "layer": f"layer{k}", "grad_norm": 1.0, "weight_norm": 2.0,
                        "update_norm": 0.01, "update_ratio": 0.005}) + "\n"
            for s in range(500, steps * 10 + 1, 500) for k in range(20)))
        (run / "summary.json").write_text(json.dumps({
            "status": "completed", "run_id": run.name, "task": "vision", "optimizer": optimizer, "lr": lr,
            "effective_batch_size": 64, "seed": number % 3, "global_step": steps * 10, "metric": "val/acc",
            "higher_is_better": True, "best": {"val/acc": best}, "final": {"val/acc": best}, "target": 0.93,
            "steps_to_target": None, "wall_time_s": steps * 0.1, "throughput_samples_per_s": 6400.0,
            "peak_memory_bytes": 10**9, "optimizer_state_bytes": 10**6, "store_format": 2}))


def naive(root: Path) -> float:
    start = time.perf_counter()
    for run in find_runs(root):
        pd.read_json(run / "metrics.jsonl", lines=True)
        json.loads((run / "summary.json").read_text())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--dir", type=Path, default=None, help="where to generate (default: a temporary dir)")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="optbench-bench-"))
    try:
        start = time.perf_counter()
        generate(root / "store", args.runs, args.steps)
        print(f"generated {args.runs} runs x {args.steps} steps in {time.perf_counter() - start:.1f} s")
        naive_s = naive(root / "store")
        start = time.perf_counter()
        frames = load([root / "store"], cache_dir=root / "cache")
        cold = time.perf_counter() - start
        start = time.perf_counter()
        load([root / "store"], cache_dir=root / "cache")
        cached = time.perf_counter() - start
        print(f"{len(frames.runs)} runs, {len(frames.metrics):,} metric rows, {len(frames.layers):,} layer rows")
        print(f"naive {naive_s:.2f} s | cold {cold:.2f} s ({cold / naive_s:.2f}x naive, goal <= 2) | "
              f"cached {cached:.2f} s ({cached / naive_s:.2f}x naive, goal <= 0.5 and <= 10 s)")
    finally:
        if args.dir is None:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
