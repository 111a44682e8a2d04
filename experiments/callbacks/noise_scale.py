"""The gradient noise scale of McCandlish et al. (2018), "An empirical model of large-batch training".

With G the true gradient and Σ the covariance of per-sample gradients, the gradient of a batch of
B samples has E|G_B|² = |G|² + tr(Σ)/B, and the simple noise scale

    B_simple = tr(Σ) / |G|²

predicts the batch size beyond which larger batches stop paying off. Squared gradient norms at two
batch sizes B_small < B_big give unbiased estimates of both terms (their appendix A):

    |G|²  ≈ (B_big·|G_big|² − B_small·|G_small|²) / (B_big − B_small)
    tr(Σ) ≈ (|G_small|² − |G_big|²) / (1/B_small − 1/B_big)

A single estimate is noisy (either may be negative), so each is smoothed by its own exponential
moving average before the ratio is taken.

In a run, small = one micro-batch and big = the gradient accumulated over
``trainer.accumulate_grad_batches`` micro-batches (so it needs at least two), both unscaled (after
the AMP unscale), unclipped, in float32. |G_small|² is the mean over the step's micro-batches.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import pytorch_lightning as pl
import torch
from torch import Tensor

from optimizers.norms import stacked_sq_norms

__all__ = ["NoiseScaleEstimator", "GradientNoiseScale"]


class NoiseScaleEstimator:
    """Running estimates of |G|², tr(Σ) and B_simple from squared norms at two batch sizes."""

    def __init__(self, small_batch: int, big_batch: int, decay: float = 0.95) -> None:
        if not 0 < small_batch < big_batch:
            raise ValueError(f"need 0 < small_batch < big_batch, got {small_batch} and {big_batch}")
        self.small_batch, self.big_batch, self.decay = small_batch, big_batch, decay
        self.updates = 0
        self._grad_sq = 0.0  # moving averages, bias-corrected when read (as Adam's moments)
        self._trace = 0.0

    def update(self, small_sq: float, big_sq: float) -> None:
        """Add one pair of squared norms (|G_small|², |G_big|²); non-finite pairs are skipped."""
        if not (math.isfinite(small_sq) and math.isfinite(big_sq)):
            return
        b_small, b_big = self.small_batch, self.big_batch
        grad_sq = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
        trace = (small_sq - big_sq) / (1 / b_small - 1 / b_big)
        self._grad_sq = self.decay * self._grad_sq + (1 - self.decay) * grad_sq
        self._trace = self.decay * self._trace + (1 - self.decay) * trace
        self.updates += 1

    def _corrected(self, value: float) -> Optional[float]:
        return value / (1 - self.decay ** self.updates) if self.updates else None

    @property
    def grad_sq(self) -> Optional[float]:
        """|G|², smoothed."""
        return self._corrected(self._grad_sq)

    @property
    def trace_sigma(self) -> Optional[float]:
        """tr(Σ), smoothed."""
        return self._corrected(self._trace)

    @property
    def simple(self) -> Optional[float]:
        """B_simple = tr(Σ)/|G|², None until both smoothed estimates are positive."""
        if not self.updates or self._grad_sq <= 0 or self._trace <= 0:
            return None
        return self._trace / self._grad_sq  # the bias corrections cancel in the ratio

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "grad_sq": self._grad_sq, "trace": self._trace}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates, self._grad_sq, self._trace = state["updates"], state["grad_sq"], state["trace"]


class GradientNoiseScale(pl.Callback):
    """Measures B_simple during training: one micro-batch against the accumulated gradient.

    After each backward pass the gradient accumulated so far is compared with the previous one:
    their difference is that micro-batch's gradient divided by the number of micro-batches
    (Lightning divides the loss by it). Costs one float32 copy of the gradients while on.
    ``log(trainer, step, values)`` (``MetricRows.write`` in a run: metrics.jsonl and
    wandb) receives ``gns/simple``, ``gns/trace_sigma`` and ``gns/grad_sq`` at the first and every
    ``log_every`` steps; the last B_simple is the summary's ``grad_noise_scale``.
    """

    def __init__(self, log: Optional[Callable[[pl.Trainer, int, dict[str, Any]], None]], *, micro_batch: int,
                 accumulate: int, log_every: int, decay: float = 0.95) -> None:
        self.estimator = NoiseScaleEstimator(micro_batch, micro_batch * accumulate, decay)
        self._log, self.accumulate, self.log_every = log, accumulate, log_every  # not .log: Lightning assigns that
        self._previous: Optional[list[Tensor]] = None
        self._small_sq: list[Tensor] = []

    def state_dict(self) -> dict[str, Any]:
        return self.estimator.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.estimator.load_state_dict(state_dict)

    @torch.no_grad()
    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        grads = [p.grad.detach().float() for p in pl_module.parameters() if p.grad is not None]
        micro = grads if self._previous is None else torch._foreach_sub(grads, self._previous)
        self._small_sq.append(stacked_sq_norms(micro).sum() * self.accumulate ** 2)
        self._previous = [g.clone() for g in grads]

    @torch.no_grad()
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad.detach().float() for p in pl_module.parameters() if p.grad is not None]
        big_sq = float(stacked_sq_norms(grads).sum())
        # Micro-batch gradients were read before the AMP unscale; the step's gradient after it.
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        scale_sq = float(scaler.get_scale()) ** 2 if scaler is not None else 1.0
        small_sq = float(torch.stack(self._small_sq).mean()) / scale_sq
        self._previous, self._small_sq = None, []
        self.estimator.update(small_sq, big_sq)
        step = trainer.global_step + 1  # the step about to be taken
        if self._log is not None and (step % self.log_every == 0 or step == 1):
            self._log(trainer, step, {"gns/simple": self.estimator.simple, "gns/trace_sigma": self.estimator.trace_sigma,
                                     "gns/grad_sq": self.estimator.grad_sq})
