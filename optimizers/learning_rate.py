"""Learning rates as ``torch.optim`` takes them: a float, or a 1-element tensor (what compiled
training loops and CUDA-graph capture pass, so that changing the rate needs no recompilation)."""

from __future__ import annotations

from typing import Union

from torch import Tensor

__all__ = ["check_lr", "scalar_lr"]


def check_lr(lr: Union[float, Tensor]) -> None:
    """Raise torch's ``ValueError`` for a rate no ``torch.optim`` optimizer takes: a tensor of
    more or fewer than one element, or a negative value."""
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")


def scalar_lr(lr: Union[float, Tensor]) -> Union[float, Tensor]:
    """A tensor rate as a 0-dim tensor (shapes [1] and [1, 1] included), as torch's own steps
    squeeze it: it then broadcasts against per-tensor values as a float does."""
    return lr.reshape(()) if isinstance(lr, Tensor) else lr
