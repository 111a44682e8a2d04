"""Learning-rate schedules as pure functions of the step, and batch-size scaling of the rate."""

from __future__ import annotations

import math

__all__ = ["lr_multiplier", "scaled_lr"]


def lr_multiplier(step: int, *, name: str, max_steps: int, warmup_steps: int = 0,
                  min_lr_ratio: float = 0.0, power: float = 2.0) -> float:
    """Factor on the peak rate at ``step``: linear warm-up over ``warmup_steps`` (from 1/warmup),
    then constant, cosine or polynomial decay to ``min_lr_ratio`` at ``max_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if name == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    if name == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif name == "polynomial":
        decay = (1.0 - progress) ** power
    else:
        raise ValueError(f"Unknown schedule {name!r}; valid: constant, cosine, polynomial")
    return min_lr_ratio + (1.0 - min_lr_ratio) * decay


def scaled_lr(lr: float, rule: str, batch_size: int, reference_batch_size: int) -> float:
    """``lr`` scaled from ``reference_batch_size`` to ``batch_size``: none, linear (Goyal et al.)
    or sqrt (Krizhevsky; Hoffer et al.)."""
    ratio = batch_size / reference_batch_size
    if rule == "none":
        return lr
    if rule == "linear":
        return lr * ratio
    if rule == "sqrt":
        return lr * math.sqrt(ratio)
    raise ValueError(f"Unknown lr_scaling {rule!r}; valid: none, linear, sqrt")
