"""What a training loop learns from an optimizer by what it does, never by its name: whether it
has a train/eval mode (Schedule-Free), whether its update of a tensor depends on the whole tensor
(layer-wise: NovoGrad, LARS, LARC, LAMB, Muon, Adafactor), whether its ``step`` evaluates the
closure it is given, and the trust ratios it applies.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

__all__ = ["set_mode", "is_layer_wise", "evaluates_closure", "trust_ratios"]


def set_mode(optimizer: Optimizer, training: bool) -> None:
    """``optimizer.train()`` or ``optimizer.eval()`` where it has them (Schedule-Free optimizers
    keep two points and must be told which the weights hold); nothing for the others."""
    switch = getattr(optimizer, "train" if training else "eval", None)
    if callable(switch):
        switch()


def trust_ratios(optimizer: Optimizer, params: list[Tensor]) -> Optional[list[float]]:
    """The layer-wise factor the optimizer is about to apply to each of ``params`` (NaN for a
    tensor it does not step), from its ``trust_ratios(params)`` method (``LARC``, ``LARS``); None
    for an optimizer without one."""
    measure = getattr(optimizer, "trust_ratios", None)
    return [float(s) for s in measure(params)] if callable(measure) else None


def _run(name: str, tensors: list[Tensor], grads: list[list[Tensor]], options: dict[str, Any]) -> list[Tensor]:
    from .registry import build_optimizer  # the registry builds on this module's neighbours

    params = [nn.Parameter(t.clone()) for t in tensors]
    optimizer = build_optimizer(name, params, exclude_bias_and_norm=False, **options)
    set_mode(optimizer, training=True)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        optimizer.step()
    return [p.detach() for p in params]


def is_layer_wise(name: str, **options: Any) -> bool:
    """Whether ``name`` (with ``options``) updates a tensor differently once it is cut into shards,
    as FSDP cuts it: three steps on a 4×8 float64 matrix against the same steps on its two halves
    (flattened, each half with its own scale of weights and gradients, so that any per-tensor
    norm differs). An optimizer that refuses the shards is layer-wise too. Element-wise ones
    (SGD, Adam, Lion, Schedule-Free AdamW) give the same numbers either way."""
    options = {"lr": 0.01, **options}
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 8, generator=generator, dtype=torch.float64) * 0.01
    weight[2:] *= 100
    grads = [torch.randn(4, 8, generator=generator, dtype=torch.float64) for _ in range(3)]
    for g in grads:
        g[:2] *= 100
    (whole,) = _run(name, [weight], [[g] for g in grads], options)
    try:
        halves = _run(name, list(weight.flatten().chunk(2)), [list(g.flatten().chunk(2)) for g in grads], options)
    except (ValueError, RuntimeError):
        return True
    return not torch.allclose(whole.flatten(), torch.cat(halves), rtol=1e-9, atol=0.0)


def evaluates_closure(name: str, **options: Any) -> bool:
    """Whether ``name``'s ``step(closure)`` calls the closure, as every ``torch.optim`` optimizer
    does: Lightning hands the forward and backward pass to ``step`` as that closure, so an
    optimizer that ignores it (or whose ``step`` takes none) never sees a gradient. Asked of one
    step on a 2×2 parameter; an optimizer that fails there for another reason is left to the run
    to tell (True)."""
    from .registry import build_optimizer

    param = nn.Parameter(torch.ones(2, 2))
    try:
        optimizer = build_optimizer(name, [param], exclude_bias_and_norm=False, **{"lr": 0.01, **options})
    except Exception:
        return True
    if not inspect.signature(optimizer.step).parameters:
        return False
    calls = 0

    def closure() -> Tensor:
        nonlocal calls
        calls += 1
        with torch.enable_grad():
            param.grad = None
            loss = param.square().sum()
            loss.backward()
        return loss

    set_mode(optimizer, training=True)
    try:
        optimizer.step(closure)
    except Exception:
        return True
    return calls > 0
