"""Optimizers from outside optbench, in this process: a user's package on ``sys.path`` (import
paths and an entry-point plugin), the peers, LARC over any of them, factories that take the model,
the no-decay policy, the one-line errors, and what the harness learns by behaviour (layer-wise
or not, trust ratios, train/eval modes)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from optimizers import LARC, CombinedOptimizer, OptimInfo, build_optimizer, check_options, optimizer_names
from optimizers.behaviour import evaluates_closure, is_layer_wise, set_mode, trust_ratios
from optimizers.larc import larc_grad_scales
from optimizers.muon import hidden_matrices
from optimizers.registry import canonical_name, lookup, optimizer_origin, resolved_defaults, resolved_options
from tests.optimizers.test_registry import tiny_regression, train
from tests.outside_package import PACKAGE, write_user_package

SIGNSGD = f"{PACKAGE}:SignSGD"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return write_user_package(tmp_path_factory.mktemp("site"))


@pytest.fixture(autouse=True)
def on_path(site, monkeypatch) -> None:
    """The user's package importable, and its distribution's metadata visible, for each test."""
    monkeypatch.syspath_prepend(str(site))


def test_both_import_path_spellings_name_the_same_optimizer_and_it_trains():
    """``pkg:Class`` and ``pkg.Class`` build the same class, spelt one way by ``canonical_name``;
    SignSGD lowers the tiny regression's loss as the registry's optimizers do."""
    model, x, y = tiny_regression()
    initial = nn.functional.mse_loss(model(x), y).item()
    optimizer = build_optimizer(f"{PACKAGE}.SignSGD", model, lr=0.01)
    assert type(optimizer).__name__ == "SignSGD" and type(optimizer) is type(build_optimizer(SIGNSGD, model))
    assert canonical_name(f"{PACKAGE}.SignSGD") == canonical_name(SIGNSGD) == SIGNSGD
    assert canonical_name("torch.optim.RAdam") == "torch.optim.radam:RAdam"
    assert train(model, optimizer, x, y, 40) < 0.6 * initial


def test_an_import_path_resolves_its_signature_defaults_and_its_package():
    """Options are the signature's keyword arguments with their defaults filled in; the origin
    names the defining path and the distribution (name and version) that provides it."""
    assert resolved_options(SIGNSGD, momentum=0.5) == {"lr": 0.01, "momentum": 0.5, "weight_decay": 0.0}
    assert optimizer_origin(SIGNSGD) == {"path": SIGNSGD, "distribution": PACKAGE, "version": "1.0"}
    assert optimizer_origin("adamw") is None and optimizer_origin("muon") is None  # optbench's and torch's own
    assert optimizer_origin("torch.optim.RAdam")["distribution"] == "torch"


def test_a_plugin_is_a_registry_name_with_its_defaults_package_and_larc_twin():
    """The entry point ``signsgd`` appears among the names (with ``larc_signsgd``), runs with the
    defaults its OptimInfo sets over the class's, and records its distribution."""
    names = optimizer_names()
    assert "signsgd" in names and "larc_signsgd" in names
    assert resolved_defaults("signsgd") == {"lr": 0.01, "momentum": 0.8, "weight_decay": 0.0}
    (group, *_) = build_optimizer("signsgd", nn.Linear(3, 2)).param_groups
    assert group["momentum"] == 0.8
    wrapped = build_optimizer("larc_signsgd", nn.Linear(3, 2), eta=0.01)
    assert isinstance(wrapped, LARC) and type(wrapped.optimizer).__name__ == "SignSGD"
    assert wrapped.param_groups[0]["larc_eta"] == 0.01
    assert optimizer_origin("signsgd") == {"path": SIGNSGD, "distribution": PACKAGE, "version": "1.0"}


@pytest.mark.parametrize("name", [f"larc:{SIGNSGD}", "larc:sgd", "larc_sgd", "larc:signsgd"])
def test_larc_wraps_any_optimizer_under_either_spelling(name):
    """``larc:<import path or name>`` and ``larc_<registry name>`` wrap the optimizer in LARC; the
    registry names' two spellings are one optimizer."""
    optimizer = build_optimizer(name, nn.Linear(3, 2), lr=0.1)
    assert isinstance(optimizer, LARC)
    assert canonical_name("larc:sgd") == "larc_sgd" and canonical_name("larc:signsgd") == "larc_signsgd"


# (name, options, the one-line message): refused before anything is built (check_options) and by
# build_optimizer alike.
CHECKED = [
    pytest.param(f"{PACKAGE}.nothere:SignSGD", {}, f"optimizer '{PACKAGE}.nothere:SignSGD': cannot import module "
                 f"'{PACKAGE}.nothere': No module named '{PACKAGE}.nothere'", id="module-missing"),
    pytest.param("nopkg_xyz.optim:SignSGD", {}, "optimizer 'nopkg_xyz.optim:SignSGD': cannot import module "
                 "'nopkg_xyz.optim': No module named 'nopkg_xyz'", id="package-missing"),
    pytest.param("nopkg_xyz.optim.SignSGD", {}, "optimizer 'nopkg_xyz.optim.SignSGD': cannot import module "
                 "'nopkg_xyz.optim': No module named 'nopkg_xyz'", id="package-missing-dotted"),
    pytest.param(f"{PACKAGE}:Nope", {}, f"optimizer '{PACKAGE}:Nope': module '{PACKAGE}' has no attribute 'Nope'",
                 id="attribute-missing"),
    pytest.param(f"{PACKAGE}:HELPER", {}, f"optimizer '{PACKAGE}:HELPER': int 3 is not a torch.optim.Optimizer "
                 "subclass or a factory returning one", id="not-callable"),
    pytest.param("torch.nn:Linear", {}, "optimizer 'torch.nn:Linear': class Linear is not a torch.optim.Optimizer "
                 "subclass or a factory returning one", id="not-an-optimizer-class"),
    pytest.param(SIGNSGD, {"momentun": 0.9}, f"Unknown option 'momentun' for optimizer '{SIGNSGD}' (did you mean "
                 "'momentum'?); valid options: momentum, weight_decay", id="unknown-option"),
    pytest.param(SIGNSGD, {"momentum": "fast"}, f"optimizer '{SIGNSGD}': option 'momentum' takes a number, "
                 "got 'fast'", id="wrong-kind"),
    pytest.param("novograd", {"betas": 0.9}, "optimizer 'novograd': option 'betas' takes a list such as "
                 "[0.95, 0.98], got 0.9", id="number-for-a-pair"),
    pytest.param(SIGNSGD, {"lr": -1.0}, f"optimizer '{SIGNSGD}': Invalid learning rate: -1.0", id="negative-lr"),
    pytest.param(SIGNSGD, {"weight_decay": -1.0}, f"optimizer '{SIGNSGD}': Invalid weight_decay value: -1.0",
                 id="negative-weight-decay"),
    pytest.param(f"larc:{SIGNSGD}", {"eta": 0.0}, f"optimizer 'larc:{SIGNSGD}': Invalid eta value: 0.0 (must be > 0)",
                 id="larc-eta"),
    pytest.param("larc:larc_sgd", {}, "optimizer 'larc:larc_sgd' asks for LARC twice", id="larc-twice"),
    pytest.param("lamb", {"betaz": (0.9, 0.9)}, "Unknown option 'betaz' for optimizer 'lamb' (did you mean 'betas'?)",
                 id="peer-unknown-option"),
    pytest.param("bogus_name", {}, "unknown optimizer 'bogus_name'; valid names: sgd, ", id="unknown-name"),
]


@pytest.mark.parametrize("name, options, message", CHECKED)
def test_bad_optimizers_are_one_line_errors_before_anything_is_built(name, options, message):
    """check_options (what config validation calls) and build_optimizer raise the same one line."""
    for call in (lambda: check_options(name, **options), lambda: build_optimizer(name, nn.Linear(3, 2), **options)):
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value).startswith(message) and "\n" not in str(info.value), str(info.value)


# What only building can tell: the constructor's own checks, a factory's result.
BUILT = [
    pytest.param(f"{PACKAGE}:not_an_optimizer", {}, f"optimizer '{PACKAGE}:not_an_optimizer': "
                 f"{PACKAGE}:not_an_optimizer returned str, not a torch.optim.Optimizer", id="factory-returns-str"),
    pytest.param(SIGNSGD, {"momentum": 2.0}, f"optimizer '{SIGNSGD}': SignSGD wants momentum <= 1, got 2.0",
                 id="constructor-refuses"),
]


@pytest.mark.parametrize("name, options, message", BUILT)
def test_what_the_constructor_refuses_is_a_one_line_error_when_built(name, options, message):
    check_options(name, **options)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build_optimizer(name, nn.Linear(3, 2), **options)


def test_a_peer_without_its_package_names_the_extra():
    """A registry entry whose package is not installed says which optbench extra installs it."""
    entry = OptimInfo("ghost", "ghost_pkg_xyz:Ghost", "not installed anywhere", extra="peers")
    with pytest.raises(ValueError, match=re.escape("optimizer 'ghost' needs the package 'ghost_pkg_xyz': "
                                                   "install optbench[peers] (pip install 'optbench[peers]')")):
        entry.load()


def test_a_plugin_that_does_not_load_is_a_one_line_error(tmp_path, monkeypatch):
    """An entry point naming a missing attribute: the error names the plugin and its target."""
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken_plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[optbench.optimizers]\nbroken = {PACKAGE}:MISSING\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=re.escape(f"optimizer plugin 'broken' ({PACKAGE}:MISSING) does not load: "
                                                   "AttributeError")):
        check_options("broken")


class Net(nn.Module):
    """Embedding → Linear → LayerNorm → Linear → head: every kind of tensor the policies sort."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.hidden = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.hidden2 = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def test_the_no_decay_policy_applies_to_outside_classes_and_factories():
    """A class from outside gets the policy's groups (biases and norm weights: weight_decay 0); a
    factory that takes the model keeps its own groups, with those tensors moved to a twin group
    with weight_decay 0; ``exclude_bias_and_norm=False`` leaves the factory's single group."""
    model = Net()
    exempt = _ids([model.hidden.bias, model.norm.weight, model.norm.bias, model.hidden2.bias, model.head.bias])
    decayed, excluded = build_optimizer(SIGNSGD, model, weight_decay=0.1).param_groups
    assert decayed["weight_decay"] == 0.1 and _ids(excluded["params"]) == exempt and excluded["weight_decay"] == 0.0
    own, twin = build_optimizer(f"{PACKAGE}:one_group", model, weight_decay=0.1).param_groups
    assert own["weight_decay"] == 0.1 and _ids(own["params"]) == _ids(model.parameters()) - exempt
    assert twin["weight_decay"] == 0.0 and twin["layer_adaptation"] is False and _ids(twin["params"]) == exempt
    (single,) = build_optimizer(f"{PACKAGE}:one_group", model, exclude_bias_and_norm=False).param_groups
    assert _ids(single["params"]) == _ids(model.parameters())


def test_muon_updates_hidden_matrices_and_adamw_the_rest_under_the_policy():
    """``muon``: torch's Muon over the hidden 2-D weights only; AdamW over the embedding and head
    (decayed) and the biases and norm weights (not decayed); one optimizer to Lightning."""
    model = Net()
    optimizer = build_optimizer("muon", model, lr=0.02, weight_decay=0.1)
    assert isinstance(optimizer, CombinedOptimizer)
    muon, adamw = optimizer.optimizers
    assert type(muon) is torch.optim.Muon and type(adamw) is torch.optim.AdamW
    assert _ids(p for g in muon.param_groups for p in g["params"]) == _ids([model.hidden.weight, model.hidden2.weight])
    assert _ids(hidden_matrices(model)) == _ids([model.hidden.weight, model.hidden2.weight])
    decayed, exempt = adamw.param_groups
    assert _ids(decayed["params"]) == _ids([model.embed.weight, model.head.weight]) and decayed["weight_decay"] == 0.1
    assert exempt["weight_decay"] == 0.0 and len(exempt["params"]) == 5
    assert optimizer.param_groups == [*muon.param_groups, *adamw.param_groups]


def test_a_scheduler_and_a_state_dict_reach_the_combined_optimizers():
    """An LR scheduler's change reaches every inner group; the state saved after two steps loads
    into a fresh ``muon`` and both continue bit-identically."""
    torch.manual_seed(0)
    model, x = Net(), torch.randint(0, 10, (16,))

    def step(net: Net, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad()
        out = net.head(net.hidden2(net.norm(net.hidden(net.embed(x)))))
        out.square().mean().backward()
        optimizer.step()

    twin = Net()
    twin.load_state_dict(model.state_dict())
    optimizer = build_optimizer("muon", model, lr=0.02)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5)
    assert [g["lr"] for inner in optimizer.optimizers for g in inner.param_groups] == [0.01] * 3
    for _ in range(2):
        step(model, optimizer)
    twin.load_state_dict(model.state_dict())
    fresh = build_optimizer("muon", twin, lr=0.02)
    fresh.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # as from a checkpoint: no shared tensors
    assert fresh.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()
    for _ in range(2):
        step(model, optimizer)
        step(twin, fresh)
    assert scheduler.get_last_lr() == [0.01] * 3
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)


LAYER_WISE = {
    "novograd": True, "lars": True, "larc_sgd": True, "lamb": True, "muon": True, "adafactor": True,
    f"larc:{SIGNSGD}": True, "sgd": False, "adam": False, "adamw": False, "lion": False, "radam": False,
    "nadam": False, "schedule_free_adamw": False, SIGNSGD: False,
}


@pytest.mark.parametrize("name, expected", LAYER_WISE.items())
def test_layer_wise_optimizers_are_found_by_behaviour(name, expected):
    """Per-tensor norms, trust ratios, orthogonalisation and factored moments make an update
    depend on the whole tensor; element-wise optimizers give the same numbers on its halves."""
    assert is_layer_wise(name) is expected


@pytest.mark.parametrize("name, expected", [
    ("sgd", True), ("larc_novograd", True), ("muon", True), ("schedule_free_adamw", True), (SIGNSGD, True),
    (f"{PACKAGE}:NoClosureSGD", False), (f"{PACKAGE}:NoClosureArgument", False),
    (f"larc:{PACKAGE}:NoClosureSGD", True),  # LARC evaluates the closure before the inner step
])
def test_an_optimizer_that_ignores_its_closure_is_found_by_behaviour(name, expected):
    assert evaluates_closure(name) is expected


def test_trust_ratios_come_from_optimizers_that_report_them():
    """LARC over an outside optimizer reports its factors (those ``larc_grad_scales`` computes);
    the optimizer alone reports none."""
    model = nn.Linear(4, 3)
    model(torch.randn(8, 4)).square().mean().backward()
    params = list(model.parameters())
    wrapped = build_optimizer(f"larc:{SIGNSGD}", model, lr=0.1, exclude_bias_and_norm=False)
    with torch.no_grad():
        _, scales = larc_grad_scales(params, [p.grad for p in params], lr=0.1, eta=0.002, mode="clip", eps=1e-7,
                                     min_update=1e-7)
    assert trust_ratios(wrapped, params) == [float(s) for s in scales]
    assert trust_ratios(wrapped.optimizer, params) is None


def test_schedule_free_modes_reach_it_through_larc_and_are_no_ops_elsewhere():
    """``set_mode`` switches Schedule-Free AdamW's weights between its two points (evaluation
    moves them to the average x), directly and through LARC; for SGD it does nothing."""
    model, x, y = tiny_regression()
    optimizer = build_optimizer("larc_schedule_free_adamw", model, lr=0.03)
    train(model, optimizer, x, y, 5)
    trained = [p.detach().clone() for p in model.parameters()]
    set_mode(optimizer, training=False)
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), trained))
    set_mode(optimizer, training=True)
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(model.parameters(), trained))
    sgd = build_optimizer("sgd", model)
    set_mode(sgd, training=False)  # nothing to switch
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(model.parameters(), trained))


def test_every_peer_is_registered_from_its_library():
    """The peers a reader expects: LAMB and Lion (pytorch-optimizer), Schedule-Free AdamW
    (schedulefree), Muon, RAdam, NAdam and Adafactor (torch)."""
    origins = {name: lookup(name)[0].load().__module__.split(".")[0]
               for name in ("lamb", "lion", "schedule_free_adamw", "radam", "nadam", "adafactor")}
    assert origins == {"lamb": "pytorch_optimizer", "lion": "pytorch_optimizer", "schedule_free_adamw": "schedulefree",
                       "radam": "torch", "nadam": "torch", "adafactor": "torch"}
    assert isinstance(build_optimizer("muon", Net()).optimizers[0], torch.optim.Muon)
