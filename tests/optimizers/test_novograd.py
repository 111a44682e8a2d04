"""NovoGrad against its float64 reference, its three code paths against each other, its state
layout, checkpointing, edge cases and hand-computed golden values of the registry variants."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from optimizers import NovoGrad, build_optimizer

from .reference import ReferenceNovoGrad, interrupted_run, random_problem, run_package, run_reference, step_all

LR = 0.05

# Option combinations: name -> NovoGrad keyword arguments (also the reference's).
COMBOS = {
    "default": {},
    "grad_averaging": {"grad_averaging": True},
    "amsgrad": {"amsgrad": True},
    "bias_correction": {"bias_correction": True},
    "init_zero": {"init_zero": True},
    # A large eps, so that inside and outside the square root differ.
    "eps_inside_sqrt": {"eps_inside_sqrt": True, "eps": 1e-2},
    # apex's decoupled mode, with a decay large enough to be seen.
    "decoupled": {"reg_inside_moment": False, "bias_correction": True, "grad_averaging": True, "weight_decay": 0.01},
    "strong_weight_decay": {"weight_decay": 0.05},
    "no_weight_decay": {"weight_decay": 0.0},
}

# "sgd_kernel" is the CPU default for float32 (no option set): torch's fused SGD kernel per tensor.
PATHS = {"single": {"foreach": False}, "foreach": {"foreach": True}, "sgd_kernel": {}, "fused": {"fused": True}}

REFERENCE_CASES = [
    # "fused" on float32 CPU tensors is the C++ kernel (built once per machine, then cached).
    *(pytest.param(combo, path, id=f"{combo}-{path}") for combo in COMBOS for path in ("single", "foreach", "sgd_kernel", "fused")),
    # The torch.compile fallback takes seconds per option set: two combinations cover it.
    *(pytest.param(combo, "compiled", id=f"{combo}-compiled", marks=pytest.mark.slow) for combo in ("default", "decoupled")),
]


@pytest.fixture
def path_options(request, monkeypatch):
    """NovoGrad keyword arguments selecting a code path; "compiled" is the fused path with the C++
    kernel unavailable (as where no compiler is installed), which falls back to torch.compile."""
    def options(path):
        if path == "compiled":
            monkeypatch.setattr("optimizers.novograd._cpu_kernel", lambda *args: None)
            return {"fused": True}
        return PATHS[path]
    return options


def make_novograd(lr=LR, **options):
    return lambda params: NovoGrad(params, lr=lr, **options)


@pytest.mark.parametrize("combo, path", REFERENCE_CASES)
def test_matches_float64_reference(combo, path, path_options):
    """Float32 NovoGrad follows the float64 reference for 20 steps of random multi-tensor
    gradients, for every option combination and code path."""
    weights, grads = random_problem(steps=20)
    params, _ = run_package(make_novograd(**COMBOS[combo], **path_options(path)), weights, grads)
    expected = run_reference(ReferenceNovoGrad(weights, lr=LR, **COMBOS[combo]), grads)
    for p, ref in zip(params, expected):
        torch.testing.assert_close(p.detach().double(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", ["foreach", "sgd_kernel"])
@pytest.mark.parametrize("combo", COMBOS)
def test_multi_tensor_paths_equal_single_tensor(combo, path):
    """The multi-tensor paths compute the single-tensor path's update up to float32 rounding
    (20 steps accumulate a few ulps: the paths order their operations differently)."""
    weights, grads = random_problem(steps=20)
    single, _ = run_package(make_novograd(**COMBOS[combo], foreach=False), weights, grads)
    multi, _ = run_package(make_novograd(**COMBOS[combo], **PATHS[path]), weights, grads)
    for a, b in zip(single, multi):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=2e-6)




@pytest.mark.parametrize("combo", ["default", "decoupled"])
@pytest.mark.parametrize("path", ["single", "foreach", "sgd_kernel", "fused"])
def test_step_with_grad_scale_is_a_step_on_scaled_gradients(combo, path):
    """``step_with_grad_scale(s, ‖g‖²)`` (LARC's folded hook) is a NovoGrad step on s·g."""
    weights, grads = random_problem(steps=10)
    gen = torch.Generator().manual_seed(1)
    scales = [[torch.rand((), generator=gen) + 0.1 for _ in weights] for _ in grads]
    params = [nn.Parameter(w.clone()) for w in weights]
    optimizer = NovoGrad(params, lr=LR, **COMBOS[combo], **PATHS[path])
    for step_grads, step_scales in zip(grads, scales):
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        optimizer.step_with_grad_scale(
            dict(zip(params, step_scales)), {p: g.square().sum() for p, g in zip(params, step_grads)}
        )
    reference = ReferenceNovoGrad(weights, lr=LR, **COMBOS[combo])
    for step_grads, step_scales in zip(grads, scales):
        reference.step([s.double() * g.double() for s, g in zip(step_scales, step_grads)])
    for p, ref in zip(params, reference.params):
        torch.testing.assert_close(p.detach().double(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("path", ["single", "foreach", "sgd_kernel"])
def test_state_layout(amsgrad, path):
    """State per tensor is exactly: step (CPU float32 count), exp_avg (like the parameter),
    exp_avg_sq (0-dim float32) and, only with amsgrad, max_exp_avg_sq (0-dim float32)."""
    weights, grads = random_problem(steps=3)
    params, optimizer = run_package(make_novograd(amsgrad=amsgrad, **PATHS[path]), weights, grads)
    expected_keys = {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if amsgrad else set())
    for p in params:
        state = optimizer.state[p]
        assert set(state) == expected_keys
        assert state["step"].device.type == "cpu" and state["step"].dtype == torch.float32
        assert state["step"].item() == 3
        assert state["exp_avg"].shape == p.shape and state["exp_avg"].dtype == p.dtype
        for key in expected_keys - {"step", "exp_avg"}:
            assert state[key].shape == () and state[key].dtype == torch.float32


@pytest.mark.parametrize("path", ["single", "foreach"])
def test_bfloat16_params_keep_float32_state_and_track_float32_run(path):
    """With bfloat16 parameters the moments are float32, and three steps land close to the same
    steps run in float32 and cast to bfloat16 (the bfloat16 run rounds the weights each step)."""
    weights, grads = random_problem(steps=3)
    weights = [w.bfloat16().float() for w in weights]
    grads = [[g.bfloat16().float() for g in step] for step in grads]
    low, optimizer = run_package(make_novograd(lr=0.1, **PATHS[path]), weights, grads, dtype=torch.bfloat16)
    high, _ = run_package(make_novograd(lr=0.1, **PATHS[path]), weights, grads)
    for p_low, p_high in zip(low, high):
        assert p_low.dtype == torch.bfloat16
        assert optimizer.state[p_low]["exp_avg"].dtype == torch.float32
        assert optimizer.state[p_low]["exp_avg_sq"].dtype == torch.float32
        torch.testing.assert_close(p_low.detach().float(), p_high.detach().bfloat16().float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize(
    "combo, path",
    [("default", "single"), ("default", "foreach"), ("amsgrad", "foreach"), ("decoupled", "foreach"),
     ("default", "sgd_kernel"), ("decoupled", "sgd_kernel")],
)
def test_state_dict_round_trip_is_bit_exact(combo, path):
    """Saving after 5 steps and resuming in a fresh optimizer over copied parameters continues
    bit-identically to an uninterrupted run; the loaded step count stays a CPU float32 tensor."""
    weights, grads = random_problem(steps=12)
    make = make_novograd(**COMBOS[combo], **PATHS[path])
    straight, _ = run_package(make, weights, grads)
    resumed, optimizer = interrupted_run(make, weights, grads, stop=5)
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)
    for state in optimizer.state.values():
        assert state["step"].device.type == "cpu" and state["step"].dtype == torch.float32


def test_load_state_dict_keeps_float32_state_for_bfloat16_params():
    """After ``load_state_dict`` bfloat16 parameters still have float32 exp_avg and exp_avg_sq and a
    CPU float32 step (the base class would cast them all to bfloat16)."""
    weights, grads = random_problem(steps=4)
    _, optimizer = interrupted_run(make_novograd(), weights, grads, stop=2, dtype=torch.bfloat16)
    for state in optimizer.state.values():
        assert state["exp_avg"].dtype == torch.float32
        assert state["exp_avg_sq"].dtype == torch.float32
        assert state["step"].device.type == "cpu" and state["step"].dtype == torch.float32


def test_state_dict_round_trip_is_bit_exact_for_bfloat16_params():
    """Resuming bfloat16 parameters from a state_dict continues bit-identically, like float32."""
    weights, grads = random_problem(steps=8)
    straight, _ = run_package(make_novograd(), weights, grads, dtype=torch.bfloat16)
    resumed, _ = interrupted_run(make_novograd(), weights, grads, stop=3, dtype=torch.bfloat16)
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)


ZERO_GRAD_COMBOS = ["default", "decoupled", "eps_inside_sqrt", "amsgrad"]


@pytest.mark.parametrize("combo", ZERO_GRAD_COMBOS)
@pytest.mark.parametrize("path", ["single", "foreach", "sgd_kernel"])
def test_zero_gradient_changes_weights_only_by_weight_decay(combo, path):
    """All-zero gradients from the first step: no NaN, and the weights move exactly as weight decay
    alone moves them (the float64 reference with zero gradients)."""
    weights, _ = random_problem()
    zeros = [[torch.zeros_like(w) for w in weights] for _ in range(5)]
    options = {**COMBOS[combo], "weight_decay": 0.05, "bias_correction": True}
    params, _ = run_package(make_novograd(**options, **PATHS[path]), weights, zeros)
    expected = run_reference(ReferenceNovoGrad(weights, lr=LR, **options), zeros)
    for p, ref, w in zip(params, expected, weights):
        assert torch.isfinite(p).all()
        assert not torch.equal(p.detach(), w)
        torch.testing.assert_close(p.detach().double(), ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("combo", ZERO_GRAD_COMBOS)
@pytest.mark.parametrize("path", ["single", "foreach", "sgd_kernel"])
def test_zero_gradient_without_weight_decay_leaves_weights_unchanged(combo, path):
    """All-zero gradients and weight_decay=0: every weight stays bit-identical."""
    weights, _ = random_problem()
    zeros = [[torch.zeros_like(w) for w in weights] for _ in range(3)]
    params, _ = run_package(make_novograd(**{**COMBOS[combo], "weight_decay": 0.0}, **PATHS[path]), weights, zeros)
    for p, w in zip(params, weights):
        assert torch.equal(p.detach(), w)


@pytest.mark.parametrize("path", ["single", "foreach", "sgd_kernel"])
def test_params_without_grad_are_skipped(path):
    """A parameter whose grad is None gets no state and does not move; the others step."""
    stepped, skipped = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(4))
    optimizer = NovoGrad([stepped, skipped], lr=0.1, **PATHS[path])
    stepped.grad = torch.ones(3)
    optimizer.step()
    assert skipped not in optimizer.state
    assert torch.equal(skipped.detach(), torch.ones(4))
    assert not torch.equal(stepped.detach(), torch.ones(3))


@pytest.mark.parametrize("path", ["single", "foreach", "sgd_kernel"])
def test_each_tensor_counts_its_own_steps(path):
    """A tensor whose grad was None for the first two steps starts its own step count (and bias
    correction, and v initialisation) when it first gets a gradient, beside a tensor at step 3."""
    weights, grads = random_problem(steps=6)
    params = [nn.Parameter(w.clone()) for w in weights[:2]]
    optimizer = NovoGrad(params, lr=LR, bias_correction=True, **PATHS[path])
    references = [ReferenceNovoGrad([w], lr=LR, bias_correction=True) for w in weights[:2]]
    for index, step_grads in enumerate(grads):
        late_has_grad = index >= 2
        params[0].grad = step_grads[0].clone()
        params[1].grad = step_grads[1].clone() if late_has_grad else None
        optimizer.step()
        references[0].step([step_grads[0]])
        if late_has_grad:
            references[1].step([step_grads[1]])
    assert optimizer.state[params[0]]["step"].item() == 6 and optimizer.state[params[1]]["step"].item() == 4
    for p, reference in zip(params, references):
        torch.testing.assert_close(p.detach().double(), reference.params[0], rtol=1e-5, atol=1e-6)


def test_sparse_gradient_raises():
    """A sparse gradient is rejected with a RuntimeError that says so."""
    p = nn.Parameter(torch.ones(3, 2))
    optimizer = NovoGrad([p], lr=0.1)
    p.grad = torch.ones(3, 2).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        optimizer.step()


@pytest.mark.parametrize(
    "path",
    ["single", "foreach"],
)
def test_float64_params_keep_float64_precision(path):
    """Float64 weights are not rounded to float32: a step with lr=0 leaves them bit-identical."""
    p = nn.Parameter(torch.tensor([1.0 / 3.0, 2.0 / 7.0], dtype=torch.float64))
    before = p.detach().clone()
    optimizer = NovoGrad([p], lr=0.0, weight_decay=0.0, **PATHS[path])
    p.grad = torch.tensor([1.0, -1.0], dtype=torch.float64)
    optimizer.step()
    assert torch.equal(p.detach(), before)


@pytest.mark.parametrize("bad, match", [
    ({"lr": -0.1}, "-0.1"),
    ({"betas": (1.0, 0.98)}, "index 0: 1.0"),
    ({"betas": (0.95, -0.1)}, "index 1: -0.1"),
    ({"eps": -1e-8}, "-1e-08"),
    ({"weight_decay": -0.5}, "-0.5"),
    ({"fused": True, "foreach": True}, "fused"),
])
def test_invalid_hyper_parameters_raise(bad, match):
    """Invalid hyper-parameters raise ValueError naming the bad value."""
    with pytest.raises(ValueError, match=match):
        NovoGrad([nn.Parameter(torch.ones(2))], **bad)


# Golden values: w0 = [1, 2], g1 = [3, 4] (‖g1‖² = 25), g2 = [6, 8] (‖g2‖² = 100), two steps.
W0, G1, G2 = [1.0, 2.0], [3.0, 4.0], [6.0, 8.0]


def two_steps(optimizer_name, w0=W0, **options):
    p = nn.Parameter(torch.tensor(w0))
    # exclude_bias_and_norm=False: a 1-D tensor would otherwise land in the no-decay group.
    optimizer = build_optimizer(optimizer_name, [p], exclude_bias_and_norm=False, **options)
    for g in (G1, G2):
        p.grad = torch.tensor(g)
        optimizer.step()
    return p.detach()


def test_golden_novograd():
    """``novograd`` (lr 0.1, default β 0.95/0.98, ε 1e-8, d 1e-3), by hand:
    step 1: v = 25, denom = 5 + 1e-8; m = g1/denom + d·w0 = [0.601, 0.802];
            w1 = w0 − 0.1·m = [0.9399, 1.9198]
    step 2: v = 0.98·25 + 0.02·100 = 26.5, denom = √26.5 + 1e-8 = 5.14781508;
            m = 0.95·[0.601, 0.802] + [6, 8]/5.14781508 + 0.001·w1 = [1.73743293, 2.31787718];
            w2 = w1 − 0.1·m = [0.76615671, 1.68801228]
    """
    torch.testing.assert_close(two_steps("novograd", lr=0.1), torch.tensor([0.7661567069775314, 1.6880122826367085]),
                               rtol=1e-6, atol=0)


def test_golden_novograd_os2s():
    """``novograd_os2s`` (lr 0.1, ε = 1 to make its place visible, betas passed as (0.95, 0.98) but
    β2 is effectively 0, d 1e-3), by hand:
    step 1: v = 25, denom = √(25 + 1) = 5.09901951; m = g1/denom + d·w0 = [0.58934841, 0.78646454];
            w1 = w0 − 0.1·m = [0.94106516, 1.92135355]
    step 2: v = ‖g2‖² = 100 (not 0.98·25 + 0.02·100), denom = √101 = 10.04987562;
            m = 0.95·m + g2/denom + d·w1 = [1.15784436, 1.54509242]; w2 = w1 − 0.1·m
    """
    result = two_steps("novograd_os2s", lr=0.1, eps=1.0, betas=(0.95, 0.98))
    torch.testing.assert_close(result, torch.tensor([0.8252807230156171, 1.7668443040208228]), rtol=1e-6, atol=0)


def test_golden_novograd_apex():
    """``novograd_apex`` with only its registry defaults (lr 1e-3, β 0.9/0.999, ε 1e-8, d 0,
    grad averaging, bias correction, decoupled), w0 = [0.01, −0.02], by hand:
    step 1: m = 0.1·g1 = [0.3, 0.4], m̂ = m/0.1 = [3, 4]; v = 25, v̂ = 25/0.001 = 25000,
            denom = √25000 + 1e-8 = 158.11388302; w1 = w0 − 1e-3·m̂/denom = [0.00998103, −0.02002530]
    step 2: m = 0.9·m + 0.1·g2 = [0.87, 1.16], m̂ = m/(1 − 0.81) = [4.57894737, 6.10526316];
            v = 0.999·25 + 0.001·100 = 25.075, v̂ = v/(1 − 0.999²) = 12543.77188594,
            denom = 111.99898164; w2 = w1 − 1e-3·m̂/denom = [0.00994014, −0.02007981]
    """
    result = two_steps("novograd_apex", w0=[0.01, -0.02])
    torch.testing.assert_close(result, torch.tensor([0.009940142503656997, -0.020079809995124005]), rtol=1e-6, atol=0)


@pytest.mark.slow
def test_fused_float64_takes_the_compiled_path_at_float64_precision(path_options):
    """``fused=True`` on float64 parameters (the compiled reference: no kernel takes float64)
    steps without narrowing a norm or a coefficient to float32: it agrees with the float64
    single-tensor path up to the rounding of v, the float32 scalar both keep by design (a float32
    coefficient alone would differ by ~1e-8 relative per step)."""
    weights, grads = random_problem(steps=10)
    single, _ = run_package(make_novograd(**COMBOS["decoupled"], foreach=False), weights, grads, dtype=torch.float64)
    fused, optimizer = run_package(make_novograd(**COMBOS["decoupled"], **path_options("compiled")), weights, grads,
                                   dtype=torch.float64)
    expected = run_reference(ReferenceNovoGrad(weights, lr=LR, **COMBOS["decoupled"]), grads)
    for p, s, ref in zip(fused, single, expected):
        assert p.dtype == torch.float64 and optimizer.state[p]["exp_avg"].dtype == torch.float64
        torch.testing.assert_close(p.detach(), s.detach(), rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(p.detach(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_compiled_path_runs_on_past_dynamo_recompile_limit(path_options):
    """Differently laid-out fused optimizers in one process, each with a layer frozen for a while
    (new tensor lists: a compile each), pass dynamo's recompile limit (here lowered to 1) and
    still step as the single-tensor reference: past the limit the same body runs uncompiled."""
    options = path_options("compiled")
    torch.compiler.reset()
    with torch.compiler.config.patch(recompile_limit=1):
        for layers in (2, 3):
            model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(layers)]).to(torch.bfloat16)
            twin = copy.deepcopy(model)
            fused, single = NovoGrad(model.parameters(), **options), NovoGrad(twin.parameters(), foreach=False)
            x = torch.randn(2, 4, dtype=torch.bfloat16)
            for i in range(5):
                for m, optimizer in ((model, fused), (twin, single)):
                    m[0].requires_grad_(not 1 <= i < 3)
                    optimizer.zero_grad()
                    m(x).float().sum().backward()
                    optimizer.step()
            for p, q in zip(model.parameters(), twin.parameters()):
                torch.testing.assert_close(p, q, rtol=2e-2, atol=1e-2)


@pytest.mark.slow
@pytest.mark.parametrize("combo", ["default", "decoupled", "amsgrad"])
def test_compiled_body_has_no_graph_break(combo):
    """The fused fallback compiles the single-tensor reference without ``fullgraph`` (so that it
    can run past the recompile limit); the body itself compiles whole."""
    from optimizers.novograd import _single_tensor_novograd

    torch.compiler.reset()
    compiled = torch.compile(_single_tensor_novograd, fullgraph=True)
    options = COMBOS[combo]
    amsgrad = options.get("amsgrad", False)
    params = [torch.randn(3, 2), torch.randn(4)]
    grads = [torch.randn_like(p) for p in params]
    scalars = dict(lr=0.1, beta1=0.9, beta2_t=0.0, beta3=1.0, bias_correction1=1.0, bias_correction2=1.0,
                   eps=1e-8, weight_decay=0.01)
    compiled(params, grads, [torch.zeros_like(p) for p in params], [torch.zeros(()) for _ in params],
             [torch.zeros(()) for _ in params] if amsgrad else None, None, None,
             **{k: torch.tensor(v) for k, v in scalars.items()}, amsgrad=amsgrad,
             eps_inside_sqrt=options.get("eps_inside_sqrt", False),
             reg_inside_moment=options.get("reg_inside_moment", True))


@pytest.mark.parametrize("path", ["single", "foreach", "sgd_kernel", "fused"])
def test_older_state_dicts_resume_bit_exactly(path):
    """A state_dict whose ``step`` is a plain number (older checkpoints) and whose groups predate
    the ``foreach``/``fused`` options loads, gets the defaults and the CPU float32 step count,
    and continues bit-identically to an uninterrupted run."""
    weights, grads = random_problem(steps=8)
    make = make_novograd(**PATHS[path])
    straight, _ = run_package(make, weights, grads)
    params, optimizer = run_package(make, weights, grads[:3])
    old = copy.deepcopy(optimizer.state_dict())
    for state in old["state"].values():
        state["step"] = state["step"].item()
    for group in old["param_groups"]:
        del group["foreach"], group["fused"]
    resumed = [nn.Parameter(p.detach().clone()) for p in params]
    fresh = make(resumed)
    fresh.load_state_dict(old)
    assert fresh.param_groups[0]["foreach"] is None and fresh.param_groups[0]["fused"] is None
    for group, options in ((g, PATHS[path]) for g in fresh.param_groups):
        group.update(options)  # the old checkpoint had no path: run on the one under test
    for state in fresh.state.values():
        assert state["step"].device.type == "cpu" and state["step"].dtype == torch.float32
    step_all(fresh, resumed, grads[3:])
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)



@pytest.mark.parametrize("tensor, options, expected", [
    (torch.zeros(3, 4), {}, "sgd_kernel"),
    (torch.zeros(3, 4), {"betas": (0.0, 0.98)}, "foreach"),  # β1 = 0: the kernel keeps no moment
    (torch.zeros(4, 3).t(), {}, "foreach"),  # the CPU kernel reads raw pointers: contiguous only
    (torch.zeros(3, 4, dtype=torch.float64), {}, "foreach"),
    (torch.zeros(3, 4, dtype=torch.bfloat16), {}, "foreach"),
    (torch.zeros(3, 4), {"foreach": True}, "foreach"),
])
def test_cpu_default_path_is_the_sgd_kernel_where_it_applies(tensor, options, expected, monkeypatch):
    """Left unset, float32 contiguous CPU tensors step through torch's fused SGD kernel; other
    dtypes, layouts, β1 = 0 and an explicit ``foreach=True`` take the foreach kernels. Either way
    two steps follow the float64 reference."""
    monkeypatch.setenv("OPTBENCH_TRITON_ON_CPU", "0")
    calls = []
    real = torch._fused_sgd_
    monkeypatch.setattr(torch, "_fused_sgd_", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(tensor.shape, generator=gen).to(tensor.dtype)
    p = nn.Parameter(tensor.copy_(start))
    betas = options.get("betas", (0.95, 0.98))
    optimizer = NovoGrad([p], lr=0.1, **options)
    reference = ReferenceNovoGrad([start], lr=0.1, betas=betas)
    for _ in range(2):
        grad = torch.randn(tensor.shape, generator=gen)
        p.grad = grad.to(tensor.dtype).t().contiguous().t() if not tensor.is_contiguous() else grad.to(tensor.dtype)
        optimizer.step()
        reference.step([p.grad.double()])
    assert ("sgd_kernel" if calls else "foreach") == expected
    tolerance = 2e-2 if tensor.dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(p.detach().double(), reference.params[0], rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("combo", ["default", "decoupled"])
def test_sgd_kernel_leaves_gradients_unchanged(combo):
    """The default CPU path reads the gradients and never writes them (as the foreach path)."""
    weights, grads = random_problem(steps=3)
    params, _ = run_package(make_novograd(**COMBOS[combo]), weights, grads)
    for p, g in zip(params, grads[-1]):
        assert torch.equal(p.grad, g)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_sgd_kernel_falls_back_to_foreach_on_a_non_finite_gradient(bad):
    """An inf or NaN gradient (a diverging run) gives coefficients the SGD kernel cannot carry:
    that step runs the foreach kernels instead, and the run matches the foreach path's, NaN where
    it has NaN."""
    weights, grads = random_problem(steps=4)
    grads[2][1] = grads[2][1].clone()
    grads[2][1][0] = bad
    default, _ = run_package(make_novograd(), weights, grads)
    foreach, _ = run_package(make_novograd(foreach=True), weights, grads)
    assert not torch.isfinite(foreach[1]).all()
    for a, b in zip(default, foreach):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=2e-6, equal_nan=True)
