"""The Triton path of NovoGrad (every option, LARC folded in), LARS and LARC over SGD against the
float64 references, and the dispatch rule that picks each path.

Without a GPU the kernels run on CPU tensors in Triton's interpreter (the suite's conftest sets
``TRITON_INTERPRET=1``; ``OPTBENCH_TRITON_ON_CPU=1`` sends CPU tensors to the Triton path). Tests
marked ``gpu`` run the same cases on CUDA (``OPTBENCH_TEST_GPU=1``), where the step must not
synchronise with the host. One tensor spans three chunks, so the per-tensor sums over chunks and
the chunk tails are exercised.
"""

from __future__ import annotations

import copy
import io
import os

import pytest
import torch
from torch import nn
from torch.optim import SGD

from optimizers import LARC, LARS, NovoGrad, build_optimizer, dispatch
from optimizers.triton_kernels import CHUNK

from .reference import (
    SHAPES,
    ReferenceLARC,
    ReferenceLARS,
    ReferenceNovoGrad,
    ReferenceSGD,
    interrupted_run,
    random_problem,
    run_package,
    run_reference,
)

pytest.importorskip("triton")

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICES = [
    pytest.param("cpu", id="interpreter",  # slow: the interpreter runs each program in numpy
                 marks=[pytest.mark.slow,
                        pytest.mark.skipif(not INTERPRETED, reason="Triton is not in interpreter mode")]),
    pytest.param("cuda", id="cuda", marks=pytest.mark.gpu),
]
# Three chunks in the last tensor: sums over chunks and a partial last chunk.
BIG_SHAPES = [*SHAPES, (2 * CHUNK + 123,)]
DECOUPLED = {"reg_inside_moment": False, "bias_correction": True, "grad_averaging": True, "weight_decay": 0.01}
SGD_OPTIONS = {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01}

# name -> (package factory over params, float64 reference factory over weights). Every option of
# NovoGrad and both registry variants, LARC (clip and scale) over NovoGrad and SGD, and LARS.
CASES = {
    "novograd": (lambda ps: NovoGrad(ps, lr=0.05), lambda w: ReferenceNovoGrad(w, lr=0.05)),
    "novograd_grad_averaging": (lambda ps: NovoGrad(ps, lr=0.05, grad_averaging=True),
                                lambda w: ReferenceNovoGrad(w, lr=0.05, grad_averaging=True)),
    "novograd_amsgrad": (lambda ps: NovoGrad(ps, lr=0.05, amsgrad=True),
                         lambda w: ReferenceNovoGrad(w, lr=0.05, amsgrad=True)),
    "novograd_bias_correction": (lambda ps: NovoGrad(ps, lr=0.05, bias_correction=True),
                                 lambda w: ReferenceNovoGrad(w, lr=0.05, bias_correction=True)),
    "novograd_init_zero": (lambda ps: NovoGrad(ps, lr=0.05, init_zero=True),
                           lambda w: ReferenceNovoGrad(w, lr=0.05, init_zero=True)),
    "novograd_eps_inside_sqrt": (lambda ps: NovoGrad(ps, lr=0.05, eps_inside_sqrt=True, eps=1e-2),
                                 lambda w: ReferenceNovoGrad(w, lr=0.05, eps_inside_sqrt=True, eps=1e-2)),
    "novograd_decoupled": (lambda ps: NovoGrad(ps, lr=0.05, **DECOUPLED),
                           lambda w: ReferenceNovoGrad(w, lr=0.05, **DECOUPLED)),
    "novograd_os2s": (lambda ps: build_optimizer("novograd_os2s", ps, lr=0.05, exclude_bias_and_norm=False),
                      lambda w: ReferenceNovoGrad(w, lr=0.05, betas=(0.95, 0.0), eps_inside_sqrt=True)),
    "novograd_apex": (lambda ps: build_optimizer("novograd_apex", ps, lr=0.05, exclude_bias_and_norm=False),
                      lambda w: ReferenceNovoGrad(w, lr=0.05, betas=(0.9, 0.999), weight_decay=0.0,
                                                  grad_averaging=True, bias_correction=True,
                                                  reg_inside_moment=False)),
    "larc_novograd_clip": (lambda ps: LARC(NovoGrad(ps, lr=0.01), eta=0.002),
                           lambda w: ReferenceLARC(ReferenceNovoGrad(w, lr=0.01), eta=0.002)),
    "larc_novograd_scale": (lambda ps: LARC(NovoGrad(ps, lr=0.1, **DECOUPLED), eta=0.02, mode="scale"),
                            lambda w: ReferenceLARC(ReferenceNovoGrad(w, lr=0.1, **DECOUPLED), eta=0.02,
                                                    mode="scale")),
    "lars": (lambda ps: LARS(ps, lr=0.1, eta=0.02, weight_decay=0.01),
             lambda w: ReferenceLARS(w, lr=0.1, eta=0.02, weight_decay=0.01)),
    "lars_no_momentum": (lambda ps: LARS(ps, lr=0.1, eta=0.02, momentum=0.0, weight_decay=0.05),
                         lambda w: ReferenceLARS(w, lr=0.1, eta=0.02, momentum=0.0, weight_decay=0.05)),
    "larc_sgd_clip": (lambda ps: LARC(SGD(ps, **SGD_OPTIONS), eta=0.002),
                      lambda w: ReferenceLARC(ReferenceSGD(w, **SGD_OPTIONS), eta=0.002)),
    "larc_sgd_nesterov_scale": (lambda ps: LARC(SGD(ps, **SGD_OPTIONS, nesterov=True), eta=0.02, mode="scale"),
                                lambda w: ReferenceLARC(ReferenceSGD(w, **SGD_OPTIONS, nesterov=True), eta=0.02,
                                                        mode="scale")),
    "larc_sgd_no_momentum": (lambda ps: LARC(SGD(ps, lr=0.01, weight_decay=0.01)),
                             lambda w: ReferenceLARC(ReferenceSGD(w, lr=0.01, weight_decay=0.01))),
}
# The cases that also run on the three-chunk tensor (the interpreter is slow on large tensors).
BIG_CASES = ("novograd", "novograd_decoupled", "larc_novograd_clip", "lars", "larc_sgd_nesterov_scale")


@pytest.fixture(autouse=True)
def triton_on_cpu(monkeypatch):
    """CPU tensors take the Triton path (interpreted), as CUDA tensors do by default."""
    monkeypatch.setenv("OPTBENCH_TRITON_ON_CPU", "1")


def on_device(device, weights, grads):
    return [w.to(device) for w in weights], [[g.to(device) for g in step] for step in grads]


class SyncGuard:
    """Wraps an optimizer: on CUDA every ``step()`` runs under ``set_sync_debug_mode("error")``,
    so a host synchronisation inside it fails the test."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def __getattr__(self, name):
        return getattr(self.optimizer, name)

    def step(self):
        if not torch.cuda.is_available():
            return self.optimizer.step()
        torch.cuda.set_sync_debug_mode("error")
        try:
            return self.optimizer.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")


def guarded(make):
    return lambda params: SyncGuard(make(params))


def cases():
    for name in CASES:
        yield pytest.param(name, SHAPES, id=name)
    for name in BIG_CASES:
        yield pytest.param(name, BIG_SHAPES, id=f"{name}-3chunks")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, shapes", list(cases()))
def test_matches_float64_reference(device, name, shapes):
    """Float32 parameters on the Triton path follow the float64 reference for 6 steps, to the
    tolerance of the other paths; LARC leaves ``p.grad`` unchanged (its factor is folded)."""
    make, make_reference = CASES[name]
    weights, grads = random_problem(shapes, steps=6)
    weights_d, grads_d = on_device(device, weights, grads)
    params, _ = run_package(guarded(make), weights_d, grads_d)
    expected = run_reference(make_reference(weights), grads)
    for p, ref, w, g in zip(params, expected, weights, grads[-1]):
        assert not torch.equal(p.detach().cpu(), w)
        torch.testing.assert_close(p.detach().cpu().double(), ref, rtol=1e-5, atol=1e-6)
        assert torch.equal(p.grad.cpu(), g)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["novograd", "novograd_decoupled", "larc_novograd_clip", "lars", "larc_sgd_clip"])
def test_bfloat16_params_track_the_float32_run(device, name):
    """bfloat16 parameters (NovoGrad's state float32) land within bfloat16 rounding of the same
    steps run in float32 on the Triton path."""
    make = CASES[name][0]
    weights, grads = random_problem(steps=3)
    weights = [w.bfloat16().float() for w in weights]
    grads = [[g.bfloat16().float() for g in step] for step in grads]
    weights_d, grads_d = on_device(device, weights, grads)
    low, optimizer = run_package(make, weights_d, grads_d, dtype=torch.bfloat16)
    high, _ = run_package(make, weights_d, grads_d)
    for p_low, p_high in zip(low, high):
        assert p_low.dtype == torch.bfloat16
        if "novograd" in name:
            assert optimizer.state[p_low]["exp_avg"].dtype == torch.float32
        torch.testing.assert_close(p_low.detach().float(), p_high.detach().bfloat16().float(), rtol=2e-2, atol=2e-2)


def _state_dict_bytes(optimizer) -> bytes:
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    return buffer.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["novograd_amsgrad", "larc_novograd_clip", "lars", "larc_sgd_nesterov_scale"])
def test_state_dict_round_trips_bit_exactly_across_paths(name, monkeypatch):
    """A Triton run resumed from a state_dict continues bit-identically; its state_dict has the
    foreach path's layout (keys, dtypes, shapes, devices), and the foreach path's state_dict loads
    into a Triton-path optimizer and saves back byte-identical."""
    make = CASES[name][0]
    weights, grads = random_problem(steps=6)
    straight, _ = run_package(make, weights, grads)
    resumed, triton_optimizer = interrupted_run(make, weights, grads, stop=3)
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)

    monkeypatch.setenv("OPTBENCH_TRITON_ON_CPU", "0")  # the foreach path
    _, foreach_optimizer = run_package(make, weights, grads)
    monkeypatch.setenv("OPTBENCH_TRITON_ON_CPU", "1")
    layout = [{k: (v.dtype, v.shape, v.device) for k, v in s.items() if torch.is_tensor(v)}
              for s in foreach_optimizer.state_dict()["state"].values()]
    assert layout == [{k: (v.dtype, v.shape, v.device) for k, v in s.items() if torch.is_tensor(v)}
                      for s in triton_optimizer.state_dict()["state"].values()]
    fresh = make([nn.Parameter(w.clone()) for w in weights])
    fresh.load_state_dict(torch.load(io.BytesIO(_state_dict_bytes(foreach_optimizer))))
    assert _state_dict_bytes(fresh) == _state_dict_bytes(foreach_optimizer)


# Paths of each optimizer: name -> options selecting them (None: the Triton path, via the fixture).
PATHS = {
    "novograd": {"single": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True},
                 "triton": {}},
    "lars": {"foreach": {"fused": False}, "triton": {}},
    "larc_sgd": {"foreach": {"foreach": True}, "triton": {}},
    "larc_novograd": {"foreach": {"foreach": True}, "fused": {"fused": True}, "triton": {}},
}
MAKERS = {
    "novograd": (lambda ps, o: NovoGrad(ps, lr=0.05, **o), lambda w: ReferenceNovoGrad(w, lr=0.05)),
    "lars": (lambda ps, o: LARS(ps, lr=0.1, eta=0.02, **o), lambda w: ReferenceLARS(w, lr=0.1, eta=0.02)),
    "larc_sgd": (lambda ps, o: LARC(SGD(ps, **SGD_OPTIONS, **o)),
                 lambda w: ReferenceLARC(ReferenceSGD(w, **SGD_OPTIONS))),
    "larc_novograd": (lambda ps, o: LARC(NovoGrad(ps, lr=0.01, **o)),
                      lambda w: ReferenceLARC(ReferenceNovoGrad(w, lr=0.01))),
}


@pytest.mark.parametrize("name, path", [(n, p) for n in PATHS for p in PATHS[n]])
def test_a_missing_gradient_skips_its_tensor_on_every_path(name, path, monkeypatch):
    """A tensor whose grad is None in the middle step neither moves nor advances its state; the
    others step; every tensor then follows its own float64 reference (layer-wise methods are
    per tensor), on every path of every optimizer."""
    make, make_reference = MAKERS[name]
    if path != "triton":  # "fused" is then the C++ kernel on these float32 CPU tensors
        monkeypatch.setenv("OPTBENCH_TRITON_ON_CPU", "0")
    weights, grads = random_problem(steps=3)
    params = [nn.Parameter(w.clone()) for w in weights]
    optimizer = make(params, PATHS[name][path])
    references = [make_reference([w]) for w in weights]
    for index, step_grads in enumerate(grads):
        for i, (p, g) in enumerate(zip(params, step_grads)):
            skip = index == 1 and i == 0
            p.grad = None if skip else g.clone()
            if not skip:
                references[i].step([g])
        before = params[0].detach().clone()
        optimizer.step()
        if index == 1:
            assert torch.equal(params[0].detach(), before)
    for p, reference in zip(params, references):
        torch.testing.assert_close(p.detach().double(), reference.params[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["larc_novograd_clip", "larc_novograd_scale", "lars", "larc_sgd_clip",
                                  "larc_sgd_nesterov_scale"])
def test_zero_weight_and_zero_grad_tensors_keep_factor_one(device, name):
    """An all-zero weight and an all-zero gradient tensor give layer factor 1 (no NaN), as in
    the reference."""
    make, make_reference = CASES[name]
    weights, grads = random_problem(steps=3)
    weights[0] = torch.zeros_like(weights[0])
    for step in grads:
        step[1] = torch.zeros_like(step[1])
    weights_d, grads_d = on_device(device, weights, grads)
    params, _ = run_package(make, weights_d, grads_d)
    expected = run_reference(make_reference(weights), grads)
    for p, ref in zip(params, expected):
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p.detach().cpu().double(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # the interpreter's numpy: ratio / 0
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["novograd", "larc_novograd_clip", "lars", "larc_sgd_clip"])
def test_zero_lr_moves_nothing(device, name):
    """lr = 0 (a warm-up's first step): LARC's clip turns its infinite ratio into 1, no weight
    moves, every state value is finite."""
    weights, grads = random_problem(steps=2)
    weights_d, grads_d = on_device(device, weights, grads)
    params = [nn.Parameter(w.clone()) for w in weights_d]
    optimizer = CASES[name][0](params)
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    for step in grads_d:
        for p, g in zip(params, step):
            p.grad = g.clone()
        optimizer.step()
    for p, w in zip(params, weights_d):
        assert torch.equal(p.detach(), w)
    for state in optimizer.state.values():
        assert all(torch.isfinite(v).all() for v in state.values() if torch.is_tensor(v))


# The dispatch rule as a table: (device, kernel dtypes, fused, foreach, triton importable,
# C++ kernel builds, has a compiled fallback) -> (path, warns).
DISPATCH = [
    ("cuda", True, None, None, True, False, True, "triton", False),
    ("cuda", True, True, None, True, False, True, "triton", False),
    ("cuda", True, None, True, True, False, True, "foreach", False),
    ("cuda", True, False, None, True, False, True, "foreach", False),
    ("cuda", True, None, False, True, False, True, "single", False),
    ("cuda", True, None, None, False, False, True, "foreach", True),
    ("cuda", True, True, None, False, False, True, "compiled", True),
    ("cuda", True, True, None, False, False, False, "foreach", True),
    ("cuda", False, None, None, True, False, True, "foreach", False),  # float64
    ("cuda", False, True, None, True, False, True, "compiled", True),
    ("cpu", True, None, None, True, True, True, "foreach", False),
    ("cpu", True, True, None, True, True, True, "cpu_kernel", False),
    ("cpu", True, True, None, True, False, True, "compiled", True),
    ("cpu", True, True, None, True, False, False, "foreach", True),
    ("cpu", False, None, None, True, False, True, "foreach", False),
    ("cpu", True, False, None, True, True, True, "foreach", False),
]


@pytest.mark.parametrize("device, kernel_tensors, fused, foreach, triton, cpu_kernel, compiled, path, warns", DISPATCH)
def test_dispatch_rule(device, kernel_tensors, fused, foreach, triton, cpu_kernel, compiled, path, warns):
    """The fastest correct path by device and dtype; explicit ``foreach``/``fused`` win; a fast
    path expected but unavailable says why, in one line."""
    chosen, why = dispatch.choose(device, kernel_tensors, fused=fused, foreach=foreach, triton=triton,
                                  cpu_kernel=cpu_kernel, compiled=compiled)
    assert chosen == path
    assert (why is not None) == warns
    if why:
        assert "\n" not in why


def test_triton_on_cpu_takes_the_kernels_for_every_default(monkeypatch):
    """With the interpreter switch, CPU tensors take the Triton path by default and with
    fused=True (float32 too, ahead of the C++ kernel); without it the CPU default is foreach."""
    tensors = [torch.zeros(3), torch.zeros(2, dtype=torch.bfloat16)]
    assert dispatch.implementation(tensors, fused=None, foreach=None) == "triton"
    assert dispatch.implementation(tensors[:1], fused=True, foreach=None, cpu_kernel=lambda: True) == "triton"
    monkeypatch.setenv("OPTBENCH_TRITON_ON_CPU", "0")
    assert dispatch.implementation(tensors, fused=None, foreach=None) == "foreach"


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["larc_novograd", "larc_sgd"])
def test_amp_grad_scaler_with_larc_skips_an_inf_step_on_cuda(name):
    """fp16 autocast with GradScaler and LARC on the Triton path: an inf gradient's step changes
    no weight and no state; the next step moves the weights."""
    model = nn.Linear(16, 8).cuda()
    optimizer = build_optimizer(name, model, lr=0.1)
    scaler = torch.amp.GradScaler("cuda")
    x, y = torch.randn(32, 16, device="cuda"), torch.randn(32, 8, device="cuda")

    def step(poison: bool) -> None:
        optimizer.zero_grad()
        with torch.autocast("cuda", dtype=torch.float16):
            loss = nn.functional.mse_loss(model(x), y)
        scaler.scale(loss).backward()
        if poison:
            model.weight.grad[0, 0] = float("inf")
        scaler.step(optimizer)
        scaler.update()

    step(poison=False)
    weights = [p.detach().clone() for p in model.parameters()]
    state = copy.deepcopy({p: dict(s) for p, s in optimizer.state.items()})
    step(poison=True)
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights))
    for p, saved in state.items():
        assert all(torch.equal(v, optimizer.state[p][k]) for k, v in saved.items() if torch.is_tensor(v))
    step(poison=False)
    assert not torch.equal(model.weight.detach(), weights[0])
