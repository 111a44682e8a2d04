"""``OptimizerModes``: a Schedule-Free optimizer trains at its training point and is validated at
its averaged point, in a real Lightning run, and every checkpoint holds the training point."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn

from experiments.callbacks.optimizer_modes import OptimizerModes
from optimizers import build_optimizer

pytest.importorskip("schedulefree", reason="schedule_free_adamw comes with optbench[peers]")


class Regression(pl.LightningModule):
    """A linear fit under ``optimizer_name``, recording the optimizer's mode (its groups'
    ``train_mode``) at each training and validation step."""

    def __init__(self, optimizer_name: str) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.optimizer_name = optimizer_name
        self.modes: dict[str, list[bool]] = {"train": [], "val": []}

    def _mode(self) -> bool:
        return all(group["train_mode"] for group in self.optimizers().optimizer.param_groups)

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return (self.linear(x) - y).square().mean()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.modes["train"].append(self._mode())
        return self._loss(batch)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.modes["val"].append(self._mode())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.optimizer_name, self, lr=0.01)


def test_schedule_free_validates_at_its_eval_point_and_checkpoints_its_training_point(tmp_path: Path):
    """12 steps, a validation every 4 (3 of them) each followed by a checkpoint written by a
    ``ModelCheckpoint`` listed before the callback (Lightning runs it last anyway): every
    training step in train mode, every validation step in eval mode, every checkpoint in train
    mode. LARC over it passes the calls on."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(48, 4, generator=generator)
    data = list(zip(x, x.sum(dim=1, keepdim=True)))
    for name in ("schedule_free_adamw", "larc_schedule_free_adamw"):
        model = Regression(name)
        checkpoints = ModelCheckpoint(dirpath=tmp_path / name, every_n_train_steps=None, save_top_k=-1,
                                      filename="{step}")
        trainer = pl.Trainer(max_steps=12, val_check_interval=4, limit_val_batches=2, num_sanity_val_steps=0,
                             callbacks=[checkpoints, OptimizerModes()], logger=False, enable_progress_bar=False,
                             enable_model_summary=False, accelerator="cpu")
        loader = torch.utils.data.DataLoader(data, batch_size=4)
        trainer.fit(model, loader, loader)
        assert model.modes == {"train": [True] * 12, "val": [False] * 6}, name
        saved = sorted((tmp_path / name).glob("*.ckpt"))
        assert len(saved) == 3, name
        for path in saved:
            state = torch.load(path, weights_only=False)["optimizer_states"][0]
            assert all(group["train_mode"] for group in state["param_groups"]), (name, path.name)
