"""LARS: SGD with momentum and a layer-wise trust ratio (You, Gitman & Ginsburg, 2017)."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch
from torch import Tensor
from torch.optim import Optimizer

from .dispatch import implementation
from .hyperparameters import check_eta, check_hyperparameters
from .learning_rate import scalar_lr
from .norms import stacked_norms

__all__ = ["LARS", "lars_trust_ratios"]


class LARS(Optimizer):
    r"""Layer-wise Adaptive Rate Scaling, as in Algorithm 1 of You et al. (2017).

    For every parameter tensor :math:`w` with gradient :math:`g`, global rate :math:`\gamma`,
    weight decay :math:`\beta` and trust coefficient :math:`\eta`:

    .. math::
        \begin{aligned}
        \lambda &= \frac{\eta \lVert w \rVert}{\lVert g \rVert + \beta \lVert w \rVert + \epsilon} \\
        v &\leftarrow \mu v + \gamma \lambda (g + \beta w) \\
        w &\leftarrow w - v
        \end{aligned}

    :math:`\lambda = 1` where :math:`\lVert w \rVert = 0` or :math:`\lVert g \rVert = 0`, and for
    every tensor of a group with ``layer_adaptation=False`` (biases and normalisation weights
    under the registry's policy). The rate sits inside the momentum, as in the paper.

    Like ``torch.optim`` optimizers, LARS takes named parameters, a 1-element tensor ``lr``
    (read inside the Triton kernels where it lives on the tensors' device), complex parameters
    (as their real views: :math:`\lVert w \rVert` and :math:`\lVert g \rVert` over all real
    and imaginary parts) and state_dicts saved before the ``fused`` option existed. Sparse
    gradients are refused.

    Args:
        params: iterable of parameters, named parameters or dicts defining parameter groups.
        lr: global learning rate :math:`\gamma` (a float or a 1-element tensor), default 1e-3.
        momentum: :math:`\mu`, default 0.9.
        weight_decay: :math:`\beta`, default 0.0.
        eta: trust coefficient :math:`\eta`, default 0.001.
        eps: :math:`\epsilon`, default 1e-8.
        fused: ``True`` forces the multi-tensor Triton kernels (``optimizers/triton_kernels.py``:
            one norm pass and one update pass over all tensors of a group), ``False`` the
            ``torch._foreach`` path; unset (None), CUDA takes the kernels and the CPU ``foreach``
            (see ``optimizers.dispatch``). The momentum buffer is laid out like the parameter on
            every path; the kernels compute in float32.
    """

    def __init__(
        self,
        params: Any,
        lr: Union[float, Tensor] = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        eps: float = 1e-8,
        *,
        fused: Optional[bool] = None,
    ) -> None:
        check_hyperparameters(dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eps=eps))
        if not momentum < 1.0:  # heavy-ball momentum of 1 or more never forgets: LARS refuses it
            raise ValueError(f"Invalid momentum value: {momentum}")
        check_eta(eta)
        defaults = dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, eps=eps,
            layer_adaptation=True, fused=fused,
        )
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore from a pickle or a loaded state_dict; a state saved before the ``fused``
        option existed gets its default."""
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("fused", None)

    @torch.no_grad()
    def trust_ratios(self, params: list[Tensor]) -> list[Tensor]:
        """λ this step would apply to each of ``params`` given their gradients now (1 in groups
        with ``layer_adaptation=False``; NaN for a tensor without a gradient or outside the
        groups): what layer statistics record."""
        ratios: dict[Tensor, Tensor] = {}
        wanted = set(params)
        for group in self.param_groups:
            group_params = [p for p in group["params"] if p in wanted and p.grad is not None]
            if not group_params:
                continue
            if group["layer_adaptation"]:
                scales = list(lars_trust_ratios(group_params, [p.grad for p in group_params], eta=group["eta"],
                                                weight_decay=group["weight_decay"], eps=group["eps"]).unbind(0))
            else:
                scales = [torch.ones(())] * len(group_params)
            ratios.update(zip(group_params, scales))
        return [ratios.get(p, torch.tensor(float("nan"))) for p in params]

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        """Perform one optimisation step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("LARS does not support sparse gradients")
            grads = [p.grad for p in params]
            path = implementation([*params, *grads], fused=group["fused"], foreach=None, name="LARS")
            bufs = [self._momentum_buffer(p) for p in params]  # made after the path is known to exist
            update = _triton_lars_update if path == "triton" else _lars_update
            update(
                params, grads, bufs,
                lr=scalar_lr(group["lr"]), momentum=group["momentum"], weight_decay=group["weight_decay"],
                eta=group["eta"], eps=group["eps"], adapt=group["layer_adaptation"],
            )
        return loss

    def _momentum_buffer(self, p: Tensor) -> Tensor:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["momentum_buffer"]


def lars_trust_ratios(params: list[Tensor], grads: list[Tensor], *, eta: float, weight_decay: float,
                      eps: float) -> Tensor:
    """λ per tensor, stacked (float32, float64 for float64 tensors): η‖w‖ / (‖g‖ + β‖w‖ + ε), and
    1 where a norm is 0."""
    weight_norms = stacked_norms(params)
    grad_norms = stacked_norms(grads)
    trust = eta * weight_norms / (grad_norms + weight_decay * weight_norms + eps)
    return torch.where((weight_norms > 0) & (grad_norms > 0), trust, torch.ones_like(trust))


def _lars_update(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor],
    *,
    lr: Union[float, Tensor],
    momentum: float,
    weight_decay: float,
    eta: float,
    eps: float,
    adapt: bool,
) -> None:
    """Multi-tensor LARS step (see ``LARS``); trust ratios are computed stacked, on the device."""
    update = torch._foreach_add(grads, params, alpha=weight_decay) if weight_decay else list(grads)
    if adapt:
        trust = lars_trust_ratios(params, grads, eta=eta, weight_decay=weight_decay, eps=eps)
        update = torch._foreach_mul(update, list((lr * trust).unbind(0)))
    else:
        update = torch._foreach_mul(update, lr)
    torch._foreach_mul_(bufs, momentum)
    torch._foreach_add_(bufs, update)
    torch._foreach_sub_(params, bufs)


def _triton_lars_update(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor],
    *,
    lr: Union[float, Tensor],
    momentum: float,
    weight_decay: float,
    eta: float,
    eps: float,
    adapt: bool,
) -> None:
    """``_lars_update`` in the Triton kernels: λ from one norm pass, then v and w in one pass."""
    from . import triton_kernels

    for indices in triton_kernels.dtype_groups(params, grads, bufs):
        triton_kernels.momentum_step(
            [params[i] for i in indices], [grads[i] for i in indices], [bufs[i] for i in indices],
            [False] * len(indices), rule="lars" if adapt else "none", eta=eta, factor_eps=eps,
            min_update=0.0, lr=lr, momentum=momentum, buffer_rate=1.0, lr_on_buffer=True,
            weight_decay=weight_decay, nesterov=False,
        )
