"""What a run says about itself without a map: the names that the two big conventions give each
field, recognised where they are unambiguous.

- **optbench** (the run store, and the wandb runs optbench logs): the config nested as in
  ``config.yaml`` (``optimizer.name``, ``optimizer.lr`` scaled by ``lr_scaling``,
  ``data.batch_size`` times accumulation, devices and nodes), the summary's fields, history keys
  ``step`` (the store) or ``trainer/global_step`` (wandb), ``epoch``, ``wall_time``.
- **Lightning** (``WandbLogger`` with ``save_hyperparameters()``) and bare ``wandb.init``:
  flat hyper-parameter names (``optimizer``, ``lr`` or ``learning_rate``, ``batch_size``,
  ``seed``, ``max_steps``), ``trainer/global_step``, ``epoch``; wandb's own ``_runtime`` for
  wall time, and ``_step`` only where the run passed ``step=`` to ``wandb.log`` (``_step``
  otherwise counts log calls, not optimizer steps: see ``explicit_steps``).

Ambiguous is unknown: two config names for one field with different values, or two validation
metrics, leave the field to a map. The task of a wandb run without a ``task`` is its project.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from analysis.run_map import MISSING, convert, lookup

__all__ = ["CONFIG_NAMES", "STEP_KEYS", "WALL_TIME_KEYS", "EPOCH_KEY", "WANDB_STEP", "CONTEXT_KEYS",
           "written_by_optbench", "config_value", "optbench_batch_and_lr", "explicit_steps", "validation_metrics",
           "higher_is_better"]

# Per field, the config keys that name it, in the order they are looked for. optbench's
# data.batch_size and optimizer.lr are read apart (optbench_batch_and_lr): they are scaled.
CONFIG_NAMES: dict[str, tuple[str, ...]] = {
    "task": ("task",),
    "optimizer": ("optimizer.name", "optimizer", "optimizer_name", "optim"),
    "lr": ("optimizer.lr", "lr", "learning_rate"),
    "batch_size": ("batch_size", "train_batch_size"),
    "seed": ("seed",),
    "max_steps": ("trainer.max_steps", "max_steps"),
    "weight_decay": ("optimizer.weight_decay", "weight_decay"),
}
STEP_KEYS = ("step", "trainer/global_step", "global_step")  # history keys counting optimizer steps
WALL_TIME_KEYS = ("wall_time", "_runtime")  # history keys of training seconds
EPOCH_KEY = "epoch"
WANDB_STEP = "_step"  # wandb's row counter: the step only when the run logged with step=
CONTEXT_KEYS = frozenset((*STEP_KEYS, *WALL_TIME_KEYS, EPOCH_KEY))  # never metrics themselves

_VALIDATION = {"val", "valid", "validation"}
_HIGHER = {"acc", "accuracy", "top1", "top5", "f1", "auc", "auroc", "bleu", "map", "iou", "miou", "dice", "r2",
           "precision", "recall"}
_LOWER = {"loss", "error", "err", "wer", "cer", "ppl", "perplexity", "nll", "mse", "mae", "rmse"}


def written_by_optbench(config: Mapping[str, Any]) -> bool:
    """Whether a wandb run's config is the one optbench logs (its whole resolved config: a
    ``study``, and ``optimizer`` and ``trainer`` sections): then its summary is optbench's."""
    return "study" in config and isinstance(config.get("optimizer"), Mapping) and isinstance(config.get("trainer"), Mapping)


def config_value(config: Mapping[str, Any], name: str, kind: str) -> Any:
    """The field ``name`` from the config by ``CONFIG_NAMES``, as ``kind`` (see
    ``run_map.convert``); None when no name is there or two disagree."""
    values = {convert(value, kind) for key in CONFIG_NAMES[name] if (value := lookup(config, key)) is not MISSING}
    values.discard(None)
    return values.pop() if len(values) == 1 else None


@lru_cache(maxsize=1)
def _run_config_defaults() -> dict[str, Any]:
    from omegaconf import OmegaConf

    from experiments.config import RunConfig

    return OmegaConf.to_container(OmegaConf.structured(RunConfig))


_BATCH_KEYS = ("data.batch_size", "trainer.accumulate_grad_batches", "trainer.devices", "trainer.num_nodes",
               "optimizer.reference_batch_size")


def optbench_batch_and_lr(config: Mapping[str, Any]) -> tuple[Optional[int], Optional[float]]:
    """An optbench config's effective batch size (``data.batch_size`` × accumulation × devices ×
    nodes) and effective learning rate (``optimizer.lr`` scaled by ``lr_scaling`` from
    ``reference_batch_size``), by the training code's own torch-free formulas; (None, None) for a
    config without ``data.batch_size``, and lr None without ``optimizer.lr``. Each key is read on
    its own: a key optbench's schema lacks harms nothing; one it has that the config lacks takes
    the schema's default (a config.yaml written before the field existed)."""
    from omegaconf import OmegaConf

    from experiments.config import effective_batch_size
    from experiments.schedule import LR_SCALINGS, scaled_lr

    if lookup(config, "data.batch_size") is MISSING:
        return None, None
    defaults = _run_config_defaults()
    values = {key: convert(_given_or(config, defaults, key), "integer") for key in _BATCH_KEYS}
    if any(value is None or value <= 0 for value in values.values()):
        return None, None
    nested = OmegaConf.create({})
    for key, value in values.items():
        OmegaConf.update(nested, key, value)
    batch = effective_batch_size(nested)
    lr = convert(lookup(config, "optimizer.lr"), "number")
    rule = _given_or(config, defaults, "optimizer.lr_scaling")
    if lr is None or rule not in LR_SCALINGS:
        return batch, None
    return batch, scaled_lr(lr, rule, batch, values["optimizer.reference_batch_size"])


def _given_or(config: Mapping[str, Any], defaults: Mapping[str, Any], key: str) -> Any:
    value = lookup(config, key)
    return lookup(defaults, key) if value is MISSING else value


def explicit_steps(steps: np.ndarray) -> bool:
    """Whether wandb's ``_step`` values (one per history row, in order) are steps the run passed
    to ``wandb.log(step=...)``: not exactly 0, 1, 2, ..., the count of log calls. (A run that
    passed every step from 0 once reads as a counter too: it is ambiguous, and a map says.)"""
    return len(steps) > 0 and not np.array_equal(steps, np.arange(len(steps)))


def _tokens(key: str) -> set[str]:
    return set(re.split(r"[/_.\-\s]+", key.lower())) - {""}


def validation_metrics(keys: Iterable[str]) -> list[str]:
    """The logged keys that name a validation metric (``val_acc``, ``val/loss``,
    ``accuracy/val``): a token val, valid or validation; wandb's ``_`` keys and running bests
    (``val/acc_best``) are not."""
    return sorted(key for key in keys if not key.startswith("_") and _tokens(key) & _VALIDATION
                  and "best" not in _tokens(key))


def higher_is_better(metric: str) -> Optional[bool]:
    """The direction a metric's name tells (accuracy-like up, loss-like down); None if it tells
    neither or both."""
    tokens = _tokens(metric)
    up, down = bool(tokens & _HIGHER), bool(tokens & _LOWER)
    return up if up != down else None
