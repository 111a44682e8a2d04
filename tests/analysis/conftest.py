"""wandb offline and out of ``~`` for the analysis tests that train real runs (as the training
tests do)."""

from tests.experiments.conftest import offline_wandb, one_torch_thread  # noqa: F401
