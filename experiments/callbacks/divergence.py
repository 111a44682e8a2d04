"""The divergence guard: a run whose training loss blows up stops, and records the step.

Diverged: a non-finite training loss, or one above ``divergence_factor`` × the first loss.
Reading the loss waits for the device, so only the first batch (the reference) and the logged
steps read it; the loss read at a step stays in ``loss`` for the training row
(``experiments.callbacks.metric_rows``), which therefore reads nothing itself.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import pytorch_lightning as pl

from experiments.callbacks.legacy_state import legacy_state
from experiments.callbacks.steps import ends_logged_step

__all__ = ["DivergenceGuard"]


class DivergenceGuard(pl.Callback):
    """Checks the training loss at the first batch and every logged step (``log_every``), and
    stops the run at the first that diverged (``diverged_at``).

    The loss is averaged over processes: every rank takes the same decision at the same steps,
    and ``loss`` is the whole global batch's. ``first_loss`` and ``diverged_at`` survive a
    resume: a run restored from the checkpoint of the step it diverged at (killed before its
    summary) stops there again instead of training on from a diverged state.
    """

    def __init__(self, *, log_every: int, divergence_factor: float) -> None:
        self.log_every = log_every
        self.divergence_factor = divergence_factor
        self.first_loss: Optional[float] = None
        self.diverged_at: Optional[int] = None
        self.loss: Optional[float] = None  # read at the step that just ended; None where none was

    def state_dict(self) -> dict[str, Any]:
        return {"first_loss": self.first_loss, "diverged_at": self.diverged_at}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.first_loss, self.diverged_at = state_dict["first_loss"], state_dict["diverged_at"]

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        legacy = legacy_state(checkpoint, self.state_key)
        if legacy is not None:  # a checkpoint from before divergence was recorded in it
            self.first_loss = legacy["first_loss"]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.diverged_at is not None:
            trainer.should_stop = True

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self.loss = None
        if self.first_loss is not None and not ends_logged_step(trainer, batch_idx, self.log_every):
            return
        local = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.loss = float(trainer.strategy.reduce(local.detach(), reduce_op="mean"))
        if self.first_loss is None:
            self.first_loss = self.loss
        if not math.isfinite(self.loss) or self.loss > self.divergence_factor * self.first_loss:
            self.diverged_at = trainer.global_step
            trainer.should_stop = True
