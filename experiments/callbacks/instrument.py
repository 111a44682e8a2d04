"""Instrumentation: what a run records while it trains, and the divergence check.

Scalars (loss, LR, throughput, wall time, validation metrics) go to ``metrics.jsonl`` every
``log_every_n_steps`` (throughput from the training steps alone: ``experiments.callbacks.step_timer``);
per-layer gradient norm, weight norm, update/weight ratio and (for LARC and LARS) the trust ratio
go to ``layers.jsonl`` every ``layer_stats_every_n_steps``. Rows are flushed as they are
written, so a killed run keeps everything it logged.
"""

from __future__ import annotations

import math
import time
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from torch import Tensor

from experiments.callbacks.peak_memory import PeakMemory
from experiments.callbacks.step_timer import StepTimer
from experiments.store import RunStore
from optimizers import LARC, LARS
from optimizers.larc import larc_grad_scales
from optimizers.lars import lars_trust_ratios

__all__ = ["Instrumentation", "optimizer_state_bytes"]


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the optimizer's state tensors (step counters included)."""
    return sum(
        v.numel() * v.element_size()
        for state in optimizer.state.values() for v in state.values() if isinstance(v, Tensor)
    )


def _trust_ratios(optimizer: torch.optim.Optimizer, params: list[Tensor]) -> list[float]:
    """The layer-wise factor LARC (s) or LARS (λ) applies to each of ``params`` this step."""
    wanted = {p: i for i, p in enumerate(params)}
    ratios: list[float] = [math.nan] * len(params)
    for group in optimizer.param_groups:
        group_params = [p for p in group["params"] if p in wanted]
        if not group_params:
            continue
        grads = [p.grad for p in group_params]
        if isinstance(optimizer, LARC):
            _, scales = larc_grad_scales(
                group_params, grads, lr=group["lr"], eta=group["larc_eta"], mode=group["larc_mode"],
                eps=group["larc_eps"], min_update=group["larc_min_update"], adapt=group["layer_adaptation"],
            )
        elif group["layer_adaptation"]:
            scales = list(lars_trust_ratios(group_params, grads, eta=group["eta"], weight_decay=group["weight_decay"],
                                            eps=group["eps"]).unbind(0))
        else:
            scales = [torch.ones(())] * len(group_params)
        for p, s in zip(group_params, scales):
            ratios[wanted[p]] = float(s)
    return ratios


class Instrumentation(pl.Callback):
    """Writes the run's metrics and layer statistics, and stops a diverging run.

    Divergence: a non-finite training loss, or one above ``divergence_factor`` × the first loss,
    checked at the first and every logged step (reading the loss syncs with the device).
    ``stop_at=(metric, target, higher_is_better)`` also ends the run at the first validation
    whose ``metric`` reaches ``target`` (``reached_target_at`` records the step).

    ``wandb`` (a Lightning ``WandbLogger``, kept out of the Trainer) receives every row written
    to metrics.jsonl, keyed ``trainer/global_step`` = the row's step, and the layer statistics:
    wandb's history and the store then hold the same values at the same steps.

    ``step_timer`` times the training steps (validations left out); ``peak_memory`` measures
    training from its start, without the weight copies the layer statistics make.
    """

    def __init__(self, store: Optional[RunStore], *, wandb: Optional[Any] = None, effective_batch_size: int,
                 log_every: int, layer_stats_every: int, divergence_factor: float,
                 stop_at: Optional[tuple[str, float, bool]] = None) -> None:
        self.store = store
        self.wandb = wandb
        self.effective_batch_size = effective_batch_size
        self.log_every = log_every
        self.layer_stats_every = layer_stats_every
        self.divergence_factor = divergence_factor
        self.first_loss: Optional[float] = None
        self.diverged_at: Optional[int] = None
        self.stop_at = stop_at
        self.reached_target_at: Optional[int] = None
        self.elapsed_before = 0.0  # training seconds of earlier attempts (resume)
        self.state_bytes = 0
        self.step_timer = StepTimer()
        self.peak_memory: Optional[PeakMemory] = None
        self._start = 0.0
        self._interval_start: tuple[float, int] = (0.0, 0)  # step_timer's (seconds, steps) at the last row
        self._weights_before: Optional[list[Tensor]] = None
        self._layer_rows: list[dict[str, Any]] = []

    # -- state that survives a resume -----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"first_loss": self.first_loss, "elapsed": self.elapsed(), "step_timer": self.step_timer.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.first_loss = state_dict["first_loss"]
        self.elapsed_before = state_dict["elapsed"]
        if "step_timer" in state_dict:  # absent from checkpoints written before it was kept
            self.step_timer.load_state_dict(state_dict["step_timer"])

    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._start if self._start else 0.0)

    # -- hooks ---------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        self._interval_start = (self.step_timer.seconds, self.step_timer.steps)
        self.peak_memory = PeakMemory(pl_module.device)
        self.peak_memory.reset()
        if self.store is not None and trainer.is_global_zero:
            # A resumed run logs again what came after its checkpoint.
            self.store.truncate_after(trainer.global_step)

    @torch.no_grad()
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        step = trainer.global_step + 1  # the step about to be taken
        if not self._is_layer_stats_step(step) or not trainer.is_global_zero:
            return
        named = [(n, p) for n, p in pl_module.named_parameters() if p.grad is not None]
        params = [p for _, p in named]
        grad_norms = torch._foreach_norm([p.grad for p in params], 2, dtype=torch.float32)
        weight_norms = torch._foreach_norm(params, 2, dtype=torch.float32)
        trust = _trust_ratios(optimizer, params) if isinstance(optimizer, (LARC, LARS)) else None
        self.peak_memory.pause()  # the copies are the measurement's, not the training's
        self._weights_before = [p.detach().clone() for p in params]
        self._layer_rows = [
            {"step": step, "layer": name, "grad_norm": float(g), "weight_norm": float(w),
             **({"trust_ratio": trust[i]} if trust else {})}
            for i, ((name, _), g, w) in enumerate(zip(named, grad_norms, weight_norms))
        ]

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        stepped = (batch_idx + 1) % trainer.accumulate_grad_batches == 0  # else mid-accumulation
        step = trainer.global_step
        if stepped and self.state_bytes == 0:
            self.state_bytes = optimizer_state_bytes(trainer.optimizers[0])
        if stepped and self._weights_before is not None:
            self._finish_layer_stats(trainer, pl_module)
        last_step = stepped and step >= trainer.max_steps
        if last_step:
            # Stopping at the last step makes Lightning validate there (as for early stopping)
            # and the checkpoint callback save after it: the final metric is always measured, in
            # the training epoch, and last.ckpt is the final state.
            trainer.should_stop = True
        logging_step = stepped and (step % self.log_every == 0 or last_step)
        # Reading the loss waits for the device: only the first and the logged steps do.
        loss = self._check_loss(trainer, outputs, step) if self.first_loss is None or logging_step else None
        if stepped:  # after the loss read: on a GPU a logged step's work is done by now
            self.step_timer.step_ended()
        if loss is not None and (logging_step or trainer.should_stop):
            self._log_scalars(trainer, step, loss)

    def _check_loss(self, trainer: pl.Trainer, outputs: Any, step: int) -> float:
        """The loss, averaged over processes, checked for divergence: every rank takes the same
        decision at the same steps, and the logged loss is the whole global batch's."""
        local = outputs["loss"] if isinstance(outputs, dict) else outputs
        loss = float(trainer.strategy.reduce(local.detach(), reduce_op="mean"))
        if self.first_loss is None:
            self.first_loss = loss
        if not math.isfinite(loss) or loss > self.divergence_factor * self.first_loss:
            self.diverged_at = step
            trainer.should_stop = True
        return loss

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.step_timer.pause()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.write_scalars(trainer, trainer.global_step, values)
        if self.stop_at is not None and self.reached_target_at is None:
            metric, target, higher_is_better = self.stop_at
            value = values.get(metric, math.nan)
            if value >= target if higher_is_better else value <= target:
                self.reached_target_at = trainer.global_step
                trainer.should_stop = True

    # -- helpers -------------------------------------------------------------------------------
    def _is_layer_stats_step(self, step: int) -> bool:
        return step == 1 or step % self.layer_stats_every == 0

    @torch.no_grad()
    def _finish_layer_stats(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        params = [p for _, p in pl_module.named_parameters() if p.grad is not None]
        deltas = torch._foreach_sub([p.detach() for p in params], self._weights_before)
        update_norms = torch._foreach_norm(deltas, 2, dtype=torch.float32)
        for row, u in zip(self._layer_rows, update_norms):
            row["update_norm"] = float(u)
            row["update_ratio"] = float(u) / row["weight_norm"] if row["weight_norm"] > 0 else None
        self._write(trainer, "layers.jsonl", *self._layer_rows)
        if self.wandb is not None and trainer.is_global_zero:
            self._log_layers_to_wandb(trainer)
        self._weights_before, self._layer_rows = None, []
        self.peak_memory.resume()

    def _log_layers_to_wandb(self, trainer: pl.Trainer) -> None:
        import wandb

        columns = list(self._layer_rows[0])
        table = wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in self._layer_rows])
        ratios = [r["update_ratio"] for r in self._layer_rows if r["update_ratio"] is not None]
        self.wandb.experiment.log(
            {"layers/stats": table, "layers/update_ratio": wandb.Histogram(ratios),
             "trainer/global_step": trainer.global_step}
        )

    def _log_scalars(self, trainer: pl.Trainer, step: int, loss: float) -> None:
        """The training row; its throughput counts the steps timed since the previous row (no
        throughput where none was: the first steps)."""
        start_seconds, start_steps = self._interval_start
        seconds, steps = self.step_timer.seconds - start_seconds, self.step_timer.steps - start_steps
        self._interval_start = (self.step_timer.seconds, self.step_timer.steps)
        values = {"train/loss": loss, "lr": trainer.optimizers[0].param_groups[0]["lr"]}
        if steps:
            values["throughput"] = steps * self.effective_batch_size / seconds
        self.write_scalars(trainer, step, values)

    def throughput(self) -> Optional[float]:
        """Samples per second of the timed training steps, all attempts together."""
        mean = self.step_timer.mean()
        return self.effective_batch_size / mean if mean else None

    def write_scalars(self, trainer: pl.Trainer, step: int, values: dict[str, Any],
                      wall_time: Optional[float] = None) -> None:
        """One metrics.jsonl row {step, epoch, wall_time, **values}, and the same to wandb at the
        same step (other callbacks, e.g. the noise scale, log through here too)."""
        row = {"step": step, "epoch": trainer.current_epoch,
               "wall_time": self.elapsed() if wall_time is None else wall_time, **values}
        self._write(trainer, "metrics.jsonl", row)
        if self.wandb is not None and trainer.is_global_zero:
            self.wandb.log_metrics({k: v for k, v in row.items() if k != "step"}, step=row["step"])

    def _write(self, trainer: pl.Trainer, name: str, *rows: dict[str, Any]) -> None:
        if self.store is not None and trainer.is_global_zero:
            self.store.append(name, rows)
