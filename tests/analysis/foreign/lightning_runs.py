"""Foreign runs as a Lightning user writes them (never imports optbench): a LightningModule with
``save_hyperparameters()`` and ``self.log("val_acc")``, trained with ``WandbLogger(offline=True)``.

    python lightning_runs.py OUT_DIR TRUTH.json

Trains one tiny run per (optimizer, lr) into OUT_DIR/wandb/ and writes TRUTH.json: per wandb run
id, the hyper-parameters and every (step, val_acc) that Lightning handed to wandb (the logger's
own record: Lightning logs a validation at its count of batches that stepped so far, which is
not always ``trainer.global_step``), for the test to check the analysis against.
"""

import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from torch.utils.data import DataLoader, TensorDataset

RUNS = [("sgd", 0.05), ("sgd", 0.5), ("adam", 0.003), ("adam", 0.03)]
MAX_STEPS = 24
BATCH_SIZE = 16


class Classifier(pl.LightningModule):
    def __init__(self, optimizer: str, lr: float, batch_size: int, seed: int, max_steps: int, hidden: int = 64):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2))
        self.correct = []

    def training_step(self, batch, _):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.correct.append((self.net(x).argmax(1) == y).float())

    def on_validation_epoch_end(self):
        accuracy = torch.cat(self.correct).mean()
        self.correct.clear()
        self.log("val_acc", accuracy)

    def configure_optimizers(self):
        kind = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[self.hparams.optimizer]
        return kind(self.parameters(), lr=self.hparams.lr)


class RecordingWandbLogger(WandbLogger):
    """WandbLogger, noting each val_acc it sends with the step it sends it at."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.val_acc: list[tuple[int, float]] = []

    def log_metrics(self, metrics, step=None):
        if "val_acc" in metrics:
            self.val_acc.append((step, float(metrics["val_acc"])))
        super().log_metrics(metrics, step)


def data(seed: int) -> tuple[TensorDataset, TensorDataset]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(96, 8, generator=generator)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:])


def main(out: Path, truth_path: Path) -> None:
    truth = {}
    for optimizer, lr in RUNS:
        pl.seed_everything(0, verbose=False)
        model = Classifier(optimizer, lr, BATCH_SIZE, 0, MAX_STEPS)
        logger = RecordingWandbLogger(project="foreign-lightning", save_dir=str(out), offline=True)
        train, val = data(0)
        trainer = pl.Trainer(max_steps=MAX_STEPS, logger=logger, log_every_n_steps=2, num_sanity_val_steps=0,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             accelerator="cpu", devices=1)
        trainer.fit(model, DataLoader(train, batch_size=BATCH_SIZE), DataLoader(val, batch_size=32))
        truth[logger.experiment.id] = {"optimizer": optimizer, "lr": lr, "batch_size": BATCH_SIZE, "seed": 0,
                                       "max_steps": MAX_STEPS, "val_acc": logger.val_acc}
        logger.experiment.finish()
    truth_path.write_text(json.dumps(truth))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
