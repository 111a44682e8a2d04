"""Hand-built run stores with known values, written in the store's own format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import yaml

from experiments.store import RunStore


def write_run(root: Path, study: str, run_id: str, *, optimizer: str = "adamw", lr: float = 0.01, seed: int = 0,
              val: list[tuple[int, float]] = (), losses: list[tuple[int, float]] = (),
              summary: Optional[dict[str, Any]] = None, layers: list[dict[str, Any]] = ()) -> Path:
    """One run directory: config.yaml, metrics.jsonl (train and val rows), layers.jsonl and,
    if given, summary.json."""
    store = RunStore(root / study / run_id)
    config = {"task": "vision", "size": "tiny", "seed": seed, "target": None, "study": study,
              "data": {"batch_size": 32}, "optimizer": {"name": optimizer, "lr": lr, "weight_decay": None,
                                                         "lr_scaling": "none", "reference_batch_size": 64,
                                                         "options": {"momentum": 0.9}},
              "trainer": {"max_steps": 100, "accumulate_grad_batches": 2, "devices": 1}}
    store.begin(yaml.safe_dump(config), {"store_format": 2}, resume=False)
    rows = [{"step": s, "epoch": 0, "wall_time": s / 10, "train/loss": v, "lr": lr} for s, v in losses]
    rows += [{"step": s, "epoch": 0, "wall_time": s / 10 + 0.05, "val/acc": v,
              "val/acc_best": max(x for t, x in val if t <= s)} for s, v in val]
    store.append("metrics.jsonl", sorted(rows, key=lambda r: r["step"]))
    if layers:
        store.append("layers.jsonl", layers)
    if summary is not None:
        store.finish(summary)
    return store.root


def summary_for(run_id: str, best: float, final: float, steps_to_target: Optional[int], **extra: Any) -> dict:
    return {"status": "completed", "error": None, "run_id": run_id, "task": "vision", "optimizer": "adamw",
            "lr": 0.01, "effective_batch_size": 64, "seed": 0, "global_step": 100, "metric": "val/acc",
            "higher_is_better": True, "final": {"val/acc": final}, "best": {"val/acc": best}, "target": 0.6,
            "steps_to_target": steps_to_target, "wall_time_s": 10.0, "throughput_samples_per_s": 640.0,
            "peak_memory_bytes": 1000, "optimizer_state_bytes": 200, **extra}


def corrupt(path: Path, text: str = "{not json\n") -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:1]) + text + "".join(lines[1:]))


def dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data))
