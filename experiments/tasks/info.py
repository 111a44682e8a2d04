"""A task's description: every fact about a task that the harness reads without building it.

Config validation (the data sources, the settings a size declares), run identity (the version of
its built-in data, its default target), study planning and the summaries that analysis reads all
take their task facts from here, for built-in tasks and users' alike. AlgoPerf's workloads carry
the same facts as properties (target metric, its direction, target values); here they are plain
data with no torch behind them, and the code that trains is named by import path (as Hydra's
``_target_`` names it), imported only when a run is built. So planning a study of a user's task
needs neither torch nor the user's model.

Sizes are the harness's, the same for every task:

- ``tiny``: seconds on a CPU (tests, ``quick``);
- ``default``: minutes on a CPU, on the built-in data (comparisons on a laptop);
- ``large``: the models of the papers' experiments, for real data on a GPU, in hours.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Callable, Mapping, Union

__all__ = ["SIZES", "TaskError", "TaskInfo"]

SIZES = ("tiny", "default", "large")

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_METRIC = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


class TaskError(ValueError):
    """A task that cannot be used: unknown, not importable, missing a piece or wrongly described.
    The message is one line naming the task and what is wrong with it."""


@dataclass(frozen=True)
class TaskInfo:
    """What a task is, for everything but training it. Checked when made: a wrong field raises
    ``TaskError`` naming it."""

    name: str  # what summaries, tables and reports call the task
    metric: str  # the validation metric, logged as val/<metric>
    higher_is_better: bool  # the metric's direction: accuracy up, error rates and perplexity down
    targets: Mapping[str, float]  # the default steps-to-target threshold of every size (`target=` overrides it)
    module: str  # "package.module:Class" of its TaskModule (experiments.tasks.base), the Lightning module
    data: str  # "package.module:function" building its data from the run config: returns a TaskData
    # The version of the data it builds itself (data.source=builtin), or a function returning it: part of
    # the run_id, so bump it when the data changes and old runs are never taken for new ones.
    data_version: Union[str, Callable[[], str]]
    sources: tuple[str, ...] = ("builtin",)  # the data.source values it reads (data.path names the data)
    # size → {dotted config key: value}: the run settings a size declares in place of the schema's
    # defaults, applied where the user did not set them (so they are in config.yaml and the run_id).
    size_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, pattern, what in (("name", _NAME, "a name such as 'digits'"),
                                    ("metric", _METRIC, "a metric name such as 'acc'"),
                                    ("module", _IMPORT_PATH, "an import path package.module:Class"),
                                    ("data", _IMPORT_PATH, "an import path package.module:function")):
            value = getattr(self, name)
            if not (isinstance(value, str) and pattern.fullmatch(value)):
                raise TaskError(f"{name} must be {what}, got {value!r}")
        if not isinstance(self.higher_is_better, bool):
            raise TaskError(f"higher_is_better must be True or False, got {self.higher_is_better!r}")
        object.__setattr__(self, "targets", _targets(self.targets))
        if not (callable(self.data_version) or isinstance(self.data_version, str) and self.data_version):
            raise TaskError(f"data_version must be a non-empty string or a function returning one, "
                            f"got {self.data_version!r}")
        object.__setattr__(self, "sources", _sources(self.sources))
        object.__setattr__(self, "size_settings", _size_settings(self.size_settings))

    def builtin_data_version(self) -> str:
        """The version of the task's own data (``data_version``, called if it is a function)."""
        version = self.data_version() if callable(self.data_version) else self.data_version
        if not (isinstance(version, str) and version):
            raise TaskError(f"task {self.name!r}: data_version() must return a non-empty string, got {version!r}")
        return version


def _mapping(value: Any, what: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise TaskError(f"{what} must be a mapping of size → value (sizes: {', '.join(SIZES)}), got {value!r}")
    unknown = [key for key in value if key not in SIZES]
    if unknown:
        raise TaskError(f"{what}: unknown size {unknown[0]!r} (sizes: {', '.join(SIZES)})")
    return value


def _targets(value: Any) -> dict[str, float]:
    targets = _mapping(value, "targets")
    missing = [size for size in SIZES if size not in targets]
    if missing:
        raise TaskError(f"targets: no target for size {missing[0]!r} (every size needs one: {', '.join(SIZES)})")
    for size, target in targets.items():
        if isinstance(target, bool) or not isinstance(target, Real) or not math.isfinite(target):
            raise TaskError(f"targets[{size!r}] must be a finite number, got {target!r}")
    return {size: float(targets[size]) for size in SIZES}


def _sources(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or not value:
        raise TaskError(f"sources must be a non-empty list of data.source names, got {value!r}")
    bad = [source for source in value if not (isinstance(source, str) and _NAME.fullmatch(source))]
    if bad:
        raise TaskError(f"sources: {bad[0]!r} is not a data.source name")
    if len(set(value)) < len(value):
        raise TaskError(f"sources names a source twice: {list(value)}")
    return tuple(value)


def _size_settings(value: Any) -> dict[str, dict[str, Any]]:
    settings = _mapping(value, "size_settings")
    for size, keys in settings.items():
        if not (isinstance(keys, Mapping) and all(isinstance(key, str) for key in keys)):
            raise TaskError(f"size_settings[{size!r}] must map dotted config keys to values, got {keys!r}")
        for key in ("task", "size"):
            if key in keys:
                raise TaskError(f"size_settings[{size!r}] cannot set {key!r}")
    return {size: dict(keys) for size, keys in settings.items()}
