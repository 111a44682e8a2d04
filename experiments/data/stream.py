"""Training batches as a pure function of (seed, micro-batch index).

A resumed run starts the stream at the micro-batch its checkpoint reached and sees exactly the
batches an uninterrupted run would; ``world`` processes each take their slice of the same global
batch, so DDP on W devices with batch B sees the samples one process sees with batch W·B.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

__all__ = ["StepBatches", "epoch_indices"]

MakeBatch = Callable[[Tensor, torch.Generator], Any]


def _generator(*key: int) -> torch.Generator:
    seed = 0
    for part in key:
        seed = (seed * 1_000_003 + part) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


def epoch_indices(size: int, seed: int, start: int, count: int) -> Tensor:
    """Positions ``start .. start+count`` of the stream of per-epoch permutations of ``size`` items."""
    out, position = [], start
    while position < start + count:
        epoch, offset = divmod(position, size)
        take = min(size - offset, start + count - position)
        out.append(torch.randperm(size, generator=_generator(seed, 0, epoch))[offset : offset + take])
        position += take
    return torch.cat(out)


class StepBatches(IterableDataset):
    """An endless stream of training batches (use with ``DataLoader(batch_size=None)``).

    ``make_batch(indices, generator)`` builds the global batch (all ranks' samples) from dataset
    indices; ``generator`` is seeded by the micro-batch index for augmentation. Each rank yields
    its contiguous slice of every global batch.
    """

    def __init__(
        self, size: int, batch_size: int, make_batch: MakeBatch, seed: int,
        start: int = 0, rank: int = 0, world: int = 1,
    ) -> None:
        super().__init__()
        self.size, self.batch_size, self.make_batch = size, batch_size, make_batch
        self.seed, self.start, self.rank, self.world = seed, start, rank, world

    def batch(self, index: int) -> Any:
        """Micro-batch ``index`` of this rank."""
        global_size = self.batch_size * self.world
        indices = epoch_indices(self.size, self.seed, index * global_size, global_size)
        full = self.make_batch(indices, _generator(self.seed, 1, index))  # tag 1: augmentation
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        return tuple(part[lo:hi] for part in full) if isinstance(full, tuple) else full[lo:hi]

    def __iter__(self) -> Iterator[Any]:
        worker = get_worker_info()
        index = self.start + (worker.id if worker else 0)
        step = worker.num_workers if worker else 1
        while True:
            yield self.batch(index)
            index += step
