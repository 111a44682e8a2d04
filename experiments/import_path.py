"""Objects named by import path, ``package.module:name``, as entry points name them.

The harness loads users' code this way (a task's description and pieces), inside every run's own
process, so a study sees it on any executor. What goes wrong says so in one line.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ImportPathError", "load_object"]


class ImportPathError(ValueError):
    """An import path that names nothing: its module does not import, or lacks the attribute."""


def load_object(path: str, passthrough: tuple[type[Exception], ...] = ()) -> Any:
    """The object ``package.module:name`` names (``name`` may be dotted: ``module:Class.attr``).

    An exception of a ``passthrough`` type raised while the module imports propagates as it is
    (the caller words it: a task's invalid description, say); any other is an ``ImportPathError``.
    """
    module_name, _, attribute = path.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except passthrough:
        raise
    except Exception as error:  # noqa: BLE001 - whatever the user's module raises, named in one line
        detail = str(error).splitlines()[0] if str(error) else ""
        raise ImportPathError(f"module {module_name!r} does not import ({type(error).__name__}: {detail})") from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ImportPathError(f"module {module_name!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    return obj
