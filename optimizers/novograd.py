"""NovoGrad: SGD with momentum over layer-wise normalised gradients (Ginsburg et al., 2019).

This file depends on torch alone: copy it into another project and it works.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional, Union

import torch
from torch import Tensor
from torch.optim import Optimizer

from .hyperparameters import check_hyperparameters
from .norms import stacked_sq_norms

__all__ = ["NovoGrad", "novograd"]

Scalar = Union[float, Tensor]
_LOW_PRECISION = (torch.float16, torch.bfloat16)


_LARC_MODES = {"clip": 1, "scale": 2}
_LARC_PATHS = ("triton", "cpu_kernel")  # the paths that compute LARC's factor themselves


def _state_dtype(p: Tensor) -> torch.dtype:
    """float32 for float16/bfloat16 parameters (their norms and moments need the range)."""
    return torch.float32 if p.dtype in _LOW_PRECISION else p.dtype


def _step_count(step: Union[float, Tensor]) -> Tensor:
    """A saved step (a tensor anywhere, or a plain number from older checkpoints) as the CPU
    float32 count ``step()`` reads without waiting for a device."""
    return torch.tensor(float(step), dtype=torch.float32)


def _real_views(tensors: list[Tensor]) -> list[Tensor]:
    """Complex tensors as their real views (``[..., 2]``): NovoGrad's update is element-wise and
    linear in each real and imaginary part, and ‖g‖² = Σ|gᵢ|² is the real view's squared norm,
    so every path steps a complex tensor exactly as it steps its real view."""
    return [torch.view_as_real(t) if t.is_complex() else t for t in tensors]


class NovoGrad(Optimizer):
    r"""NovoGrad, with one second moment per layer (parameter tensor) instead of per weight.

    For every parameter tensor :math:`w` with gradient :math:`g_t` at step :math:`t`:

    .. math::
        \begin{aligned}
        v_t &= \begin{cases} \lVert g_t \rVert^2 & t = 1 \text{ (unless init\_zero)} \\
               \beta_2 v_{t-1} + (1-\beta_2) \lVert g_t \rVert^2 & \text{otherwise} \end{cases} \\
        m_t &= \beta_1 m_{t-1} + \beta_3 \Big( \frac{g_t}{\sqrt{\hat v_t} + \epsilon} + d\, w_{t-1} \Big) \\
        w_t &= w_{t-1} - \alpha\, \hat m_t
        \end{aligned}

    with :math:`\beta_3 = 1-\beta_1` if ``grad_averaging`` else 1, and, if ``bias_correction``,
    :math:`\hat v_t = v_t / (1-\beta_2^t)` and :math:`\hat m_t = m_t / (1-\beta_1^t)`
    (otherwise the hats are no-ops). With ``amsgrad`` the running maximum of :math:`v_t` takes its
    place in the denominator. Note that ``bias_correction`` without ``init_zero`` divides an
    already unbiased first :math:`v_1 = \lVert g_1 \rVert^2` by :math:`1-\beta_2` (a smaller first
    step); apex does exactly this, so ``novograd_apex`` keeps it. The state is one buffer like
    the parameter (:math:`m`) and one float32 scalar (:math:`v`) per tensor: half of Adam's memory.

    Two switches reproduce other code bases (see the registry's ``novograd_os2s`` and
    ``novograd_apex``):

    * ``eps_inside_sqrt``: the denominator is :math:`\sqrt{\hat v_t + \epsilon}` (OpenSeq2Seq).
    * ``reg_inside_moment=False``: apex's default "decoupled" mode, where the moment averages the
      raw gradient and normalisation and weight decay act on the update:
      :math:`m_t = \beta_1 m_{t-1} + \beta_3 g_t`,
      :math:`w_t = w_{t-1} - \alpha (\hat m_t / (\sqrt{\hat v_t} + \epsilon) + d\, w_{t-1})`.

    Norms, :math:`v` and :math:`m` are kept in float32 for float16/bfloat16 parameters.
    ``step()`` never synchronises with the device: the step count lives on the CPU, as in
    ``torch.optim.Adam`` (so a CUDA graph cannot capture the step).

    What ``torch.optim`` optimizers accept, this one does too: named parameters, a learning rate
    given as a 1-element tensor (read inside the Triton kernels; read on the host by the other
    paths, one synchronisation per step where it lives on a GPU), complex parameters (stepped as
    their real views, :math:`\lVert g \rVert^2 = \sum |g_i|^2`), state_dicts whose ``step`` is a
    plain number or that predate the ``foreach``/``fused`` options, and the step and
    ``load_state_dict`` hooks. Sparse gradients are refused (one ``RuntimeError``).

    Args:
        params: iterable of parameters, named parameters or dicts defining parameter groups.
        lr: learning rate :math:`\alpha`, a float or a 1-element tensor (no universal default;
            1e-3 if not given).
        betas: :math:`(\beta_1, \beta_2)`, default (0.95, 0.98).
        eps: :math:`\epsilon`, default 1e-8.
        weight_decay: :math:`d`, decoupled, applied inside the moment; default 0.001.
        grad_averaging: multiply the added term by :math:`1-\beta_1`; default False.
        amsgrad: use the running maximum of :math:`v`; default False.
        bias_correction: Adam-style bias correction of :math:`m` and :math:`v`; default False.
        init_zero: start :math:`v` at 0 instead of the first squared norm; default False.
        eps_inside_sqrt: :math:`\sqrt{\hat v + \epsilon}` instead of :math:`\sqrt{\hat v} + \epsilon`;
            default False.
        reg_inside_moment: normalise and decay inside the moment (the paper); default True.
        foreach: ``True`` forces the multi-tensor ``torch._foreach`` path, ``False`` the
            single-tensor reference.
        fused: ``True`` forces a fused step: the Triton kernels on CUDA, a C++ kernel for float32
            CPU tensors (built on first use), else the single-tensor reference under
            ``torch.compile`` (which, past dynamo's ``torch.compiler.config.recompile_limit``
            configurations in one process, runs uncompiled); ``False`` forbids it. ``fused=True``
            wins over ``foreach=False``, as in ``torch.optim``.

    Left unset (None), the step takes the fastest correct path for its tensors
    (``optimizers.dispatch``): the multi-tensor Triton kernels on CUDA; on the CPU, for float32
    contiguous tensors and :math:`\beta_1 \neq 0`, torch's fused SGD kernel with each tensor's
    coefficients (one pass over g, m and w after the norms); ``foreach`` elsewhere.
    """

    def __init__(
        self,
        params: Any,
        lr: Scalar = 1e-3,
        betas: tuple[float, float] = (0.95, 0.98),
        eps: float = 1e-8,
        weight_decay: float = 0.001,
        *,
        grad_averaging: bool = False,
        amsgrad: bool = False,
        bias_correction: bool = False,
        init_zero: bool = False,
        eps_inside_sqrt: bool = False,
        reg_inside_moment: bool = True,
        foreach: Optional[bool] = None,
        fused: Optional[bool] = None,
    ) -> None:
        check_hyperparameters(dict(lr=lr, eps=eps, betas=betas, weight_decay=weight_decay))
        if fused and foreach:
            raise ValueError("Invalid options: fused=True and foreach=True are exclusive")
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
            grad_averaging=grad_averaging, amsgrad=amsgrad, bias_correction=bias_correction,
            init_zero=init_zero, eps_inside_sqrt=eps_inside_sqrt,
            reg_inside_moment=reg_inside_moment, foreach=foreach, fused=fused,
        )
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(
                p, dtype=_state_dtype(p), memory_format=torch.preserve_format
            )
            state["exp_avg_sq"] = torch.zeros((), dtype=torch.float32, device=p.device)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros((), dtype=torch.float32, device=p.device)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore from a pickle or a loaded state_dict; options that a state saved before they
        existed lacks get their defaults, and a ``step`` saved as a plain number becomes the CPU
        float32 count ``step()`` keeps."""
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", None)
            group.setdefault("fused", None)
        for p_state in self.state.values():
            if "step" in p_state:
                p_state["step"] = _step_count(p_state["step"])

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load as ``torch.optim.Optimizer`` does, then restore this optimizer's state layout.

        The base class casts floating state to the parameter's dtype (rounding float32 moments
        of bf16/fp16 parameters) and, for ``fused`` groups, moves the step to the parameter's
        device; NovoGrad takes the saved values again in float32 and keeps its step count on the
        CPU. It reads the state_dict as the load_state_dict pre-hooks left it, and restores the
        layout before any post-hook runs.
        """
        loaded: dict[str, Any] = {}
        capture = self.register_load_state_dict_pre_hook(lambda _, final: loaded.update(final))
        restore = self.register_load_state_dict_post_hook(lambda _: self._restore_state(loaded), prepend=True)
        try:
            super().load_state_dict(state_dict)
        finally:
            capture.remove()
            restore.remove()

    def _restore_state(self, state_dict: dict[str, Any]) -> None:
        saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        for saved_id, p in zip(saved_ids, params):
            saved = state_dict["state"].get(saved_id)
            if saved is None:
                continue
            state = self.state[p]
            state["step"] = _step_count(saved["step"])
            # The moment laid out like its parameter (the fused kernel indexes both alike).
            state["exp_avg"] = torch.zeros_like(p, dtype=_state_dtype(p), memory_format=torch.preserve_format)
            state["exp_avg"].copy_(saved["exp_avg"])
            for key in ("exp_avg_sq", "max_exp_avg_sq"):
                if key in saved:
                    state[key] = saved[key].to(device=p.device, dtype=torch.float32, copy=True)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        """Perform one optimisation step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._step(None, None, larc=False)
        return loss

    @torch.no_grad()
    def step_with_grad_scale(
        self,
        grad_scales: Optional[dict[Tensor, Tensor]] = None,
        grad_sq_norms: Optional[dict[Tensor, Tensor]] = None,
    ) -> None:
        r"""One step with each gradient taken as :math:`s \cdot g` without rewriting ``p.grad``.

        The hook LARC uses to fold its per-layer factor :math:`s` into NovoGrad's own passes:
        ``grad_scales`` maps a parameter to a 0-dim float32 tensor :math:`s`;
        ``grad_sq_norms`` may pass :math:`\lVert g \rVert^2` (of the unscaled gradient) already
        computed, so the gradient is read once less. ``step_with_grad_scale()`` equals ``step()``.
        """
        self._step(grad_scales, grad_sq_norms, larc=False)

    def fuses_larc(self) -> bool:
        """Whether ``step_with_larc`` can run: every group's tensors on a fused kernel (Triton or
        the C++ kernel), which computes LARC's factor in its own norm pass."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params and _implementation(_real_views(params), _real_views([p.grad for p in params]),
                                          group["fused"], group["foreach"]) not in _LARC_PATHS:
                return False
        return True

    @torch.no_grad()
    def step_with_larc(self) -> None:
        """One step in which the fused kernel computes LARC's factor itself, from the ``larc_*``
        keys that a ``LARC`` wrapper put in the (shared) parameter groups: the norms of w and g
        come from one pass, so LARC costs a read of w, not two extra passes and a rewrite of g."""
        self._step(None, None, larc=True)

    def _step(self, grad_scales: Optional[dict[Tensor, Tensor]], grad_sq_norms: Optional[dict[Tensor, Tensor]],
              larc: bool) -> None:
        for group in self.param_groups:
            with_grad = [p for p in group["params"] if p.grad is not None]
            if any(p.grad.is_sparse for p in with_grad):
                raise RuntimeError("NovoGrad does not support sparse gradients")
            if group["fused"]:
                _check_fused(with_grad)
            buckets: dict[float, list[Tensor]] = {}
            for p in with_grad:
                state = self._init_state(p, group)
                state["step"] += 1
                # The step lives on the CPU, so reading it never waits for the device.
                buckets.setdefault(float(state["step"]), []).append(p)
            larc_options = None
            if larc and group["layer_adaptation"]:
                larc_options = dict(eta=group["larc_eta"], mode=group["larc_mode"], eps=group["larc_eps"],
                                    min_update=group["larc_min_update"])
            for step, params in buckets.items():
                states = [self.state[p] for p in params]
                novograd(
                    params,
                    [p.grad for p in params],
                    [s["exp_avg"] for s in states],
                    [s["exp_avg_sq"] for s in states],
                    [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else None,
                    grad_scales=[grad_scales[p] for p in params] if grad_scales else None,
                    grad_sq_norms=[grad_sq_norms[p] for p in params] if grad_sq_norms else None,
                    larc=larc_options,
                    step=int(step),
                    lr=group["lr"],
                    beta1=group["betas"][0],
                    beta2=group["betas"][1],
                    eps=group["eps"],
                    weight_decay=group["weight_decay"],
                    grad_averaging=group["grad_averaging"],
                    amsgrad=group["amsgrad"],
                    bias_correction=group["bias_correction"],
                    init_zero=group["init_zero"],
                    eps_inside_sqrt=group["eps_inside_sqrt"],
                    reg_inside_moment=group["reg_inside_moment"],
                    foreach=group["foreach"],
                    fused=group["fused"],
                )


def novograd(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: Optional[list[Tensor]],
    *,
    grad_scales: Optional[list[Tensor]] = None,
    grad_sq_norms: Optional[list[Tensor]] = None,
    larc: Optional[dict[str, Any]] = None,
    step: int,
    lr: Scalar,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    grad_averaging: bool = False,
    amsgrad: bool = False,
    bias_correction: bool = False,
    init_zero: bool = False,
    eps_inside_sqrt: bool = False,
    reg_inside_moment: bool = True,
    foreach: Optional[bool] = None,
    fused: Optional[bool] = None,
) -> None:
    """Functional NovoGrad over tensors that all take their ``step``-th step (see ``NovoGrad``).

    Step-dependent factors are computed here, on the host, once per call; every path below
    shares them: the single-tensor reference, multi-tensor ``foreach`` and ``sgd_kernel`` (torch's
    fused SGD kernel per tensor, the CPU default), and the fused ones (the Triton kernels, the C++
    CPU kernel, the reference under ``torch.compile``), chosen by
    ``optimizers.dispatch``. ``larc`` (``eta``, ``mode``, ``eps``, ``min_update``) asks a fused
    kernel to compute LARC's factor itself; only those can (see ``NovoGrad.fuses_larc``).
    Complex tensors are stepped as their real views. A tensor ``lr`` (1 element) is read inside
    the Triton kernels and the compiled graph, and on the host by the other paths.
    """
    if not params:
        return
    params, grads, exp_avgs = _real_views(params), _real_views(grads), _real_views(exp_avgs)
    path = _implementation(params, grads, fused, foreach, sgd_kernel=beta1 != 0)
    if larc is not None and path not in _LARC_PATHS:
        raise ValueError("larc= needs a fused kernel (see NovoGrad.fuses_larc())")
    # v is initialised from the first squared norm: at step 1 the average keeps nothing old.
    beta2_t = 0.0 if (step == 1 and not init_zero) else beta2
    coefficients = dict(
        lr=lr if path in ("triton", "compiled") else float(lr),
        beta1=beta1,
        beta2_t=beta2_t,
        beta3=1.0 - beta1 if grad_averaging else 1.0,
        bias_correction1=1.0 - beta1**step if bias_correction else 1.0,
        bias_correction2=1.0 - beta2**step if bias_correction else 1.0,
        eps=eps,
        weight_decay=weight_decay,
    )
    flags = dict(amsgrad=amsgrad, eps_inside_sqrt=eps_inside_sqrt, reg_inside_moment=reg_inside_moment)
    if path == "triton":
        _triton_novograd(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, grad_scales, grad_sq_norms,
                         larc, coefficients, eps_inside_sqrt, reg_inside_moment)
    elif path == "cpu_kernel":
        larc_args = (_LARC_MODES[larc["mode"]], larc["eta"], larc["eps"], larc["min_update"]) if larc else (0, 0.0, 0.0, 0.0)
        _cpu_kernel().novograd_step(
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs or [], grad_scales or [],
            grad_sq_norms or [], *coefficients.values(), eps_inside_sqrt, reg_inside_moment,
            *larc_args, torch.get_num_threads(),
        )
    elif path == "compiled":
        # float64 where a tensor is float64: neither a norm nor a coefficient is narrower than it.
        dtype = torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32
        if grad_sq_norms is None:
            # One multi-tensor reduction beats a reduction kernel per tensor in the compiled graph.
            grad_sq_norms = torch._foreach_norm(grads, 2, dtype=dtype)
            torch._foreach_mul_(grad_sq_norms, grad_sq_norms)
        device = params[0].device
        lr_tensor = coefficients.pop("lr") if isinstance(lr, Tensor) else None
        # One host-to-device copy of all coefficients, asynchronous (pinned) on GPUs: no sync.
        values = torch.tensor(list(coefficients.values()), dtype=dtype)
        if device.type == "cuda":
            values = values.pin_memory().to(device, non_blocking=True)
        as_tensors = dict(zip(coefficients, values.unbind(0)))
        if lr_tensor is not None:
            as_tensors["lr"] = lr_tensor.reshape(()).to(device=device, dtype=dtype)
        _compiled_single_tensor_novograd()(
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, grad_scales, grad_sq_norms,
            **as_tensors, **flags,
        )
    elif path == "single":
        _single_tensor_novograd(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, grad_scales, grad_sq_norms,
                                **coefficients, **flags)
    else:
        _multi_tensor_novograd(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, grad_scales, grad_sq_norms,
                               **coefficients, **flags, sgd_kernel=path == "sgd_kernel")


def _single_tensor_novograd(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: Optional[list[Tensor]],
    grad_scales: Optional[list[Tensor]],
    grad_sq_norms: Optional[list[Tensor]],
    *,
    lr: Scalar,
    beta1: Scalar,
    beta2_t: Scalar,
    beta3: Scalar,
    bias_correction1: Scalar,
    bias_correction2: Scalar,
    eps: Scalar,
    weight_decay: Scalar,
    amsgrad: bool,
    eps_inside_sqrt: bool,
    reg_inside_moment: bool,
) -> None:
    """The readable reference: one tensor at a time. Also the body of the fused path, which is
    this function under ``torch.compile`` with the scalars passed as 0-dim tensors."""
    for i, param in enumerate(params):
        grad = grads[i].to(_state_dtype(param))  # float32 for fp16/bf16 parameters
        exp_avg = exp_avgs[i]
        exp_avg_sq = exp_avg_sqs[i]
        w = param.to(_state_dtype(param))

        sq_norm = grad_sq_norms[i] if grad_sq_norms is not None else grad.square().sum()
        if grad_scales is not None:
            grad = grad * grad_scales[i]
            sq_norm = sq_norm * grad_scales[i].square()
        exp_avg_sq.mul_(beta2_t).add_((1 - beta2_t) * sq_norm)
        v = exp_avg_sq
        if amsgrad:
            torch.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=max_exp_avg_sqs[i])
            v = max_exp_avg_sqs[i]
        v_hat = v / bias_correction2
        denom = (v_hat + eps).sqrt() if eps_inside_sqrt else v_hat.sqrt() + eps

        if reg_inside_moment:
            exp_avg.mul_(beta1).add_(beta3 * (grad / denom + weight_decay * w))
            w = w - (lr / bias_correction1) * exp_avg
        else:
            exp_avg.mul_(beta1).add_(beta3 * grad)
            w = w - lr * (exp_avg / (bias_correction1 * denom) + weight_decay * w)
        param.copy_(w)


def _implementation(params: list[Tensor], grads: list[Tensor], fused: Optional[bool],
                    foreach: Optional[bool], sgd_kernel: bool = False) -> str:
    """The path for these tensors (``optimizers.dispatch``; ``sgd_kernel``: whether the options
    allow it, β1 ≠ 0); where this file was copied without its package: ``compiled`` for
    ``fused=True``, else ``foreach`` (``single`` if it is False)."""
    try:
        from optimizers import dispatch, novograd_cpu
    except ImportError:
        return "compiled" if fused else ("single" if foreach is False else "foreach")
    return dispatch.implementation(
        [*params, *grads], fused=fused, foreach=foreach, compiled=True, sgd_kernel=sgd_kernel, name="NovoGrad",
        cpu_kernel=lambda: novograd_cpu.supports(params, grads) and _cpu_kernel() is not None,
    )


def _check_fused(params: list[Tensor]) -> None:
    """torch's error for ``fused=True`` on a device without a fused path (``optimizers.dispatch``),
    before any state is made; where this file was copied without its package, no check."""
    try:
        from optimizers import dispatch
    except ImportError:
        return
    dispatch.check_fused(params)


def _cpu_kernel() -> Any:
    """optbench's C++ kernel for float32 CPU tensors (``optimizers/novograd_cpu.py``), or None
    where it cannot be built."""
    from optimizers import novograd_cpu

    return novograd_cpu.load()


def _triton_novograd(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                     exp_avg_sqs: list[Tensor], max_exp_avg_sqs: Optional[list[Tensor]],
                     grad_scales: Optional[list[Tensor]], grad_sq_norms: Optional[list[Tensor]],
                     larc: Optional[dict[str, Any]], coefficients: dict[str, float], eps_inside_sqrt: bool,
                     reg_inside_moment: bool) -> None:
    """The Triton kernels (``optimizers/triton_kernels.py``), one call per weight/gradient dtype
    pair (usually one): three launches for all tensors of the pair."""
    from optimizers import triton_kernels

    larc = larc or dict(mode="none", eta=0.0, eps=0.0, min_update=0.0)
    for indices in triton_kernels.dtype_groups(params, grads):
        def pick(tensors: Optional[list[Tensor]]) -> Optional[list[Tensor]]:
            return [tensors[i] for i in indices] if tensors is not None else None
        triton_kernels.novograd_step(
            pick(params), pick(grads), pick(exp_avgs), pick(exp_avg_sqs), pick(max_exp_avg_sqs),
            pick(grad_scales), pick(grad_sq_norms), rule=larc["mode"], eta=larc["eta"],
            factor_eps=larc["eps"], min_update=larc["min_update"], eps_inside_sqrt=eps_inside_sqrt,
            reg_inside_moment=reg_inside_moment, **coefficients,
        )


@functools.cache
def _compiled_single_tensor_novograd() -> Callable[..., None]:
    """The reference under ``torch.compile``. Not ``fullgraph``: dynamo compiles once per tensor
    list layout and options, and past ``torch.compiler.config.recompile_limit`` of them in one
    process a full-graph function fails where this one runs the same code uncompiled (the body
    has no graph break: a test compiles it with ``fullgraph=True``)."""
    return torch.compile(_single_tensor_novograd)


def _multi_tensor_novograd(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: Optional[list[Tensor]],
    grad_scales: Optional[list[Tensor]],
    grad_sq_norms: Optional[list[Tensor]],
    *,
    lr: float,
    beta1: float,
    beta2_t: float,
    beta3: float,
    bias_correction1: float,
    bias_correction2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    eps_inside_sqrt: bool,
    reg_inside_moment: bool,
    sgd_kernel: bool = False,
) -> None:
    """The multi-tensor paths: the same update as ``_single_tensor_novograd`` for every tensor
    of the list at once, the per-tensor scalars in a few stacked kernels, then m and w in
    ``torch._foreach`` kernels or, with ``sgd_kernel``, in torch's fused SGD kernel."""
    if not params:
        return
    low_precision = [p.dtype in _LOW_PRECISION for p in params]
    if any(low_precision):
        grads = [g.float() for g in grads]
        weights = [p.float() if low else p for p, low in zip(params, low_precision)]
    else:
        weights = params

    # The per-tensor scalars (‖g‖², v, the denominators) as one stacked vector each: a few small
    # kernels, where a multi-tensor op per quantity costs microseconds per tensor.
    sq_norms = stacked_sq_norms(grads) if grad_sq_norms is None else torch.stack(grad_sq_norms)
    scales = torch.stack(grad_scales) if grad_scales is not None else None
    if scales is not None:
        sq_norms = sq_norms * scales.square()
    v = torch.stack(exp_avg_sqs).mul_(beta2_t).add_(sq_norms, alpha=1 - beta2_t)
    torch._foreach_copy_(exp_avg_sqs, v.unbind(0))
    if amsgrad:
        v = torch.maximum(torch.stack(max_exp_avg_sqs), v)
        torch._foreach_copy_(max_exp_avg_sqs, v.unbind(0))
    v_hat = v / bias_correction2
    denom = (v_hat + eps).sqrt() if eps_inside_sqrt else v_hat.sqrt() + eps

    step = dict(lr=lr, beta1=beta1, beta3=beta3, bias_correction1=bias_correction1, weight_decay=weight_decay,
                reg_inside_moment=reg_inside_moment)
    if not (sgd_kernel and _sgd_kernel_steps(weights, grads, exp_avgs, denom, scales, **step)):
        _foreach_steps(weights, grads, exp_avgs, denom, scales, **step)
    if any(low_precision):
        for param, weight, low in zip(params, weights, low_precision):
            if low:
                param.copy_(weight)


def _foreach_steps(weights: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], denom: Tensor,
                   scales: Optional[Tensor], *, lr: float, beta1: float, beta3: float, bias_correction1: float,
                   weight_decay: float, reg_inside_moment: bool) -> None:
    """m and w in ``torch._foreach`` kernels, given each tensor's denominator (stacked)."""
    factor = denom.reciprocal()
    # m and w change in place, the per-tensor factors entering as 0-dim tensors that addcmul
    # broadcasts: no temporary the size of the parameters, which on the CPU costs more than the
    # pass itself (each fresh allocation faults its pages in again).
    torch._foreach_mul_(exp_avgs, beta1)
    if reg_inside_moment:  # m ← β1 m + β3 (s/denom · g + d w);  w ← w − α/b1 · m
        factor.mul_(beta3)
        if scales is not None:
            factor.mul_(scales)
        torch._foreach_addcmul_(exp_avgs, grads, factor.unbind(0))
        if weight_decay != 0:
            torch._foreach_add_(exp_avgs, weights, alpha=beta3 * weight_decay)
        torch._foreach_add_(weights, exp_avgs, alpha=-lr / bias_correction1)
    else:  # m ← β1 m + β3 s g;  w ← (1 − α d) w − α/(b1 denom) · m
        if scales is not None:
            torch._foreach_addcmul_(exp_avgs, grads, (scales * beta3).unbind(0))
        else:
            torch._foreach_add_(exp_avgs, grads, alpha=beta3)
        factor.mul_(-lr / bias_correction1)
        if weight_decay != 0:
            torch._foreach_mul_(weights, 1.0 - lr * weight_decay)
        torch._foreach_addcmul_(weights, exp_avgs, factor.unbind(0))


def _sgd_kernel_steps(weights: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], denom: Tensor,
                      scales: Optional[Tensor], *, lr: float, beta1: float, beta3: float, bias_correction1: float,
                      weight_decay: float, reg_inside_moment: bool) -> bool:
    r"""m and w in torch's fused SGD kernel, one call per tensor; False (nothing changed) where a
    tensor's coefficients are not finite, so that the caller takes the ``foreach`` steps.

    The kernel computes :math:`m \leftarrow \mu m + (1-\text{dampening})(g + \lambda w)`,
    :math:`w \leftarrow w - \gamma m` in one pass over g, m and w, without rewriting g. NovoGrad's
    step is that step with, per tensor (denominator :math:`D`, LARC's factor :math:`s`, 1 without it):

    * ``reg_inside_moment``: :math:`\mu = \beta_1`, :math:`1-\text{dampening} = \beta_3 s / D`,
      :math:`\lambda = d D / s`, :math:`\gamma = \alpha / b_1`, since
      :math:`\beta_3 (s g / D + d w) = (\beta_3 s / D)(g + (d D / s) w)`;
    * decoupled: :math:`\mu = \beta_1`, :math:`1-\text{dampening} = \beta_3 s`, :math:`\lambda = 0`,
      :math:`\gamma = \alpha / (b_1 D)`, after :math:`w \leftarrow (1 - \alpha d) w`.

    With :math:`\beta_1 = 0` the kernel keeps no m (the caller does not choose this path then).
    """
    denoms = denom.tolist()
    factors = scales.tolist() if scales is not None else [1.0] * len(denoms)
    if not all(math.isfinite(d) and d > 0 for d in denoms) or not all(math.isfinite(s) and s > 0 for s in factors):
        return False
    if not all(m.is_contiguous() for m in exp_avgs):  # a moment loaded with another layout
        return False
    if not reg_inside_moment and weight_decay != 0:
        torch._foreach_mul_(weights, 1.0 - lr * weight_decay)
    for w, g, m, d, s in zip(weights, grads, exp_avgs, denoms, factors):
        if reg_inside_moment:
            rate, decay, step_lr = beta3 * s / d, weight_decay * d / s, lr / bias_correction1
        else:
            rate, decay, step_lr = beta3 * s, 0.0, lr / (bias_correction1 * d)
        torch._fused_sgd_([w], [g], [m], weight_decay=decay, momentum=beta1, lr=step_lr, dampening=1.0 - rate,
                          nesterov=False, maximize=False, is_first_step=False)
    return True
