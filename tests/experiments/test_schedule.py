"""Learning-rate schedules (pure functions of the step) and batch-size scaling of the rate."""

from __future__ import annotations

import math

import pytest

from experiments.schedule import lr_multiplier, scaled_lr


@pytest.mark.parametrize("name", ["constant", "cosine", "polynomial"])
def test_warmup_is_linear_from_one_over_warmup(name):
    """During warm-up the factor is (step + 1) / warmup_steps whatever the decay, reaching 1 at
    the last warm-up step and staying 1 at the first step after it."""
    warmup = 8
    factors = [lr_multiplier(s, name=name, max_steps=100, warmup_steps=warmup, min_lr_ratio=0.1) for s in range(warmup + 1)]
    assert factors[:warmup] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    assert factors[warmup] == pytest.approx(1.0)
    steps = [b - a for a, b in zip(factors[: warmup - 1], factors[1:warmup])]
    assert steps == pytest.approx([1 / warmup] * (warmup - 1))


@pytest.mark.parametrize("min_lr_ratio", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("warmup", [0, 10])
def test_cosine(min_lr_ratio, warmup):
    """Cosine decays from 1 after warm-up to min_lr_ratio at max_steps (and stays there), through
    the midpoint (1 + min_lr_ratio) / 2, monotonically."""
    max_steps = 110

    def f(step):
        return lr_multiplier(step, name="cosine", max_steps=max_steps, warmup_steps=warmup, min_lr_ratio=min_lr_ratio)

    assert f(warmup) == pytest.approx(1.0)
    assert f((warmup + max_steps) // 2) == pytest.approx((1 + min_lr_ratio) / 2)
    assert f(max_steps) == pytest.approx(min_lr_ratio)
    assert f(max_steps + 50) == pytest.approx(min_lr_ratio)
    decay = [f(s) for s in range(warmup, max_steps + 1)]
    assert all(b <= a for a, b in zip(decay, decay[1:]))


@pytest.mark.parametrize("power", [1.0, 2.0, 0.5])
def test_polynomial(power):
    """Polynomial: min + (1 − min)·(1 − progress)^power, progress counted after warm-up."""
    warmup, max_steps, floor = 4, 24, 0.2
    for step in range(warmup, max_steps + 5):
        progress = min(1.0, (step - warmup) / (max_steps - warmup))
        expected = floor + (1 - floor) * (1 - progress) ** power
        got = lr_multiplier(step, name="polynomial", max_steps=max_steps, warmup_steps=warmup, min_lr_ratio=floor, power=power)
        assert got == pytest.approx(expected), step


def test_constant():
    """Constant is 1 at every step after warm-up, min_lr_ratio notwithstanding."""
    assert {lr_multiplier(s, name="constant", max_steps=10, min_lr_ratio=0.3) for s in range(0, 20)} == {1.0}


def test_pure_function_of_the_step():
    """The factor depends only on its arguments: a resumed run recomputes the same rate."""
    args = dict(name="cosine", max_steps=50, warmup_steps=5, min_lr_ratio=0.1)
    first = [lr_multiplier(s, **args) for s in range(60)]
    assert [lr_multiplier(s, **args) for s in reversed(range(60))][::-1] == first


def test_unknown_schedule_names_the_valid_ones():
    """An unknown schedule name is a ValueError listing the valid names."""
    with pytest.raises(ValueError, match="'linear'.*constant, cosine, polynomial"):
        lr_multiplier(0, name="linear", max_steps=10)


@pytest.mark.parametrize("rule, batch, reference, expected", [
    ("none", 256, 64, 0.1),
    ("linear", 256, 64, 0.4),
    ("linear", 32, 64, 0.05),
    ("sqrt", 256, 64, 0.2),
    ("sqrt", 16, 64, 0.05),
    ("linear", 64, 64, 0.1),
    ("sqrt", 64, 64, 0.1),
])
def test_scaled_lr(rule, batch, reference, expected):
    """lr × (batch / reference) for linear, × its square root for sqrt, unchanged for none."""
    assert scaled_lr(0.1, rule, batch, reference) == pytest.approx(expected)


def test_unknown_scaling_rule():
    """An unknown scaling rule is a ValueError listing the valid rules."""
    with pytest.raises(ValueError, match="none, linear, sqrt"):
        scaled_lr(0.1, "cubic", 128, 64)


def test_cosine_is_the_textbook_formula():
    """Cosine without warm-up equals 0.5·(1 + cos(π·t/T)) at every step."""
    for step in range(0, 31):
        assert lr_multiplier(step, name="cosine", max_steps=30) == pytest.approx(0.5 * (1 + math.cos(math.pi * step / 30)))
