"""Versions of the built-in tasks' data sets, part of the run_id of every run that trains on one.

A run_id names a computation; when a built-in data set changes (a new corpus recipe, a Python
release whose ``pydoc_data`` text differs, another eSpeak NG), its runs must get new ids instead
of being taken for the old ones. Each function is the ``data_version`` of a built-in task's
description (``experiments/tasks/builtin.py``), called only when a run_id is computed. Torch-free:
a study plans run_ids without loading any data.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import metadata

__all__ = ["CORPUS_VERSION", "DIGITS_VERSION", "digits_version", "espeak_version", "pydoc_version"]

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


def digits_version() -> str:
    """The vision task's cluttered digits: a recipe number (scikit-learn ships the same 1,797
    digits in every release)."""
    return f"digits-{DIGITS_VERSION}"


def espeak_version() -> str:
    """The ASR task's synthesised sentences: the corpus recipe and the eSpeak NG build."""
    return f"espeak-{CORPUS_VERSION}-loader-{_package_version('espeakng-loader')}"


def pydoc_version() -> str:
    """The LM task's text: a digest of this Python's documentation topics."""
    return f"pydoc-{_pydoc_text_digest()}"
