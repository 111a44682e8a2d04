"""One Lightning data module for every task: a resumable training stream and a validation set."""

from __future__ import annotations

from typing import Any, Callable, Optional

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset, Sampler

from experiments.data.stream import MakeBatch, StepBatches

__all__ = ["StreamDataModule", "ShardSampler"]


class ShardSampler(Sampler[int]):
    """Items ``rank, rank + world, ...``: every validation item on exactly one process (torch's
    DistributedSampler pads with repeats, which would count some items twice in the metric)."""

    def __init__(self, size: int, rank: int, world: int) -> None:
        self.indices = range(rank, size, world)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class StreamDataModule(pl.LightningDataModule):
    """Training batches from ``StepBatches`` (started where the trainer's checkpoint left off);
    validation from a map-style dataset that Lightning shards across processes."""

    def __init__(
        self,
        train_size: int,
        make_batch: MakeBatch,
        val_dataset: Dataset,
        batch_size: int,
        seed: int,
        num_workers: int = 0,
        val_collate: Optional[Callable[[list[Any]], Any]] = None,
    ) -> None:
        super().__init__()
        self.train_size, self.make_batch, self.val_dataset = train_size, make_batch, val_dataset
        self.batch_size, self.seed, self.num_workers, self.val_collate = batch_size, seed, num_workers, val_collate

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        # Checkpoints are restored before data is set up: start at the next unseen micro-batch.
        start = trainer.global_step * trainer.accumulate_grad_batches if trainer else 0
        stream = StepBatches(
            self.train_size, self.batch_size, self.make_batch, self.seed, start=start,
            rank=trainer.global_rank if trainer else 0, world=trainer.world_size if trainer else 1,
        )
        return DataLoader(stream, batch_size=None, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=self._on_cuda())

    def val_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        return DataLoader(self.val_dataset, batch_size=self.batch_size,
                          sampler=ShardSampler(len(self.val_dataset), rank, world),
                          num_workers=self.num_workers, collate_fn=self.val_collate,
                          persistent_workers=self.num_workers > 0, pin_memory=self._on_cuda())

    def _on_cuda(self) -> bool:
        """Whether batches go to a CUDA device: then they are built in pinned memory, which the
        host-to-device copy reads without staging and overlaps with compute."""
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
