"""The built-in tasks' descriptions: vision, asr and lm, as any other task describes itself.

Their ``large`` sizes are the models of the NovoGrad and LARS papers' experiments (ResNet-50,
QuartzNet 5x5, GPT-2 small) for real data on a GPU, and declare the run settings those need in
place of the schema's defaults (which are those of ``tiny`` and ``default``).
"""

from __future__ import annotations

from experiments.data import versions
from experiments.tasks.info import TaskInfo

__all__ = ["BUILTIN"]

# Large models on a GPU: bf16 autocast, and DataLoader workers so that building the batches
# (augmentation, padding) overlaps the step.
_GPU = {"trainer.precision": "bf16-mixed", "data.num_workers": 4}

BUILTIN = {info.name: info for info in (
    TaskInfo(
        name="vision", metric="acc", higher_is_better=True,
        targets={"tiny": 0.6, "default": 0.93, "large": 0.93},
        module="experiments.tasks.vision:VisionTask", data="experiments.tasks.vision:vision_data",
        data_version=versions.digits_version, sources=("builtin", "cifar10", "imagefolder"),
        # ResNet-50 on CIFAR-10: ~30 epochs of 50,000 images at batch 256.
        size_settings={"large": {**_GPU, "data.batch_size": 256, "trainer.max_steps": 6000,
                                 "trainer.val_every_n_steps": 500, "schedule.warmup_steps": 300}},
    ),
    TaskInfo(
        name="asr", metric="wer", higher_is_better=False,
        targets={"tiny": 0.5, "default": 0.5, "large": 0.3},
        module="experiments.tasks.asr:SpeechTask", data="experiments.tasks.asr:asr_data",
        data_version=versions.espeak_version, sources=("builtin", "manifest"),
        # QuartzNet 5x5 on LibriSpeech: batch 32 per GPU as in the paper's recipe; ~2 epochs of 281k utterances.
        size_settings={"large": {**_GPU, "data.batch_size": 32, "trainer.max_steps": 20000,
                                 "trainer.val_every_n_steps": 1000, "schedule.warmup_steps": 1000}},
    ),
    TaskInfo(
        name="lm", metric="ppl", higher_is_better=False,
        targets={"tiny": 24.0, "default": 8.0, "large": 3.0},  # large: 1.58 bits per byte
        module="experiments.tasks.lm:LanguageModelTask", data="experiments.tasks.lm:lm_data",
        data_version=versions.pydoc_version, sources=("builtin", "text"),
        # GPT-2 small over bytes on WikiText-103: 16 × 1,024 bytes per step, 330M bytes in all.
        size_settings={"large": {**_GPU, "data.batch_size": 16, "trainer.max_steps": 20000,
                                 "trainer.val_every_n_steps": 1000, "schedule.warmup_steps": 1000}},
    ),
)}
