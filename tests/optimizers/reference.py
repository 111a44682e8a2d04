"""Float64 reference implementations of the package's optimizers, for the tests to compare against.

Written directly from the formulas in DESIGN.md ("Optimizer semantics") and the class docstrings,
one tensor at a time in plain float64 torch, without importing anything from ``optimizers``:
a bug in the package cannot leak in here. Each reference holds float64 copies of the weights in
``params`` and takes one list of gradients per ``step``.

Also here: ``random_problem`` (weights and a gradient sequence shared by package and reference)
and ``run_package`` (feed that sequence to a package optimizer).
"""

from __future__ import annotations

import io
import math
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

SHAPES = [(5, 3), (7,), (2, 3, 4)]


def _norm(t: Tensor) -> float:
    return math.sqrt(float(t.double().square().sum()))


class ReferenceNovoGrad:
    r"""NovoGrad per the ``NovoGrad`` docstring, every option included.

    v ← ‖g‖² on step 1 (unless ``init_zero``), else β2 v + (1−β2)‖g‖²;
    paper mode: m ← β1 m + β3 (g/(√v̂ + ε) + d w), w ← w − α m̂;
    apex's decoupled mode (``reg_inside_moment=False``): m ← β1 m + β3 g,
    w ← w − α (m̂/(√v̂ + ε) + d w); β3 = 1−β1 with ``grad_averaging`` else 1; hats are the Adam
    bias corrections with ``bias_correction``; ``amsgrad`` uses max v; ``eps_inside_sqrt`` uses
    √(v̂ + ε).
    """

    def __init__(
        self,
        params: Sequence[Tensor],
        *,
        lr: float,
        betas: tuple[float, float] = (0.95, 0.98),
        eps: float = 1e-8,
        weight_decay: float = 0.001,
        grad_averaging: bool = False,
        amsgrad: bool = False,
        bias_correction: bool = False,
        init_zero: bool = False,
        eps_inside_sqrt: bool = False,
        reg_inside_moment: bool = True,
    ) -> None:
        self.params = [p.detach().double().clone() for p in params]
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.grad_averaging = grad_averaging
        self.amsgrad = amsgrad
        self.bias_correction = bias_correction
        self.init_zero = init_zero
        self.eps_inside_sqrt = eps_inside_sqrt
        self.reg_inside_moment = reg_inside_moment
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [0.0 for _ in self.params]
        self.v_max = [0.0 for _ in self.params]
        self.t = 0

    def step(self, grads: Sequence[Tensor]) -> None:
        self.t += 1
        t, b1, b2, d = self.t, self.beta1, self.beta2, self.weight_decay
        b3 = 1.0 - b1 if self.grad_averaging else 1.0
        for i, (w, g) in enumerate(zip(self.params, grads)):
            g = g.double()
            sq_norm = float(g.square().sum())
            if t == 1 and not self.init_zero:
                self.v[i] = sq_norm
            else:
                self.v[i] = b2 * self.v[i] + (1.0 - b2) * sq_norm
            v = self.v[i]
            if self.amsgrad:
                self.v_max[i] = max(self.v_max[i], v)
                v = self.v_max[i]
            m_correction = 1.0 - b1**t if self.bias_correction else 1.0
            v_hat = v / (1.0 - b2**t) if self.bias_correction else v
            denom = math.sqrt(v_hat + self.eps) if self.eps_inside_sqrt else math.sqrt(v_hat) + self.eps
            if self.reg_inside_moment:
                self.m[i] = b1 * self.m[i] + b3 * (g / denom + d * w)
                self.params[i] = w - self.lr * self.m[i] / m_correction
            else:
                self.m[i] = b1 * self.m[i] + b3 * g
                self.params[i] = w - self.lr * (self.m[i] / m_correction / denom + d * w)


class ReferenceSGD:
    """``torch.optim.SGD``: d = g + λw; buf = d on the first step, else μ buf + (1 − dampening) d;
    Nesterov steps along d + μ buf, heavy ball along buf; w ← w − γ d."""

    def __init__(
        self,
        params: Sequence[Tensor],
        *,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = [p.detach().double().clone() for p in params]
        self.lr = lr
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.bufs: list[Optional[Tensor]] = [None for _ in self.params]

    def step(self, grads: Sequence[Tensor]) -> None:
        for i, (w, g) in enumerate(zip(self.params, grads)):
            d = g.double() + self.weight_decay * w
            if self.momentum:
                buf = self.bufs[i]
                buf = d.clone() if buf is None else self.momentum * buf + (1 - self.dampening) * d
                self.bufs[i] = buf
                d = d + self.momentum * buf if self.nesterov else buf
            self.params[i] = w - self.lr * d


def larc_factor(
    w: Tensor, g: Tensor, *, lr: float, eta: float, mode: str, eps: float = 1e-7, min_update: float = 1e-7
) -> float:
    """LARC's per-tensor gradient factor s (DESIGN.md): 1 where ‖w‖ or ‖g‖ is 0; clip:
    min(1, max(η‖w‖/(γ(‖g‖+ε)), min_update)), with γ = 0 giving 1; scale: max(η‖w‖/(‖g‖+ε), min_update)."""
    w_norm, g_norm = _norm(w), _norm(g)
    if w_norm == 0.0 or g_norm == 0.0:
        return 1.0
    ratio = eta * w_norm / (g_norm + eps)
    if mode == "clip":
        ratio = ratio / lr if lr > 0 else math.inf
        return min(1.0, max(ratio, min_update))
    if mode == "scale":
        return max(ratio, min_update)
    raise ValueError(mode)


class ReferenceLARC:
    """LARC around a reference optimizer: the inner one steps on s·g, s = ``larc_factor`` of the
    current weights and gradient; tensors with ``adapt[i] = False`` keep s = 1."""

    def __init__(
        self,
        inner: "ReferenceNovoGrad | ReferenceSGD",
        *,
        eta: float = 0.002,
        mode: str = "clip",
        eps: float = 1e-7,
        min_update: float = 1e-7,
        adapt: Optional[Sequence[bool]] = None,
    ) -> None:
        self.inner = inner
        self.eta, self.mode, self.eps, self.min_update = eta, mode, eps, min_update
        self.adapt = list(adapt) if adapt is not None else [True] * len(inner.params)
        self.history: list[list[float]] = []  # the factors of every step, for tests to inspect

    @property
    def params(self) -> list[Tensor]:
        return self.inner.params

    def factors(self, grads: Sequence[Tensor]) -> list[float]:
        return [
            larc_factor(w, g.double(), lr=self.inner.lr, eta=self.eta, mode=self.mode,
                        eps=self.eps, min_update=self.min_update) if adapt else 1.0
            for w, g, adapt in zip(self.inner.params, grads, self.adapt)
        ]

    def step(self, grads: Sequence[Tensor]) -> None:
        scales = self.factors(grads)
        self.history.append(scales)
        self.inner.step([s * g.double() for s, g in zip(scales, grads)])


class ReferenceLARS:
    """LARS (``LARS`` docstring): λ = η‖w‖/(‖g‖ + β‖w‖ + ε), 1 where a norm is 0 or the tensor is
    not adapted; v ← μ v + γ λ (g + β w); w ← w − v."""

    def __init__(
        self,
        params: Sequence[Tensor],
        *,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        eps: float = 1e-8,
        adapt: Optional[Sequence[bool]] = None,
    ) -> None:
        self.params = [p.detach().double().clone() for p in params]
        self.lr, self.momentum, self.weight_decay, self.eta, self.eps = lr, momentum, weight_decay, eta, eps
        self.adapt = list(adapt) if adapt is not None else [True] * len(self.params)
        self.v = [torch.zeros_like(p) for p in self.params]

    def step(self, grads: Sequence[Tensor]) -> None:
        beta = self.weight_decay
        for i, (w, g) in enumerate(zip(self.params, grads)):
            g = g.double()
            w_norm, g_norm = _norm(w), _norm(g)
            if self.adapt[i] and w_norm > 0.0 and g_norm > 0.0:
                trust = self.eta * w_norm / (g_norm + beta * w_norm + self.eps)
            else:
                trust = 1.0
            self.v[i] = self.momentum * self.v[i] + self.lr * trust * (g + beta * w)
            self.params[i] = w - self.v[i]


# --- shared test data ------------------------------------------------------------------------


def random_problem(
    shapes: Sequence[tuple[int, ...]] = SHAPES, steps: int = 20, seed: int = 0
) -> tuple[list[Tensor], list[list[Tensor]]]:
    """Float32 initial weights and ``steps`` lists of float32 gradients.

    Tensor i's gradients are scaled by 10**(i-1), so that layers differ in gradient scale (what
    layer-wise methods are for), and by a random factor in [1/3, 3] per step, so that gradient
    norms rise and fall (what ``amsgrad`` and the moving averages are for).
    """
    gen = torch.Generator().manual_seed(seed)
    weights = [torch.randn(shape, generator=gen) for shape in shapes]
    grads = [
        [
            torch.randn(shape, generator=gen) * 10.0 ** (i - 1) * 3.0 ** (2 * torch.rand((), generator=gen).item() - 1)
            for i, shape in enumerate(shapes)
        ]
        for _ in range(steps)
    ]
    return weights, grads


def run_package(
    make_optimizer: Callable[[list[nn.Parameter]], Optimizer],
    weights: Sequence[Tensor],
    grads: Sequence[Sequence[Tensor]],
    dtype: Optional[torch.dtype] = None,
) -> tuple[list[nn.Parameter], Optimizer]:
    """Copy ``weights`` into parameters (cast to ``dtype`` if given), build the optimizer over
    them and step it once per gradient list. Returns the parameters and the optimizer."""
    params = [nn.Parameter(w.clone() if dtype is None else w.to(dtype)) for w in weights]
    optimizer = make_optimizer(params)
    step_all(optimizer, params, grads)
    return params, optimizer


def step_all(optimizer: Optimizer, params: Sequence[Tensor], grads: Sequence[Sequence[Tensor]]) -> None:
    """One ``optimizer.step()`` per gradient list, each gradient copied into ``p.grad`` first."""
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.to(p.dtype).clone()
        optimizer.step()


def interrupted_run(
    make_optimizer: Callable[[list[nn.Parameter]], Optimizer],
    weights: Sequence[Tensor],
    grads: Sequence[Sequence[Tensor]],
    stop: int,
    dtype: Optional[torch.dtype] = None,
) -> tuple[list[nn.Parameter], Optimizer]:
    """Run ``grads[:stop]``, save the optimizer's ``state_dict`` through ``torch.save``, load it
    into a fresh optimizer over copies of the parameters and run ``grads[stop:]`` with that one.
    Returns the copies and the fresh optimizer."""
    params, optimizer = run_package(make_optimizer, weights, grads[:stop], dtype=dtype)
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    resumed = [nn.Parameter(p.detach().clone()) for p in params]
    fresh = make_optimizer(resumed)
    fresh.load_state_dict(torch.load(buffer))
    step_all(fresh, resumed, grads[stop:])
    return resumed, fresh


def run_reference(reference, grads: Sequence[Sequence[Tensor]]) -> list[Tensor]:
    """Step a reference optimizer through ``grads``; returns its float64 weights."""
    for step_grads in grads:
        reference.step(step_grads)
    return reference.params
