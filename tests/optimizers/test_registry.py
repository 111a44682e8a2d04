"""The registry: every name trains and checkpoints, bad input is a ValueError that names the
problem, the parameter-group policy, LARC option routing and where defaults come from."""

from __future__ import annotations

import copy
import inspect
import io
import re

import pytest
import torch
from torch import nn

from optimizers import LARC, LARS, NovoGrad, build_optimizer, optimizer_names, param_groups, resolved_defaults
from optimizers.behaviour import set_mode
from optimizers.registry import LARC_PREFIX, lookup

# A learning rate per family (the name without ``larc_``) under which the tiny regression below
# clearly improves in STEPS steps. LARS and apex's NovoGrad (bias-corrected, decoupled) need a
# large rate: LARS's default η = 0.001 makes its steps small.
LRS = {
    "sgd": 0.05, "sgd_nesterov": 0.05, "adam": 0.01, "adamw": 0.01,
    "novograd": 0.03, "novograd_os2s": 0.03, "novograd_apex": 1.0, "lars": 1.0,
    "lamb": 0.03, "lion": 0.01, "muon": 0.03, "schedule_free_adamw": 0.03, "radam": 0.1, "nadam": 0.01,
    "adafactor": 0.03,
}
STEPS = 40


def tiny_regression() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Linear → LayerNorm → ReLU → Linear fitting a smooth target, seeded."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.LayerNorm(32), nn.ReLU(), nn.Linear(32, 1))
    x = torch.randn(64, 8)
    y = torch.sin(x @ torch.randn(8, 1))
    return model, x, y


def train(model: nn.Module, optimizer: torch.optim.Optimizer, x, y, steps: int) -> float:
    set_mode(optimizer, training=True)  # Schedule-Free steps only in training mode
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        return nn.functional.mse_loss(model(x), y).item()


def test_names_cover_the_design():
    """Every name DESIGN.md lists is registered, and every registered name has an lr in ``LRS``."""
    names = optimizer_names()
    for name in ("sgd", "sgd_nesterov", "adam", "adamw", "novograd", "novograd_os2s", "novograd_apex",
                 "lars", "larc_sgd", "larc_adam", "larc_novograd"):
        assert name in names
    assert {name.removeprefix(LARC_PREFIX) for name in names} == set(LRS)


# LARC over each inner optimizer trains too, in the slow set (test_larc checks LARC's math quickly).
TRAINING_CASES = [pytest.param(name, marks=[pytest.mark.slow] if name.startswith(LARC_PREFIX) else [])
                  for name in optimizer_names()]


@pytest.mark.parametrize("name", TRAINING_CASES)
def test_every_optimizer_lowers_the_loss(name):
    """Each registered optimizer, at its family's lr, takes a tiny regression's loss under 60% of
    its initial value in 40 steps."""
    model, x, y = tiny_regression()
    with torch.no_grad():
        initial = nn.functional.mse_loss(model(x), y).item()
    final = train(model, build_optimizer(name, model, lr=LRS[name.removeprefix(LARC_PREFIX)]), x, y, STEPS)
    assert final < 0.6 * initial


@pytest.mark.parametrize("name", TRAINING_CASES)
def test_every_optimizer_resumes_bit_exactly(name):
    """Saving a registered optimizer's state_dict after 20 steps and resuming in a fresh optimizer
    over a copy of the model ends bit-identical to an uninterrupted 40-step run."""
    lr = LRS[name.removeprefix(LARC_PREFIX)]
    model, x, y = tiny_regression()
    resumed_model = copy.deepcopy(model)
    train(model, build_optimizer(name, model, lr=lr), x, y, STEPS)

    optimizer = build_optimizer(name, resumed_model, lr=lr)
    train(resumed_model, optimizer, x, y, STEPS // 2)
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    fresh_model = copy.deepcopy(resumed_model)
    fresh = build_optimizer(name, fresh_model, lr=lr)
    fresh.load_state_dict(torch.load(buffer))
    train(fresh_model, fresh, x, y, STEPS - STEPS // 2)
    for a, b in zip(model.parameters(), fresh_model.parameters()):
        assert torch.equal(a, b)


# Bad inputs: (name, options, expected message fragment). Each is a ValueError.
BAD_INPUTS = [
    pytest.param("bogus", {}, "novograd_apex", id="unknown-name-lists-names"),
    pytest.param("larc_bogus", {}, "larc_novograd", id="unknown-larc-name-lists-names"),
    pytest.param("novgrad", {}, "'novgrad' (did you mean 'novograd'?)", id="unknown-name-did-you-mean"),
    pytest.param("novograd", {"betaz": (0.9, 0.9)}, "'betaz' for optimizer 'novograd' (did you mean 'betas'?)",
                 id="unknown-option-did-you-mean"),
    pytest.param("sgd", {"bogus_option": 1}, "bogus_option", id="unknown-option"),
    pytest.param("novograd", {"nesterov": True}, "nesterov", id="option-of-another-optimizer"),
    pytest.param("larc_sgd", {"bogus_option": 1}, "bogus_option", id="unknown-option-larc"),
    pytest.param("sgd_nesterov", {"nesterov": False}, "nesterov", id="pinned-option"),
    *(pytest.param(name, {"lr": -0.1}, "-0.1", id=f"negative-lr-{name}")
      for name in ("sgd", "adam", "novograd", "novograd_apex", "lars", "larc_sgd", "larc_novograd")),
    *(pytest.param(name, {"betas": betas}, str(bad), id=f"beta-{bad}-{name}")
      for name in ("adam", "adamw", "novograd", "novograd_apex", "larc_novograd")
      for betas, bad in (((1.0, 0.98), 1.0), ((0.9, -0.1), -0.1))),
    pytest.param("novograd_os2s", {"betas": (1.0, 0.98)}, "1.0", id="beta1-novograd_os2s"),
    *(pytest.param(name, {"eta": eta}, f"eta value: {eta}", id=f"eta-{eta}-{name}")
      for name in ("larc_sgd", "larc_adam", "larc_novograd") for eta in (0.0, -0.5)),
    pytest.param("larc_sgd", {"mode": "bogus"}, "bogus", id="larc-mode"),
]


@pytest.mark.parametrize("name, options, match", BAD_INPUTS)
def test_bad_input_raises_value_error_naming_it(name, options, match):
    """Unknown names (the message lists the valid ones), unknown options (the message names the
    option), negative lr, betas outside [0, 1) and LARC's η ≤ 0 raise ValueError naming the value."""
    with pytest.raises(ValueError, match=re.escape(match)):
        build_optimizer(name, nn.Linear(3, 2), **options)


class NormNet(nn.Module):
    """Linear + BatchNorm1d + Linear + LayerNorm, a 2-D ``pos`` parameter excluded by name, and a
    frozen parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.bn = nn.Linear(4, 8), nn.BatchNorm1d(8)
        self.fc2, self.ln = nn.Linear(8, 8), nn.LayerNorm(8)
        self.pos = nn.Parameter(torch.zeros(2, 8))
        self.frozen = nn.Parameter(torch.zeros(8, 8), requires_grad=False)

    def no_weight_decay(self) -> set[str]:
        return {"pos"}


def test_biases_and_norm_weights_get_no_decay_and_no_adaptation():
    """With the default policy, Linear weights form the decayed group; biases, BatchNorm/LayerNorm
    weights and the names in ``model.no_weight_decay()`` form a group with weight_decay 0 and
    layer_adaptation False; frozen parameters are left out."""
    model = NormNet()
    optimizer = build_optimizer("larc_sgd", model, lr=0.1, weight_decay=0.1)
    decayed, excluded = optimizer.param_groups
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    assert ids(decayed["params"]) == ids([model.fc1.weight, model.fc2.weight])
    assert decayed["weight_decay"] == 0.1 and decayed["layer_adaptation"] is True
    assert ids(excluded["params"]) == ids([model.fc1.bias, model.bn.weight, model.bn.bias, model.fc2.bias,
                                           model.ln.weight, model.ln.bias, model.pos])
    assert excluded["weight_decay"] == 0.0 and excluded["layer_adaptation"] is False


def test_exclude_bias_and_norm_false_gives_one_group():
    """``exclude_bias_and_norm=False`` puts every trainable parameter in one decayed group."""
    model = NormNet()
    optimizer = build_optimizer("sgd", model, lr=0.1, weight_decay=0.1, exclude_bias_and_norm=False)
    (group,) = optimizer.param_groups
    assert {id(p) for p in group["params"]} == {id(p) for p in model.parameters() if p.requires_grad}
    assert group["weight_decay"] == 0.1


def test_param_groups_passes_explicit_groups_through():
    """Explicit parameter groups (dicts) reach the optimizer unchanged."""
    a, b = nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(2))
    groups = [{"params": [a], "lr": 0.5}, {"params": [b]}]
    assert param_groups(groups, weight_decay=0.1) == groups
    optimizer = build_optimizer("sgd", groups, lr=0.1)
    assert optimizer.param_groups[0]["lr"] == 0.5 and optimizer.param_groups[1]["lr"] == 0.1


def test_larc_adam_routes_options():
    """For ``larc_adam``, ``eps`` goes to Adam while ``larc_eps``, ``eta`` and ``mode`` go to LARC."""
    optimizer = build_optimizer("larc_adam", nn.Linear(3, 2), lr=1e-3, eps=1e-6, larc_eps=1e-5, eta=0.01, mode="scale")
    assert isinstance(optimizer, LARC) and isinstance(optimizer.optimizer, torch.optim.Adam)
    for group in optimizer.param_groups:
        assert group["eps"] == 1e-6
        assert group["larc_eps"] == 1e-5 and group["larc_eta"] == 0.01 and group["larc_mode"] == "scale"


def test_resolved_defaults_of_novograd_are_the_class_signature():
    """``resolved_defaults('novograd')`` is NovoGrad's own signature defaults (one source of truth),
    which are DESIGN.md's β = (0.95, 0.98), ε = 1e-8, d = 0.001."""
    defaults = resolved_defaults("novograd")
    signature = {
        k: p.default for k, p in inspect.signature(NovoGrad.__init__).parameters.items()
        if k not in ("self", "params", "foreach", "fused")
    }
    assert defaults == signature
    assert defaults["betas"] == (0.95, 0.98) and defaults["eps"] == 1e-8 and defaults["weight_decay"] == 0.001


@pytest.mark.parametrize("name", [n for n in optimizer_names() if isinstance(lookup(n)[0].load(), type)])
def test_resolved_defaults_are_what_build_optimizer_builds(name):
    """Every value ``resolved_defaults(name)`` reports is the value the optimizer class built by
    ``build_optimizer(name, ...)`` without options runs with (LARC's as ``larc_<option>``): in its
    parameter group, or, for a class that keeps an option to itself (pytorch-optimizer's LAMB), as
    its attribute. (A factory's options are its own business: ``muon`` is tested below.)"""
    optimizer = build_optimizer(name, [nn.Parameter(torch.ones(2, 2))], exclude_bias_and_norm=False)
    (group,) = optimizer.param_groups
    inner = getattr(optimizer, "optimizer", optimizer)
    defaults = resolved_defaults(name)
    assert defaults
    assert {key: group.get(key, getattr(inner, key, "<missing>")) for key in defaults} == defaults


def test_variants_pin_their_identity():
    """``novograd_os2s`` runs with ε inside the square root and β2 = 0 whatever betas are passed;
    ``novograd_apex`` with apex's defaults; ``sgd_nesterov`` with Nesterov momentum 0.9."""
    (os2s,) = build_optimizer("novograd_os2s", [nn.Parameter(torch.ones(2))], betas=(0.9, 0.98)).param_groups
    assert os2s["eps_inside_sqrt"] is True and os2s["betas"] == (0.9, 0.0)
    (apex,) = build_optimizer("novograd_apex", [nn.Parameter(torch.ones(2, 2))]).param_groups
    assert (apex["lr"], apex["betas"], apex["eps"], apex["weight_decay"]) == (1e-3, (0.9, 0.999), 1e-8, 0.0)
    assert apex["grad_averaging"] and apex["bias_correction"] and not apex["reg_inside_moment"]
    (nesterov,) = build_optimizer("sgd_nesterov", [nn.Parameter(torch.ones(2, 2))]).param_groups
    assert nesterov["nesterov"] is True and nesterov["momentum"] == 0.9


# Names whose optimizer takes parameters (a factory taking the model, ``muon``, takes a model or
# plain tensors: named parameters and groups are for the others).
TAKES_PARAMS = [name for name in optimizer_names() if not lookup(name)[0].takes_model()]


@pytest.mark.parametrize("name", TAKES_PARAMS)
def test_named_parameters_build_every_optimizer_like_the_model(name):
    """``build_optimizer(name, model.named_parameters())`` (as torch optimizers take them) sorts
    the same tensors into the same groups as ``build_optimizer(name, model)``, records the names
    in the state_dict, and steps bit-identically; frozen parameters are left out."""
    lr = LRS[name.removeprefix(LARC_PREFIX)]
    model, x, y = tiny_regression()
    model[0].bias.requires_grad_(False)
    twin = copy.deepcopy(model)
    by_name = build_optimizer(name, model.named_parameters(), lr=lr)
    by_model = build_optimizer(name, twin, lr=lr)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    saved_names = [n for group in by_name.state_dict()["param_groups"] for n in group["param_names"]]
    assert sorted(saved_names) == sorted(names)
    assert [n for n in saved_names if n.endswith(".bias")] == [n for n in names if n.endswith(".bias")]
    assert [len(g["params"]) for g in by_name.param_groups] == [len(g["params"]) for g in by_model.param_groups]
    train(model, by_name, x, y, 3)
    train(twin, by_model, x, y, 3)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)


# torch's errors for inputs no torch optimizer takes, through build_optimizer: (what, call, error, message)
TORCH_ERRORS = [
    ("2-element tensor lr", lambda name: build_optimizer(name, nn.Linear(2, 2), lr=torch.tensor([0.1, 0.1])),
     ValueError, "optimizer '{name}': Tensor lr must be 1-element"),
    ("negative tensor lr", lambda name: build_optimizer(name, nn.Linear(2, 2), lr=torch.tensor(-0.1)),
     ValueError, "optimizer '{name}': Invalid learning rate: -0.10000000149011612"),
    ("a tensor, not an iterable of tensors", lambda name: build_optimizer(name, nn.Parameter(torch.ones(2, 2))),
     TypeError, "params argument given to the optimizer should be an iterable of Tensors or dicts, "
                "but got torch.FloatTensor"),
    ("named and unnamed parameters mixed", lambda name: build_optimizer(
        name, [("w", nn.Parameter(torch.ones(2, 2))), nn.Parameter(torch.ones(2, 2))], exclude_bias_and_norm=False),
     ValueError, "optimizer '{name}': all optimizer params should be with/without names. Some param names are missing"),
]


@pytest.mark.parametrize("name", TAKES_PARAMS)
@pytest.mark.parametrize("what, call, error, message", TORCH_ERRORS, ids=[case[0] for case in TORCH_ERRORS])
def test_inputs_torch_refuses_give_torchs_message(what, call, error, message, name):
    """A 2-element or negative tensor lr, a bare tensor as the parameters and named mixed with
    unnamed parameters raise torch's own one-line message, for every registry name."""
    with pytest.raises(error) as raised:
        call(name)
    assert str(raised.value) == message.format(name=name)


@pytest.mark.parametrize("cls", [NovoGrad, LARS])
@pytest.mark.parametrize("lr, message", [
    (torch.tensor([0.1, 0.1]), "Tensor lr must be 1-element"),
    (torch.ones(1, 2), "Tensor lr must be 1-element"),
    (-0.1, "Invalid learning rate: -0.1"),
])
def test_package_classes_refuse_bad_rates_with_torchs_message(cls, lr, message):
    """NovoGrad and LARS refuse what torch's optimizers refuse, with the same message."""
    with pytest.raises(ValueError) as raised:
        cls([nn.Parameter(torch.ones(2))], lr=lr)
    assert str(raised.value) == message
