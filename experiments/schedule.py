"""Learning-rate schedules as pure functions of the step, and batch-size scaling of the rate."""

from __future__ import annotations

import math
from typing import Callable

__all__ = ["lr_multiplier", "scaled_lr", "SCHEDULES", "LR_SCALINGS"]

# Each decaying schedule: the fraction of the steps after warm-up taken (0 → 1) → the decay, from
# 1 to 0. "constant" has none: it holds the peak rate after warm-up, min_lr_ratio notwithstanding.
_DECAYS: dict[str, Callable[[float, float], float]] = {
    "cosine": lambda progress, power: 0.5 * (1.0 + math.cos(math.pi * progress)),
    "polynomial": lambda progress, power: (1.0 - progress) ** power,
}
SCHEDULES = ("constant", *_DECAYS)  # the values of schedule.name

# Each batch-size scaling rule: batch size / reference batch size → the factor on the rate.
_SCALINGS: dict[str, Callable[[float], float]] = {
    "none": lambda ratio: 1.0,
    "linear": lambda ratio: ratio,  # Goyal et al. 2017
    "sqrt": math.sqrt,  # Krizhevsky 2014; Hoffer et al. 2017
}
LR_SCALINGS = tuple(_SCALINGS)  # the values of optimizer.lr_scaling


def lr_multiplier(step: int, *, name: str, max_steps: int, warmup_steps: int = 0,
                  min_lr_ratio: float = 0.0, power: float = 2.0) -> float:
    """Factor on the peak rate at ``step``: linear warm-up over ``warmup_steps`` (from 1/warmup),
    then constant, or cosine or polynomial decay to ``min_lr_ratio`` at ``max_steps``:
    ``min_lr_ratio + (1 - min_lr_ratio) * decay(progress)``."""
    if name not in SCHEDULES:
        raise ValueError(f"Unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if name == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * _DECAYS[name](progress, power)


def scaled_lr(lr: float, rule: str, batch_size: int, reference_batch_size: int) -> float:
    """``lr`` scaled from ``reference_batch_size`` to ``batch_size`` by ``rule`` (``LR_SCALINGS``)."""
    if rule not in _SCALINGS:
        raise ValueError(f"Unknown lr_scaling {rule!r}; valid: {', '.join(LR_SCALINGS)}")
    return lr * _SCALINGS[rule](batch_size / reference_batch_size)
