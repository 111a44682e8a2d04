"""``optbench bench harness``: what ``optbench train`` costs over a bare PyTorch loop.

Both sides train the same model from the same initial weights on the same batch stream, with
the same optimizer and learning-rate schedule, for the same number of steps, in one process;
the rounds alternate which side goes first, so a slow phase of the machine hits both. The bare
loop is what a researcher would write by hand (fetch, forward, backward, step, schedule; the loss
read every ``log_every_n_steps`` steps, as anyone prints it); ``optbench train`` adds Lightning's
loop, the divergence check, the metric rows, the layer statistics, validation, checkpoints and
the run store. Rows, each the median over rounds:

- ``bare loop``: samples/s of the timed steps (``StepTimer``: the first steps left out);
- ``optbench train, training steps``: the run's recorded ``throughput_samples_per_s`` (the same
  timer, validations left out): the harness's cost per step;
- ``optbench train, whole run``: steps × batch over the time of the ``train()`` call, setup,
  validations and checkpoints included.

``× bare`` is the bare loop's samples/s over the row's, round by round, then the median: the
time the harness takes per sample relative to the bare loop. The goal for training steps is
≤ 1.05.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from lightning_fabric.utilities.apply_func import move_data_to_device
from omegaconf import DictConfig

from experiments.callbacks.step_timer import WARMUP_STEPS, StepTimer
from experiments.config import ConfigError, load_config
from experiments.store import COMPLETED
from experiments.train import build_run, train

__all__ = ["HarnessRow", "time_harness", "bare_loop", "ratios", "setting", "DEFAULT_OVERRIDES", "BARE",
           "TRAINING_STEPS", "WHOLE_RUN"]

DEFAULT_OVERRIDES = ("task=vision", "optimizer.name=adamw", "trainer.max_steps=300")
BARE, TRAINING_STEPS, WHOLE_RUN = "bare loop", "optbench train, training steps", "optbench train, whole run"


@dataclass(frozen=True)
class HarnessRow:
    name: str
    samples_per_s: tuple[float, ...]  # one per round

    @property
    def median(self) -> float:
        return statistics.median(self.samples_per_s)


def _device(config: DictConfig) -> torch.device:
    wants_gpu = config.trainer.accelerator in ("gpu", "cuda") or (
        config.trainer.accelerator == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if wants_gpu else "cpu")


def _check_comparable(config: DictConfig) -> None:
    """The bare loop is one device, no accumulation or clipping, float32 or bf16 autocast, and
    times the steps after the warm-up."""
    trainer = config.trainer
    if trainer.max_steps <= WARMUP_STEPS + 1:
        raise ConfigError(f"bench harness times the steps after the first {WARMUP_STEPS}: "
                          f"trainer.max_steps must be over {WARMUP_STEPS + 1}")
    if trainer.devices * trainer.num_nodes != 1 or trainer.accumulate_grad_batches != 1:
        raise ConfigError("bench harness compares one device without gradient accumulation")
    if trainer.gradient_clip_val is not None:
        raise ConfigError("bench harness compares runs without gradient clipping (trainer.gradient_clip_val)")
    if trainer.precision not in ("32-true", "bf16-mixed"):
        raise ConfigError(f"bench harness supports trainer.precision 32-true and bf16-mixed, not {trainer.precision}")


def bare_loop(config: DictConfig) -> tuple[float, float]:
    """(samples/s, last loss) of a hand-written loop over ``config``'s model, batches, optimizer
    and schedule. The loss is the one ``optbench train`` records at its last step: the two
    compute the same thing."""
    run = build_run(config)  # its Trainer stays unused: the loop below is the bare one
    device = _device(config)
    model = run.module.to(device).train()
    optimizer = model.optimizer_factory(model.model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, model.lr_lambda)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if config.trainer.precision == "bf16-mixed"
                else contextlib.nullcontext())
    batches, timer, last_loss = iter(run.data.train_dataloader()), StepTimer(), float("nan")
    for step in range(1, config.trainer.max_steps + 1):
        batch_on_device = move_data_to_device(next(batches), device)
        with autocast:
            loss = model.loss(batch_on_device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % config.trainer.log_every_n_steps == 0 or step == config.trainer.max_steps:
            last_loss = loss.item()
        timer.step_ended()
    return run.batch / timer.mean(), last_loss


def harness_run(config: DictConfig) -> tuple[float, float]:
    """(recorded training-step samples/s, whole-run samples/s) of ``optbench train`` on ``config``."""
    start = time.perf_counter()
    summary = train(config)
    seconds = time.perf_counter() - start
    if summary["status"] != COMPLETED:
        raise RuntimeError(f"the harness run ended {summary['status']}: {summary['error']}")
    return summary["throughput_samples_per_s"], summary["global_step"] * summary["effective_batch_size"] / seconds


def setting(overrides: Sequence[str] = ()) -> str:
    """DEFAULT_OVERRIDES with ``overrides`` applied, as KEY=VALUE words (a later key wins)."""
    words = dict(word.split("=", 1) for word in [*DEFAULT_OVERRIDES, *overrides] if "=" in word)
    return " ".join(f"{key}={value}" for key, value in words.items())


def time_harness(overrides: Sequence[str] = (), rounds: int = 5,
                  progress: Callable[[str], None] = lambda text: None) -> list[HarnessRow]:
    """The three rows over ``rounds`` alternating rounds; ``overrides`` go after DEFAULT_OVERRIDES."""
    config = load_config([*DEFAULT_OVERRIDES, *overrides])
    _check_comparable(config)
    results: dict[str, list[float]] = {BARE: [], TRAINING_STEPS: [], WHOLE_RUN: []}
    with tempfile.TemporaryDirectory(prefix="optbench-bench-harness-") as tmp:
        for number in range(rounds):
            sides = ["bare", "harness"] if number % 2 == 0 else ["harness", "bare"]
            for side in sides:
                progress(f"round {number + 1}/{rounds}: {'bare loop' if side == 'bare' else 'optbench train'}")
                if side == "bare":
                    results[BARE].append(bare_loop(config)[0])
                else:
                    run_config = load_config([*DEFAULT_OVERRIDES, *overrides, f"out_dir={tmp}/{number}",
                                              "study=bench-harness", "logger.wandb=disabled"])
                    steps, whole = harness_run(run_config)
                    results[TRAINING_STEPS].append(steps)
                    results[WHOLE_RUN].append(whole)
    return [HarnessRow(name, tuple(values)) for name, values in results.items()]


def ratios(rows: Sequence[HarnessRow]) -> dict[str, float]:
    """Each row's time per sample over the bare loop's (bare samples/s / row samples/s), the
    median of the rounds' ratios: each round's sides ran back to back, so a slow phase of a
    shared machine (±10% between rounds here) falls on both and cancels."""
    bare = next(row for row in rows if row.name == BARE).samples_per_s
    return {row.name: statistics.median(b / r for b, r in zip(bare, row.samples_per_s)) for row in rows}
