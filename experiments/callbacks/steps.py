"""Optimizer steps as the run's callbacks see them: which batches end one, which steps the run
logs, and the last one, which is always validated.

Lightning calls ``on_train_batch_end`` after every micro-batch; under gradient accumulation only
every ``accumulate_grad_batches``-th one ends an optimizer step, and ``trainer.global_step``
then counts it.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

__all__ = ["ended_optimizer_step", "ends_logged_step", "ValidateLastStep"]


def ended_optimizer_step(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether the batch ``batch_idx`` just ended an optimizer step (else it is mid-accumulation)."""
    return (batch_idx + 1) % trainer.accumulate_grad_batches == 0


def ends_logged_step(trainer: pl.Trainer, batch_idx: int, every: int) -> bool:
    """Whether the batch ``batch_idx`` just ended an optimizer step whose training row is logged:
    every ``every`` steps and the last step."""
    step = trainer.global_step
    return ended_optimizer_step(trainer, batch_idx) and (step % every == 0 or step >= trainer.max_steps)


class ValidateLastStep(pl.Callback):
    """Stops Lightning at the last step, which makes it validate there (as for early stopping)
    and the checkpoint callback save after it: the final metric is always measured, in the
    training epoch, and last.ckpt is the final state."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if ended_optimizer_step(trainer, batch_idx) and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True
