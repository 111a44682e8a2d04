"""Seconds per training step, apart from validation, checkpoints and the first steps.

A run's wall time also counts its validations, its checkpoint writes and the one-off costs of
its first steps (allocator growth, cuDNN autotuning, kernel builds): a throughput computed from
it depends on how often the run validates and how long it is, not only on the optimizer and the
model. ``StepTimer`` measures the training step alone: the intervals between the ends of
consecutive optimizer steps (each holding the batch fetch, forward, backward, step and what the
harness records on the way), leaving out

- the first ``skip_first`` steps of every process (a resumed run warms up again), and
- every interval in which a validation ran (``pause``), with the checkpoint written after it.

Its mean, ``seconds / steps``, is ``train_step_time_s``; throughput is batch / that mean. On a GPU
the intervals are host time between step ends: the CPU runs ahead of the device only until the
next read of a value (a logged loss) waits for it, so their sum over a run is the device's time.

``StepTiming`` wires a timer into a run: it ends a step where the batch that ended it ends
(after the divergence guard's read of a logged loss, so that on a GPU that step's work is done
by then), pauses for every validation, and keeps the counted intervals across a resume.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import pytorch_lightning as pl

from experiments.callbacks.legacy_state import legacy_state
from experiments.callbacks.steps import ended_optimizer_step

__all__ = ["StepTimer", "StepTiming", "WARMUP_STEPS"]

WARMUP_STEPS = 5  # left out at the start of every process


class StepTimer:
    """Accumulates the counted step intervals; ``state_dict`` carries them across a resume."""

    def __init__(self, skip_first: int = WARMUP_STEPS) -> None:
        self.skip_first = skip_first
        self.seconds = 0.0  # the counted intervals, all attempts together
        self.steps = 0
        self._last_end: Optional[float] = None
        self._ended_here = 0  # steps ended in this process
        self._paused = False

    def step_ended(self, now: Optional[float] = None) -> None:
        """An optimizer step ended: count the interval since the previous end, unless it is one
        of this process's first ``skip_first`` steps or a validation ran in it."""
        now = time.perf_counter() if now is None else now
        self._ended_here += 1
        if self._last_end is not None and not self._paused and self._ended_here > self.skip_first:
            self.seconds += now - self._last_end
            self.steps += 1
        self._last_end, self._paused = now, False

    def pause(self) -> None:
        """Something that is not training (a validation) runs before the next step ends."""
        self._paused = True

    def mean(self) -> Optional[float]:
        """Seconds per counted step; None before any step was counted (a run of ≤ skip_first steps)."""
        return self.seconds / self.steps if self.steps else None

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seconds, self.steps = state["seconds"], state["steps"]


class StepTiming(pl.Callback):
    """Times a run's training steps (``timer``) and turns them into samples per second.

    Placed after ``DivergenceGuard`` in the Trainer's callbacks: Lightning calls them in that
    order, and the step's end must come after the loss is read.
    """

    def __init__(self, effective_batch_size: int) -> None:
        self.timer = StepTimer()
        self.effective_batch_size = effective_batch_size
        self._since: tuple[float, int] = (0.0, 0)  # the timer's (seconds, steps) at the last interval

    def state_dict(self) -> dict[str, Any]:
        return self.timer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.timer.load_state_dict(state_dict)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        legacy = legacy_state(checkpoint, self.state_key)
        if legacy is not None and "step_timer" in legacy:  # absent from checkpoints written before it was kept
            self.timer.load_state_dict(legacy["step_timer"])

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._since = (self.timer.seconds, self.timer.steps)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if ended_optimizer_step(trainer, batch_idx):
            self.timer.step_ended()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.timer.pause()

    def throughput(self) -> Optional[float]:
        """Samples per second of the timed training steps, all attempts together."""
        mean = self.timer.mean()
        return self.effective_batch_size / mean if mean else None

    def interval_throughput(self) -> Optional[float]:
        """Samples per second of the steps timed since the previous call (or since training
        started in this process); None if none was (the first steps)."""
        start_seconds, start_steps = self._since
        seconds, steps = self.timer.seconds - start_seconds, self.timer.steps - start_steps
        self._since = (self.timer.seconds, self.timer.steps)
        return steps * self.effective_batch_size / seconds if steps else None
