"""The task interface: what makes ASR, vision, LM and users' tasks interchangeable to the run.

A task (AlgoPerf's "workload") is named pieces: its description (``TaskInfo``: metric, direction,
targets, sources), a function building its ``TaskData`` from the run config, and a ``TaskModule``,
a Lightning module that never names an optimizer: it receives a factory and a learning-rate
schedule, and builds its model and validation metric.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torchmetrics import Metric

from experiments.metric_curve import best
from experiments.tasks.info import TaskInfo

__all__ = ["TaskModule", "TaskData", "OptimizerFactory", "LrLambda"]

OptimizerFactory = Callable[[nn.Module], Optimizer]
LrLambda = Callable[[int], float]


@dataclass
class TaskData:
    """What a task's data function returns: its data module (``StreamDataModule`` over a
    ``make_batch`` is the built-in way: experiments/data/module.py) and the keyword arguments its
    ``TaskModule`` takes from the data, such as the number of classes."""

    module: pl.LightningDataModule
    model_options: dict[str, Any] = field(default_factory=dict)


class TaskModule(pl.LightningModule):
    """Base of every task: the optimizer wiring, loss logging and best-metric tracking.

    Subclasses implement ``build_model``, ``build_metric``, ``loss`` and ``update_metric``; the
    metric's name and direction come from the task's description, ``self.info``.
    """

    def __init__(self, info: TaskInfo, size: str, optimizer_factory: OptimizerFactory, lr_lambda: LrLambda) -> None:
        super().__init__()
        self.info = info
        self.size = size
        self.optimizer_factory = optimizer_factory
        self.lr_lambda = lr_lambda
        self.model = self.build_model(size)
        self.val_metric = self.build_metric()
        self.best_metric: Optional[float] = None  # the best finite value so far (metric_curve.best)

    @abstractmethod
    def build_model(self, size: str) -> nn.Module:
        """The model of ``size`` (``self.model``: the parameters the optimizer trains)."""

    @abstractmethod
    def build_metric(self) -> Metric:
        """The validation metric (``self.val_metric``), a torchmetrics ``Metric``."""

    @abstractmethod
    def loss(self, batch: Any) -> Tensor:
        """The training loss of a batch."""

    @abstractmethod
    def update_metric(self, batch: Any) -> None:
        """Update ``self.val_metric`` with a validation batch."""

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
        self.best_metric = best([self.best_metric, value], self.info.higher_is_better)
        self.log(f"val/{self.info.metric}", value, sync_dist=True)
        self.log(f"val/{self.info.metric}_best", math.nan if self.best_metric is None else self.best_metric, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(self.model)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_lambda)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["best_metric"] = self.best_metric

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.best_metric = checkpoint["best_metric"]
