"""The optimizer registry: every name optbench accepts, and ``build_optimizer`` to make one.

A name is a registry entry (built in, a peer from a well-kept library behind the ``peers``
extra, or a plugin of the entry-point group ``optbench.optimizers``), ``larc_<entry>`` or
``larc:<anything>`` for LARC around it, or an import path ``package.module:Class`` /
``package.module.Class`` naming an optimizer class or a factory that returns one.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Callable, Iterable, Mapping, Optional, Union

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from .did_you_mean import did_you_mean
from .hyperparameters import check_hyperparameters
from .larc import LARC, check_larc_options
from .lars import LARS
from .muon import muon
from .novograd import NovoGrad
from .outside import distribution_of, is_import_path, load_import_path, load_plugin, plugin_names, qualified_name
from .param_groups import ParameterHolder, exempt_bias_and_norm, param_groups

__all__ = [
    "OptimInfo", "REGISTRY", "LARC_PREFIX", "LARC_PATH_PREFIX", "build_optimizer", "check_options",
    "optimizer_names", "resolved_defaults", "resolved_options", "optimizer_origin", "canonical_name", "lookup", "with_larc", "is_installed",
]

LARC_PREFIX = "larc_"  # larc_<registry name>
LARC_PATH_PREFIX = "larc:"  # larc:<registry name or import path>
# Options that select an implementation, not an algorithm: left out of listings and run ids.
_IMPLEMENTATION_OPTIONS = {"foreach", "fused", "capturable", "differentiable"}
# Options that change the algorithm but that listings leave out: in run ids only when set.
_QUIET_OPTIONS = {"maximize", "decoupled_weight_decay"}
_LARC_OPTIONS = ("eta", "mode", "eps", "min_update")

OptimizerTarget = Callable[..., Optimizer]  # a torch.optim.Optimizer subclass or a factory


def _zero_beta2(options: dict[str, Any]) -> dict[str, Any]:
    """OpenSeq2Seq's NovoGrad never writes its moving average back: v = |g|^2 at every step."""
    beta1, beta2 = options["betas"]
    if not 0.0 <= beta2 < 1.0:  # still a user error, even though the variant ignores it
        raise ValueError(f"Invalid beta parameter at index 1: {beta2}")
    return {**options, "betas": (beta1, 0.0)}


@dataclass(frozen=True)
class OptimInfo:
    """One registry entry: a class or factory plus the defaults and pinned options of the variant.

    ``cls`` is a ``torch.optim.Optimizer`` subclass, a factory returning one, or the import path
    of either (``"package.module:Class"``, imported on first use: a peer whose package comes with
    the optbench extra ``extra``). A factory whose first parameter is named ``model`` gets the
    model and makes its own parameter groups; any other gets the parameter groups, as a class does.
    """

    name: str
    cls: Union[OptimizerTarget, str]
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)  # override the class's defaults
    fixed: Mapping[str, Any] = field(default_factory=dict)  # pinned: the variant's identity
    adapt: Optional[Callable[[dict[str, Any]], dict[str, Any]]] = None  # last rewrite of options
    extra: Optional[str] = None  # `pip install optbench[<extra>]` installs cls's package
    distribution: Optional[tuple[Optional[str], Optional[str]]] = None  # a plugin's (package, version)

    def load(self) -> OptimizerTarget:
        """The class or factory, imported if ``cls`` is a path. ``ValueError`` in one line: a peer
        whose package is not installed (naming the extra), a path that does not import, something
        that is neither an optimizer class nor a callable."""
        target: Any = self.cls
        if isinstance(target, str):
            top = target.split(":")[0].split(".")[0]
            if self.extra is not None and importlib.util.find_spec(top) is None:
                raise ValueError(f"optimizer {self.name!r} needs the package {top!r}: "
                                 f"install optbench[{self.extra}] (pip install 'optbench[{self.extra}]')")
            try:
                target = load_import_path(target)
            except ValueError as error:
                raise ValueError(f"optimizer {self.name!r}: {error}") from None
        if isinstance(target, type) and issubclass(target, Optimizer):
            return target
        if callable(target) and not isinstance(target, type):
            return target
        what = (f"class {target.__qualname__}" if isinstance(target, type)
                else f"{type(target).__name__} {getattr(target, '__name__', repr(target))}")
        raise ValueError(f"optimizer {self.name!r}: {what} is not a torch.optim.Optimizer subclass "
                         "or a factory returning one")

    def takes_model(self) -> bool:
        """Whether ``load()`` is a factory that takes the model (first parameter ``model``)."""
        target = self.load()
        first = next(iter(inspect.signature(target).parameters), None)
        return not isinstance(target, type) and first == "model"

    def options(self) -> dict[str, inspect.Parameter]:
        """The keyword options a user may set: the named parameters after the first (params or
        model), less the pinned ones. A ``**kwargs`` catch-all adds none."""
        parameters = list(inspect.signature(self.load()).parameters.values())[1:]
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return {p.name: p for p in parameters if p.kind in named and p.name not in self.fixed}

    @property
    def outside(self) -> bool:
        """Whether the optimizer comes from outside optbench and torch (a peer, plugin or path)."""
        return isinstance(self.cls, str) or REGISTRY.get(self.name) is not self


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
    # Peers: the optimizers a reader expects beside these, from torch or well-kept libraries.
    OptimInfo("lamb", "pytorch_optimizer:Lamb",
              "LAMB (pytorch-optimizer): Adam's step scaled by a layer-wise trust ratio", extra="peers"),
    OptimInfo("lion", "pytorch_optimizer:Lion",
              "Lion (pytorch-optimizer): the sign of an interpolated momentum", extra="peers"),
    OptimInfo("muon", muon, "Muon (torch.optim) on hidden weight matrices, AdamW on the other parameters"),
    OptimInfo("schedule_free_adamw", "schedulefree:AdamWScheduleFree",
              "Schedule-Free AdamW (schedulefree): averaged iterates instead of an LR schedule", extra="peers"),
    OptimInfo("radam", torch.optim.RAdam, "RAdam: Adam with its variance rectified while it is unreliable"),
    OptimInfo("nadam", torch.optim.NAdam, "NAdam: Adam with Nesterov momentum"),
    OptimInfo("adafactor", torch.optim.Adafactor, "Adafactor: second moment factored into row and column means"),
]
REGISTRY: dict[str, OptimInfo] = {entry.name: entry for entry in _ENTRIES}


def optimizer_names(installed: bool = False) -> list[str]:
    """Every registry name (built-ins and peers, then plugins), and ``larc_<name>`` of each; with
    ``installed``, only those whose package imports here (a peer's extra may be missing)."""
    names = [*REGISTRY, *(name for name in plugin_names() if name not in REGISTRY)]
    if installed:
        names = [name for name in names if is_installed(name)]
    return [*names, *(LARC_PREFIX + name for name in names)]


def is_installed(name: str) -> bool:
    """Whether the optimizer ``name`` can be built here: its package imports (it raises nothing else)."""
    try:
        lookup(name)[0].load()
    except ValueError:
        return False
    return True


def _doc_line(target: Any) -> str:
    return (inspect.getdoc(target) or "").strip().split("\n")[0]


def _plugin(name: str) -> Optional[OptimInfo]:
    """The entry a plugin registers under ``name``: an ``OptimInfo`` (renamed to the entry
    point's name), anything with its fields (``cls``, ``description``, ``defaults``...), or a
    bare class or factory."""
    found = load_plugin(name)
    if found is None:
        return None
    target, *distribution = found
    if isinstance(target, OptimInfo):
        return dataclasses.replace(target, name=name, distribution=tuple(distribution))
    if hasattr(target, "cls"):
        fields = {f.name: getattr(target, f.name) for f in dataclasses.fields(OptimInfo)
                  if f.name not in ("name", "distribution") and hasattr(target, f.name)}
        return OptimInfo(name=name, distribution=tuple(distribution), **fields)
    return OptimInfo(name, target, _doc_line(target), distribution=tuple(distribution))


def lookup(name: str) -> tuple[OptimInfo, bool]:
    """The entry ``name`` stands for, and whether LARC wraps it. Raises ``ValueError`` in one line:
    an unknown name (with did-you-mean and the valid names), an import path that does not
    resolve to an optimizer class or factory, a plugin that does not load."""
    if name.startswith(LARC_PATH_PREFIX):
        entry, larc = lookup(name[len(LARC_PATH_PREFIX):])
        if larc:
            raise ValueError(f"optimizer {name!r} asks for LARC twice")
        return entry, True
    if name in REGISTRY:
        return REGISTRY[name], False
    if is_import_path(name):
        target = load_import_path_entry(name)
        return OptimInfo(name, target, _doc_line(target)), False
    plugin = _plugin(name)
    if plugin is not None:
        return plugin, False
    if name.startswith(LARC_PREFIX):
        inner = name[len(LARC_PREFIX):]
        if inner in REGISTRY or (not is_import_path(inner) and inner in plugin_names()):
            return lookup(inner)[0], True
    names = optimizer_names()
    raise ValueError(f"unknown optimizer {name!r}{did_you_mean(name, names)}; valid names: {', '.join(names)}")


def load_import_path_entry(path: str) -> OptimizerTarget:
    """The optimizer class or factory at ``path``, checked as ``OptimInfo.load`` checks it."""
    try:
        target = load_import_path(path)
    except ValueError as error:
        raise ValueError(f"optimizer {path!r}: {error}") from None
    return OptimInfo(path, target).load()


def with_larc(name: str) -> str:
    """``name`` under LARC: ``larc_<name>`` for a registry name, ``larc:<name>`` for an import
    path. ``ValueError`` for a name that LARC wraps already."""
    entry, larc = lookup(name)
    if larc:
        raise ValueError(f"optimizer {name!r} is under LARC already")
    return LARC_PREFIX + name if entry.name == name and not is_import_path(name) else LARC_PATH_PREFIX + name


def canonical_name(name: str) -> str:
    """One spelling per optimizer: ``larc_<entry>`` for ``larc:<entry>``; an import path as the
    defining module and qualified name (``torch.optim.RAdam`` → ``torch.optim.radam:RAdam``),
    after ``larc:`` when LARC wraps it."""
    entry, larc = lookup(name)
    if entry.name in REGISTRY or entry.distribution is not None:
        return LARC_PREFIX + entry.name if larc else entry.name
    path = qualified_name(entry.load())
    return LARC_PATH_PREFIX + path if larc else path


def optimizer_origin(name: str) -> Optional[dict[str, Optional[str]]]:
    """Where an optimizer from outside optbench and torch comes from: ``{"path", "distribution",
    "version"}`` (the class or factory's ``module:QualifiedName``, and the package that provides
    it, with its version; None where a package on ``sys.path`` has no metadata). None for the
    entries whose code ships with optbench or torch."""
    entry, _ = lookup(name)
    if not entry.outside:
        return None
    target = entry.load()
    distribution, version = entry.distribution or distribution_of(target)
    return {"path": qualified_name(target), "distribution": distribution, "version": version}


def resolved_defaults(name: str) -> dict[str, Any]:
    """The defaults a name runs with: the signature's, then the entry's own and pinned ones
    (options without a default are left out; implementation switches too)."""
    entry, larc = lookup(name)
    defaults = {k: p.default for k, p in entry.options().items()
                if k not in _IMPLEMENTATION_OPTIONS | _QUIET_OPTIONS and p.default is not inspect.Parameter.empty}
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
    update is computed, not which; ``maximize`` and ``decoupled_weight_decay`` are in only when
    set to something else than their default. Two option sets that resolve equal run the same
    algorithm.
    """
    entry, larc = lookup(name)
    larc_options: dict[str, Any] = {}
    if larc:
        options, larc_options = _split_larc_options(entry, options)
    accepted = entry.options()
    merged = {**resolved_defaults(entry.name), **options, **entry.fixed}
    if entry.adapt is not None:
        merged = entry.adapt(merged)
    if larc:
        merged.update({k: v for k, v in resolved_defaults(name).items() if k.startswith(LARC_PREFIX)})
        merged.update({LARC_PREFIX + k: v for k, v in larc_options.items()})
    return {k: v for k, v in merged.items() if k not in _IMPLEMENTATION_OPTIONS
            and not (k in _QUIET_OPTIONS and k in accepted and v == accepted[k].default)}


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


def _check_shape(name: str, key: str, value: Any, default: Any) -> None:
    """A value of the kind the signature's default is: a sequence for a tuple, a bool for a bool,
    a number for a number (None and defaults of other kinds take anything)."""
    def is_number(v: Any) -> bool:
        return isinstance(v, Real) and not isinstance(v, bool)

    if isinstance(default, (tuple, list)):
        wanted, ok = "a list such as " + str(list(default)), isinstance(value, (tuple, list))
    elif isinstance(default, bool):
        wanted, ok = "true or false", isinstance(value, bool)
    elif is_number(default):
        wanted, ok = "a number", is_number(value) or isinstance(value, Tensor)
    else:
        return
    if not ok:
        raise ValueError(f"optimizer {name!r}: option {key!r} takes {wanted}, got {value!r}")


def _checked_options(name: str, entry: OptimInfo, larc: bool, lr: Optional[Union[float, Tensor]],
                     options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The options the constructor gets and LARC's, after every check that needs no optimizer:
    option names against the signature (did-you-mean), kinds against its defaults, torch's value
    rules for the shared names (``lr``, ``betas``...), the variant's rewrite, LARC's options."""
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
    for key, value in options.items():
        _check_shape(name, key, value, accepted[key].default)
    merged = {**entry.defaults, **options, **entry.fixed}
    if lr is not None:
        merged["lr"] = lr
    try:
        if entry.adapt is not None:
            merged = entry.adapt({**resolved_defaults(entry.name), **merged})
        check_hyperparameters(merged)
        if larc:
            larc_defaults = inspect.signature(LARC.__init__).parameters
            check_larc_options(**{k: larc_options.get(k, larc_defaults[k].default) for k in _LARC_OPTIONS})
    except ValueError as error:
        raise ValueError(f"optimizer {name!r}: {error}") from None
    return merged, larc_options


def check_options(name: str, lr: Optional[float] = None, **options: Any) -> None:
    """Everything ``build_optimizer(name, ..., lr=lr, **options)`` checks before it builds, without
    building anything (building imports ``torch._dynamo``: over a second of a run's start).
    Raises the same one-line ``ValueError``s; what only the constructor can tell it tells when the
    run builds it."""
    entry, larc = lookup(name)
    _checked_options(name, entry, larc, lr, options)


def _holder(params: Iterable[Any]) -> nn.Module:
    """Bare tensors as a model, for a factory that takes one; groups and names cannot be kept."""
    if isinstance(params, Tensor):
        return param_groups(params, None)  # raises torch's TypeError for a single tensor
    items = list(params)
    if not all(isinstance(item, Tensor) for item in items):
        raise ValueError("it makes its own parameter groups from a model: pass the model or plain tensors")
    return ParameterHolder(items)


def build_optimizer(
    name: str,
    model_or_params: Union[nn.Module, Iterable[Tensor], Iterable[tuple[str, Tensor]], Iterable[dict[str, Any]]],
    lr: Optional[Union[float, Tensor]] = None,
    *,
    exclude_bias_and_norm: bool = True,
    **options: Any,
) -> Optimizer:
    """Build the optimizer ``name`` (a registry name or an import path, see ``lookup``) over a
    model, parameters, named parameters (``model.named_parameters()``: the names reach the
    state_dict, as in ``torch.optim``) or parameter groups.

    Unless ``exclude_bias_and_norm=False``, biases and normalisation weights go to a group with no
    weight decay and no LARC/LARS adaptation (see ``param_groups``); a factory that takes the
    model makes its own groups, and the policy then moves those tensors out of its decayed ones
    (``exempt_bias_and_norm``). ``larc_<inner>`` and ``larc:<inner>`` wrap the inner optimizer in
    ``LARC``; its options are ``eta``, ``mode``, ``min_update`` and ``larc_eps`` (and
    ``larc_eta`` etc. where the inner optimizer has an option of that name). Raises
    ``ValueError`` naming the problem for an unknown name, an unknown option, an invalid
    hyper-parameter or a factory that returns no optimizer.
    """
    entry, larc = lookup(name)
    merged, larc_options = _checked_options(name, entry, larc, lr, options)
    target = entry.load()
    try:
        if entry.takes_model():
            model = model_or_params if isinstance(model_or_params, nn.Module) else _holder(model_or_params)
            optimizer = target(model, **merged)
            if exclude_bias_and_norm and isinstance(optimizer, Optimizer):
                exempt_bias_and_norm(optimizer, model)
        else:
            accepted = entry.options()
            decays = "weight_decay" in accepted
            weight_decay = merged.pop("weight_decay", accepted["weight_decay"].default) if decays else None
            groups = param_groups(model_or_params, weight_decay, exclude_bias_and_norm=exclude_bias_and_norm)
            if not groups or not any(group["params"] for group in groups):
                raise ValueError("got no parameters that require gradients")
            optimizer = target(groups, **merged, **({"weight_decay": weight_decay} if decays else {}))
        if not isinstance(optimizer, Optimizer):
            raise ValueError(f"{qualified_name(target)} returned {type(optimizer).__name__}, "
                             "not a torch.optim.Optimizer")
        return LARC(optimizer, **larc_options) if larc else optimizer
    except ValueError as error:
        message = str(error)
        prefix = f"optimizer {name!r}"
        raise ValueError(message if message.startswith(prefix) else f"{prefix}: {message}") from None
