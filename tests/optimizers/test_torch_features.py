"""The ``torch.optim`` features each optimizer supports, on every path, as docs/optimizer-features.md
states them: a tensor learning rate (shapes [], [1], [1, 1]), complex parameters, sparse gradients
refused in one line, and the table in the docs equal to the one here.

Paths: ``single`` (the reference), ``foreach``, ``fused`` (the C++ kernel on float32 CPU tensors,
torch's own fused SGD under LARC), ``compiled`` (NovoGrad's torch.compile fallback, slow) and
``triton`` (the Triton kernels on CPU tensors in Triton's interpreter).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim import SGD

from optimizers import LARC, LARS, NovoGrad, triton_kernels

from .reference import random_problem, run_package

DOCS = Path(__file__).resolve().parents[2] / "docs" / "optimizer-features.md"

# Optimizer -> factory over (params, lr, path options).
MAKERS = {
    "NovoGrad": lambda ps, lr, options: NovoGrad(ps, lr=lr, **options),
    "LARS": lambda ps, lr, options: LARS(ps, lr=lr, eta=0.02, **options),
    "LARC(SGD)": lambda ps, lr, options: LARC(SGD(ps, lr=lr, momentum=0.9, weight_decay=0.01, **options)),
    "LARC(NovoGrad)": lambda ps, lr, options: LARC(NovoGrad(ps, lr=lr, **options)),
}
# Optimizer -> its paths -> the options selecting each (the triton path also needs the fixture's
# switch; compiled is fused with the C++ kernel unavailable).
PATHS = {
    "NovoGrad": {"single": {"foreach": False}, "foreach": {"foreach": True}, "sgd_kernel": {}, "fused": {"fused": True},
                 "compiled": {"fused": True}, "triton": {}},
    "LARS": {"foreach": {"fused": False}, "triton": {}},
    "LARC(SGD)": {"single": {"foreach": False}, "foreach": {"foreach": True}, "sgd_kernel": {}, "fused": {"fused": True},
                  "triton": {}},
    "LARC(NovoGrad)": {"single": {"foreach": False}, "foreach": {"foreach": True}, "sgd_kernel": {},
                       "fused": {"fused": True}, "triton": {}},
}
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


def cases(slow_paths=("compiled", "triton")):
    """(optimizer, path) for every path of every optimizer; ``slow_paths`` marked slow."""
    for name, paths in PATHS.items():
        for path in paths:
            marks = []
            if path == "triton":
                marks.append(pytest.mark.skipif(not INTERPRETED, reason="Triton is not in interpreter mode"))
            if path in slow_paths:
                marks.append(pytest.mark.slow)
            yield pytest.param(name, path, id=f"{name}-{path}", marks=marks)


@pytest.fixture
def make(monkeypatch):
    """The factory of one optimizer on one path."""
    def factory(name: str, path: str):
        monkeypatch.setenv("OPTBENCH_TRITON_ON_CPU", "1" if path == "triton" else "0")
        if path == "compiled":
            monkeypatch.setattr("optimizers.novograd._cpu_kernel", lambda *args: None)
        options = PATHS[name][path]
        return lambda params, lr: MAKERS[name](params, lr, options)
    return factory


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:NovoGrad's fused CPU kernel")
@pytest.mark.parametrize("shape", [[], [1], [1, 1]])
@pytest.mark.parametrize("name, path", list(cases(slow_paths=("compiled",))))
def test_tensor_lr_steps_as_the_float_lr(name, path, shape, make, monkeypatch):
    """A 1-element tensor learning rate, of any of torch's shapes, steps as the same float rate
    (to float32's rounding of 0.01) and stays the group's tensor; the Triton kernels read it from
    memory (no host synchronisation)."""
    read_from_memory = []
    lr_argument = triton_kernels._lr_argument

    def spy(lr, device):
        value, in_memory = lr_argument(lr, device)
        read_from_memory.append(in_memory)
        return value, in_memory

    monkeypatch.setattr(triton_kernels, "_lr_argument", spy)
    steps = 2 if path == "triton" else 4  # the interpreter takes ~0.1 s a step
    weights, grads = random_problem(steps=steps)
    factory = make(name, path)
    with_float, _ = run_package(lambda ps: factory(ps, 0.01), weights, grads)
    read_from_memory.clear()
    lr = torch.tensor(0.01).reshape(shape)
    with_tensor, optimizer = run_package(lambda ps: factory(ps, lr), weights, grads)
    for a, b, w in zip(with_tensor, with_float, weights):
        assert not torch.equal(a.detach(), w)
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert optimizer.param_groups[0]["lr"] is lr
    assert read_from_memory == ([True] * steps if path == "triton" else [])


@pytest.mark.filterwarnings("ignore:NovoGrad's fused CPU kernel")
@pytest.mark.parametrize("name, path", list(cases()))
def test_complex_parameters_step_as_their_real_views(name, path, make):
    """A complex parameter steps exactly as its real view (``view_as_real``) does, beside a real
    one, on every path: the layer norms and the element-wise updates see the same numbers. (LARC
    takes complex tensors where its inner optimizer does: torch's fused SGD refuses them.)"""
    gen = torch.Generator().manual_seed(5)
    complex_params = [nn.Parameter(torch.randn(4, 3, dtype=torch.complex64, generator=gen)),
                      nn.Parameter(torch.randn(5, dtype=torch.complex64, generator=gen)),
                      nn.Parameter(torch.randn(3, generator=gen))]
    real_params = [nn.Parameter(torch.view_as_real(p.detach()).clone() if p.is_complex() else p.detach().clone())
                   for p in complex_params]
    factory = make(name, path)
    complex_opt, real_opt = factory(complex_params, 0.01), factory(real_params, 0.01)
    for _ in range(2 if path == "triton" else 3):
        for c, r in zip(complex_params, real_params):
            r.grad = torch.randn(r.shape, generator=gen)
            c.grad = torch.view_as_complex(r.grad.clone()) if c.is_complex() else r.grad.clone()
        if (name, path) == ("LARC(SGD)", "fused"):
            with pytest.raises(RuntimeError, match="`fused=True` requires all the params to be floating point"):
                complex_opt.step()
            return
        complex_opt.step()
        real_opt.step()
    for c, r in zip(complex_params, real_params):
        torch.testing.assert_close(torch.view_as_real(c.detach()) if c.is_complex() else c.detach(), r.detach(),
                                   rtol=1e-6, atol=1e-7)
    assert not torch.equal(real_params[0].detach(), torch.view_as_real(torch.zeros(4, 3, dtype=torch.complex64)))


SPARSE_ERRORS = {
    "NovoGrad": "NovoGrad does not support sparse gradients",
    "LARS": "LARS does not support sparse gradients",
    "LARC(SGD)": "LARC does not support sparse gradients",
    "LARC(NovoGrad)": "LARC does not support sparse gradients",
}


@pytest.mark.parametrize("name, path", list(cases(slow_paths=())))
def test_sparse_gradients_are_refused_in_one_line(name, path, make):
    """A sparse gradient is refused with one line naming the optimizer, on every path, before
    anything moves or any state is made (layer norms need dense gradients)."""
    dense, sparse = nn.Parameter(torch.randn(3, 2)), nn.Parameter(torch.randn(4, 2))
    before = [dense.detach().clone(), sparse.detach().clone()]
    optimizer = make(name, path)([dense, sparse], 0.1)
    dense.grad, sparse.grad = torch.randn(3, 2), torch.randn(4, 2).to_sparse()
    with pytest.raises(RuntimeError) as raised:
        optimizer.step()
    assert str(raised.value) == SPARSE_ERRORS[name]
    assert torch.equal(dense.detach(), before[0]) and torch.equal(sparse.detach(), before[1])
    assert not any(optimizer.state.values())


# The table of docs/optimizer-features.md: feature -> (NovoGrad, LARS, LARC).
FEATURES = {
    "tensor `lr` (shapes [], [1], [1, 1])": ("yes, every path", "yes, every path", "yes, as the inner optimizer"),
    "step, state_dict and load_state_dict hooks": ("yes", "yes", "yes, each runs once per call"),
    "named parameters": ("yes", "yes", "yes, as the inner optimizer"),
    "older state_dicts (plain-number `step`, no `foreach`/`fused` key)": ("yes", "yes", "yes, as the inner optimizer"),
    "complex parameters": ("yes, as real views", "yes, as real views", "where the inner optimizer takes them"),
    "sparse gradients": ("no: `RuntimeError`", "no: `RuntimeError`", "no: `RuntimeError`"),
    "`maximize`": ("no option", "no option", "as the inner optimizer"),
    "`capturable` (CUDA graphs)": ("no: the step count lives on the CPU", "no option", "no"),
    "`differentiable`": ("no option", "no option", "no"),
    "`foreach`": ("yes; the CPU default, except float32, which takes torch's fused SGD kernel per tensor",
                  "no option; the CPU path", "as the inner optimizer; over SGD (float32 CPU, no Nesterov) with neither "
                  "set: torch's fused SGD kernel per tensor"),
    "`fused`": ("yes: Triton (the CUDA default), C++ kernel (float32 CPU), torch.compile (other dtypes)",
                "yes: Triton (the CUDA default)", "fused NovoGrad computes LARC's factor itself; over SGD on CUDA: Triton"),
}


def features_table() -> str:
    """The markdown table the docs page must hold."""
    lines = ["| feature | NovoGrad (`novograd`, `novograd_os2s`, `novograd_apex`) | LARS (`lars`) | LARC (`larc_<inner>`) |",
             "|---|---|---|---|"]
    lines += [f"| {feature} | {' | '.join(cells)} |" for feature, cells in FEATURES.items()]
    return "\n".join(lines)


def test_docs_table_is_this_one():
    """docs/optimizer-features.md holds the table these tests check, verbatim."""
    assert features_table() in DOCS.read_text()


@pytest.mark.parametrize("option, names", [
    ("maximize", ("novograd", "lars")), ("capturable", ("novograd", "lars")), ("differentiable", ("novograd", "lars")),
])
def test_options_the_table_says_are_absent_are_refused_by_name(option, names):
    """The options the table calls absent are refused in one line naming them (by
    build_optimizer), not ignored."""
    from optimizers import build_optimizer

    for name in names:
        with pytest.raises(ValueError, match=rf"^Unknown option '{option}' for optimizer '{name}'"):
            build_optimizer(name, [nn.Parameter(torch.ones(2, 2))], **{option: True})
