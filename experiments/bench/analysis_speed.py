"""``optbench bench analysis``: the analysis pipeline on a generated store, against a naive read,
and the same runs as foreign wandb runs.

Writes N runs × M logged steps through the run store (config.yaml, meta.json, summary.json,
metrics.jsonl with a train row per logged step and a validation row every 50, layers.jsonl),
then times: the naive read (one ``pd.read_json(lines=True)`` per metrics file, ``json`` per
summary), a cold load (empty cache), a cached load, the comparisons, the tables and the
figures. Goals: cold ≤ 2× naive, cached ≤ 0.5× naive and ≤ 10 s on 2 cores.

Then writes N wandb runs as Lightning's WandbLogger logs them offline (flat hyper-parameters,
``trainer/global_step``, wandb's own keys and the summary updates wandb writes beside every row)
holding the same rows, and times loading them with a map (cold, then cached). Goal: a cold load
of foreign runs ≤ 2× the store's.
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
from analysis.run_map import parse_map
from analysis.sources.wandb_log import write_records
from experiments.store import COMPLETED, FORMAT_VERSION, RunStore, find_runs

__all__ = ["generate", "generate_foreign", "time_analysis", "FOREIGN_MAP"]

T = TypeVar("T")
OPTIMIZERS = ("novograd", "adamw", "sgd", "larc_sgd")
# What the foreign runs lack (a task, a target) and the metric, as a user's map says them.
FOREIGN_MAP = [{"task": "vision", "metric": {"key": "val_acc", "higher_is_better": True, "target": 0.93}}]


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


def _wandb_rows(steps: int, rng: random.Random) -> list[bytes]:
    """The serialized records of one Lightning run's history, numbered from 3: per logged row,
    the two summary updates wandb writes (its runtime, then the row's values) and the row."""
    from wandb.proto import wandb_internal_pb2 as pb

    records: list[bytes] = []

    def log(values: dict[str, float]) -> None:
        row, num = len(records) // 3, len(records) + 3
        values = {**values, "_step": row, "_runtime": values["trainer/global_step"] * 0.01,
                  "_timestamp": 1.7e9 + values["trainer/global_step"] * 0.01}
        runtime = pb.SummaryRecord(update=[pb.SummaryItem(nested_key=["_wandb", "runtime"], value_json="1"),
                                           pb.SummaryItem(key="_runtime", value_json="1")])
        items = {key: json.dumps(value) for key, value in values.items()}
        records.extend(record.SerializeToString() for record in (
            pb.Record(num=num, summary=runtime),
            pb.Record(num=num + 1, summary=pb.SummaryRecord(
                update=[pb.SummaryItem(nested_key=[k], value_json=v) for k, v in items.items()])),
            pb.Record(num=num + 2, history=pb.HistoryRecord(
                item=[pb.HistoryItem(nested_key=[k], value_json=v) for k, v in items.items()],
                step=pb.HistoryStep(num=row)))))

    for i in range(1, steps + 1):
        step = i * 10
        loss = 2.5 * math.exp(-step / 20000) + rng.random() * 0.05
        log({"train_loss": loss, "lr": 1e-3, "throughput": 6400.0 + rng.random(), "epoch": step // 1000,
             "trainer/global_step": step})
        if i % 50 == 0:
            log({"val_acc": 1 - loss / 2.5, "epoch": step // 1000, "trainer/global_step": step})
    return records


def generate_foreign(root: Path, runs: int, steps: int, seed: int = 0) -> None:
    """``runs`` finished offline wandb runs under ``root/wandb``, as a LightningModule with
    ``save_hyperparameters()`` logs them through ``WandbLogger``: a train row per logged step and
    a validation row every 50, like ``generate``'s. The rows are four histories, one per
    optimizer, shared by its runs (what loading costs is their size, not their values: writing
    a history per run would take longer than the benchmark)."""
    from wandb.proto import wandb_internal_pb2 as pb

    rng = random.Random(seed)
    histories = [_wandb_rows(steps, rng) for _ in OPTIMIZERS]
    for number in range(runs):
        run_id = f"r{number:07d}"
        config = {"optimizer": OPTIMIZERS[number % 4], "lr": 10 ** rng.uniform(-4, -1), "batch_size": 64,
                  "seed": number % 3, "max_steps": steps * 10, "hidden": 64}
        head = [pb.Record(num=1, run=pb.RunRecord(run_id=run_id, project="bench-foreign")),
                pb.Record(num=2, config=pb.ConfigRecord(
                    update=[pb.ConfigItem(key=k, value_json=json.dumps(v)) for k, v in config.items()]))]
        tail = pb.Record(num=len(histories[0]) + 3, exit=pb.RunExitRecord(exit_code=0))
        folder = root / "wandb" / f"offline-run-20260101_000000-{run_id}"
        folder.mkdir(parents=True)
        write_records(folder / f"run-{run_id}.wandb", [*(r.SerializeToString() for r in head),
                                                        *histories[number % 4], tail.SerializeToString()])


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
        progress(f"generating {runs} foreign wandb runs")
        seconds, _ = _timed(generate_foreign, root / "foreign", runs, steps)
        rows.append(("generate foreign wandb runs", seconds, "as Lightning's WandbLogger logs them offline"))
        progress("foreign runs, cold load")
        run_map = parse_map(FOREIGN_MAP, "the benchmark's map")
        foreign, frames = _timed(load, [root / "foreign" / "wandb"], cache_dir=root / "cache", run_map=run_map)
        if frames.runs["left_out"].notna().any():
            raise RuntimeError("the generated foreign runs are not all comparable: the map or the generator is wrong")
        rows.append(("load foreign runs with a map, cold", foreign,
                     f"{foreign / cold:.2f}x the store's cold load (goal <= 2)"))
        progress("foreign runs, cached load")
        seconds, _ = _timed(load, [root / "foreign" / "wandb"], cache_dir=root / "cache", run_map=run_map)
        rows.append(("load foreign runs with a map, cached", seconds, f"{seconds / cached:.2f}x the store's cached load"))
        return rows
    finally:
        if not keep:
            shutil.rmtree(root)


def _timed(function: Callable[..., T], *args: object, **kwargs: object) -> tuple[float, T]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result
