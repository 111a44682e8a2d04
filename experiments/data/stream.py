"""Training batches as a pure function of (seed, micro-batch index).

The stream is a sequence of sample *positions* 0, 1, 2, ...: position p holds item
``permutation(seed, epoch)[offset]`` of the training set (``epoch, offset = divmod(p, size)``),
augmented with random draws from a generator seeded by (seed, p). Micro-batch i of rank r in a
world of W processes with per-process batch B holds positions i·W·B + r·B ... i·W·B + (r+1)·B.
So a resumed run starts at the micro-batch its checkpoint reached and sees exactly the batches
an uninterrupted run would; W processes with batch B see the samples, and the augmentation, that
one process sees with batch W·B; and each process builds only its own B samples.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

__all__ = ["StepBatches", "epoch_indices", "epoch_permutation", "sample_generators"]

# make_batch(indices, generators): the batch of dataset items ``indices``; ``generators[j]``
# draws the random augmentation of item j (and nothing else may: see sample_generators).
MakeBatch = Callable[[Tensor, list[torch.Generator]], Any]


def _generator(*key: int) -> torch.Generator:
    seed = 0
    for part in key:
        seed = (seed * 1_000_003 + part) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


@functools.lru_cache(maxsize=4)
def epoch_permutation(size: int, seed: int, epoch: int) -> Tensor:
    """The order of the ``size`` training items in ``epoch``, drawn from (seed, epoch).

    Cached: every micro-batch of an epoch reads the same permutation, so it is drawn once per
    epoch (per process) instead of once per micro-batch (a ``randperm`` of ImageNet's 1.28M
    items takes ~16 ms). Callers must not modify the returned tensor.
    """
    return torch.randperm(size, generator=_generator(seed, 0, epoch))


def epoch_indices(size: int, seed: int, start: int, count: int) -> Tensor:
    """Positions ``start .. start+count`` of the stream of per-epoch permutations of ``size`` items."""
    out, position = [], start
    while position < start + count:
        epoch, offset = divmod(position, size)
        take = min(size - offset, start + count - position)
        out.append(epoch_permutation(size, seed, epoch)[offset : offset + take])
        position += take
    return torch.cat(out)


def sample_generators(seed: int, start: int, count: int) -> list[torch.Generator]:
    """One generator per stream position ``start .. start+count``, seeded by (seed, position).

    A sample's augmentation drawn from its own generator does not depend on which process,
    micro-batch size or DataLoader worker builds it: that is what makes W processes with batch B
    equal one process with batch W·B while each builds only its share.
    """
    return [_generator(seed, 1, position) for position in range(start, start + count)]  # tag 1: augmentation


class StepBatches(IterableDataset):
    """An endless stream of this process's training batches (use with ``DataLoader(batch_size=None)``).

    ``make_batch(indices, generators)`` builds the ``batch_size`` samples of this rank's slice of
    each global batch from their dataset indices and per-sample generators.
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
        first = (index * self.world + self.rank) * self.batch_size
        indices = epoch_indices(self.size, self.seed, first, self.batch_size)
        return self.make_batch(indices, sample_generators(self.seed, first, self.batch_size))

    def __iter__(self) -> Iterator[Any]:
        worker = get_worker_info()
        index = self.start + (worker.id if worker else 0)
        step = worker.num_workers if worker else 1
        while True:
            yield self.batch(index)
            index += step
