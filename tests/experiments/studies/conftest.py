"""Shared by the study tests: a small spec written to a file, in tiny runs of the vision task."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

# A study small enough to train in seconds: tiny vision, 30 steps, two optimizers.
TINY_SPEC: dict[str, Any] = {
    "name": "tiny",
    "base": {"task": "vision", "size": "tiny", "target": 0.2,
             "trainer": {"max_steps": 30, "val_every_n_steps": 10, "log_every_n_steps": 10, "stop_at_target": True}},
    "grid": {"optimizer.name": ["adamw", "sgd"]},
    "optimizers": {"sgd": {"space": {"optimizer.momentum": {"one_minus_log_range": [0.01, 0.1], "points": 2}}}},
    "search": {"space": {"optimizer.lr": {"log_range": [0.003, 0.03], "points": 2}}},
    "seeds": [1],
}


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """``write_spec(spec)`` → the path of a YAML file holding it."""

    def write(spec: dict[str, Any], name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    return write
