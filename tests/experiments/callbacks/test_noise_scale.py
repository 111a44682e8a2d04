"""The gradient noise scale: the estimator's algebra, a real Lightning run on a problem whose noise
scale is known in closed form, and the option in ``optbench train``."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from experiments.config import ConfigError, load_config
from experiments.callbacks.noise_scale import GradientNoiseScale, NoiseScaleEstimator
from experiments.store import RunStore
from experiments.train import run_dir, train
from tests.experiments.support import TINY


@pytest.mark.parametrize("grad_sq, trace, b_small, b_big", [(2.5, 10.0, 4, 16), (0.01, 3.0, 1, 8), (7.0, 0.7, 32, 64)])
def test_estimator_recovers_exact_expectations(grad_sq, trace, b_small, b_big):
    """Fed E|G_B|² = |G|² + tr(Σ)/B at both sizes, it returns |G|², tr(Σ) and their ratio."""
    estimator = NoiseScaleEstimator(b_small, b_big, decay=0.9)
    for _ in range(3):
        estimator.update(grad_sq + trace / b_small, grad_sq + trace / b_big)
    assert estimator.grad_sq == pytest.approx(grad_sq)
    assert estimator.trace_sigma == pytest.approx(trace)
    assert estimator.simple == pytest.approx(trace / grad_sq)


def test_estimator_smooths_each_term_and_skips_non_finite_pairs():
    """Two updates average each term with the moving average's weights; an inf pair (an AMP
    overflow step) changes nothing; a negative |G|² average gives no noise scale."""
    estimator = NoiseScaleEstimator(1, 2, decay=0.5)
    assert estimator.simple is None
    estimator.update(3.0, 2.0)  # |G|² = 1, tr = 2
    estimator.update(float("inf"), 1.0)
    assert estimator.updates == 1
    estimator.update(5.0, 2.0)  # |G|² = -1, tr = 6
    assert estimator.grad_sq == pytest.approx((0.25 * 1 + 0.5 * -1) / 0.75)
    assert estimator.trace_sigma == pytest.approx((0.25 * 2 + 0.5 * 6) / 0.75)
    assert estimator.simple is None


def test_estimator_refuses_batches_out_of_order():
    with pytest.raises(ValueError, match="0 < small_batch < big_batch"):
        NoiseScaleEstimator(8, 8)


class GaussianMean(pl.LightningModule):
    """Loss ½|w − x|² averaged over x ~ N(μ, σ²I): per-sample gradient w − x, so G = w − μ and
    Σ = σ²I, and B_simple = dσ²/|w − μ|². The weights stay put (lr = 0): a constant target."""

    def __init__(self, w: torch.Tensor, mu: torch.Tensor, sigma: float) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.mu, self.sigma = mu, sigma

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return 0.5 * (self.w - batch).square().sum(dim=1).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.slow
def test_noise_scale_of_a_known_problem_in_a_real_run():
    """Micro-batches of 4, accumulated 4 times: the run's estimate lands within 15% of dσ²/|G|²."""
    d, sigma, micro, accumulate, steps = 10, 1.0, 4, 4, 300
    generator = torch.Generator().manual_seed(0)
    mu, w = torch.zeros(d), torch.full((d,), 0.5)
    data = [mu + sigma * torch.randn(micro, d, generator=generator) for _ in range(steps * accumulate)]
    callback = GradientNoiseScale(None, micro_batch=micro, accumulate=accumulate, log_every=10, decay=0.99)
    trainer = pl.Trainer(max_steps=steps, accumulate_grad_batches=accumulate, callbacks=[callback], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu")
    trainer.fit(GaussianMean(w, mu, sigma), torch.utils.data.DataLoader(data, batch_size=None))
    true = d * sigma**2 / float((w - mu).square().sum())  # = 4
    assert callback.estimator.updates == steps
    assert callback.estimator.simple == pytest.approx(true, rel=0.15)
    assert callback.estimator.trace_sigma == pytest.approx(d * sigma**2, rel=0.15)


@pytest.mark.slow
def test_train_records_the_noise_scale(tmp_path):
    """trainer.grad_noise_scale=true logs gns/* rows and puts B_simple in summary.json."""
    config = load_config([*TINY, f"out_dir={tmp_path}", "trainer.max_steps=20", "trainer.accumulate_grad_batches=2",
                          "trainer.grad_noise_scale=true", "trainer.log_every_n_steps=5"])
    summary = train(config)
    rows = [row for row in RunStore(run_dir(config)).rows() if "gns/simple" in row]
    assert [row["step"] for row in rows] == [1, 5, 10, 15, 20]
    assert summary["grad_noise_scale"] == rows[-1]["gns/simple"]
    assert summary["grad_noise_scale"] > 0 and math.isfinite(summary["grad_noise_scale"])


@pytest.mark.parametrize("overrides", [["trainer.accumulate_grad_batches=1"],
                                       ["trainer.accumulate_grad_batches=2", "trainer.devices=2"]])
def test_noise_scale_needs_accumulation_in_one_process(overrides):
    with pytest.raises(ConfigError, match=r"trainer\.grad_noise_scale needs trainer\.accumulate_grad_batches >= 2"):
        load_config(["trainer.grad_noise_scale=true", *overrides])
