"""Versions of the built-in data sets, part of the run_id of every run that trains on one.

A run_id names a computation; when a built-in data set changes (a new corpus recipe, a Python
release whose ``pydoc_data`` text differs, another eSpeak NG), its runs must get new ids instead
of being taken for the old ones. Torch-free: a study plans run_ids without loading any data.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import metadata

__all__ = ["CORPUS_VERSION", "DIGITS_VERSION", "builtin_data_version"]

CORPUS_VERSION = 2  # the eSpeak NG sentence corpus recipe (experiments/data/speech.py)
DIGITS_VERSION = 2  # the cluttered, noisy scikit-learn digits (experiments/tasks/vision.py): 2, per-image draws


@functools.cache
def _pydoc_text_digest() -> str:
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key] for key in sorted(topics))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def builtin_data_version(task: str) -> str:
    """The version of ``task``'s built-in data set: a recipe number and what it is made from."""
    if task == "vision":
        return f"digits-{DIGITS_VERSION}"  # scikit-learn ships the same 1,797 digits in every release
    if task == "asr":
        return f"espeak-{CORPUS_VERSION}-loader-{_package_version('espeakng-loader')}"
    if task == "lm":
        return f"pydoc-{_pydoc_text_digest()}"
    raise ValueError(f"no built-in data version for task {task!r}")
