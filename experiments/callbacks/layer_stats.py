"""Per-layer statistics of a run: how each parameter tensor's gradient, weight and update evolve.

At step 1 and every ``layer_stats_every_n_steps`` steps, one row per parameter tensor goes to
``layers.jsonl`` (and to wandb, through ``MetricRows.write_layers``): ``grad_norm``,
``weight_norm``, ``update_norm`` (the norm of the step's change of the weights), ``update_ratio``
= update_norm / weight_norm (None for a zero weight) and, for an optimizer that reports them
(``trust_ratios(params)``: LARC, LARS, or any that offers the method), ``trust_ratio``: the
layer-wise factor it applies. Norms are float32 and computed on global rank 0 only.
"""

from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl
import torch
from torch import Tensor

from experiments.callbacks.metric_rows import MetricRows
from experiments.callbacks.peak_memory import TrainingPeakMemory
from experiments.callbacks.steps import ended_optimizer_step
from optimizers.behaviour import trust_ratios
from optimizers.norms import stacked_norms

__all__ = ["LayerStatistics"]


class LayerStatistics(pl.Callback):
    """Gradient and weight norms (and trust ratios) just before the optimizer step, the update
    norms after it; written through ``rows``.

    The weights are copied before the step to measure the update: ``memory`` leaves those
    copies out of the run's peak memory (they are the measurement's, not the training's).
    """

    def __init__(self, rows: MetricRows, memory: TrainingPeakMemory, *, every: int) -> None:
        self.rows = rows
        self.memory = memory
        self.every = every
        self._weights_before: Optional[list[Tensor]] = None
        self._rows: list[dict[str, Any]] = []

    def _is_stats_step(self, step: int) -> bool:
        return step == 1 or step % self.every == 0

    @torch.no_grad()
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        step = trainer.global_step + 1  # the step about to be taken
        if not self._is_stats_step(step) or not trainer.is_global_zero:
            return
        named = [(n, p) for n, p in pl_module.named_parameters() if p.grad is not None]
        params = [p for _, p in named]
        grad_norms = stacked_norms([p.grad for p in params]).tolist()
        weight_norms = stacked_norms(params).tolist()
        trust = trust_ratios(optimizer, params)
        self.memory.pause()
        self._weights_before = [p.detach().clone() for p in params]
        self._rows = [
            {"step": step, "layer": name, "grad_norm": float(g), "weight_norm": float(w),
             **({"trust_ratio": trust[i]} if trust else {})}
            for i, ((name, _), g, w) in enumerate(zip(named, grad_norms, weight_norms))
        ]

    @torch.no_grad()
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if self._weights_before is None or not ended_optimizer_step(trainer, batch_idx):
            return
        params = [p for _, p in pl_module.named_parameters() if p.grad is not None]
        deltas = torch._foreach_sub([p.detach() for p in params], self._weights_before)
        update_norms = stacked_norms(deltas).tolist()
        for row, u in zip(self._rows, update_norms):
            row["update_norm"] = float(u)
            row["update_ratio"] = float(u) / row["weight_norm"] if row["weight_norm"] > 0 else None
        self.rows.write_layers(trainer, self._rows)
        self._weights_before, self._rows = None, []
        self.memory.resume()
