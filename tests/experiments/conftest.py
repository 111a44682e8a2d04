"""Setup for the training-slice tests: wandb offline and out of ``~``, a private data cache,
one torch thread.

Both are package-scoped, so module-scoped training fixtures and the CLI's subprocesses (which
inherit the environment) run under them: nothing reaches the network and nothing is written
under the home directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture(scope="package", autouse=True)
def offline_wandb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """WANDB_MODE=offline, and every directory wandb writes to under a temporary folder."""
    root = tmp_path_factory.mktemp("wandb-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_SILENT", "true")
        patch.setenv("WANDB_DISABLE_CODE", "true")
        for name in ("DIR", "CACHE_DIR", "CONFIG_DIR", "DATA_DIR", "ARTIFACT_DIR"):
            path = root / name.lower()
            path.mkdir()
            patch.setenv(f"WANDB_{name}", str(path))
        yield root


@pytest.fixture(scope="package", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """$OPTBENCH_CACHE in a temporary folder: the features of the manifests the tests write (and
    the built-in digits corpus, synthesised once per session in a few seconds) stay out of ``~``."""
    root = tmp_path_factory.mktemp("optbench-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPTBENCH_CACHE", str(root))
        yield root


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread while these tests run (restored after them).

    The tiny models gain nothing from a second thread, and on a shared two-core machine two
    threads per process oversubscribe the cores: a training step then takes ten times longer.
    The CLI's subprocesses get the same through OMP_NUM_THREADS (``support.subprocess_env``).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
