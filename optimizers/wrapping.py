"""What an optimizer built around others (``LARC``, ``CombinedOptimizer``) does the same way:
evaluate the closure once, step the inner ones without running the step hooks twice, run its own
``load_state_dict`` hooks once around the inner loading."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch.optim import Optimizer

__all__ = ["closure_loss", "unhooked_step", "load_with_hooks"]


def closure_loss(closure: Optional[Callable[[], float]]) -> Optional[float]:
    """The loss of ``closure`` evaluated once, with gradients (a wrapper's ``step`` runs under
    ``no_grad``), or None without one: the inner optimizers then step without it."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def unhooked_step(optimizer: Optimizer) -> None:
    """The inner optimizer's step without ``torch.optim``'s step hooks: it is a part of the
    wrapper's step, whose hooks (global ones included) have run once already."""
    step = type(optimizer).step
    getattr(step, "__wrapped__", step)(optimizer)


def load_with_hooks(wrapper: Optimizer, state_dict: dict[str, Any], load: Callable[[dict[str, Any]], None]) -> None:
    """``load(state_dict)`` between the load_state_dict pre- and post-hooks registered on
    ``wrapper``, as ``torch.optim`` runs them around its own loading."""
    state_dict = state_dict.copy()
    for pre_hook in wrapper._optimizer_load_state_dict_pre_hooks.values():
        result = pre_hook(wrapper, state_dict)
        if result is not None:
            state_dict = result
    load(state_dict)
    for post_hook in wrapper._optimizer_load_state_dict_post_hooks.values():
        post_hook(wrapper)
