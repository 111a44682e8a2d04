"""Train and eval calls for optimizers that keep two points (Schedule-Free: the weights trained
on are not the weights to evaluate), as AlgoPerf's ``prepare_for_eval`` exists for.

Any optimizer with ``train()``/``eval()`` methods gets them (``optimizers.behaviour.set_mode``);
for the others this callback does nothing.
"""

from __future__ import annotations

import pytorch_lightning as pl

from optimizers.behaviour import set_mode

__all__ = ["OptimizerModes"]


class OptimizerModes(pl.Callback):
    """``optimizer.train()`` when training starts and after each validation, ``optimizer.eval()``
    before it.

    Lightning writes checkpoints after every other callback's ``on_validation_end`` (it orders
    ``ModelCheckpoint`` last), so they always hold the training point and its optimizer state: a
    run resumed from one continues exactly where the uninterrupted run would be.
    """

    def _set(self, trainer: pl.Trainer, training: bool) -> None:
        for optimizer in trainer.optimizers:
            set_mode(optimizer, training)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set(trainer, training=True)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set(trainer, training=False)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set(trainer, training=True)
