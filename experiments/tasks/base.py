"""The task interface: what makes ASR, vision and LM interchangeable to the training run.

A task (AlgoPerf's "workload") is a Lightning module that never names an optimizer: it receives
a factory and a learning-rate schedule, and declares its validation metric and default target.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, Callable, ClassVar, Optional

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from experiments.metric_curve import best

__all__ = ["TaskModule", "OptimizerFactory", "LrLambda"]

OptimizerFactory = Callable[[nn.Module], Optimizer]
LrLambda = Callable[[int], float]


class TaskModule(pl.LightningModule):
    """Base of every task: the optimizer wiring, loss logging and best-metric tracking.

    Subclasses set the class attributes, implement ``build_model``, ``loss`` and
    ``update_metric``, and assign their torchmetrics metric to ``self.val_metric``.
    """

    name: ClassVar[str]
    metric: ClassVar[str]  # logged as val/<metric>
    higher_is_better: ClassVar[bool]
    default_target: ClassVar[dict[str, float]]  # by size: the steps-to-target threshold

    def __init__(self, size: str, optimizer_factory: OptimizerFactory, lr_lambda: LrLambda) -> None:
        super().__init__()
        self.size = size
        self.optimizer_factory = optimizer_factory
        self.lr_lambda = lr_lambda
        self.model = self.build_model(size)
        self.best_metric: Optional[float] = None  # the best finite value so far (metric_curve.best)

    @abstractmethod
    def build_model(self, size: str) -> nn.Module: ...

    @abstractmethod
    def loss(self, batch: Any) -> Tensor: ...

    @abstractmethod
    def update_metric(self, batch: Any) -> None: ...

    def compute_metric(self) -> float:
        """The validation metric over everything ``update_metric`` saw (synced across processes)."""
        value = float(self.val_metric.compute())
        self.val_metric.reset()
        return value

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        # Not self.log-ged: Lightning's logging cost 2% of a default vision step (bench harness);
        # the divergence guard and Progress read the returned loss where they need it.
        return self.loss(batch)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.update_metric(batch)

    def on_validation_epoch_end(self) -> None:
        value = self.compute_metric()
        # A checkpoint written before best_metric could be None holds ±inf until a finite value
        # came: ``best`` ignores it as it ignores every non-finite value.
        self.best_metric = best([self.best_metric, value], self.higher_is_better)
        self.log(f"val/{self.metric}", value, sync_dist=True)
        self.log(f"val/{self.metric}_best", math.nan if self.best_metric is None else self.best_metric, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(self.model)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_lambda)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["best_metric"] = self.best_metric

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.best_metric = checkpoint["best_metric"]
