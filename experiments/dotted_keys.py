"""Nested mappings as dotted keys (``{trainer: {max_steps: 5}}`` → ``{"trainer.max_steps": 5}``).

Config overrides, study specs (``base``, ``grid``) and the analysis' ``config.*`` columns all name
a config value by its dotted key. Torch-free and dependency-free: analysis imports it.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["flatten"]


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested and dotted keys alike as dotted keys, each after ``prefix``; lists are values,
    empty mappings vanish."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat
