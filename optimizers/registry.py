"""The optimizer registry: every name optbench accepts, and ``build_optimizer`` to make one."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Union

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from .larc import LARC
from .lars import LARS
from .did_you_mean import did_you_mean
from .learning_rate import check_lr
from .novograd import NovoGrad
from .param_groups import param_groups

__all__ = [
    "OptimInfo", "REGISTRY", "LARC_PREFIX", "build_optimizer", "optimizer_names", "resolved_defaults",
    "resolved_options",
]

LARC_PREFIX = "larc_"
# Options that select an implementation, not an algorithm: left out of listings.
_IMPLEMENTATION_OPTIONS = {"foreach", "fused", "capturable", "differentiable", "maximize", "decoupled_weight_decay"}


def _zero_beta2(options: dict[str, Any]) -> dict[str, Any]:
    """OpenSeq2Seq's NovoGrad never writes its moving average back: v = |g|^2 at every step."""
    beta1, beta2 = options["betas"]
    if not 0.0 <= beta2 < 1.0:  # still a user error, even though the variant ignores it
        raise ValueError(f"Invalid beta parameter at index 1: {beta2}")
    return {**options, "betas": (beta1, 0.0)}


@dataclass(frozen=True)
class OptimInfo:
    """One registry entry: a class plus the defaults and pinned options that make the variant."""

    name: str
    cls: type[Optimizer]
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)  # override the class's defaults
    fixed: Mapping[str, Any] = field(default_factory=dict)  # pinned: the variant's identity
    adapt: Optional[Callable[[dict[str, Any]], dict[str, Any]]] = None  # last rewrite of options

    def options(self) -> dict[str, inspect.Parameter]:
        """The keyword options a user may set (everything but params and the pinned ones)."""
        signature = inspect.signature(self.cls.__init__).parameters
        return {k: p for k, p in signature.items() if k not in ("self", "params", *self.fixed)}


_ENTRIES = [
    OptimInfo("sgd", torch.optim.SGD, "SGD with heavy-ball momentum", defaults={"momentum": 0.9}),
    OptimInfo(
        "sgd_nesterov", torch.optim.SGD, "SGD with Nesterov momentum",
        defaults={"momentum": 0.9}, fixed={"nesterov": True},
    ),
    OptimInfo("adam", torch.optim.Adam, "Adam (L2 weight decay added to the gradient)"),
    OptimInfo("adamw", torch.optim.AdamW, "AdamW (decoupled weight decay)"),
    OptimInfo("novograd", NovoGrad, "NovoGrad: per-layer second moment, decay inside the moment"),
    OptimInfo(
        "novograd_os2s", NovoGrad,
        "NovoGrad as OpenSeq2Seq's TensorFlow code executes: eps inside the sqrt, v = ‖g‖² every step",
        fixed={"eps_inside_sqrt": True}, adapt=_zero_beta2,
    ),
    OptimInfo(
        "novograd_apex", NovoGrad,
        "NovoGrad as apex FusedNovoGrad: its defaults, bias correction, decoupled moment",
        defaults={
            "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
            "grad_averaging": True, "bias_correction": True, "reg_inside_moment": False,
        },
    ),
    OptimInfo("lars", LARS, "LARS: SGD momentum with a layer-wise trust ratio"),
]
REGISTRY: dict[str, OptimInfo] = {entry.name: entry for entry in _ENTRIES}
_LARC_OPTIONS = ("eta", "mode", "eps", "min_update")


def optimizer_names() -> list[str]:
    """Every registered name, ``larc_<inner>`` included."""
    return [*REGISTRY, *(LARC_PREFIX + name for name in REGISTRY)]


def _lookup(name: str) -> tuple[OptimInfo, bool]:
    larc = name.startswith(LARC_PREFIX)
    entry = REGISTRY.get(name[len(LARC_PREFIX):] if larc else name)
    if entry is None:
        names = optimizer_names()
        raise ValueError(f"Unknown optimizer {name!r}{did_you_mean(name, names)}; valid names: {', '.join(names)}")
    return entry, larc


def resolved_defaults(name: str) -> dict[str, Any]:
    """The defaults a registry name runs with: the class's, then the entry's own and pinned ones."""
    entry, larc = _lookup(name)
    defaults = {k: p.default for k, p in entry.options().items() if k not in _IMPLEMENTATION_OPTIONS}
    defaults.update(entry.defaults)
    defaults.update(entry.fixed)
    if entry.adapt is not None:
        defaults = entry.adapt(defaults)
    if larc:
        larc_params = inspect.signature(LARC.__init__).parameters
        defaults.update({LARC_PREFIX + k: larc_params[k].default for k in _LARC_OPTIONS})
    return defaults


def resolved_options(name: str, **options: Any) -> dict[str, Any]:
    """Every option ``build_optimizer(name, ..., **options)`` runs with: the defaults, then
    ``options``, the pinned ones and the variant's rewrite; LARC's as ``larc_<option>``.

    Implementation switches (``foreach``, ``fused``, ...) are left out: they choose how the same
    update is computed, not which. Two option sets that resolve equal run the same algorithm.
    """
    entry, larc = _lookup(name)
    larc_options: dict[str, Any] = {}
    if larc:
        options, larc_options = _split_larc_options(entry, options)
    merged = {**resolved_defaults(entry.name), **options, **entry.fixed}
    if entry.adapt is not None:
        merged = entry.adapt(merged)
    if larc:
        merged.update({k: v for k, v in resolved_defaults(name).items() if k.startswith(LARC_PREFIX)})
        merged.update({LARC_PREFIX + k: v for k, v in larc_options.items()})
    return {k: v for k, v in merged.items() if k not in _IMPLEMENTATION_OPTIONS}


def _split_larc_options(entry: OptimInfo, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route each option of a ``larc_<inner>`` name: ``larc_``-prefixed ones to LARC, the inner
    optimizer's own to it, and the rest of LARC's (``eta``, ``mode``, ...) to LARC."""
    inner_accepts = entry.options()
    inner, larc = {}, {}
    for key, value in options.items():
        if key.startswith(LARC_PREFIX) and key[len(LARC_PREFIX):] in _LARC_OPTIONS:
            larc[key[len(LARC_PREFIX):]] = value
        elif key in inner_accepts or key not in _LARC_OPTIONS:
            inner[key] = value
        else:
            larc[key] = value
    return inner, larc


def build_optimizer(
    name: str,
    model_or_params: Union[nn.Module, Iterable[Tensor], Iterable[tuple[str, Tensor]], Iterable[dict[str, Any]]],
    lr: Optional[Union[float, Tensor]] = None,
    *,
    exclude_bias_and_norm: bool = True,
    **options: Any,
) -> Optimizer:
    """Build the registered optimizer ``name`` over a model, parameters, named parameters
    (``model.named_parameters()``: the names reach the state_dict, as in ``torch.optim``) or
    parameter groups.

    Unless ``exclude_bias_and_norm=False``, biases and normalisation weights go to a group with no
    weight decay and no LARC/LARS adaptation (see ``param_groups``). ``larc_<inner>`` wraps the
    inner optimizer in ``LARC``; its options are ``eta``, ``mode``, ``min_update`` and
    ``larc_eps`` (and ``larc_eta`` etc. where the inner optimizer has an option of that name).
    Raises ``ValueError`` naming the problem for an unknown name, an unknown option or an
    invalid hyper-parameter.
    """
    entry, larc = _lookup(name)
    larc_options: dict[str, Any] = {}
    if larc:
        options, larc_options = _split_larc_options(entry, options)
    accepted = entry.options()
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        valid = sorted(k for k in accepted if k not in _IMPLEMENTATION_OPTIONS | {"lr"})
        if larc:
            valid += [k for k in _LARC_OPTIONS if k not in accepted] + [LARC_PREFIX + k for k in _LARC_OPTIONS]
        raise ValueError(
            f"Unknown option {unknown[0]!r} for optimizer {name!r}{did_you_mean(unknown[0], valid)}; "
            f"valid options: {', '.join(valid)}"
        )
    merged = {**entry.defaults, **options, **entry.fixed}
    if lr is not None:
        merged["lr"] = lr
    if entry.adapt is not None:
        merged = entry.adapt({**resolved_defaults(entry.name), **merged})
    if "lr" in merged:
        try:
            check_lr(merged["lr"])
        except ValueError as error:
            raise ValueError(f"optimizer {name!r}: {error}") from None
    weight_decay = merged.pop("weight_decay", accepted["weight_decay"].default)
    groups = param_groups(model_or_params, weight_decay, exclude_bias_and_norm=exclude_bias_and_norm)
    if not groups or not any(group["params"] for group in groups):
        raise ValueError(f"optimizer {name!r} got no parameters that require gradients")
    try:
        optimizer = entry.cls(groups, weight_decay=weight_decay, **merged)
        return LARC(optimizer, **larc_options) if larc else optimizer
    except ValueError as error:
        raise ValueError(f"optimizer {name!r}: {error}") from None
