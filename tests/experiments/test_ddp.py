"""Multi-process training on CPU: Lightning's DDP over gloo, launched as real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

COMMON = ["task=lm", "size=tiny", "trainer.max_steps=30", "trainer.val_every_n_steps=10",
          "trainer.log_every_n_steps=10", "trainer.accelerator=cpu", "optimizer.name=larc_novograd",
          "optimizer.lr=0.01"]


def _train(out_dir: Path, *overrides: str) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "train", *COMMON, f"out_dir={out_dir}", *overrides],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = [p for p in (out_dir / "default").iterdir() if p.is_dir()]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_process_ddp_follows_one_process_with_the_same_effective_batch(tmp_path):
    """``trainer.devices=2 trainer.strategy=ddp`` with batch 16 per process gives the loss curve
    and validation perplexity of one process with batch 32: each process takes its half of the
    same global batch and DDP averages the gradients (the byte-level GPT has no batch norm)."""
    ddp = _train(tmp_path / "ddp", "trainer.devices=2", "trainer.strategy=ddp", "data.batch_size=16")
    single = _train(tmp_path / "single", "data.batch_size=32")
    for key in ("train/loss", "val/ppl"):
        ddp_values = [(row["step"], row[key]) for row in ddp if key in row]
        single_values = [(row["step"], row[key]) for row in single if key in row]
        assert [s for s, _ in ddp_values] == [s for s, _ in single_values] == [10, 20, 30]
        for (_, a), (_, b) in zip(ddp_values, single_values):
            assert a == pytest.approx(b, rel=1e-4)
