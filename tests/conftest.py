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
from typing import TYPE_CHECKING, Iterator

if os.environ.get("OPTBENCH_TEST_GPU") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ["TRITON_INTERPRET"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

if TYPE_CHECKING:
    from tests.slurm_cluster import SlurmCluster

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


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator["SlurmCluster"]:
    """A real one-node SLURM cluster with accounting (``tests/slurm_cluster.py``), started once per
    session, with SLURM_CONF pointing this process and its children (sbatch, sacct, submitit) at it.

    Without the SLURM packages the tests that use it are skipped, except under CI (``CI=true``),
    where that is a failure: ``scripts/install_slurm.sh`` installs them.
    """
    from tests.slurm_cluster import missing_binaries, start_cluster

    missing = missing_binaries()
    if missing:
        message = f"SLURM is not installed (no {', '.join(missing)}): run scripts/install_slurm.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in cluster.env.items():
                patch.setenv(name, value)
            yield cluster
    finally:
        cluster.stop()
