"""Task registry: ``task=<name>`` → the Lightning module and data module, imported lazily."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from omegaconf import DictConfig

if TYPE_CHECKING:  # Lightning loads with the first task built, not with the registry
    import pytorch_lightning as pl

    from experiments.tasks.base import LrLambda, OptimizerFactory, TaskModule

__all__ = ["TASKS", "build_task", "task_class"]

# name → (module path, task class, data builder)
TASKS = {
    "vision": ("experiments.tasks.vision", "VisionTask", "vision_data"),
    "lm": ("experiments.tasks.lm", "LanguageModelTask", "lm_data"),
    "asr": ("experiments.tasks.asr", "SpeechTask", "asr_data"),
}


def _entry(name: str) -> tuple[type[TaskModule], object]:
    if name not in TASKS:
        from optimizers.did_you_mean import did_you_mean  # optimizers loads torch: only when needed

        raise ValueError(f"Unknown task {name!r}{did_you_mean(name, TASKS)}; valid tasks: {', '.join(TASKS)}")
    path, cls, data = TASKS[name]
    module = importlib.import_module(path)
    return getattr(module, cls), getattr(module, data)


def task_class(name: str) -> type[TaskModule]:
    """The task's module class (its metric, direction and default targets)."""
    return _entry(name)[0]


def build_task(config: DictConfig, optimizer_factory: OptimizerFactory,
               lr_lambda: LrLambda) -> tuple[TaskModule, pl.LightningDataModule]:
    """The task module and its data for ``config`` (task, size, data.*)."""
    cls, data_builder = _entry(config.task)
    data, *model_args = data_builder(config)
    return cls(config.size, optimizer_factory, lr_lambda, *model_args), data
