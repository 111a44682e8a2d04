"""Hand-built runs with known answers, as frames (the loader's schema) or as a run store.

The steps to reach the target follow McCandlish et al.'s law S(B) = S_MIN·(1 + B_CRIT/B), times a
factor per optimizer, per learning rate (the middle lr of each batch size is the best) and per
seed; the validation metric crosses the target exactly at S:
  vision (val/acc ↑, target 0.9): acc(t) = 1 − 0.1·exp(1 − t/S)
  lm     (val/ppl ↓, target 8):   ppl(t) = 4 + 4·exp(1 − t/S)
Each batch size's largest adamw lr diverges at step 100; one run failed.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import yaml

from analysis import frames as F
from analysis.frames import Frames, typed_runs
from experiments.store import RunStore

S_MIN, B_CRIT, MAX_STEPS, EVERY = 150.0, 128.0, 1000, 50
OPTIMIZER_FACTOR = {"adamw": 1.0, "novograd": 0.8, "larc_sgd": 1.2}
LR_FACTOR = (1.5, 1.0, 1.3)  # of the lrs base/2, base, 2·base
BASE_LR = {"adamw": 1e-3, "novograd": 1e-2, "larc_sgd": 0.1}
TASKS = {"vision": ("val/acc", True, 0.9, (32, 64, 128, 256)), "lm": ("val/ppl", False, 8.0, (64,))}
STATE_BYTES = {"adamw": 8000, "novograd": 4000, "larc_sgd": 4000}


def value(task: str, step: float, s: float) -> float:
    return 1 - 0.1 * math.exp(1 - step / s) if task == "vision" else 4 + 4 * math.exp(1 - step / s)


def run_record(**fields) -> dict:
    """A runs-frame row with harmless defaults for every field not given."""
    base = {F.SOURCE: "store", F.PATH: "", F.STUDY: "s", F.RUN_ID: "r", F.TASK: "vision", F.SIZE: "tiny",
            F.OPTIMIZER: "adamw", F.BATCH_SIZE: 32, F.LR: 1e-3, F.SEED: 0, F.STATUS: "completed",
            F.METRIC: "val/acc", F.HIGHER_IS_BETTER: True, F.TARGET: 0.9, F.MAX_STEPS: MAX_STEPS,
            F.GLOBAL_STEP: MAX_STEPS, F.WALL_TIME_S: 10.0}
    return {**base, **fields}


def metrics_frame(rows: list[tuple]) -> pd.DataFrame:
    """(study, run_id, step, wall_time, metric, value) tuples → the metrics frame."""
    frame = pd.DataFrame(rows, columns=[F.STUDY, F.RUN_ID, F.STEP, F.WALL_TIME, F.METRIC, F.VALUE])
    frame[F.EPOCH] = 0.0
    return frame[list(F.METRIC_COLUMNS)].astype({F.STUDY: "category", F.RUN_ID: "category", F.METRIC: "category"})


def layers_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(F.LAYER_COLUMNS)).astype({F.STUDY: "category", F.RUN_ID: "category"})


def synthetic_run(study: str, run_id: str, task: str, optimizer: str, batch: int, lr: float, seed: int, s: float,
                  diverged: bool = False) -> tuple[dict, list[tuple]]:
    """One run whose metric crosses its task's target exactly at step ``s`` (diverging at step
    100 if ``diverged``): its runs-frame record and its metrics rows."""
    metric, up, target, _ = TASKS[task]
    last = 100 if diverged else MAX_STEPS
    seconds = 0.01 * batch / 32
    values = [(step, value(task, step, s)) for step in range(EVERY, last + 1, EVERY)]
    if diverged:
        values[-1] = (last, math.nan)
    finite = [v for _, v in values if math.isfinite(v)]
    hit = next((t for t, v in values if (v >= target if up else v <= target)), None)
    record = run_record(**{F.STUDY: study, F.RUN_ID: run_id, F.TASK: task, F.OPTIMIZER: optimizer,
                           F.BATCH_SIZE: batch, F.LR: lr, F.SEED: seed, F.METRIC: metric,
                           F.HIGHER_IS_BETTER: up, F.TARGET: target,
                           F.STATUS: "diverged" if diverged else "completed",
                           F.BEST: (max if up else min)(finite), F.FINAL: finite[-1],
                           F.STEPS_TO_TARGET: hit, F.GLOBAL_STEP: last, F.WALL_TIME_S: last * seconds,
                           F.PEAK_MEMORY: 1e8 + batch * 1e5, F.STATE_BYTES: STATE_BYTES.get(optimizer, 8000),
                           F.GRAD_NOISE_SCALE: 100.0 if optimizer == "novograd" else None})
    rows = [(study, run_id, t, t * seconds, metric, v) for t, v in values]
    rows += [(study, run_id, t, t * seconds, "train/loss", 1 / t) for t in range(10, last + 1, 10)]
    return record, rows


def frames(tasks: tuple[str, ...] = ("vision", "lm"), seeds: int = 2) -> Frames:
    """The full synthetic set: every task × optimizer × batch size × 3 lrs × seeds, one failure."""
    records, metric_rows, layer_rows = [], [], []
    for task in tasks:
        batches = TASKS[task][3]
        for optimizer, factor in OPTIMIZER_FACTOR.items():
            for batch in batches:
                for lr_index, lr_factor in enumerate(LR_FACTOR):
                    lr = BASE_LR[optimizer] * (0.5, 1, 2)[lr_index]
                    for seed in range(seeds):
                        run_id = f"{task}-{optimizer}-{batch}-{lr_index}-{seed}"
                        s = S_MIN * (1 + B_CRIT / batch) * factor * lr_factor * (1 + 0.02 * seed)
                        diverged = optimizer == "adamw" and lr_index == 2
                        record, rows = synthetic_run("synthetic", run_id, task, optimizer, batch, lr, seed, s, diverged)
                        records.append(record)
                        metric_rows += rows
                        if optimizer.startswith("larc"):
                            last = record[F.GLOBAL_STEP]
                            layer_rows += [{F.STUDY: "synthetic", F.RUN_ID: run_id, F.STEP: t, F.LAYER: f"layer{i}",
                                            "grad_norm": 1.0, "weight_norm": 2.0, "update_norm": 0.01,
                                            "update_ratio": 0.005 / (i + 1), "trust_ratio": 0.1 * (i + 1) / t ** 0.5}
                                           for t in range(EVERY, last + 1, EVERY) for i in range(3)]
    records.append(run_record(**{F.STUDY: "synthetic", F.RUN_ID: "failed-run", F.OPTIMIZER: "novograd",
                                 F.STATUS: "failed", F.ERROR: "Traceback ...\nRuntimeError: out of memory",
                                 F.GLOBAL_STEP: 0, F.STEPS_TO_TARGET: None}))
    return Frames(typed_runs(records), metrics_frame(metric_rows), layers_frame(layer_rows))


def write_store(root: Path, data: Frames) -> None:
    """Write ``data`` as a run store under ``root`` (config.yaml, metrics.jsonl, layers.jsonl,
    summary.json): what ``optbench train`` would have left."""
    metrics = data.metrics.astype({F.STUDY: str, F.RUN_ID: str, F.METRIC: str})
    layers = data.layers.astype({F.STUDY: str, F.RUN_ID: str})
    for run in data.runs.to_dict("records"):
        run = {k: (None if v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v) for k, v in run.items()}
        store = RunStore(root / run[F.STUDY] / run[F.RUN_ID])
        config = {"task": run[F.TASK], "size": "tiny", "seed": int(run[F.SEED]), "target": None,
                  "study": run[F.STUDY], "data": {"batch_size": int(run[F.BATCH_SIZE])},
                  "optimizer": {"name": run[F.OPTIMIZER], "lr": run[F.LR], "weight_decay": None, "lr_scaling": "none",
                                "reference_batch_size": 64},
                  "trainer": {"max_steps": MAX_STEPS, "accumulate_grad_batches": 1, "devices": 1}}
        store.begin(yaml.safe_dump(config), {"store_format": 2}, resume=False)
        own = metrics[(metrics[F.STUDY] == run[F.STUDY]) & (metrics[F.RUN_ID] == run[F.RUN_ID])]
        rows = {}
        for step, wall, metric, v in own[[F.STEP, F.WALL_TIME, F.METRIC, F.VALUE]].itertuples(index=False):
            rows.setdefault((int(step), metric.startswith("val/")), {"step": int(step), "epoch": 0,
                                                                     "wall_time": float(wall)})[metric] = v
        if run[F.METRIC]:
            best = -math.inf if run[F.HIGHER_IS_BETTER] else math.inf
            for key in sorted(k for k in rows if k[1]):
                v = rows[key][run[F.METRIC]]
                if math.isfinite(v):
                    best = max(best, v) if run[F.HIGHER_IS_BETTER] else min(best, v)
                rows[key][f"{run[F.METRIC]}_best"] = best
        store.append("metrics.jsonl", [rows[k] for k in sorted(rows)])
        own_layers = layers[(layers[F.STUDY] == run[F.STUDY]) & (layers[F.RUN_ID] == run[F.RUN_ID])]
        if len(own_layers):
            store.append("layers.jsonl", own_layers.drop(columns=[F.STUDY, F.RUN_ID]).to_dict("records"))
        store.finish({
            "status": run[F.STATUS], "error": run[F.ERROR], "run_id": run[F.RUN_ID], "task": run[F.TASK],
            "optimizer": run[F.OPTIMIZER], "lr": run[F.LR], "effective_batch_size": int(run[F.BATCH_SIZE]),
            "seed": int(run[F.SEED]), "global_step": int(run[F.GLOBAL_STEP]), "metric": run[F.METRIC],
            "higher_is_better": run[F.HIGHER_IS_BETTER], "final": {run[F.METRIC]: run[F.FINAL]},
            "best": {run[F.METRIC]: run[F.BEST]}, "target": run[F.TARGET], "steps_to_target": run[F.STEPS_TO_TARGET],
            "wall_time_s": run[F.WALL_TIME_S], "throughput_samples_per_s": None,
            "peak_memory_bytes": run[F.PEAK_MEMORY], "optimizer_state_bytes": run[F.STATE_BYTES],
            "grad_noise_scale": run[F.GRAD_NOISE_SCALE],
        })
