"""Task sizes, and the run settings a size declares in place of the schema's defaults.

- ``tiny``: seconds on a CPU (tests, ``quick``);
- ``default``: minutes on a CPU, on the built-in data (comparisons on a laptop);
- ``large``: the models of the NovoGrad and LARS papers' experiments — ResNet-50, QuartzNet 5x5,
  GPT-2 small — for real data on a GPU, in hours.

The schema's defaults (``experiments/config.py``) are those of ``tiny`` and ``default``. A size
that needs others declares them here, and ``load_config`` applies each one the user did not set
(on the command line or in a YAML file): the run, its ``config.yaml`` and its ``run_id`` all
hold the resolved value, so spelling out a declared default is the same run as omitting it.
Torch-free, so that loading a config does not load Lightning.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SIZES", "size_defaults"]

SIZES = ("tiny", "default", "large")

# Large models on a GPU: bf16 autocast, and DataLoader workers so that building the batches
# (augmentation, padding) overlaps the step.
_GPU = {"trainer.precision": "bf16-mixed", "data.num_workers": 4}

# (task, size) → {dotted config key: value}
_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    # ResNet-50 on CIFAR-10: ~30 epochs of 50,000 images at batch 256.
    ("vision", "large"): {**_GPU, "data.batch_size": 256, "trainer.max_steps": 6000,
                          "trainer.val_every_n_steps": 500, "schedule.warmup_steps": 300},
    # QuartzNet 5x5 on LibriSpeech: batch 32 per GPU as in the paper's recipe; ~2 epochs of 281k utterances.
    ("asr", "large"): {**_GPU, "data.batch_size": 32, "trainer.max_steps": 20000,
                       "trainer.val_every_n_steps": 1000, "schedule.warmup_steps": 1000},
    # GPT-2 small over bytes on WikiText-103: 16 × 1,024 bytes per step, 330M bytes in all.
    ("lm", "large"): {**_GPU, "data.batch_size": 16, "trainer.max_steps": 20000,
                      "trainer.val_every_n_steps": 1000, "schedule.warmup_steps": 1000},
}


def size_defaults(task: str, size: str) -> dict[str, Any]:
    """The settings ``size`` of ``task`` declares (empty where the schema's defaults serve)."""
    return dict(_DEFAULTS.get((task, size), {}))
