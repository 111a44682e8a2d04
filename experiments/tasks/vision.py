"""Vision: a small ResNet classifying built-in digits, CIFAR-10 or an ImageFolder directory."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from experiments.data import images
from experiments.data.module import StreamDataModule
from experiments.tasks.base import LrLambda, OptimizerFactory, TaskData, TaskModule
from experiments.tasks.components.resnet import ResNet
from experiments.tasks.info import TaskInfo

__all__ = ["VisionTask", "vision_data"]

# width (first-stage channels), blocks per stage and block type, by size
_SIZES = {
    "tiny": dict(width=8, blocks=1),
    "default": dict(width=16, blocks=2),
    "large": dict(width=64, blocks=(3, 4, 6, 3), bottleneck=True),  # ResNet-50, CIFAR-10 stem
}


# data.source → the reader of its data.path (the sources the task's description declares)
_READERS = {"cifar10": images.cifar10, "imagefolder": images.image_folder}


def vision_data(config: DictConfig) -> TaskData:
    """The data module for ``config.data``, and the input channels and number of classes the
    model takes from it."""
    if config.data.source == "builtin":
        (train_x, train_y), (val_x, val_y) = images.builtin_digits(tiny=config.size == "tiny")
        # Digits alone saturate in a minute: train and validate on cluttered, noisy digits.
        corruption = dict(shift=2, noise=0.5, flip=False, distractor=0.7, pool=train_x)
        val_generators = [torch.Generator().manual_seed(12345 + i) for i in range(len(val_x))]
        val_x = images.augment(val_x, val_generators, **{**corruption, "pool": val_x})
    else:
        (train_x, train_y), (val_x, val_y) = _READERS[config.data.source](config.data.path)
        corruption = dict(shift=4, flip=True)

    def make_batch(indices: Tensor, generators: list[torch.Generator]) -> tuple[Tensor, Tensor]:
        return images.augment(train_x[indices], generators, **corruption), train_y[indices]

    module = StreamDataModule(
        len(train_y), make_batch, TensorDataset(val_x, val_y), config.data.batch_size, config.seed,
        config.data.num_workers,
    )
    num_classes = int(max(train_y.max(), val_y.max())) + 1
    return TaskData(module, model_options={"in_channels": train_x.shape[1], "num_classes": num_classes})


class VisionTask(TaskModule):
    """Image classification; validation accuracy (top-1) is the metric."""

    def __init__(self, info: TaskInfo, size: str, optimizer_factory: OptimizerFactory, lr_lambda: LrLambda, *,
                 in_channels: int, num_classes: int) -> None:
        self.in_channels, self.num_classes = in_channels, num_classes
        super().__init__(info, size, optimizer_factory, lr_lambda)

    def build_model(self, size: str) -> nn.Module:
        return ResNet(self.in_channels, self.num_classes, **_SIZES[size])

    def build_metric(self) -> MulticlassAccuracy:
        return MulticlassAccuracy(self.num_classes, average="micro")

    def loss(self, batch: Any) -> Tensor:
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def update_metric(self, batch: Any) -> None:
        x, y = batch
        self.val_metric.update(self.model(x).argmax(dim=1), y)
