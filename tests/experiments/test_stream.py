"""The training stream: batches are a pure function of (seed, micro-batch index)."""

from __future__ import annotations

from itertools import islice

import pytest
import torch
from torch.utils.data import DataLoader

from experiments.data.stream import StepBatches, epoch_indices, epoch_permutation

SIZE = 37  # not a multiple of any batch size below: batches straddle epochs


def make_batch(indices: torch.Tensor, generators: list[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, per-sample random draw): both parts must be reproducible."""
    return indices.clone(), torch.stack([torch.rand((), generator=g) for g in generators])


def batches(stream: StepBatches, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(islice(iter(stream), count))


def assert_same(a, b) -> None:
    assert len(a) == len(b)
    for (ia, ra), (ib, rb) in zip(a, b):
        assert torch.equal(ia, ib)
        assert torch.equal(ra, rb)


@pytest.mark.parametrize("start", [1, 3, 10])
def test_stream_started_at_k_continues_the_stream_from_zero(start):
    """A stream started at micro-batch k yields exactly batches k, k+1, ... of one started at 0."""
    whole = batches(StepBatches(SIZE, 8, make_batch, seed=4), start + 6)
    resumed = batches(StepBatches(SIZE, 8, make_batch, seed=4, start=start), 6)
    assert_same(resumed, whole[start:])


def test_batch_is_a_pure_function_of_seed_and_index():
    """batch(i) is the same on every call and in any order; another seed gives other batches."""
    stream = StepBatches(SIZE, 8, make_batch, seed=4)
    forward = [stream.batch(i) for i in range(6)]
    backward = [stream.batch(i) for i in reversed(range(6))][::-1]
    assert_same(forward, backward)
    assert_same(forward, [StepBatches(SIZE, 8, make_batch, seed=4).batch(i) for i in range(6)])
    other = StepBatches(SIZE, 8, make_batch, seed=5)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(forward, [other.batch(i) for i in range(6)]))


@pytest.mark.parametrize("world", [2, 4])
def test_ranks_split_the_single_process_batch(world):
    """The ranks' slices of a world-W stream with batch B, concatenated in rank order, are the
    batches of a one-process stream with batch W·B: same samples, same augmentation draws."""
    per_rank = 5
    single = batches(StepBatches(SIZE, world * per_rank, make_batch, seed=1, start=2), 4)
    ranks = [batches(StepBatches(SIZE, per_rank, make_batch, seed=1, start=2, rank=r, world=world), 4)
             for r in range(world)]
    for step, (indices, draws) in enumerate(single):
        assert torch.equal(torch.cat([ranks[r][step][0] for r in range(world)]), indices)
        assert torch.equal(torch.cat([ranks[r][step][1] for r in range(world)]), draws)
    # ... and the ranks see disjoint samples within one global batch (it is smaller than an epoch).
    assert len(set(torch.cat([ranks[r][0][0] for r in range(world)]).tolist())) == world * per_rank


def test_dataloader_workers_do_not_change_the_stream():
    """With DataLoader workers (data.num_workers, left out of run_id) the batches and their
    order are those of the single-process stream."""
    stream = StepBatches(SIZE, 8, make_batch, seed=2, start=3)
    expected = batches(stream, 7)
    loader = DataLoader(stream, batch_size=None, num_workers=2)
    assert_same(list(islice(iter(loader), 7)), expected)


@pytest.mark.parametrize("size, seed", [(1, 0), (7, 0), (10, 3), (SIZE, 11)])
def test_each_epoch_is_a_permutation(size, seed):
    """Every consecutive block of ``size`` positions (an epoch) holds each item exactly once."""
    epochs = 4
    stream = epoch_indices(size, seed, 0, epochs * size)
    assert stream.shape == (epochs * size,)
    for epoch in range(epochs):
        block = stream[epoch * size:(epoch + 1) * size]
        assert sorted(block.tolist()) == list(range(size))


@pytest.mark.parametrize("start, count", [(0, 5), (3, 20), (35, 4), (36, 40), (74, 1)])
def test_epoch_indices_window_is_a_slice_of_the_stream(start, count):
    """Positions start..start+count are the same slice of the stream from position 0."""
    assert torch.equal(epoch_indices(SIZE, 9, start, count), epoch_indices(SIZE, 9, 0, start + count)[start:])


def test_epochs_are_shuffled_differently():
    """Consecutive epochs are different permutations (the stream reshuffles every epoch)."""
    stream = epoch_indices(SIZE, 0, 0, 3 * SIZE)
    assert not torch.equal(stream[:SIZE], stream[SIZE:2 * SIZE])
    assert not torch.equal(stream[:SIZE], torch.arange(SIZE))


def test_permutation_is_drawn_once_per_epoch():
    """Streaming three epochs draws three permutations, not one per micro-batch (the cache's
    misses count the draws); and the cached one is the epoch's order."""
    size, batch = 50, 4
    epoch_permutation.cache_clear()
    stream = StepBatches(size, batch, make_batch, seed=6)
    drawn = torch.cat([indices for indices, _ in batches(stream, 3 * size // batch)])
    info = epoch_permutation.cache_info()
    assert info.misses == 3 and info.hits >= 3 * size // batch - 3
    assert torch.equal(drawn[:size], epoch_permutation(size, 6, 0))


@pytest.mark.parametrize("world", [2, 4])
def test_each_rank_builds_only_its_share(world):
    """make_batch of rank r receives the rank's B indices and B generators, never the global
    batch: the work of building and augmenting a batch is split across the ranks."""
    per_rank, seen = 3, []

    def recording(indices: torch.Tensor, generators: list[torch.Generator]):
        seen.append((len(indices), len(generators)))
        return make_batch(indices, generators)

    for rank in range(world):
        batches(StepBatches(SIZE, per_rank, recording, seed=0, rank=rank, world=world), 5)
    assert seen == [(per_rank, per_rank)] * (5 * world)
