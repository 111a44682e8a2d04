"""Run configuration: dataclass schema (OmegaConf structured config), loading, overrides, run_id.

Every field carries a comment; YAML files and ``key=value`` overrides hold only what differs from
these defaults. A misspelt key or a wrong type is a one-line ``ConfigError`` naming the key.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.schedule import LR_SCALINGS, SCHEDULES
from experiments.tasks import TaskError, TaskInfo, task_info
from experiments.tasks.info import SIZES
from experiments.yaml_error import yaml_error

__all__ = [
    "ConfigError", "DataConfig", "OptimizerConfig", "ScheduleConfig", "TrainerConfig",
    "LoggerConfig", "RunConfig", "load_config", "validate", "check_environment", "run_id", "run_dir", "canonical_config",
    "to_yaml", "effective_batch_size", "optimizer_options", "resolved_optimizer", "recorded", "task_of",
    "resolved_target",
]


class ConfigError(ValueError):
    """Bad configuration: the message is one line naming the key or value at fault."""


@dataclass
class DataConfig:
    source: str = "builtin"  # builtin (the task's own data) | a real-data source of the task (docs/training.md#data)
    path: Optional[str] = None  # the real data set (see docs/training.md#data)
    val_path: Optional[str] = None  # validation manifest for data.source=manifest
    batch_size: int = 64  # per-device batch size
    num_workers: int = 0  # DataLoader workers (does not change results)


@dataclass
class OptimizerConfig:
    name: str = "adamw"  # a registry name (`optbench optimizers` lists them) or an import path package.module:Class
    lr: float = 1e-3  # base learning rate, scaled by lr_scaling from reference_batch_size
    weight_decay: Optional[float] = None  # None: the optimizer's own default
    lr_scaling: str = "none"  # none | linear | sqrt: lr × (effective batch / reference)^(1 or 1/2)
    reference_batch_size: int = 64  # the effective batch size that `lr` was tuned for
    larc: bool = False  # wrap the optimizer in LARC: the name becomes larc_<name> (or larc:<import path>)
    exclude_bias_and_norm: bool = True  # biases and norm weights: no weight decay, no layer-wise adaptation
    options: Dict[str, Any] = field(default_factory=dict)  # optimizer.<option>=... lands here
    resolved: Dict[str, Any] = field(default_factory=dict)  # set in config.yaml for an optimizer from outside


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # constant | cosine | polynomial (after a linear warm-up)
    warmup_steps: int = 0  # linear warm-up over this many steps: 1/warmup, 2/warmup, ... of the peak
    min_lr_ratio: float = 0.0  # final rate / peak rate for cosine and polynomial
    power: float = 2.0  # exponent of the polynomial decay


@dataclass
class TrainerConfig:
    max_steps: int = 300  # optimizer steps
    accumulate_grad_batches: int = 1
    precision: str = "32-true"  # as in Lightning: 32-true, bf16-mixed, 16-mixed
    accelerator: str = "auto"  # cpu | gpu | auto
    devices: int = 1  # processes (one per device) on each node
    num_nodes: int = 1  # machines, each running `devices` processes (as in Lightning)
    strategy: str = "auto"  # auto | ddp | fsdp, as in Lightning
    gradient_clip_val: Optional[float] = None  # global norm clipping (warns with LARC)
    val_every_n_steps: int = 50  # validation interval in optimizer steps (and at the end)
    log_every_n_steps: int = 10  # scalar metrics interval
    layer_stats_every_n_steps: int = 50  # per-layer norms, update ratios, trust ratios
    divergence_factor: float = 10.0  # loss above this × the first loss (or NaN/inf): diverged
    stop_at_target: bool = False  # end the run at the first validation that reaches `target`
    grad_noise_scale: bool = False  # estimate B_simple (McCandlish et al.): needs accumulate_grad_batches >= 2


@dataclass
class LoggerConfig:
    wandb: str = "disabled"  # disabled | offline | online
    project: str = "optbench"
    entity: Optional[str] = None
    tags: List[str] = field(default_factory=list)  # added to [optimizer, task]


@dataclass
class RunConfig:
    task: str = "vision"  # vision | asr | lm | a plugin's task | package.module:name (docs/extending.md)
    size: str = "default"  # tiny (seconds, for tests) | default (minutes, CPU) | large (hours, GPU)
    seed: int = 0
    target: Optional[float] = None  # steps-to-target threshold; None: the task's own default
    out_dir: str = "runs"  # run store root: <out_dir>/<study>/<run_id>/
    study: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


_CHOICES = {  # the task's own data sources are its description's (``task_of``)
    "size": SIZES,
    "optimizer.lr_scaling": LR_SCALINGS,
    "schedule.name": SCHEDULES,
    "logger.wandb": ("disabled", "offline", "online"),
}


@dataclass(frozen=True)
class _Interval:
    """The values a numeric key may take: above ``low`` (or equal to it, if ``closed``) and at
    most ``high``. The check and the error's wording both come from here."""

    low: float
    closed: bool = False
    high: float = math.inf

    def __contains__(self, value: float) -> bool:
        return (value >= self.low if self.closed else value > self.low) and value <= self.high  # NaN: False

    def __str__(self) -> str:
        """``> 0``, ``>= 0``, ``in [0, 1]``."""
        if self.high == math.inf:
            return f"{'>=' if self.closed else '>'} {self.low:g}"
        return f"in {'[' if self.closed else '('}{self.low:g}, {self.high:g}]"


_POSITIVE, _NON_NEGATIVE = _Interval(0), _Interval(0, closed=True)
_RANGES = {  # checked in this order; None (an Optional key left unset) is not checked
    "optimizer.lr": _NON_NEGATIVE,
    "data.batch_size": _POSITIVE, "trainer.max_steps": _POSITIVE, "trainer.accumulate_grad_batches": _POSITIVE,
    "trainer.devices": _POSITIVE, "trainer.num_nodes": _POSITIVE, "optimizer.reference_batch_size": _POSITIVE,
    "trainer.val_every_n_steps": _POSITIVE, "trainer.log_every_n_steps": _POSITIVE,
    "trainer.layer_stats_every_n_steps": _POSITIVE, "trainer.gradient_clip_val": _POSITIVE,
    "trainer.divergence_factor": _Interval(1),
    "schedule.warmup_steps": _NON_NEGATIVE,
    "schedule.min_lr_ratio": _Interval(0, closed=True, high=1),
    "data.num_workers": _NON_NEGATIVE,
}


def _known_keys(node: Any = RunConfig, prefix: str = "") -> list[str]:
    keys = []
    for f in fields(node):
        default = f.default_factory() if callable(f.default_factory) else None  # type: ignore[misc]
        if default is not None and hasattr(default, "__dataclass_fields__"):
            keys += _known_keys(type(default), f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _route_optimizer_options(dotlist: Sequence[str]) -> list[str]:
    """``optimizer.<option>=v`` for a name that is not an OptimizerConfig field goes to options."""
    own = {f.name for f in fields(OptimizerConfig)}
    routed = []
    for item in dotlist:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        parts = key.split(".")
        if len(parts) == 2 and parts[0] == "optimizer" and parts[1] not in own:
            key = f"optimizer.options.{parts[1]}"
        routed.append(f"{key}={value}")
    return routed


def _one_line(error: OmegaConfBaseException) -> str:
    from optimizers.did_you_mean import did_you_mean

    key = getattr(error, "full_key", None) or ""
    message = str(error).splitlines()[0].strip()
    if "not in struct" in message or "Key '" in message and "not" in message:
        return f"unknown config key {key!r}{did_you_mean(key, _known_keys())}"
    return f"invalid value for {key!r}: {message}" if key else message


def _check_override_keys(dotlist: Sequence[str]) -> None:
    """Every override names a field (or an optimizer option), never a whole group."""
    groups = {key.rsplit(".", 1)[0] for key in _known_keys() if "." in key}
    for item in dotlist:
        key = item.partition("=")[0]
        if key in groups:
            raise ConfigError(f"config key {key!r} is a group: set its fields, e.g. {key}.<field>=value")


def _read_yaml(path: Path) -> DictConfig:
    """A YAML config file, its top-level ``optimizer:`` options moved under ``optimizer.options``."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        file_config = OmegaConf.load(path)
    except yaml.YAMLError as error:
        raise ConfigError(yaml_error(path, error)) from None
    if not isinstance(file_config, DictConfig):
        raise ConfigError(f"{path} must hold a mapping of config keys")
    if "optimizer" in file_config:
        optimizer = file_config.optimizer
        if not isinstance(optimizer, DictConfig):
            raise ConfigError(f"'optimizer' in {path} must be a mapping, got {optimizer!r}")
        own = {f.name for f in fields(OptimizerConfig)}
        options = {k: optimizer[k] for k in optimizer if k not in own}
        if options:
            existing = optimizer.get("options") or {}
            for key in options:
                del optimizer[key]
            optimizer["options"] = {**OmegaConf.to_container(OmegaConf.create(existing)), **options}
    return file_config


def load_config(overrides: Sequence[str] = (), path: Optional[str | Path] = None) -> DictConfig:
    """Schema defaults, then the YAML file at ``path`` (if any), then ``key=value`` overrides."""
    schema = OmegaConf.structured(RunConfig)
    dotlist = _route_optimizer_options(overrides)
    _check_override_keys(dotlist)
    try:
        layers = [schema]
        if path is not None:
            layers.append(_read_yaml(Path(path)))
        layers.append(OmegaConf.from_dotlist(dotlist))
        config = OmegaConf.merge(*layers)
    except OmegaConfBaseException as error:
        raise ConfigError(_one_line(error)) from None
    _apply_size_settings(config, layers[1:])
    _fold_larc(config)
    validate(config)
    return config


def _fold_larc(config: DictConfig) -> None:
    """``optimizer.larc=true`` as the name that says it (``larc_<name>``, ``larc:<import path>``),
    so that config.yaml, the summary and the analysis name the optimizer that runs."""
    from optimizers.registry import with_larc

    if config.optimizer.larc:
        try:
            config.optimizer.name = with_larc(config.optimizer.name)
        except ValueError as error:
            raise ConfigError(f"optimizer.larc=true: {error}") from None
        config.optimizer.larc = False


def task_of(config: DictConfig) -> TaskInfo:
    """The description of the config's task (``experiments/tasks``); ``ConfigError`` naming what
    is wrong with an unknown or unusable task."""
    try:
        return task_info(config.task)
    except TaskError as error:
        raise ConfigError(str(error)) from None


def _apply_size_settings(config: DictConfig, user_layers: Sequence[DictConfig]) -> None:
    """Set each setting the task's description declares for its size that no user layer (YAML
    file, overrides) set, so that the config holds the values the run uses."""
    unset = object()
    for key, value in task_of(config).size_settings.get(config.size, {}).items():
        if all(OmegaConf.select(layer, key, default=unset) is unset for layer in user_layers):
            try:
                OmegaConf.update(config, key, value)
            except OmegaConfBaseException as error:
                raise ConfigError(f"task {config.task!r}: size_settings[{config.size!r}]: {_one_line(error)}") from None


def validate(config: DictConfig) -> None:
    """Check values the schema's types cannot: choices, ranges, the optimizer and its options.

    Nothing here looks at this machine (devices, data paths): a study is planned on one machine
    and trained on others. ``check_environment`` does that, when a run starts.
    """
    from optimizers.did_you_mean import did_you_mean

    for key, choices in {**_CHOICES, "data.source": task_of(config).sources}.items():
        value = OmegaConf.select(config, key)
        if value not in choices:
            where = f" for task {config.task}" if key == "data.source" else ""
            raise ConfigError(f"invalid value for {key!r}: {value!r}{did_you_mean(value, choices)}; "
                              f"valid{where}: {', '.join(choices)}")
    for key, interval in _RANGES.items():
        value = OmegaConf.select(config, key)
        if value is not None and value not in interval:
            raise ConfigError(f"invalid value for {key!r}: {value} (must be {interval})")
    if config.trainer.grad_noise_scale and (config.trainer.accumulate_grad_batches < 2 or config.trainer.devices > 1):
        raise ConfigError(
            "trainer.grad_noise_scale needs trainer.accumulate_grad_batches >= 2 and trainer.devices=1 "
            "(it compares one micro-batch's gradient with the accumulated one)"
        )
    if config.data.source != "builtin" and not config.data.path:
        raise ConfigError(f"data.source={config.data.source} needs data.path")
    _validate_optimizer(config)


def _validate_optimizer(config: DictConfig) -> None:
    """The optimizer's name and options, checked against its signature and defaults without
    building it (``optimizers.registry.check_options``); under FSDP, that it is not layer-wise."""
    from optimizers.behaviour import is_layer_wise
    from optimizers.registry import check_options

    name, options = _optimizer_name(config), optimizer_options(config)
    try:
        check_options(name, lr=config.optimizer.lr, **options)
    except ValueError as error:
        raise ConfigError(str(error).splitlines()[0]) from None
    # FSDP hands the optimizer flat shards of the parameters: an optimizer whose update of a
    # tensor depends on the whole tensor computes something else there. Asked of its behaviour
    # (it builds the optimizer on a small matrix and on its halves), and so only under FSDP.
    if "fsdp" in config.trainer.strategy and is_layer_wise(name, **options):
        raise ConfigError(
            f"trainer.strategy={config.trainer.strategy} with optimizer {name!r} is not supported: "
            "FSDP hands the optimizer shards, and its per-tensor norms would be norms of shards"
        )


def recorded(config: DictConfig) -> DictConfig:
    """``config`` as its run records it in config.yaml: for an optimizer from outside optbench and
    torch, a copy with ``optimizer.resolved`` filled in (``resolved_optimizer``: its path, package,
    version and options); else ``config`` itself, whose optimizer the registry describes."""
    resolved = resolved_optimizer(config)
    if "path" not in resolved:
        return config
    copy = config.copy()
    copy.optimizer.resolved = resolved
    return copy


def _optimizer_name(config: DictConfig) -> str:
    """The optimizer that runs: ``optimizer.name``, under LARC where ``optimizer.larc`` asks."""
    return f"larc:{config.optimizer.name}" if config.optimizer.larc else config.optimizer.name


def resolved_optimizer(config: DictConfig) -> dict[str, Any]:
    """What the optimizer of ``config`` is, as ``optimizer.resolved`` records it: its one spelling
    (``canonical_name``), every option it runs with (defaults filled in) and, for one from
    outside optbench and torch, its ``module:Class`` path and the package and version providing it."""
    from optimizers.registry import canonical_name, optimizer_origin, resolved_options

    name = _optimizer_name(config)
    options = resolved_options(name, **optimizer_options(config))
    options["lr"] = config.optimizer.lr  # optimizer.lr is the one that counts
    return {"name": canonical_name(name), **(optimizer_origin(name) or {}), "options": options}


def check_environment(config: DictConfig) -> None:
    """What a run needs of the machine it starts on: the device it asks for, its data path."""
    if config.trainer.accelerator in ("gpu", "cuda") and not _cuda_available():
        raise ConfigError(f"trainer.accelerator={config.trainer.accelerator} but no CUDA device is visible")
    for key in ("data.path", "data.val_path"):
        path = OmegaConf.select(config, key)
        if config.data.source != "builtin" and path and not Path(path).exists():
            raise ConfigError(f"{key} does not exist: {path}")


def optimizer_options(config: DictConfig) -> dict[str, Any]:
    """``optimizer.options`` (lists as tuples) plus ``optimizer.weight_decay`` when set."""
    options = {k: tuple(v) if isinstance(v, list) else v
               for k, v in OmegaConf.to_container(config.optimizer.options, resolve=True).items()}
    if config.optimizer.weight_decay is not None:
        options["weight_decay"] = config.optimizer.weight_decay
    return options


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def effective_batch_size(config: DictConfig) -> int:
    """Samples per optimizer step: batch_size × accumulate_grad_batches × devices × num_nodes."""
    trainer = config.trainer
    return config.data.batch_size * trainer.accumulate_grad_batches * trainer.devices * trainer.num_nodes


def resolved_target(config: DictConfig) -> float:
    """The steps-to-target threshold: ``config.target``, else the task's default for its size."""
    return config.target if config.target is not None else task_of(config).targets[config.size]


# Keys that never change what a run computes: left out of its run_id. ``target`` joins them
# unless ``trainer.stop_at_target`` makes it end the run.
_NOT_RESULT_KEYS = (
    "out_dir", "study", "logger", "data.num_workers", "trainer.accelerator", "trainer.log_every_n_steps",
    "trainer.layer_stats_every_n_steps",
)
# Bumped whenever the meaning of a run_id changes (what is hashed, or how): old ids never alias.
RUN_ID_VERSION = 2


def canonical_config(config: DictConfig) -> dict[str, Any]:
    """What a run computes, as plain data: every result-changing key with its resolved value.

    The optimizer's options are resolved by the registry (defaults merged in, so an explicit
    default equals an omitted one; implementation switches such as ``fused`` out), its name is
    spelt one way (``optimizer.larc=true`` with ``sgd`` is ``larc_sgd``; an import path is its
    class's defining ``module:Class``), an optimizer from outside optbench and torch adds its
    package and version (an upgrade never aliases an old run), numbers are
    floats (``eps=1`` equals ``eps=1.0``), tuples are lists, and keys that change no result are
    dropped. Every schema field is kept, defaults included: changing a default changes the ids of
    the runs that relied on it instead of aliasing them.
    """
    plain = OmegaConf.to_container(config, resolve=True)
    if config.trainer.stop_at_target:
        plain["target"] = resolved_target(config)  # the task's default, where it ends the run, is part of the run
    else:
        plain.pop("target")
    for key in _NOT_RESULT_KEYS:
        *parents, last = key.split(".")
        node = plain
        for parent in parents:
            node = node[parent]
        node.pop(last)
    optimizer = plain["optimizer"]
    resolved = resolved_optimizer(config)
    optimizer["name"] = resolved.pop("name")
    optimizer["options"] = resolved.pop("options")
    optimizer["options"].pop("lr")  # optimizer.lr is the one that counts
    if resolved:
        optimizer["origin"] = resolved  # from outside: its path, package and version
    for key in ("weight_decay", "larc", "resolved"):  # folded into options, the name, the above
        optimizer.pop(key)
    if optimizer["exclude_bias_and_norm"]:  # a key added after runs existed: hashed when changed only
        optimizer.pop("exclude_bias_and_norm")
    if optimizer["lr_scaling"] == "none":
        optimizer.pop("reference_batch_size")  # nothing is scaled from it
    return _normalised(plain)


def _normalised(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalised(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def run_id(config: DictConfig) -> str:
    """Stable 12-hex-digit hash of ``canonical_config(config)``, salted with ``RUN_ID_VERSION``
    and, for the task's own data (``data.source=builtin``), its description's ``data_version``."""
    salt = {"run_id_version": RUN_ID_VERSION}
    if config.data.source == "builtin":
        try:
            salt["data_version"] = task_of(config).builtin_data_version()
        except TaskError as error:
            raise ConfigError(str(error)) from None
    canonical = json.dumps({**salt, "config": canonical_config(config)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def run_dir(config: DictConfig) -> Path:
    """Where the run lives in the store: ``<out_dir>/<study>/<run_id>``."""
    return Path(config.out_dir) / config.study / run_id(config)


def to_yaml(config: DictConfig) -> str:
    return OmegaConf.to_yaml(config, resolve=True)


def _field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` from the comment that ends each field's line in ``cls``'s source: the
    schema's comments are its documentation, so ``optbench train --help`` reads them from there."""
    import inspect
    import io
    import tokenize

    comments, first_name = {}, {}
    for token in tokenize.generate_tokens(io.StringIO(inspect.getsource(cls)).readline):
        if token.type == tokenize.NAME and token.start[0] not in first_name:
            first_name[token.start[0]] = token.string
        elif token.type == tokenize.COMMENT and token.start[0] in first_name:
            comments[first_name[token.start[0]]] = token.string.lstrip("# ")
    return comments


def config_reference() -> str:
    """Every config key with its default and its comment from the schema, a blank line between
    groups: the text ``optbench train --help`` ends with and the key list in docs/training.md."""
    defaults = OmegaConf.structured(RunConfig)
    lines, rows = [], []
    for key in _known_keys():
        parent, _, name = key.rpartition(".")
        node = OmegaConf.select(defaults, parent) if parent else defaults
        value = OmegaConf.to_container(node)[name]
        rows.append((parent, f"{key}={_yaml_scalar(value)}", _field_comments(OmegaConf.get_type(node)).get(name, "")))
    width = max(len(setting) for _, setting, _ in rows)
    for i, (group, setting, comment) in enumerate(rows):
        if i and group != rows[i - 1][0]:
            lines.append("")
        lines.append(f"{setting:<{width}}  {comment}".rstrip())
    return "\n".join(lines)


def _yaml_scalar(value: Any) -> str:
    """A default as it is written in an override: null, true, 1e-3, [], {}."""
    return json.dumps(value) if value is None or isinstance(value, (bool, list, dict)) else str(value)
