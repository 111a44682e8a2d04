"""Language modelling: a small byte-level GPT on Python's documentation or WikiText-style text."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset
from torchmetrics.text import Perplexity

from experiments.data import text
from experiments.data.module import StreamDataModule
from experiments.tasks.base import TaskData, TaskModule
from experiments.tasks.components.gpt import GPT, GPTConfig

__all__ = ["LanguageModelTask", "lm_data"]

_SIZES = {
    "tiny": GPTConfig(context=32, layers=1, heads=2, width=32),
    "default": GPTConfig(context=128, layers=4, heads=4, width=128),
    "large": GPTConfig(context=1024, layers=12, heads=12, width=768),  # GPT-2 small, over bytes
}
_VAL_SEQUENCES = {"tiny": 64, "default": 256, "large": 512}


def lm_data(config: DictConfig) -> TaskData:
    """Training crops of ``context + 1`` bytes (random offset within each chunk); validation on
    the first non-overlapping chunks of the held-out text."""
    if config.data.source == "builtin":
        train, val = text.builtin_pydoc(tiny=config.size == "tiny")
    else:  # text
        train, val = text.text_files(config.data.path)
    span = _SIZES[config.size].context + 1
    chunks = (len(train) - span) // span

    def make_batch(indices: Tensor, generators: list[torch.Generator]) -> tuple[Tensor, Tensor]:
        offsets = torch.stack([torch.randint(0, span, (), generator=g) for g in generators])
        starts = indices * span + offsets
        windows = train[starts[:, None] + torch.arange(span)[None, :]].long()
        return windows[:, :-1], windows[:, 1:]

    n_val = min(_VAL_SEQUENCES[config.size], len(val) // span)
    if n_val == 0 or chunks <= 0:
        raise ValueError(f"LM text too short: {len(train)} training and {len(val)} validation bytes, "
                         f"and one sequence needs {span}")
    val_windows = val[: n_val * span].view(n_val, span).long()
    module = StreamDataModule(
        chunks, make_batch, TensorDataset(val_windows[:, :-1], val_windows[:, 1:]), config.data.batch_size,
        config.seed, config.data.num_workers,
    )
    return TaskData(module)


class LanguageModelTask(TaskModule):
    """Next-byte prediction; validation perplexity (lower is better) is the metric."""

    def build_model(self, size: str) -> nn.Module:
        return GPT(_SIZES[size])

    def build_metric(self) -> Perplexity:
        return Perplexity()

    def loss(self, batch: Any) -> Tensor:
        x, y = batch
        logits = self.model(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def update_metric(self, batch: Any) -> None:
        x, y = batch
        self.val_metric.update(self.model(x).float(), y)
