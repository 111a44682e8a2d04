"""Suite-wide test setup: CPU only, two threads, fixed seeds.

CUDA devices are hidden before torch is imported, so no test picks a GPU by accident. On a GPU
machine, ``OPTBENCH_TEST_GPU=1`` keeps them visible and runs the tests marked ``gpu``; otherwise
those are skipped, and Triton is put in interpreter mode (``TRITON_INTERPRET=1``, read when
``triton`` is imported, which Lightning does early) so that the Triton kernels' tests run on CPU
tensors.
"""

from __future__ import annotations

import os
import random

if os.environ.get("OPTBENCH_TEST_GPU") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ["TRITON_INTERPRET"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)

SEED = 1234


@pytest.fixture(autouse=True)
def fixed_seeds() -> int:
    """Seed Python, NumPy and torch before every test, so that each test is reproducible alone."""
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    return SEED


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` when no CUDA device is visible."""
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (set OPTBENCH_TEST_GPU=1 on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
