"""LARC: layer-wise adaptive rate control around any torch optimizer (OpenSeq2Seq semantics)."""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Optional, Union

import torch
from torch import Tensor
from torch.optim import Optimizer

from .behaviour import set_mode
from .dispatch import implementation
from .hyperparameters import check_eta, check_hyperparameters
from .learning_rate import scalar_lr
from .norms import stacked_norms, stacked_sq_norms
from .wrapping import closure_loss, load_with_hooks, unhooked_step

__all__ = ["LARC", "check_larc_options", "larc_grad_scales", "warn_if_clipping_with_larc"]

MODES = ("clip", "scale")
# LARC's settings in each parameter group, and the group opt-out.
_GROUP_KEYS = ("larc_eta", "larc_mode", "larc_eps", "larc_min_update", "layer_adaptation")


def check_larc_options(*, eta: float, mode: str, eps: float, min_update: float) -> None:
    """Raise ``ValueError`` naming the first of LARC's options that it cannot take: the
    constructor's check, which config validation makes before anything is built."""
    check_eta(eta)
    if mode not in MODES:
        raise ValueError(f"Invalid LARC mode: {mode!r} (valid: {', '.join(MODES)})")
    check_hyperparameters({"eps": eps})
    if not min_update >= 0.0:
        raise ValueError(f"Invalid min_update value: {min_update}")


class LARC(Optimizer):
    r"""Wrap ``optimizer`` and rescale each tensor's gradient by a layer-wise factor before its step.

    With :math:`\gamma` the learning rate of the tensor's group, :math:`\eta` = ``eta``:

    .. math::
        s = \begin{cases}
        \min\!\Big(1, \max\!\big(\tfrac{\eta \lVert w \rVert}{\gamma (\lVert g \rVert + \epsilon)},
            \text{min\_update}\big)\Big) & \text{clip (default): rate } \min(\gamma, \eta\lVert w\rVert/\lVert g\rVert) \\
        \max\!\big(\tfrac{\eta \lVert w \rVert}{\lVert g \rVert + \epsilon}, \text{min\_update}\big)
            & \text{scale (LARS-like)}
        \end{cases}

    and the inner optimizer steps on :math:`s \cdot g`. A tensor with :math:`\lVert w \rVert = 0` or
    :math:`\lVert g \rVert = 0` keeps :math:`s = 1`, and so does every tensor of a parameter group
    with ``layer_adaptation=False`` (the registry's policy puts biases and normalisation weights
    there). The inner optimizer applies its own weight decay.

    LARC writes :math:`s \cdot g` into ``p.grad`` — the one place in this package that rewrites
    gradients — except for inner optimizers that offer ``step_with_grad_scale`` (``NovoGrad``),
    which take :math:`s` and :math:`\lVert g \rVert^2` and fold them into their own passes, and
    fused NovoGrad (``fuses_larc()``: the Triton kernels or the C++ kernel), which computes
    :math:`s` itself, and ``torch.optim.SGD`` where neither ``foreach`` nor ``fused`` was set on
    it: on CUDA the Triton path, one norm pass over w and g, then one pass applying :math:`s`,
    weight decay, momentum and the step; on the CPU (float32, without Nesterov) torch's fused SGD
    kernel, one call per tensor with :math:`s` folded into its coefficients. Both leave ``p.grad``
    as it was and keep the momentum buffers in SGD's own state (``state_dict`` is SGD's).

    The wrapper is a real ``torch.optim.Optimizer`` whose ``param_groups`` and ``state`` are the
    inner optimizer's own objects, so LR schedulers, ``state_dict``/``load_state_dict``,
    ``zero_grad``, Lightning and ``torch.amp.GradScaler`` (which skips ``step`` on inf/NaN,
    leaving all state untouched) work on it unchanged. Norms are float32 and never leave the
    device during ``step()``.

    ``defaults`` are the inner optimizer's plus LARC's, so schedulers that cycle momentum
    (``OneCycleLR``, ``CyclicLR``) find ``momentum`` or ``betas``. The step and
    ``load_state_dict`` hooks registered on LARC run once per call (the inner optimizer's step
    runs without the global step hooks again); a group added to the inner optimizer directly gets
    LARC's defaults at the next step. Complex parameters are supported where the inner optimizer
    supports them (norms of their real views); sparse gradients are refused.

    Args:
        optimizer: the inner optimizer.
        eta: trust coefficient :math:`\eta`, default 0.002.
        mode: ``"clip"`` (default) or ``"scale"``.
        eps: :math:`\epsilon` added to the gradient norm, default 1e-7.
        min_update: lower bound of :math:`s`, default 1e-7.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        eta: float = 0.002,
        mode: str = "clip",
        eps: float = 1e-7,
        min_update: float = 1e-7,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"LARC wraps a torch.optim.Optimizer, got {type(optimizer).__name__}")
        check_larc_options(eta=eta, mode=mode, eps=eps, min_update=min_update)
        self.optimizer = optimizer
        larc_defaults = dict(
            larc_eta=eta, larc_mode=mode, larc_eps=eps, larc_min_update=min_update,
            layer_adaptation=True,
        )
        super().__init__(optimizer.param_groups, {**optimizer.defaults, **larc_defaults})
        self._share_inner()

    def _share_inner(self) -> None:
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the inner optimizer, with LARC's defaults filled in."""
        if not any(param_group is group for group in self.optimizer.param_groups):
            self.optimizer.add_param_group(param_group)
            param_group = self.optimizer.param_groups[-1]
        for key, value in self.defaults.items():
            param_group.setdefault(key, value)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load through the inner optimizer (which knows its state's layout), then re-share; the
        load_state_dict hooks registered on LARC run around it, as ``torch.optim`` runs them."""
        def load(state_dict: dict[str, Any]) -> None:
            self.optimizer.load_state_dict(state_dict)
            self._share_inner()

        load_with_hooks(self, state_dict, load)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "optimizer": self.optimizer}

    def __repr__(self) -> str:
        group = self.param_groups[0]
        return (
            f"LARC(eta={group['larc_eta']}, mode={group['larc_mode']!r}, eps={group['larc_eps']}, "
            f"min_update={group['larc_min_update']}) over {self.optimizer!r}"
        )

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        """Evaluate ``closure`` once (if given), rescale gradients layer-wise, step the inner optimizer."""
        loss = closure_loss(closure)
        for group in self.param_groups:
            for key in _GROUP_KEYS:
                group.setdefault(key, self.defaults[key])  # a group added to the inner optimizer directly
            if any(p.grad is not None and p.grad.is_sparse for p in group["params"]):
                raise RuntimeError("LARC does not support sparse gradients")
        fuses_larc = getattr(self.optimizer, "fuses_larc", None)
        if fuses_larc is not None and fuses_larc():
            self.optimizer.step_with_larc()  # the inner kernel computes s in its own norm pass
            return loss
        sgd_path = self._sgd_path() if isinstance(self.optimizer, torch.optim.SGD) else None
        if sgd_path == "triton":
            for group in self.param_groups:
                _triton_sgd_step(self.optimizer, group)
            return loss
        scales: dict[Tensor, Tensor] = {}
        sq_norms: dict[Tensor, Tensor] = {}
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            group_sq_norms, group_scales = larc_grad_scales(
                params,
                [p.grad for p in params],
                lr=group["lr"],
                eta=group["larc_eta"],
                mode=group["larc_mode"],
                eps=group["larc_eps"],
                min_update=group["larc_min_update"],
                adapt=group["layer_adaptation"],
            )
            scales.update(zip(params, group_scales))
            sq_norms.update(zip(params, group_sq_norms))
        if sgd_path == "sgd_kernel" and _larc_sgd_kernel_steps(self.optimizer, scales):
            return loss
        fold = getattr(self.optimizer, "step_with_grad_scale", None)
        if fold is not None:
            fold(scales, sq_norms)
        else:
            if scales:
                torch._foreach_mul_([p.grad for p in scales], list(scales.values()))
            unhooked_step(self.optimizer)
        return loss

    @torch.no_grad()
    def trust_ratios(self, params: list[Tensor]) -> list[Tensor]:
        """The factor s this step would apply to each of ``params`` given their gradients now (NaN
        for a tensor without a gradient or outside the groups): what layer statistics record."""
        factors: dict[Tensor, Tensor] = {}
        wanted = set(params)
        for group in self.param_groups:
            group_params = [p for p in group["params"] if p in wanted and p.grad is not None]
            if group_params:
                settings = {key: group.get(key, self.defaults[key]) for key in _GROUP_KEYS}
                _, scales = larc_grad_scales(
                    group_params, [p.grad for p in group_params], lr=scalar_lr(group["lr"]),
                    eta=settings["larc_eta"], mode=settings["larc_mode"], eps=settings["larc_eps"],
                    min_update=settings["larc_min_update"], adapt=settings["layer_adaptation"],
                )
                factors.update(zip(group_params, scales))
        return [factors.get(p, torch.tensor(float("nan"))) for p in params]

    def train(self) -> None:
        """Training mode for an inner optimizer that has one (Schedule-Free)."""
        set_mode(self.optimizer, training=True)

    def eval(self) -> None:
        """Evaluation mode for an inner optimizer that has one (Schedule-Free)."""
        set_mode(self.optimizer, training=False)

    def _sgd_path(self) -> Optional[str]:
        """The path of the inner SGD's groups where LARC has its own step for it: ``triton`` (CUDA)
        or ``sgd_kernel`` (the CPU default for float32, without Nesterov), the same for every
        group (``optimizers.dispatch``). None where SGD steps itself, with its own fused or foreach
        kernels, on LARC's rescaled gradients: no warning."""
        paths = set()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if group.get("maximize") or group.get("differentiable"):
                return None
            states = [self.state.get(p, {}) for p in params]  # .get: asking makes no state
            buffers = [s["momentum_buffer"] for s in states if s.get("momentum_buffer") is not None]
            paths.add(implementation([*params, *(p.grad for p in params), *buffers], fused=group.get("fused"),
                                     foreach=group.get("foreach"), sgd_kernel=not group["nesterov"], warn=False))
        return paths.pop() if len(paths) == 1 and paths <= {"triton", "sgd_kernel"} else None


def _larc_sgd_kernel_steps(optimizer: Optimizer, scales: dict[Tensor, Tensor]) -> bool:
    r"""LARC over ``torch.optim.SGD`` in torch's fused SGD kernel on the CPU, one call per tensor,
    with ``p.grad`` left as it was; False (nothing changed) where a factor s is not finite and
    positive, and SGD then steps on rescaled gradients.

    SGD on s·g: :math:`d = s g + \lambda w`; :math:`b \leftarrow d` on a tensor's first step, else
    :math:`\mu b + (1-\text{dampening})\, d`; :math:`w \leftarrow w - \gamma b` (without momentum
    :math:`w \leftarrow w - \gamma d`). The kernel computes
    :math:`b \leftarrow \mu b + (1-\text{dampening}')(g + \lambda' w)`, :math:`w \leftarrow w - \gamma' b`
    (without momentum :math:`w \leftarrow w - \gamma' (g + \lambda' w)`), and :math:`d = s (g + (\lambda/s) w)`,
    so per tensor :math:`\lambda' = \lambda / s` and :math:`1-\text{dampening}' = s (1-\text{dampening})`,
    or :math:`s` into a zero buffer on the first step; without momentum :math:`\gamma' = \gamma s`.
    Nesterov's step adds :math:`\mu b` to d, which this cannot express (the caller does not
    choose this path for it).
    """
    factors = {p: float(s) for p, s in scales.items()}
    if not all(math.isfinite(s) and s > 0 for s in factors.values()):
        return False
    for group in optimizer.param_groups:
        momentum, dampening, decay = group["momentum"], group["dampening"], group["weight_decay"]
        lr = float(group["lr"])
        for p in group["params"]:
            if p.grad is None:
                continue
            s = factors[p]
            if momentum == 0:
                torch._fused_sgd_([p], [p.grad], [], weight_decay=decay / s, momentum=0.0, lr=lr * s,
                                  dampening=0.0, nesterov=False, maximize=False, is_first_step=False)
                continue
            state = optimizer.state[p]
            rate = s * (1.0 - dampening)
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                rate = s
            torch._fused_sgd_([p], [p.grad], [state["momentum_buffer"]], weight_decay=decay / s, momentum=momentum,
                              lr=lr, dampening=1.0 - rate, nesterov=False, maximize=False, is_first_step=False)
    return True


def _triton_sgd_step(optimizer: Optimizer, group: dict[str, Any]) -> None:
    """LARC over ``torch.optim.SGD`` in the Triton kernels, for one group: s from ‖w‖ and ‖g‖,
    then d = s·g + λw, buf ← d on a tensor's first step else μ buf + (1−dampening)·d,
    w ← w − γ·(d + μ buf if Nesterov else buf) (without momentum w ← w − γ·d), as SGD steps on
    s·g. Buffers SGD has not made yet are made here, as SGD would (like the parameter)."""
    from . import triton_kernels

    params = [p for p in group["params"] if p.grad is not None]
    if not params:
        return
    momentum = group["momentum"]
    buffers, first = None, [False] * len(params)
    if momentum != 0:
        buffers = []
        for i, p in enumerate(params):
            state = optimizer.state[p]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                first[i] = True
            buffers.append(state["momentum_buffer"])
    grads = [p.grad for p in params]
    for indices in triton_kernels.dtype_groups(params, grads, buffers):
        triton_kernels.momentum_step(
            [params[i] for i in indices], [grads[i] for i in indices],
            [buffers[i] for i in indices] if buffers is not None else None, [first[i] for i in indices],
            rule=group["larc_mode"] if group["layer_adaptation"] else "none", eta=group["larc_eta"],
            factor_eps=group["larc_eps"], min_update=group["larc_min_update"], lr=group["lr"],
            momentum=momentum, buffer_rate=1.0 - group["dampening"], lr_on_buffer=False,
            weight_decay=group["weight_decay"], nesterov=group["nesterov"],
        )


def larc_grad_scales(
    params: list[Tensor],
    grads: list[Tensor],
    *,
    lr: Union[float, Tensor],
    eta: float,
    mode: str,
    eps: float,
    min_update: float,
    adapt: bool = True,
) -> tuple[list[Tensor], list[Tensor]]:
    """Squared gradient norms and LARC factors ``s`` of tensors on one device (0-dim each, float32,
    or float64 for float64 tensors).

    ``lr`` may be a 1-element tensor of any shape. The per-tensor norms are stacked so that the
    factors cost a handful of kernels, not a handful per tensor.
    """
    lr = scalar_lr(lr)  # a [1] or [1, 1] tensor rate divides like a float
    grad_sq_norms = stacked_sq_norms(grads)
    grad_norms = grad_sq_norms.sqrt()
    if adapt:
        weight_norms = stacked_norms(params)
        ratios = eta * weight_norms / (grad_norms + eps)
        if mode == "clip":
            # lr = 0 (a warm-up's first step) gives inf, which the clip turns into 1.
            ratios = (ratios / lr).clamp(min=min_update, max=1.0)
        else:
            ratios = ratios.clamp(min=min_update)
        scales = torch.where((weight_norms > 0) & (grad_norms > 0), ratios, torch.ones_like(ratios))
    else:
        scales = torch.ones_like(grad_norms)
    return list(grad_sq_norms.unbind(0)), list(scales.unbind(0))


def warn_if_clipping_with_larc(optimizer: Optimizer, gradient_clip_val: Optional[float]) -> bool:
    """Warn when gradient-norm clipping is combined with LARC (OpenSeq2Seq forbids it: LARC's
    clip already bounds each layer's step, and a global clip changes the norms LARC reads).
    Returns whether it warned."""
    if gradient_clip_val and isinstance(optimizer, LARC):
        warnings.warn(
            f"gradient clipping (gradient_clip_val={gradient_clip_val}) combined with LARC: "
            "OpenSeq2Seq forbids this combination; LARC already bounds each layer's update",
            UserWarning,
            stacklevel=2,
        )
        return True
    return False
