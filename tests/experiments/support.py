"""Helpers the training-slice tests share: the tiny task's overrides and the CLI subprocess."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The tiny vision task: a few dozen steps train in a few seconds on one CPU core.
TINY = ["task=vision", "size=tiny"]


def optbench_command() -> list[str]:
    """The installed ``optbench`` console script, or the module when it is not installed."""
    script = Path(sys.executable).parent / "optbench"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "experiments.cli"]


def subprocess_env() -> dict[str, str]:
    """This process's environment (CPU only, offline wandb: see conftest) with one torch thread
    and the repository importable."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def to_legacy_checkpoint(path: Path) -> None:
    """Rewrite the checkpoint at ``path`` as the code before the run's instrumentation was split
    wrote it: one ``Instrumentation`` state (first loss, training seconds, step timer) and none
    of the state of the callbacks that replaced it."""
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    states = checkpoint["callbacks"]
    rows, guard, timing = states.pop("MetricRows"), states.pop("DivergenceGuard"), states.pop("StepTiming")
    for replaced in ("TrainingPeakMemory", "StopAtTarget"):
        states.pop(replaced, None)
    states["Instrumentation"] = {"first_loss": guard["first_loss"], "elapsed": rows["elapsed"], "step_timer": timing}
    torch.save(checkpoint, path)
