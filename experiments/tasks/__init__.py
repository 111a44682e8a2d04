"""Task registry: ``task=<name>`` or ``task=package.module:name`` → its description and its pieces.

A name is a built-in task (``experiments/tasks/builtin.py``) or one a package registers through
the entry-point group ``optbench.tasks`` (an entry point naming a ``TaskInfo``); an import path
names a user's ``TaskInfo`` directly. Each is resolved inside the process that needs it, so a
study's runs, on any executor, find a user's task as ``optbench train`` does. Torch-free until a
run builds its task: descriptions are plain data, and only ``build_task`` imports their pieces.
"""

from __future__ import annotations

import functools
import importlib.util
from importlib import metadata
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from experiments.import_path import ImportPathError, load_object
from experiments.tasks.builtin import BUILTIN
from experiments.tasks.info import TaskError, TaskInfo

if TYPE_CHECKING:  # Lightning loads with the first task built, not with the registry
    import pytorch_lightning as pl

    from experiments.tasks.base import LrLambda, OptimizerFactory, TaskModule

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "TaskError", "TaskInfo", "build_task", "task_info", "task_names"]

ENTRY_POINT_GROUP = "optbench.tasks"


@functools.cache
def _plugins() -> dict[str, metadata.EntryPoint]:
    """The tasks installed packages register, by entry-point name (read once per process)."""
    found: dict[str, metadata.EntryPoint] = {}
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {entry.name} = {entry.value} of {_distribution(entry)}"
        if entry.name in BUILTIN:
            raise TaskError(f"{where} (group {ENTRY_POINT_GROUP}) takes the name of a built-in task")
        if entry.name in found and found[entry.name].value != entry.value:
            raise TaskError(f"{where} (group {ENTRY_POINT_GROUP}) takes a name that "
                            f"{_distribution(found[entry.name])} registers too")
        found[entry.name] = entry
    return found


def _distribution(entry: metadata.EntryPoint) -> str:
    return f"{entry.dist.name} {entry.dist.version}" if entry.dist is not None else "an unknown distribution"


def task_names() -> list[str]:
    """Every registered task: the built-in ones, then those of installed packages."""
    return [*BUILTIN, *sorted(_plugins())]


def task_info(task: str) -> TaskInfo:
    """The description of ``task`` (a registered name or ``package.module:name``); ``TaskError``,
    one line naming what is wrong, for an unknown name or a task that cannot be used."""
    if task in BUILTIN:
        return BUILTIN[task]
    if ":" in task:
        info = _load(task, task)
        if info.name in BUILTIN:
            raise TaskError(f"task {task!r} is named {info.name!r}, as a built-in task is: give it another name")
    elif task in _plugins():
        entry = _plugins()[task]
        path = f"{entry.module}:{entry.attr}"
        info = _load(task, path, f" (entry point {path} of {_distribution(entry)})")
        if info.name != task:
            raise TaskError(f"task {task!r}: entry point {path} describes a task named {info.name!r}")
    else:
        from optimizers.did_you_mean import did_you_mean  # optimizers loads torch: only when needed

        names = task_names()
        raise TaskError(f"invalid value for 'task': {task!r}{did_you_mean(task, names)}; "
                        f"valid: {', '.join(names)}, or package.module:name")
    for piece in ("module", "data"):
        module_name = getattr(info, piece).partition(":")[0]
        if not _findable(module_name):
            raise TaskError(f"task {task!r}: its {piece} {getattr(info, piece)} names module {module_name!r}, "
                            "which is not found")
    return info


def _load(task: str, path: str, origin: str = "") -> TaskInfo:
    """The ``TaskInfo`` at ``path``, every failure worded as a ``TaskError`` naming ``task``."""
    try:
        info = load_object(path, passthrough=(TaskError,))
    except TaskError as error:  # raised by TaskInfo(...) as its module was imported
        raise TaskError(f"task {task!r}{origin}: invalid description: {error}") from None
    except ImportPathError as error:
        raise TaskError(f"task {task!r}{origin}: {error}") from None
    if not isinstance(info, TaskInfo):
        raise TaskError(f"task {task!r}{origin} is a {type(info).__name__}, not a TaskInfo (experiments.tasks.info)")
    return info


@functools.cache
def _findable(module_name: str) -> bool:
    """Whether ``module_name`` exists, found without importing it (its parent packages import)."""
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


def build_task(config: DictConfig, optimizer_factory: OptimizerFactory,
               lr_lambda: LrLambda) -> tuple[TaskModule, pl.LightningDataModule]:
    """The task module and its data for ``config`` (task, size, data.*): the description's
    ``data`` function builds the data, then its ``module`` class the model, with the options the
    data gave it. A piece that is missing or of the wrong kind is a ``TaskError``."""
    import pytorch_lightning as pl

    from experiments.tasks.base import TaskData, TaskModule

    info = task_info(config.task)
    module_class = _piece(config.task, info, "module")
    if not (isinstance(module_class, type) and issubclass(module_class, TaskModule)):
        raise TaskError(f"task {config.task!r}: its module {info.module} is not a TaskModule subclass "
                        "(experiments.tasks.base)")
    build_data = _piece(config.task, info, "data")
    if not callable(build_data):
        raise TaskError(f"task {config.task!r}: its data {info.data} is not a function of the run config")
    data = build_data(config)
    if not (isinstance(data, TaskData) and isinstance(data.module, pl.LightningDataModule)):
        raise TaskError(f"task {config.task!r}: its data {info.data} returned {type(data).__name__}, not a TaskData "
                        "holding a LightningDataModule (experiments.tasks.base)")
    return module_class(info, config.size, optimizer_factory, lr_lambda, **data.model_options), data.module


def _piece(task: str, info: TaskInfo, piece: str) -> Any:
    try:
        return load_object(getattr(info, piece))
    except ImportPathError as error:
        raise TaskError(f"task {task!r}: its {piece} {getattr(info, piece)}: {error}") from None
