"""The memory an optimizer's state holds: the summary's ``optimizer_state_bytes`` and the
optimizer benchmark's state column."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["optimizer_state_bytes"]


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the optimizer's state tensors (step counters included)."""
    return sum(
        v.numel() * v.element_size()
        for state in optimizer.state.values() for v in state.values() if isinstance(v, Tensor)
    )
