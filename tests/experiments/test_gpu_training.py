"""Each task trains on a CUDA GPU in bf16-mixed with the optimizers' default (Triton) paths:
marked ``gpu``, run where a CUDA device is visible (``OPTBENCH_TEST_GPU=1``, see
``scripts/gpu_check.sh``), skipped elsewhere."""

from __future__ import annotations

import math

import pytest

from experiments.config import load_config
from experiments.train import train

STEPS = 20


@pytest.mark.gpu
@pytest.mark.parametrize("task, optimizer, lr", [
    ("vision", "larc_novograd", 0.01), ("lm", "novograd", 0.01), ("asr", "larc_sgd", 0.05), ("vision", "lars", 0.5),
])
def test_a_task_trains_in_bf16_mixed_on_cuda(tmp_path, task, optimizer, lr):
    """The run completes every step with a finite loss, a measured validation metric, a timed
    training step and the GPU's training peak in the summary."""
    config = load_config([f"task={task}", "size=tiny", f"optimizer.name={optimizer}", f"optimizer.lr={lr}",
                          f"trainer.max_steps={STEPS}", "trainer.val_every_n_steps=10", "trainer.log_every_n_steps=5",
                          "trainer.accelerator=gpu", "trainer.precision=bf16-mixed", f"out_dir={tmp_path}"])
    summary = train(config)
    assert summary["status"] == "completed", summary["error"]
    assert summary["global_step"] == STEPS
    assert math.isfinite(summary["final"]["train/loss"])
    assert summary["best"][summary["metric"]] is not None
    assert summary["train_step_time_s"] > 0 and summary["peak_memory_bytes"] > 0
