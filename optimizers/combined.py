"""Several optimizers over disjoint parameters, presented as one ``torch.optim.Optimizer``.

What a factory returns when it splits a model's parameters between optimizers itself (Muon for
the hidden matrices, AdamW for the rest): Lightning, LR schedulers, ``GradScaler`` and
checkpoints see one optimizer.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Optional, Sequence

import torch
from torch.optim import Optimizer

from .behaviour import set_mode
from .wrapping import closure_loss, load_with_hooks, unhooked_step

__all__ = ["CombinedOptimizer"]


class CombinedOptimizer(Optimizer):
    """Step ``optimizers`` (over disjoint parameters) as one optimizer.

    ``param_groups`` is the inner optimizers' groups, in order, as the same dict objects, and
    ``state`` is one mapping that every inner optimizer writes into: an LR scheduler's change of a
    group's ``lr`` reaches the inner optimizer, and ``state_dict`` is torch's layout over all
    groups. ``load_state_dict`` hands each inner optimizer its own groups and state, so that its
    own loading (dtype casts, defaults of older states) runs. ``step(closure)`` evaluates the
    closure once, then steps each inner optimizer. ``train()``/``eval()`` reach the inner
    optimizers that have them (Schedule-Free ones).
    """

    def __init__(self, optimizers: Sequence[Optimizer]) -> None:
        if not optimizers or not all(isinstance(o, Optimizer) for o in optimizers):
            raise TypeError("CombinedOptimizer takes a non-empty list of torch.optim.Optimizer")
        self.optimizers = list(optimizers)
        groups = [group for optimizer in self.optimizers for group in optimizer.param_groups]
        super().__init__(groups, {})
        self._share_inner()

    def _share_inner(self) -> None:
        self.param_groups = [group for optimizer in self.optimizers for group in optimizer.param_groups]
        state: defaultdict[Any, dict[str, Any]] = defaultdict(dict)
        for optimizer in self.optimizers:
            state.update(optimizer.state)
        for optimizer in self.optimizers:
            optimizer.state = state
        self.state = state

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Groups belong to an inner optimizer: add them there (torch's ``__init__`` passes the
        inner groups through here once, before they are shared)."""
        if not any(param_group is group for optimizer in self.optimizers for group in optimizer.param_groups):
            raise TypeError("add a parameter group to one of CombinedOptimizer.optimizers")
        self.param_groups.append(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Split the state by the inner optimizers' groups and load each, then share again."""
        load_with_hooks(self, state_dict, self._load_inner)

    def _load_inner(self, state_dict: dict[str, Any]) -> None:
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        start = 0
        for optimizer in self.optimizers:
            groups = saved_groups[start:start + len(optimizer.param_groups)]
            start += len(groups)
            ids = {i for group in groups for i in group["params"]}
            optimizer.load_state_dict({
                "state": {i: s for i, s in state_dict["state"].items() if i in ids}, "param_groups": groups,
            })
        self._share_inner()

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "optimizers": self.optimizers}

    def __repr__(self) -> str:
        return "CombinedOptimizer(" + ", ".join(repr(o) for o in self.optimizers) + ")"

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        """Evaluate ``closure`` once (if given), then step every inner optimizer."""
        loss = closure_loss(closure)
        for optimizer in self.optimizers:
            unhooked_step(optimizer)  # this step's hooks have run once already
        return loss

    def train(self) -> None:
        """Training mode for the inner optimizers that have one (Schedule-Free)."""
        for optimizer in self.optimizers:
            set_mode(optimizer, training=True)

    def eval(self) -> None:
        """Evaluation mode for the inner optimizers that have one (Schedule-Free)."""
        for optimizer in self.optimizers:
            set_mode(optimizer, training=False)
