"""LARS against its float64 reference: trust ratio, momentum, weight decay, opted-out groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optimizers import LARS

from .reference import ReferenceLARS, random_problem, run_package, run_reference, step_all

# Settings: name -> LARS keyword arguments (also the reference's).
SETTINGS = {
    "defaults_large_lr": {"lr": 1.0},
    "eta": {"lr": 0.1, "eta": 0.02},
    "weight_decay": {"lr": 0.1, "eta": 0.02, "weight_decay": 0.01},
    "no_momentum_strong_decay": {"lr": 0.1, "eta": 0.02, "momentum": 0.0, "weight_decay": 0.05},
}


@pytest.mark.parametrize("setting", SETTINGS)
def test_matches_float64_reference(setting):
    """Float32 LARS follows the float64 reference (λ = η‖w‖/(‖g‖+β‖w‖+ε), v ← μv + γλ(g+βw),
    w ← w − v) for 20 steps of random multi-tensor gradients."""
    weights, grads = random_problem(steps=20)
    params, _ = run_package(lambda ps: LARS(ps, **SETTINGS[setting]), weights, grads)
    expected = run_reference(ReferenceLARS(weights, **SETTINGS[setting]), grads)
    for p, ref, w in zip(params, expected, weights):
        assert not torch.equal(p.detach(), w)
        torch.testing.assert_close(p.detach().double(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("setting", SETTINGS)
def test_float64_parameters_match_the_reference_to_float64_precision(setting):
    """float64 parameters get float64 norms (never narrowed to float32): LARS then agrees with
    the float64 reference to 1e-12."""
    weights, grads = random_problem(steps=20)
    params, _ = run_package(lambda ps: LARS(ps, **SETTINGS[setting]), weights, grads, dtype=torch.float64)
    expected = run_reference(ReferenceLARS(weights, **SETTINGS[setting]), grads)
    for p, ref in zip(params, expected):
        assert p.dtype == torch.float64
        torch.testing.assert_close(p.detach(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("setting", ["eta", "weight_decay"])
def test_group_without_layer_adaptation_uses_trust_one(setting):
    """Tensors in a group with ``layer_adaptation=False`` step with λ = 1 (plain momentum SGD with
    the group's lr), the others with their trust ratio."""
    weights, grads = random_problem(steps=20)
    options = SETTINGS[setting]

    def make(params):
        return LARS([{"params": params[:2]}, {"params": params[2:], "layer_adaptation": False}], **options)

    params, _ = run_package(make, weights, grads)
    expected = run_reference(ReferenceLARS(weights, adapt=[True, True, False], **options), grads)
    adapted_everywhere = run_reference(ReferenceLARS(weights, **options), grads)
    assert not torch.allclose(expected[2], adapted_everywhere[2], rtol=1e-3)
    for p, ref in zip(params, expected):
        torch.testing.assert_close(p.detach().double(), ref, rtol=1e-5, atol=1e-6)


def test_zero_weight_or_zero_grad_uses_trust_one():
    """λ = 1 where ‖w‖ = 0 or ‖g‖ = 0: no NaN, and the zero-weight tensor takes a plain SGD step."""
    zero_weight, zero_grad = nn.Parameter(torch.zeros(4)), nn.Parameter(torch.randn(3))
    grad = torch.randn(4)
    optimizer = LARS([zero_weight, zero_grad], lr=0.1, weight_decay=0.01)
    zero_weight.grad, zero_grad.grad = grad.clone(), torch.zeros(3)
    before = zero_grad.detach().clone()
    optimizer.step()
    torch.testing.assert_close(zero_weight.detach(), -0.1 * grad)
    # Only weight decay moves the zero-gradient tensor: v = γ·1·(0 + βw).
    torch.testing.assert_close(zero_grad.detach(), before - 0.1 * 0.01 * before)


def test_momentum_buffer_state_and_grad_none_skipped():
    """State is one momentum buffer like the parameter; a parameter without grad gets none."""
    stepped, skipped = nn.Parameter(torch.randn(3, 2)), nn.Parameter(torch.randn(2))
    optimizer = LARS([stepped, skipped], lr=0.1)
    stepped.grad = torch.randn(3, 2)
    optimizer.step()
    assert set(optimizer.state[stepped]) == {"momentum_buffer"}
    assert optimizer.state[stepped]["momentum_buffer"].shape == stepped.shape
    assert skipped not in optimizer.state


@pytest.mark.parametrize("bad, match", [
    ({"lr": -0.1}, "learning rate: -0.1"),
    ({"momentum": 1.0}, "momentum value: 1.0"),
    ({"momentum": -0.1}, "momentum value: -0.1"),
    ({"weight_decay": -0.01}, "weight_decay value: -0.01"),
    ({"eta": 0.0}, "eta value: 0.0"),
    ({"eta": -0.001}, "eta value: -0.001"),
    ({"eps": -1e-8}, "epsilon value: -1e-08"),
])
def test_invalid_hyper_parameters_raise(bad, match):
    """Invalid hyper-parameters raise ValueError naming the bad value."""
    with pytest.raises(ValueError, match=match):
        LARS([nn.Parameter(torch.ones(2))], **bad)


def test_state_dict_from_before_the_fused_option_resumes_bit_exactly():
    """A checkpoint saved before LARS had its ``fused`` option loads (the option gets its
    default) and continues bit-identically to an uninterrupted run."""
    weights, grads = random_problem(steps=8)
    make = lambda ps: LARS(ps, **SETTINGS["weight_decay"])  # noqa: E731
    straight, _ = run_package(make, weights, grads)
    params, optimizer = run_package(make, weights, grads[:3])
    old = optimizer.state_dict()
    for group in old["param_groups"]:
        del group["fused"]
    resumed = [nn.Parameter(p.detach().clone()) for p in params]
    fresh = make(resumed)
    fresh.load_state_dict(old)
    assert fresh.param_groups[0]["fused"] is None
    step_all(fresh, resumed, grads[3:])
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)
