"""Optimizers from outside this package: import paths (``package.module:Class`` or
``package.module.Class``), plugins registered under the entry-point group ``optbench.optimizers``,
and the distribution (package name and version) that provides each.

Everything here is resolved in the process that asks, from ``sys.path`` and the installed
distributions' metadata, so a study's runs (fresh processes on any executor) find the same
optimizer their planner found. Errors are one-line ``ValueError``s naming what is missing.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import sys
from typing import Any, Optional

__all__ = [
    "ENTRY_POINT_GROUP", "is_import_path", "load_import_path", "plugin_names", "load_plugin", "distribution_of",
    "qualified_name",
]

ENTRY_POINT_GROUP = "optbench.optimizers"


def is_import_path(name: str) -> bool:
    """Whether ``name`` is spelt as an import path rather than a registry name."""
    return ":" in name or "." in name


def load_import_path(path: str) -> Any:
    """The object that ``package.module:attr`` or ``package.module.attr`` names (``attr`` may be
    dotted: ``module:Outer.Inner``). The dotted spelling takes the longest prefix that imports as
    the module. Raises ``ValueError``: a module that does not import, a missing attribute."""
    module_name, colon, attribute = path.partition(":")
    if colon:
        candidates = [(module_name, attribute)]
    else:
        parts = path.split(".")
        candidates = [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]
    if not all(module and attribute for module, attribute in candidates):
        raise ValueError(f"{path!r} is not an import path: write package.module:Class or package.module.Class")
    first_error: Optional[str] = None
    for module_name, attribute in candidates:
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            missing = getattr(error, "name", None)
            # A module that is not there: try a shorter prefix. One that fails inside: report it.
            if missing is not None and (module_name == missing or module_name.startswith(missing + ".")):
                first_error = first_error or f"cannot import module {module_name!r}: {_first_line(error)}"
                continue
            raise ValueError(f"cannot import module {module_name!r}: {_first_line(error)}") from None
        except Exception as error:  # a module that raises while importing: name it, in one line
            raise ValueError(f"cannot import module {module_name!r}: {type(error).__name__}: "
                             f"{_first_line(error)}") from None
        target: Any = module
        for part in attribute.split("."):
            if not hasattr(target, part):
                raise ValueError(f"module {module_name!r} has no attribute {attribute!r}")
            target = getattr(target, part)
        return target
    raise ValueError(first_error or f"cannot import {path!r}")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    """The group's entry points, one per name (the first distribution on ``sys.path`` wins, as
    imports do)."""
    seen: dict[str, importlib.metadata.EntryPoint] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        seen.setdefault(entry_point.name, entry_point)
    return list(seen.values())


def plugin_names() -> list[str]:
    """The names that installed packages register under ``optbench.optimizers`` (nothing is
    imported to list them)."""
    return sorted(entry_point.name for entry_point in _entry_points())


def load_plugin(name: str) -> Optional[tuple[Any, Optional[str], Optional[str]]]:
    """``(object, distribution, version)`` of the plugin ``name``, or None if no package registers
    it. The object is whatever the entry point names (an ``OptimInfo``, a class or a factory)."""
    for entry_point in _entry_points():
        if entry_point.name == name:
            try:
                target = entry_point.load()
            except Exception as error:
                raise ValueError(f"optimizer plugin {name!r} ({entry_point.value}) does not load: "
                                 f"{type(error).__name__}: {_first_line(error)}") from None
            dist = entry_point.dist
            return target, (dist.metadata["Name"] if dist else None), (dist.version if dist else None)
    return None


def qualified_name(target: Any) -> str:
    """``module:QualifiedName`` of a class or function, from where it is defined (so that
    ``torch.optim.RAdam`` and ``torch.optim.radam:RAdam`` are the same optimizer)."""
    return f"{target.__module__}:{target.__qualname__}"


def distribution_of(target: Any) -> tuple[Optional[str], Optional[str]]:
    """``(distribution, version)`` that provides ``target``'s top-level package: the installed
    distribution of that name, else the one whose files hold it, else ``(None, __version__)``
    for a package that is only on ``sys.path`` (None where it has no ``__version__``)."""
    top = target.__module__.split(".")[0]
    try:
        dist = importlib.metadata.distribution(top)
        return dist.metadata["Name"], dist.version
    except importlib.metadata.PackageNotFoundError:
        pass
    names = _packages_distributions().get(top)
    if names:
        return names[0], importlib.metadata.version(names[0])
    version = getattr(sys.modules.get(top), "__version__", None)
    return None, (str(version) if version is not None else None)


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    """Top-level package → distributions (it reads every installed distribution's files: once)."""
    return importlib.metadata.packages_distributions()
