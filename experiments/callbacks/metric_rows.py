"""What a run records while it trains: its metric rows, in the store and in wandb at the same steps.

Scalars go to ``metrics.jsonl``, one row ``{step, epoch, wall_time, **values}`` at a time: the
training row (``train/loss``, ``lr``, ``throughput``) every ``log_every_n_steps`` and at the last
step, the validation row (every ``val/*`` the task logs) after each validation, and whatever other
callbacks log through ``write`` (the gradient noise scale). Layer statistics go to
``layers.jsonl`` through ``write_layers``. Rows are flushed as they are written, so a killed run
keeps everything it logged; a resumed run drops the rows logged after its checkpoint and logs
them again.

``wandb`` (a Lightning ``WandbLogger``, kept out of the Trainer: Lightning would log rank 0's
loss at its own cadence) receives every metrics row, keyed ``trainer/global_step`` = the row's
step, and the layer statistics as a table and a histogram of update ratios: wandb's history and
the store then hold the same values at the same steps.

The rows also stay in memory as far as the summary needs them: the last value of every key
(``final``) and the validation rows (``validations``), with the training time (``elapsed``);
all three survive a resume, so that a resumed run is summarised as an uninterrupted one.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import pytorch_lightning as pl

from experiments.callbacks.divergence import DivergenceGuard
from experiments.callbacks.legacy_state import legacy_state
from experiments.callbacks.step_timer import StepTiming
from experiments.callbacks.steps import ends_logged_step
from experiments.store import RunStore

__all__ = ["MetricRows"]

_ROW_KEYS = ("step", "epoch", "wall_time")  # what every row has besides its values


class MetricRows(pl.Callback):
    """Writes the run's rows (on global rank 0) and keeps what the summary reads of them.

    The training row takes its loss from ``guard`` (which read it: at a logged step, or at the
    step that diverged) and its throughput from ``timing`` (the steps timed since the previous
    row; none where none was: the first steps). Placed after both in the Trainer's callbacks.
    """

    def __init__(self, store: RunStore, *, wandb: Optional[Any], guard: DivergenceGuard, timing: StepTiming,
                 log_every: int) -> None:
        self.store = store
        self.wandb = wandb
        self.guard = guard
        self.timing = timing
        self.log_every = log_every
        self.final: dict[str, Any] = {}  # the last value logged under each key
        self.validations: list[dict[str, Any]] = []  # the validation rows, in step order
        self._elapsed_before = 0.0  # training seconds of earlier attempts (resume)
        self._start = 0.0

    # -- state that survives a resume -----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"elapsed": self.elapsed(), "final": dict(self.final), "validations": list(self.validations)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._elapsed_before = state_dict["elapsed"]
        self.final, self.validations = state_dict["final"], state_dict["validations"]

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        legacy = legacy_state(checkpoint, self.state_key)
        if legacy is None:
            return
        # A checkpoint from before the rows were kept in it: they are the store's rows up to its
        # step (the ones a resumed run keeps).
        self._elapsed_before = legacy["elapsed"]
        for row in self.store.rows("metrics.jsonl"):
            if row["step"] <= checkpoint["global_step"]:
                self._keep(row)

    def elapsed(self) -> float:
        """Training seconds, all attempts together."""
        return self._elapsed_before + (time.perf_counter() - self._start if self._start else 0.0)

    # -- hooks ---------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        if trainer.is_global_zero:  # a resumed run logs again what came after its checkpoint
            self.store.truncate_after(trainer.global_step)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        step, loss = trainer.global_step, self.guard.loss
        if loss is None or not (ends_logged_step(trainer, batch_idx, self.log_every) or self.guard.diverged_at == step):
            return
        values = {"train/loss": loss, "lr": trainer.optimizers[0].param_groups[0]["lr"]}
        throughput = self.timing.interval_throughput()
        if throughput is not None:
            values["throughput"] = throughput
        self.write(trainer, step, values)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.write(trainer, trainer.global_step, values)

    # -- writing -------------------------------------------------------------------------------
    def write(self, trainer: pl.Trainer, step: int, values: dict[str, Any]) -> None:
        """One metrics.jsonl row {step, epoch, wall_time, **values}, and the same to wandb at the
        same step (other callbacks, e.g. the noise scale, log through here too)."""
        row = {"step": step, "epoch": trainer.current_epoch, "wall_time": self.elapsed(), **values}
        self._keep(row)
        if not trainer.is_global_zero:
            return
        self.store.append("metrics.jsonl", [row])
        if self.wandb is not None:
            self.wandb.log_metrics({k: v for k, v in row.items() if k != "step"}, step=step)

    def write_layers(self, trainer: pl.Trainer, rows: list[dict[str, Any]]) -> None:
        """Layer statistics rows to layers.jsonl, and to wandb as a table and a histogram of the
        update ratios at the same step."""
        if not trainer.is_global_zero:
            return
        self.store.append("layers.jsonl", rows)
        if self.wandb is not None:
            import wandb

            columns = list(rows[0])
            table = wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])
            ratios = [r["update_ratio"] for r in rows if r["update_ratio"] is not None]
            self.wandb.experiment.log({"layers/stats": table, "layers/update_ratio": wandb.Histogram(ratios),
                                       "trainer/global_step": trainer.global_step})

    def _keep(self, row: dict[str, Any]) -> None:
        values = {k: v for k, v in row.items() if k not in _ROW_KEYS}
        self.final.update(values)
        if any(k.startswith("val/") for k in values):
            self.validations.append(row)

    def curve(self, metric: str) -> list[tuple[int, float]]:
        """(step, value) of ``metric`` at every validation so far."""
        return [(row["step"], row[metric]) for row in self.validations if metric in row]
