"""``trainer.stop_at_target``: end a run at the first validation whose metric reaches the target.

Such a run ends as completed, with fewer steps than its budget. The step is kept across a
resume: a run restored from the checkpoint of that validation (killed before its summary) stops
there again instead of training on to its budget.
"""

from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl

from experiments.metric_curve import meets

__all__ = ["StopAtTarget"]


class StopAtTarget(pl.Callback):
    """Stops the run at the first validation whose ``metric`` meets ``target`` in the metric's
    direction (``experiments.metric_curve.meets``); ``reached_at`` records its step."""

    def __init__(self, metric: str, target: float, higher_is_better: bool) -> None:
        self.metric, self.target, self.higher_is_better = metric, target, higher_is_better
        self.reached_at: Optional[int] = None

    def state_dict(self) -> dict[str, Any]:
        return {"reached_at": self.reached_at}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.reached_at = state_dict["reached_at"]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.reached_at is not None:
            trainer.should_stop = True

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.reached_at is not None:
            return
        value = trainer.callback_metrics.get(self.metric)
        if meets(None if value is None else float(value), self.target, self.higher_is_better):
            self.reached_at = trainer.global_step
            trainer.should_stop = True
