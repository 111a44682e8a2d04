"""A user's task as a package outside the repository, written into a test's directory: a small
MLP fitting a sine wave (mean squared error, lower is better), its description in the package's
``__init__.py`` and its data and Lightning module in ``model.py``; optionally registered through
a ``*.dist-info/entry_points.txt`` (importlib.metadata reads a distribution from any directory
on the path, as pip would have installed it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from tests.experiments.support import subprocess_env

# The description's fields as Python source (module and data name the package: {package})
DESCRIPTION = {
    "name": '"waves"',
    "metric": '"mse"',
    "higher_is_better": "False",
    "targets": '{"tiny": 0.1, "default": 0.02, "large": 0.01}',
    "module": '"{package}.model:WavesTask"',
    "data": '"{package}.model:waves_data"',
    "data_version": '"1"',
}

MODEL = '''
"""The waves task's data and Lightning module."""
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset
from torchmetrics import MeanSquaredError

from experiments.data.module import StreamDataModule
from experiments.tasks.base import TaskData, TaskModule


def waves_data(config):
    """y = sin(3x) + noise for x in [-1, 1]: 512 points to train on, 128 to validate on."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(640, 1, generator=generator) * 2 - 1
    y = torch.sin(3 * x) + 0.05 * torch.randn(640, 1, generator=generator)

    def make_batch(indices, generators):
        return x[indices], y[indices]

    module = StreamDataModule(512, make_batch, TensorDataset(x[512:], y[512:]), config.data.batch_size,
                              config.seed, config.data.num_workers)
    return TaskData(module, model_options={"width": 16 if config.size == "tiny" else 64})


class WavesTask(TaskModule):
    def __init__(self, info, size, optimizer_factory, lr_lambda, *, width):
        self.width = width
        super().__init__(info, size, optimizer_factory, lr_lambda)

    def build_model(self, size):
        return nn.Sequential(nn.Linear(1, self.width), nn.Tanh(), nn.Linear(self.width, 1))

    def build_metric(self):
        return MeanSquaredError()

    def loss(self, batch):
        x, y = batch
        return F.mse_loss(self.model(x), y)

    def update_metric(self, batch):
        x, y = batch
        self.val_metric.update(self.model(x), y)
'''

# Trainable values of the tiny model (width 16): 16 weights and biases in, 16 weights and 1 bias out.
TINY_PARAMETERS = 16 + 16 + 16 + 1


def write_task_package(root: Path, package: str = "wavetask", model: Optional[str] = MODEL,
                       **fields: Optional[str]) -> str:
    """Write package ``package`` under ``root``: ``__init__.py`` describing the task as
    ``task = TaskInfo(...)`` with ``DESCRIPTION`` updated by ``fields`` (Python source; None
    leaves a field out), and ``model.py`` (None: none). Returns the task's import path."""
    directory = root / package
    directory.mkdir(parents=True, exist_ok=True)
    arguments = {key: value for key, value in {**DESCRIPTION, **fields}.items() if value is not None}
    body = ",\n    ".join(f"{key}={value}" for key, value in arguments.items()).replace("{package}", package)
    (directory / "__init__.py").write_text(
        f'"""A user\'s task (no torch here)."""\nfrom experiments.tasks.info import TaskInfo\n\n'
        f"task = TaskInfo(\n    {body},\n)\n")
    if model is not None:
        (directory / "model.py").write_text(model)
    return f"{package}:task"


def write_entry_point(root: Path, name: str, value: str, distribution: str = "wavetask") -> None:
    """A distribution ``distribution`` 1.0 under ``root`` registering ``name = value`` in the
    entry-point group optbench.tasks."""
    info = root / f"{distribution}-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[optbench.tasks]\n{name} = {value}\n")


def env_with(root: Path) -> dict[str, str]:
    """``subprocess_env()`` with ``root`` (where the user's packages are) on PYTHONPATH."""
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(root), env["PYTHONPATH"]])
    return env
