"""``PeakMemory`` on the CPU: the peak since ``reset``, without the paused stretches."""

from __future__ import annotations

import torch

from experiments.callbacks.peak_memory import PeakMemory

MIB = 2**20


def touch(mib: int) -> torch.Tensor:
    """``mib`` MiB of resident memory (written, so the pages are really there)."""
    return torch.ones(mib * MIB // 4)


def test_reset_forgets_the_earlier_peak():
    meter = PeakMemory(torch.device("cpu"))
    block = touch(400)
    del block
    before = meter.peak()
    meter.reset()
    assert meter.peak() < before - 300 * MIB


def test_a_paused_stretch_is_left_out_and_the_rest_counts():
    meter = PeakMemory(torch.device("cpu"))
    meter.reset()
    block = touch(200)  # counted: training memory
    del block
    counted = meter.peak()
    meter.pause()
    copies = touch(600)  # left out: e.g. the layer statistics' weight copies
    del copies
    meter.resume()
    assert abs(meter.peak() - counted) < 100 * MIB
    block = touch(300)  # counted again after resume
    assert meter.peak() > counted + 50 * MIB
    del block
