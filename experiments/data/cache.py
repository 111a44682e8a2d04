"""The data cache, ``$OPTBENCH_CACHE`` (default ``~/.cache/optbench``): data sets built or decoded
once (the synthesised speech corpora, decoded manifests, the built-in digits) and read back by
every later run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["cache_dir", "save_atomic"]


def cache_dir() -> Path:
    """Where cached data sets live: ``$OPTBENCH_CACHE``, else ``~/.cache/optbench``."""
    return Path(os.environ.get("OPTBENCH_CACHE", Path.home() / ".cache" / "optbench"))


def save_atomic(data: Any, path: Path) -> None:
    """``torch.save`` ``data`` to ``path`` through a temporary file of this process and
    ``os.replace``: a reader never sees half a file, and processes that build the same entry at
    once each replace it with a whole one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(data, tmp)
    os.replace(tmp, path)
