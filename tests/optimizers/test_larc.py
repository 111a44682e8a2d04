"""LARC against its float64 reference, and the wrapper contract: a real ``torch.optim.Optimizer``
that shares the inner optimizer's groups and state, so checkpoints, closures, LR schedulers and
AMP's GradScaler work on it unchanged."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.optim import SGD, Optimizer

from optimizers import LARC, NovoGrad, warn_if_clipping_with_larc

from .reference import (
    ReferenceLARC,
    ReferenceNovoGrad,
    ReferenceSGD,
    interrupted_run,
    random_problem,
    run_package,
    run_reference,
)

# Per mode, a rate and trust coefficient under which, on ``random_problem``, some layers are
# rescaled and (clip) some are not.
MODES = {"clip": {"lr": 0.01, "eta": 0.002}, "scale": {"lr": 0.1, "eta": 0.02}}

DECOUPLED = {"reg_inside_moment": False, "bias_correction": True, "grad_averaging": True, "weight_decay": 0.01}

# Inner optimizers: name -> (package factory, float64 reference factory), both taking (params, lr).
# Over SGD on float32 CPU tensors LARC takes torch's fused SGD kernel unless SGD is told foreach.
INNERS = {
    "sgd": (
        lambda params, lr: SGD(params, lr=lr, momentum=0.9, weight_decay=0.01),
        lambda weights, lr: ReferenceSGD(weights, lr=lr, momentum=0.9, weight_decay=0.01),
    ),
    "sgd_foreach": (
        lambda params, lr: SGD(params, lr=lr, momentum=0.9, weight_decay=0.01, foreach=True),
        lambda weights, lr: ReferenceSGD(weights, lr=lr, momentum=0.9, weight_decay=0.01),
    ),
    "sgd_dampened": (
        lambda params, lr: SGD(params, lr=lr, momentum=0.9, dampening=0.3, weight_decay=0.01),
        lambda weights, lr: ReferenceSGD(weights, lr=lr, momentum=0.9, dampening=0.3, weight_decay=0.01),
    ),
    "sgd_without_momentum": (
        lambda params, lr: SGD(params, lr=lr, weight_decay=0.01),
        lambda weights, lr: ReferenceSGD(weights, lr=lr, weight_decay=0.01),
    ),
    "sgd_nesterov": (
        lambda params, lr: SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda weights, lr: ReferenceSGD(weights, lr=lr, momentum=0.9, nesterov=True, weight_decay=0.01),
    ),
    "novograd": (
        lambda params, lr: NovoGrad(params, lr=lr),
        lambda weights, lr: ReferenceNovoGrad(weights, lr=lr),
    ),
    "novograd_decoupled_single": (
        lambda params, lr: NovoGrad(params, lr=lr, foreach=False, **DECOUPLED),
        lambda weights, lr: ReferenceNovoGrad(weights, lr=lr, **DECOUPLED),
    ),
    "novograd_decoupled": (
        lambda params, lr: NovoGrad(params, lr=lr, **DECOUPLED),
        lambda weights, lr: ReferenceNovoGrad(weights, lr=lr, **DECOUPLED),
    ),
    # The fused C++ kernel computes LARC's factor itself (NovoGrad.step_with_larc).
    "novograd_fused": (
        lambda params, lr: NovoGrad(params, lr=lr, fused=True),
        lambda weights, lr: ReferenceNovoGrad(weights, lr=lr),
    ),
    "novograd_decoupled_fused": (
        lambda params, lr: NovoGrad(params, lr=lr, fused=True, **DECOUPLED),
        lambda weights, lr: ReferenceNovoGrad(weights, lr=lr, **DECOUPLED),
    ),
}

REFERENCE_CASES = [  # slow where the fused C++ kernel is built (its first use in a process: 40 s and more)
    pytest.param(inner, mode, id=f"{inner}-{mode}", marks=[pytest.mark.slow] if "fused" in inner else [])
    for inner in INNERS
    for mode in MODES
]


def make_larc(inner: str, mode: str):
    lr, eta = MODES[mode]["lr"], MODES[mode]["eta"]
    return lambda params: LARC(INNERS[inner][0](params, lr), eta=eta, mode=mode)


@pytest.mark.parametrize("inner, mode", REFERENCE_CASES)
def test_matches_float64_reference(inner, mode):
    """LARC in clip and scale mode over SGD (momentum, weight decay) and over NovoGrad (folded
    through ``step_with_grad_scale``) follows the float64 reference for 20 steps; the run
    exercises rescaled layers and, in clip mode, unclipped ones too."""
    weights, grads = random_problem(steps=20)
    params, _ = run_package(make_larc(inner, mode), weights, grads)
    reference = ReferenceLARC(
        INNERS[inner][1](weights, MODES[mode]["lr"]), eta=MODES[mode]["eta"], mode=mode
    )
    expected = run_reference(reference, grads)
    factors = [s for step in reference.history for s in step]
    assert min(factors) < 0.5
    if mode == "clip":
        assert max(factors) == 1.0
    for p, ref in zip(params, expected):
        torch.testing.assert_close(p.detach().double(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("inner, mode", [
    pytest.param(inner, mode, id=f"{inner}-{mode}") for inner in ("sgd", "sgd_nesterov") for mode in MODES
])
def test_float64_parameters_match_the_reference_to_float64_precision(inner, mode):
    """float64 parameters get float64 norms and factors (never narrowed to float32): LARC then
    agrees with the float64 reference to 1e-12. (Over NovoGrad, whose v is a float32 scalar by
    design, float64 runs agree to float32 precision, as the float32 test checks.)"""
    weights, grads = random_problem(steps=20)
    params, _ = run_package(make_larc(inner, mode), weights, grads, dtype=torch.float64)
    reference = ReferenceLARC(INNERS[inner][1](weights, MODES[mode]["lr"]), eta=MODES[mode]["eta"], mode=mode)
    expected = run_reference(reference, grads)
    for p, ref in zip(params, expected):
        assert p.dtype == torch.float64
        torch.testing.assert_close(p.detach(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("inner, rewrites_grad", [
    ("sgd", False), ("sgd_without_momentum", False), ("sgd_foreach", True), ("sgd_nesterov", True),
    ("novograd", False), pytest.param("novograd_fused", False, marks=pytest.mark.slow)])
def test_only_optimizers_without_the_fold_hook_get_rewritten_gradients(inner, rewrites_grad):
    """Over SGD's own kernels (foreach, Nesterov), LARC leaves s·g in ``p.grad``; over NovoGrad
    it folds s into NovoGrad's step, and over SGD on the CPU default it folds s into torch's fused
    SGD kernel: ``p.grad`` stays the gradient backward produced."""
    weights, grads = random_problem(steps=1)
    params, _ = run_package(make_larc(inner, "clip"), weights, grads)
    reference = ReferenceLARC(INNERS[inner][1](weights, MODES["clip"]["lr"]))
    scales = reference.factors(grads[0])
    for p, g, s in zip(params, grads[0], scales):
        expected = g * s if rewrites_grad else g
        torch.testing.assert_close(p.grad, expected, rtol=1e-6, atol=0)
    assert min(scales) < 0.5


@pytest.mark.slow  # builds the fused C++ kernel (its first use in a process: 40 s and more)
@pytest.mark.parametrize("mode", MODES)
def test_fused_novograd_computes_larc_itself(mode):
    """Over fused NovoGrad on float32 CPU tensors LARC takes the kernel path (``fuses_larc``), which
    handles ‖w‖ = 0, ‖g‖ = 0, ``layer_adaptation=False`` groups and lr = 0 as the reference does."""
    gen = torch.Generator().manual_seed(3)
    zero_weight, zero_grad = nn.Parameter(torch.zeros(4)), nn.Parameter(torch.randn(3, generator=gen))
    normal, excluded = nn.Parameter(torch.randn(5, 2, generator=gen)), nn.Parameter(torch.randn(6, generator=gen))
    weights = [p.detach().double().clone() for p in (zero_weight, zero_grad, normal, excluded)]
    grads = [torch.randn(4, generator=gen), torch.zeros(3), 10 * torch.randn(5, 2, generator=gen),
             torch.randn(6, generator=gen)]
    inner = NovoGrad([{"params": [zero_weight, zero_grad, normal]},
                      {"params": [excluded], "layer_adaptation": False}], lr=MODES[mode]["lr"], fused=True)
    larc = LARC(inner, eta=MODES[mode]["eta"], mode=mode)
    for p, g in zip((zero_weight, zero_grad, normal, excluded), grads):
        p.grad = g.clone()
    assert inner.fuses_larc()
    larc.step()
    reference = ReferenceNovoGrad(weights, lr=MODES[mode]["lr"])
    factors = ReferenceLARC(ReferenceNovoGrad(weights, lr=MODES[mode]["lr"]), eta=MODES[mode]["eta"],
                            mode=mode).factors([g.double() for g in grads])
    factors[3] = 1.0  # the excluded group keeps its gradient
    assert factors[0] == factors[1] == 1.0 and factors[2] != 1.0
    reference.step([s * g.double() for s, g in zip(factors, grads)])
    for p, ref in zip((zero_weight, zero_grad, normal, excluded), reference.params):
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p.detach().double(), ref, rtol=1e-5, atol=1e-6)


def test_fused_novograd_larc_with_zero_lr_is_finite():
    """Clip mode divides by the rate: at lr = 0 (a warm-up's first step) s clips to 1, no NaN."""
    p = nn.Parameter(torch.randn(8))
    larc = LARC(NovoGrad([p], lr=0.0, fused=True, weight_decay=0.0), mode="clip")
    before = p.detach().clone()
    p.grad = torch.randn(8)
    larc.step()
    assert torch.equal(p.detach(), before)
    assert torch.isfinite(larc.state[p]["exp_avg"]).all()


@pytest.mark.parametrize("mode", MODES)
def test_zero_weight_or_zero_grad_keeps_the_gradient(mode):
    """A tensor with ‖w‖ = 0 or ‖g‖ = 0 keeps its gradient (s = 1), with no NaN, while a normal
    tensor beside it is rescaled (seen in ``p.grad``: SGD's foreach path gets rewritten gradients)."""
    zero_weight = nn.Parameter(torch.zeros(4))
    zero_grad = nn.Parameter(torch.randn(3))
    normal = nn.Parameter(torch.randn(5))
    grads = {zero_weight: torch.randn(4), zero_grad: torch.zeros(3), normal: 10 * torch.randn(5)}
    larc = LARC(SGD(list(grads), lr=0.1, foreach=True), eta=MODES[mode]["eta"], mode=mode)
    for p, g in grads.items():
        p.grad = g.clone()
    larc.step()
    assert torch.equal(zero_weight.grad, grads[zero_weight])
    assert torch.equal(zero_grad.grad, grads[zero_grad])
    assert not torch.equal(normal.grad, grads[normal])
    torch.testing.assert_close(zero_weight.detach(), -0.1 * grads[zero_weight])
    assert all(torch.isfinite(p).all() for p in grads)


@pytest.mark.parametrize("mode", MODES)
def test_group_without_layer_adaptation_is_not_rescaled(mode):
    """Tensors of a group with ``layer_adaptation=False`` step exactly as the bare inner optimizer
    would step them; tensors of the adapted group do not."""
    weights, grads = random_problem(steps=5)

    def make_groups(params):
        return [{"params": params[:2]}, {"params": params[2:], "layer_adaptation": False}]

    lr, eta = MODES[mode]["lr"], MODES[mode]["eta"]
    wrapped, _ = run_package(
        lambda params: LARC(SGD(make_groups(params), lr=lr, momentum=0.9), eta=eta, mode=mode), weights, grads
    )
    bare, _ = run_package(lambda params: SGD(make_groups(params), lr=lr, momentum=0.9), weights, grads)
    assert not torch.equal(wrapped[0], bare[0])
    assert torch.equal(wrapped[2], bare[2])


def test_is_an_optimizer_sharing_groups_and_state_with_the_inner_one():
    """LARC is a ``torch.optim.Optimizer`` whose ``param_groups`` and ``state`` are the very objects
    of the inner optimizer, before and after a step, and whose groups carry LARC's settings."""
    params = [nn.Parameter(torch.randn(3, 2))]
    inner = SGD(params, lr=0.1, momentum=0.9)
    larc = LARC(inner, eta=0.01, mode="scale")
    assert isinstance(larc, Optimizer)
    assert larc.param_groups is inner.param_groups and larc.state is inner.state
    params[0].grad = torch.randn(3, 2)
    larc.step()
    assert larc.param_groups is inner.param_groups and larc.state is inner.state
    assert "momentum_buffer" in larc.state[params[0]]
    assert inner.param_groups[0]["larc_eta"] == 0.01 and inner.param_groups[0]["larc_mode"] == "scale"
    larc.zero_grad()
    assert params[0].grad is None


def test_add_param_group_reaches_the_inner_optimizer():
    """A group added through LARC lands in the inner optimizer with LARC's defaults filled in."""
    larc = LARC(SGD([nn.Parameter(torch.randn(2))], lr=0.1), eta=0.01)
    extra = nn.Parameter(torch.randn(3))
    larc.add_param_group({"params": [extra]})
    assert larc.optimizer.param_groups[-1]["params"] == [extra]
    assert larc.param_groups[-1]["larc_eta"] == 0.01 and larc.param_groups[-1]["layer_adaptation"] is True


def test_step_evaluates_closure_once_and_returns_its_loss():
    """``step(closure)`` calls the closure exactly once, with gradients enabled, returns the loss
    the closure returned, and steps on the gradients the closure computed."""
    model = nn.Linear(3, 1)
    larc = LARC(SGD(model.parameters(), lr=0.1))
    x, y = torch.randn(4, 3), torch.randn(4, 1)
    losses = []

    def closure():
        assert torch.is_grad_enabled()
        larc.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        losses.append(loss)
        return loss

    before = model.weight.detach().clone()
    returned = larc.step(closure)
    assert len(losses) == 1 and returned is losses[0]
    assert not torch.equal(model.weight.detach(), before)


@pytest.mark.parametrize("inner", ["sgd", "novograd"])
@pytest.mark.parametrize("mode", MODES)
def test_state_dict_round_trip_is_bit_exact(inner, mode):
    """Saving LARC's state_dict after 5 steps and loading it into a fresh LARC over copied
    parameters continues bit-identically; the loaded wrapper still shares groups and state with
    its inner optimizer, and its groups keep LARC's settings."""
    weights, grads = random_problem(steps=12)
    make = make_larc(inner, mode)
    straight, _ = run_package(make, weights, grads)
    resumed, larc = interrupted_run(make, weights, grads, stop=5)
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)
    assert larc.param_groups is larc.optimizer.param_groups and larc.state is larc.optimizer.state
    assert all(p in larc.optimizer.state for p in resumed)
    assert larc.param_groups[0]["larc_mode"] == mode


def test_lr_scheduler_sets_the_rate_larc_clips_with():
    """A StepLR on LARC changes the group's lr, and clip mode uses the current lr: the run matches
    the reference whose rate decays the same way (with no scheduler-order warning)."""
    weights, grads = random_problem(steps=6)
    params = [nn.Parameter(w.clone()) for w in weights]
    larc = LARC(SGD(params, lr=0.1, momentum=0.9))
    scheduler = torch.optim.lr_scheduler.StepLR(larc, step_size=2, gamma=0.1)
    reference = ReferenceLARC(ReferenceSGD(weights, lr=0.1, momentum=0.9))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for index, step_grads in enumerate(grads):
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            larc.step()
            scheduler.step()
            reference.step(step_grads)
            reference.inner.lr = 0.1 * 0.1 ** ((index + 1) // 2)
    assert larc.param_groups[0]["lr"] == pytest.approx(1e-4)
    # Clipped and unclipped layers at each rate: the clip really depends on the lr.
    assert {s == 1.0 for step in reference.history for s in step} == {True, False}
    for p, ref in zip(params, reference.params):
        torch.testing.assert_close(p.detach().double(), ref, rtol=1e-5, atol=1e-6)


def _state_snapshot(optimizer: Optimizer) -> dict:
    return {p: {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()}


@pytest.mark.parametrize("inner", ["sgd", "novograd"])
def test_grad_scaler_skips_inf_steps_without_touching_state(inner):
    """Under ``torch.amp.GradScaler('cpu')`` a normal step equals LARC's step on the unscaled
    gradients; a step whose gradients hold inf is skipped, leaving parameters and every state
    tensor (momentum, NovoGrad's step count and moments) bit-identical and lowering the scale;
    the next finite step is taken."""
    model = nn.Linear(4, 3)
    twin = copy.deepcopy(model)
    larc = LARC(INNERS[inner][0](model.parameters(), 0.1))
    twin_larc = LARC(INNERS[inner][0](twin.parameters(), 0.1))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    x, y = torch.randn(8, 4), torch.randn(8, 3)

    def scaled_backward(poison: bool = False) -> None:
        larc.zero_grad()
        scaler.scale(nn.functional.mse_loss(model(x), y)).backward()
        if poison:
            model.weight.grad[0, 0] = float("inf")

    scaled_backward()
    scaler.step(larc)
    scaler.update()
    nn.functional.mse_loss(twin(x), y).backward()
    twin_larc.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)

    params, state, scale = [p.detach().clone() for p in model.parameters()], _state_snapshot(larc), scaler.get_scale()
    scaled_backward(poison=True)
    scaler.step(larc)
    scaler.update()
    assert scaler.get_scale() < scale
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params))
    assert state.keys() == larc.state.keys()
    for p, saved in state.items():
        assert saved.keys() == larc.state[p].keys()
        assert all(torch.equal(value, larc.state[p][key]) for key, value in saved.items())

    scaled_backward()
    scaler.step(larc)
    scaler.update()
    assert not torch.equal(model.weight.detach(), params[0])
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("make_optimizer, clip_val, warns", [
    (lambda ps: LARC(SGD(ps, lr=0.1)), 1.0, True),
    (lambda ps: SGD(ps, lr=0.1), 1.0, False),
    (lambda ps: LARC(SGD(ps, lr=0.1)), 0, False),
    (lambda ps: LARC(SGD(ps, lr=0.1)), None, False),
])
def test_warn_if_clipping_with_larc(make_optimizer, clip_val, warns):
    """Gradient clipping together with LARC warns (UserWarning) and returns True; plain optimizers
    and a clip of 0/None neither warn nor return True."""
    optimizer = make_optimizer([nn.Parameter(torch.ones(2))])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert warn_if_clipping_with_larc(optimizer, clip_val) is warns
    assert [w.category for w in caught] == ([UserWarning] if warns else [])
    if warns:
        assert "LARC" in str(caught[0].message)


@pytest.mark.parametrize("kwargs, match", [
    ({"eta": 0.0}, "eta value: 0.0"),
    ({"eta": -1.0}, "eta value: -1.0"),
    ({"mode": "bogus"}, "bogus"),
    ({"eps": -1e-7}, "-1e-07"),
    ({"min_update": -1.0}, "-1.0"),
])
def test_invalid_settings_raise_value_error(kwargs, match):
    """Invalid LARC settings raise ValueError with the bad value in the message."""
    with pytest.raises(ValueError, match=match):
        LARC(SGD([nn.Parameter(torch.ones(2))], lr=0.1), **kwargs)


@pytest.mark.parametrize("not_an_optimizer", [nn.Linear(2, 2), [nn.Parameter(torch.ones(2))]])
def test_wrapping_a_non_optimizer_raises_type_error(not_an_optimizer):
    """LARC accepts only a ``torch.optim.Optimizer``."""
    with pytest.raises(TypeError, match="Optimizer"):
        LARC(not_an_optimizer)


@pytest.mark.parametrize("inner", ["sgd", "novograd"])
def test_zero_lr_in_clip_mode_gives_no_nan(inner):
    """With lr = 0 (a warm-up's first step) clip mode's ratio is infinite and clips to 1: gradients
    stay as they were, finite, even beside zero-weight and zero-gradient tensors; no weight moves."""
    tensors = {
        nn.Parameter(torch.randn(4)): torch.randn(4),
        nn.Parameter(torch.zeros(3)): torch.randn(3),
        nn.Parameter(torch.zeros(2)): torch.zeros(2),
        nn.Parameter(torch.randn(5)): torch.zeros(5),
    }
    before = [p.detach().clone() for p in tensors]
    larc = LARC(INNERS[inner][0](list(tensors), 0.0), mode="clip")
    for p, g in tensors.items():
        p.grad = g.clone()
    larc.step()
    for (p, g), w in zip(tensors.items(), before):
        assert torch.equal(p.grad, g)
        assert torch.equal(p.detach(), w)
    for state in larc.state.values():
        assert all(torch.isfinite(value).all() for value in state.values())


# Inner optimizers and the momentum each cycling scheduler drives: group key -> its first entry.
CYCLING_INNERS = {
    "sgd": (lambda ps: SGD(ps, lr=0.01, momentum=0.9), "momentum"),
    "novograd": (lambda ps: NovoGrad(ps, lr=0.01), "betas"),
    "adam": (lambda ps: torch.optim.Adam(ps, lr=0.01), "betas"),
}
CYCLING_SCHEDULERS = {
    "one_cycle": lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=12),
    "cyclic": lambda opt: torch.optim.lr_scheduler.CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=3),
}


def _momentum(group: dict, key: str) -> float:
    return group[key] if key == "momentum" else group[key][0]


@pytest.mark.parametrize("scheduler", CYCLING_SCHEDULERS)
@pytest.mark.parametrize("inner", CYCLING_INNERS)
def test_momentum_cycling_schedulers_drive_the_inner_optimizer(inner, scheduler):
    """OneCycleLR and CyclicLR with their default ``cycle_momentum=True`` accept LARC (its
    defaults carry the inner optimizer's momentum or betas) and move the inner optimizer's rate
    and momentum (or β1) exactly as they move a bare inner optimizer's."""
    make_inner, key = CYCLING_INNERS[inner]
    make_scheduler = CYCLING_SCHEDULERS[scheduler]
    weights, grads = random_problem(steps=8)
    histories = []
    for wrap in (True, False):
        params = [nn.Parameter(w.clone()) for w in weights]
        optimizer = LARC(make_inner(params)) if wrap else make_inner(params)
        schedule = make_scheduler(optimizer)
        history = []
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            optimizer.step()
            schedule.step()
            group = optimizer.param_groups[0]
            history.append((group["lr"], _momentum(group, key)))
        histories.append(history)
    assert histories[0] == histories[1]
    assert len({momentum for _, momentum in histories[0]}) > 2  # the momentum really cycles


@pytest.mark.parametrize("inner, options", [
    ("sgd", {"foreach": True}), ("sgd", {"fused": True}), ("novograd", {"foreach": True}),
    ("novograd", {"fused": True}), ("adam", {"foreach": False}),
])
def test_step_hooks_run_once_per_step(inner, options):
    """Global and local step hooks run once around LARC's step, whatever the inner optimizer and
    its path: the inner step is a part of LARC's and runs without them."""
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    make = {"sgd": lambda ps: SGD(ps, lr=0.1, momentum=0.9, **options),
            "novograd": lambda ps: NovoGrad(ps, lr=0.1, **options),
            "adam": lambda ps: torch.optim.Adam(ps, lr=0.1, **options)}[inner]
    p = nn.Parameter(torch.randn(3, 2))
    larc = LARC(make([p]))
    calls = []
    handles = [
        register_optimizer_step_pre_hook(lambda *_: calls.append("global pre")),
        register_optimizer_step_post_hook(lambda *_: calls.append("global post")),
        larc.register_step_pre_hook(lambda *_: calls.append("pre")),
        larc.register_step_post_hook(lambda *_: calls.append("post")),
    ]
    try:
        for _ in range(2):
            p.grad = torch.randn(3, 2)
            larc.step()
    finally:
        for handle in handles:
            handle.remove()
    assert calls == ["global pre", "pre", "post", "global post"] * 2
    assert larc.state[p]  # the inner optimizer did step


def test_load_state_dict_hooks_registered_on_larc_run_around_the_load():
    """A load_state_dict pre-hook registered on LARC sees (and may replace) the state_dict before
    the inner optimizer loads it; a post-hook runs after, with the groups already shared."""
    p = nn.Parameter(torch.randn(3))
    larc = LARC(SGD([p], lr=0.1, momentum=0.9))
    p.grad = torch.randn(3)
    larc.step()
    saved = larc.state_dict()
    seen = []

    def pre_hook(optimizer, state_dict):
        seen.append(("pre", optimizer is larc))
        replaced = copy.deepcopy(state_dict)
        replaced["param_groups"][0]["lr"] = 0.5
        return replaced

    larc.register_load_state_dict_pre_hook(pre_hook)
    larc.register_load_state_dict_post_hook(
        lambda optimizer: seen.append(("post", optimizer.param_groups is optimizer.optimizer.param_groups)))
    larc.load_state_dict(saved)
    assert seen == [("pre", True), ("post", True)]
    assert larc.optimizer.param_groups[0]["lr"] == 0.5 and saved["param_groups"][0]["lr"] == 0.1


@pytest.mark.parametrize("inner", ["sgd", "novograd"])
def test_group_added_to_the_inner_optimizer_gets_larc_and_is_rescaled(inner):
    """A group added through ``larc.optimizer.add_param_group`` (past LARC) gets LARC's defaults at
    the next step and is rescaled like the others: the run matches the reference over the same
    groups."""
    weights, grads = random_problem(steps=4)
    lr = MODES["clip"]["lr"]
    params = [nn.Parameter(w.clone()) for w in weights]
    larc = LARC(INNERS[inner][0](params[:1], lr), eta=MODES["clip"]["eta"])
    larc.optimizer.add_param_group({"params": params[1:]})
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        larc.step()
    assert larc.param_groups[1]["larc_eta"] == MODES["clip"]["eta"] and larc.param_groups[1]["layer_adaptation"]
    reference = ReferenceLARC(INNERS[inner][1](weights, lr), eta=MODES["clip"]["eta"])
    expected = run_reference(reference, grads)
    assert min(s for step in reference.history for s in step[1:]) < 0.5  # the added tensors are rescaled
    for p, ref in zip(params, expected):
        torch.testing.assert_close(p.detach().double(), ref, rtol=1e-5, atol=1e-6)
