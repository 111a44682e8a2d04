"""``train(config)``: what a real (tiny) Lightning run leaves in the run store, and how re-runs,
divergence, targets and the offline wandb logger behave."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import warnings
from datetime import datetime
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from experiments.config import RunConfig, load_config, run_id, to_yaml
from experiments.schedule import lr_multiplier
from experiments.store import RunStore
from experiments.tasks.components.resnet import ResNet
from experiments.train import run_dir, train
from tests.experiments.support import TINY, to_legacy_checkpoint

MAX_STEPS, VAL_EVERY, LOG_EVERY, LAYERS_EVERY = 20, 10, 5, 10


def tiny_config(out_dir: Path, *extra: str):
    """The tiny vision task, a few steps, everything logged often, stored under ``out_dir``."""
    return load_config([*TINY, f"out_dir={out_dir}", *extra])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``root``: its modification time and its bytes."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def completed(tmp_path_factory):
    """One completed run: (config, summary returned by train, run directory)."""
    config = tiny_config(
        tmp_path_factory.mktemp("runs"), f"trainer.max_steps={MAX_STEPS}", f"trainer.val_every_n_steps={VAL_EVERY}",
        f"trainer.log_every_n_steps={LOG_EVERY}", f"trainer.layer_stats_every_n_steps={LAYERS_EVERY}", "target=0.05",
    )
    summary = train(config)
    return config, summary, run_dir(config)


def test_run_directory_is_out_dir_study_run_id(completed):
    """The run lives at <out_dir>/<study>/<run_id> and holds the store's files."""
    config, summary, root = completed
    assert root == Path(config.out_dir) / "default" / run_id(config)
    assert summary["run_id"] == root.name == run_id(config)
    names = {p.name for p in root.iterdir()}
    assert {"config.yaml", "meta.json", "metrics.jsonl", "layers.jsonl", "summary.json", "checkpoints"} <= names
    assert (root / "checkpoints" / "last.ckpt").is_file()


def test_config_yaml_is_the_resolved_config(completed):
    """config.yaml is the resolved config: same text as to_yaml, loads back to an equal config."""
    config, _, root = completed
    text = (root / "config.yaml").read_text()
    assert text == to_yaml(config)
    loaded = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.load(root / "config.yaml"))
    assert loaded == config
    assert run_id(loaded) == root.name


def test_meta_records_versions_commit_and_start(completed):
    """meta.json holds the torch version, the git commit of the code and an ISO start time."""
    _, _, root = completed
    meta = json.loads((root / "meta.json").read_text())
    assert meta["torch"] == torch.__version__
    assert {"python", "pytorch_lightning", "git_commit", "host", "device", "start_time"} <= set(meta)
    # The commit checked out when the run started: HEAD, or an ancestor if a commit landed since.
    assert re.fullmatch(r"[0-9a-f]{40}", meta["git_commit"])
    ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", meta["git_commit"], "HEAD"],
                              cwd=Path(__file__).resolve().parent)
    assert ancestor.returncode == 0
    started = datetime.strptime(meta["start_time"], "%Y-%m-%dT%H:%M:%S%z")
    assert abs((datetime.now(started.tzinfo) - started).total_seconds()) < 3600


def test_metrics_rows(completed):
    """metrics.jsonl: a train row every log_every_n_steps (step, wall_time, train/loss, lr,
    throughput), a validation row every val_every_n_steps (val/acc, val/acc_best), wall time
    never going back."""
    _, _, root = completed
    rows = read_jsonl(root / "metrics.jsonl")
    train_rows = [r for r in rows if "train/loss" in r]
    val_rows = [r for r in rows if "val/acc" in r]
    assert [r["step"] for r in train_rows] == list(range(LOG_EVERY, MAX_STEPS + 1, LOG_EVERY))
    assert [r["step"] for r in val_rows] == list(range(VAL_EVERY, MAX_STEPS + 1, VAL_EVERY))
    for row in train_rows:
        assert {"step", "epoch", "wall_time", "train/loss", "lr"} <= set(row)
        assert math.isfinite(row["train/loss"]) and row["train/loss"] > 0
    # Throughput from the timed steps since the previous row: none in the first 5 (warm-up).
    assert "throughput" not in train_rows[0] and all(row["throughput"] > 0 for row in train_rows[1:])
    for row in val_rows:
        assert 0.0 <= row["val/acc"] <= 1.0
        assert row["val/acc_best"] == max(r["val/acc"] for r in val_rows if r["step"] <= row["step"])
    times = [r["wall_time"] for r in rows]
    assert times == sorted(times) and times[0] > 0


def test_logged_lr_follows_the_schedule(completed):
    """The lr logged at step s is optimizer.lr × lr_multiplier(s) (cosine by default)."""
    config, _, root = completed
    for row in read_jsonl(root / "metrics.jsonl"):
        if "lr" in row:
            expected = config.optimizer.lr * lr_multiplier(row["step"], name="cosine", max_steps=MAX_STEPS)
            assert row["lr"] == pytest.approx(expected, abs=1e-12), row["step"]


def test_layer_rows(completed):
    """layers.jsonl: at step 1 and every layer_stats_every_n_steps, one row per parameter tensor
    with grad_norm, weight_norm, update_norm and update_ratio = update_norm / weight_norm (None
    for a zero weight); no trust_ratio for AdamW."""
    _, _, root = completed
    rows = read_jsonl(root / "layers.jsonl")
    names = {f"model.{n}" for n, _ in ResNet(1, 10, width=8, blocks=1).named_parameters()}
    steps = sorted({r["step"] for r in rows})
    assert steps == [1, *range(LAYERS_EVERY, MAX_STEPS + 1, LAYERS_EVERY)]
    for step in steps:
        assert {r["layer"] for r in rows if r["step"] == step} == names
    assert len(rows) == len(steps) * len(names)
    for row in rows:
        assert row["grad_norm"] >= 0 and row["weight_norm"] >= 0 and row["update_norm"] >= 0
        if row["weight_norm"] > 0:
            assert row["update_ratio"] == pytest.approx(row["update_norm"] / row["weight_norm"])
        else:  # a zero-initialised tensor (batch-norm shift) at step 1: no ratio
            assert row["update_ratio"] is None
        assert "trust_ratio" not in row
    assert sum(r["update_norm"] > 0 for r in rows) > len(rows) // 2  # the weights did move


def test_summary(completed):
    """summary.json (equal to what train returned): completed, every step taken, best metric
    from the validation rows, final train loss, steps_to_target, timings and memory."""
    config, returned, root = completed
    summary = json.loads((root / "summary.json").read_text())
    assert summary == json.loads(json.dumps(returned))
    rows = read_jsonl(root / "metrics.jsonl")
    assert summary["status"] == "completed" and summary["error"] is None
    assert summary["global_step"] == MAX_STEPS
    assert summary["metric"] == "val/acc" and summary["higher_is_better"] is True
    assert summary["best"] == {"val/acc": max(r["val/acc"] for r in rows if "val/acc" in r)}
    assert summary["final"]["train/loss"] == [r for r in rows if "train/loss" in r][-1]["train/loss"]
    assert summary["target"] == 0.05
    assert summary["steps_to_target"] == VAL_EVERY  # any classifier beats 5% at the first validation
    assert summary["wall_time_s"] > 0
    assert summary["throughput_samples_per_s"] == pytest.approx(64 / summary["train_step_time_s"])
    assert summary["peak_memory_bytes"] > 0
    assert summary["diverged_at_step"] is None
    assert (summary["optimizer"], summary["effective_batch_size"], summary["seed"]) == ("adamw", 64, 0)


def test_step_time_leaves_out_the_first_steps_and_the_validations(completed):
    """Of 20 steps, the timed ones are 6..20 (5 of warm-up), less step 11, whose interval held
    the validation at step 10; their time is part of the wall time."""
    _, summary, root = completed
    state = torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]["StepTiming"]
    assert state["steps"] == MAX_STEPS - 5 - 1
    assert state["seconds"] == pytest.approx(summary["train_step_time_s"] * (MAX_STEPS - 6))
    assert state["seconds"] < summary["wall_time_s"]


def test_optimizer_state_bytes_is_adamw_state(completed):
    """AdamW keeps two float32 buffers per parameter (plus a scalar step per tensor)."""
    _, summary, _ = completed
    params = list(ResNet(1, 10, width=8, blocks=1).parameters())
    buffers = 2 * 4 * sum(p.numel() for p in params)
    assert buffers <= summary["optimizer_state_bytes"] <= buffers + 8 * len(params)


def test_rerun_is_a_no_op(completed):
    """train() on a finished run returns its summary with skipped=True and touches no file."""
    config, first, root = completed
    before = snapshot(root)
    again = train(config)
    assert again.pop("skipped") is True
    assert again == json.loads((root / "summary.json").read_text())
    assert snapshot(root) == before
    assert [p.name for p in root.parent.iterdir()] == [root.name]


def test_force_keeps_the_old_run_beside_the_new(tmp_path):
    """force=True trains again and keeps the previous directory as <run_id>.replaced-* beside it."""
    config = tiny_config(tmp_path, "trainer.max_steps=2", "trainer.val_every_n_steps=2")
    root = run_dir(config)
    train(config)
    old = snapshot(root)
    summary = train(config, force=True)
    assert "skipped" not in summary and summary["status"] == "completed"
    siblings = [p for p in root.parent.iterdir() if p != root]
    assert len(siblings) == 1 and re.fullmatch(rf"{root.name}\.replaced-\d{{8}}-\d{{6}}", siblings[0].name)
    assert snapshot(siblings[0]) == old
    assert RunStore(root).status() == "completed"
    assert (root / "summary.json").read_bytes() != old["summary.json"][1]  # a new run wrote it


@pytest.mark.slow
def test_force_twice_within_a_second_keeps_both(tmp_path):
    """Every forced re-run keeps the directory it replaces, however quickly they follow each other.

    Eight one-step runs take well under seven seconds, so two of them fall in the same second."""
    config = tiny_config(tmp_path, "trainer.max_steps=1", "trainer.val_every_n_steps=1")
    train(config)
    for _ in range(8):
        assert train(config, force=True)["status"] == "completed"
    assert len(list(run_dir(config).parent.glob("*.replaced-*"))) == 8


# LARC's clip mode only scales a gradient down when η‖w‖/(lr‖g‖) < 1: it needs a large lr.
@pytest.mark.parametrize("optimizer, lr, has_trust_ratio", [
    ("adamw", 1e-3, False), ("sgd", 0.1, False), ("larc_sgd", 1.0, True), ("lars", 1e-3, True),
])
def test_trust_ratio_is_logged_for_layerwise_optimizers(tmp_path, optimizer, lr, has_trust_ratio):
    """layers.jsonl rows carry trust_ratio exactly when the optimizer is LARC- or LARS-based;
    it is a positive finite factor, and LARC's clip mode never scales a gradient up."""
    config = tiny_config(tmp_path, f"optimizer.name={optimizer}", f"optimizer.lr={lr}", "trainer.max_steps=2",
                         "trainer.val_every_n_steps=2", "trainer.layer_stats_every_n_steps=1")
    assert train(config)["status"] == "completed"
    rows = read_jsonl(run_dir(config) / "layers.jsonl")
    assert sorted({r["step"] for r in rows}) == [1, 2]
    assert all(("trust_ratio" in r) == has_trust_ratio for r in rows)
    if has_trust_ratio:
        ratios = [r["trust_ratio"] for r in rows]
        assert all(math.isfinite(t) and t > 0 for t in ratios)
        assert any(t != 1.0 for t in ratios)  # some layer is adapted
        if optimizer.startswith("larc_"):
            assert max(ratios) <= 1.0


def test_divergence_is_a_result_not_an_error(tmp_path):
    """SGD at lr=1e6 diverges: train() returns normally with status 'diverged', stops early,
    records the step, and a re-run skips it (a diverged run is a finished result)."""
    config = tiny_config(tmp_path, "optimizer.name=sgd", "optimizer.lr=1e6", "trainer.max_steps=20",
                         "trainer.val_every_n_steps=10", "trainer.log_every_n_steps=10")
    summary = train(config)
    assert summary["status"] == "diverged" and summary["error"] is None
    assert 1 <= summary["diverged_at_step"] == summary["global_step"] < 20
    assert RunStore(run_dir(config)).status() == "diverged"
    rows = read_jsonl(run_dir(config) / "metrics.jsonl")
    last_train = [r for r in rows if "train/loss" in r][-1]  # logged at the diverging step
    assert last_train["step"] == summary["diverged_at_step"]
    assert not last_train["train/loss"] <= config.trainer.divergence_factor * 2.5  # ln(10) ≈ 2.3 at the start
    assert train(config)["skipped"] is True


@pytest.mark.parametrize("target, expected", [(1.01, None), (0.0, 1)])
def test_steps_to_target_in_a_run(tmp_path, target, expected):
    """steps_to_target is None when the target is never reached, else the first validation step
    that reaches it (validation every step here)."""
    config = tiny_config(tmp_path, f"target={target}", "trainer.max_steps=2", "trainer.val_every_n_steps=1")
    summary = train(config)
    assert summary["target"] == target
    assert summary["steps_to_target"] == expected


@pytest.mark.parametrize("target, max_steps, expected_steps", [(0.0, 30, 10), (1.01, 20, 20)])
def test_stop_at_target_ends_the_run_completed(tmp_path, target, max_steps, expected_steps):
    """trainer.stop_at_target ends a run at the first validation that reaches the target, as a
    completed run; a run that never reaches it trains its whole budget."""
    config = tiny_config(tmp_path, f"target={target}", f"trainer.max_steps={max_steps}",
                         "trainer.val_every_n_steps=10", "trainer.stop_at_target=true")
    summary = train(config)
    assert (summary["status"], summary["global_step"]) == ("completed", expected_steps)
    assert summary["steps_to_target"] == (10 if target == 0.0 else None)


# Runs that end at their last checkpoint, with their status and last step: a budget not a multiple
# of the validation interval (with the noise scale, whose estimate is state too), a stop at the
# target, a divergence.
ENDS_AT_ITS_CHECKPOINT = {
    "completed": (["trainer.max_steps=7", "trainer.val_every_n_steps=5", "trainer.log_every_n_steps=2",
                   "trainer.accumulate_grad_batches=2", "trainer.grad_noise_scale=true", "target=0.05"],
                  "completed", 7),
    "stopped at its target": (["target=0.0", "trainer.stop_at_target=true", "trainer.max_steps=30",
                               "trainer.val_every_n_steps=10"], "completed", 10),
    "diverged": (["optimizer.name=sgd", "optimizer.lr=1e6", "trainer.max_steps=20", "trainer.val_every_n_steps=10",
                  "trainer.log_every_n_steps=10"], "diverged", 10),  # the first logged step after step 1
}


@pytest.mark.slow
@pytest.mark.parametrize("kind, legacy", [(kind, False) for kind in ENDS_AT_ITS_CHECKPOINT] + [("completed", True)])
def test_a_run_resumed_from_its_last_checkpoint_ends_as_it_did(tmp_path, kind, legacy):
    """Killed after its last checkpoint but before its summary (summary.json removed, as if),
    the run, run again, takes no step: it writes the summary it would have written, from the
    state the checkpoint restores (final values, validations, target reached, divergence,
    timer, peak memory, noise scale, optimizer state), and logs nothing again. Wall time aside:
    the checkpoint's is the last validation's. A checkpoint written before the instrumentation
    was split (legacy) resumes to the same summary, without a warning, its peak memory aside
    (it kept none)."""
    overrides, status, last_step = ENDS_AT_ITS_CHECKPOINT[kind]
    config = tiny_config(tmp_path, *overrides)
    first = train(config)
    assert (first["status"], first["global_step"]) == (status, last_step)
    root = run_dir(config)
    rows = read_jsonl(root / "metrics.jsonl")
    (root / "summary.json").unlink()
    if legacy:
        to_legacy_checkpoint(root / "checkpoints" / "last.ckpt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = train(config)
    assert [str(w.message) for w in caught if "callbacks" in str(w.message)] == []
    assert 0 < again.pop("wall_time_s") <= first.pop("wall_time_s")
    if legacy:
        assert again.pop("peak_memory_bytes") is None and first.pop("peak_memory_bytes") > 0
    assert again == first
    assert read_jsonl(root / "metrics.jsonl") == rows


def test_wandb_offline_run_lands_in_the_run_directory(tmp_path):
    """logger.wandb=offline writes an offline wandb run (its .wandb file) under the run's own
    directory, and the run store is written as without wandb."""
    config = tiny_config(tmp_path, "logger.wandb=offline", "trainer.max_steps=2", "trainer.val_every_n_steps=2",
                         "trainer.layer_stats_every_n_steps=1", "trainer.log_every_n_steps=1")
    summary = train(config)
    root = run_dir(config)
    assert summary["status"] == "completed"
    offline = list((root / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    wandb_file = offline[0] / f"run-{config.study}-{root.name}.wandb"  # <study>-<run_id>: unique per study
    assert wandb_file.is_file() and wandb_file.stat().st_size > 0
    assert RunStore(root).status() == "completed"


def test_last_step_is_validated_and_checkpointed(tmp_path):
    """max_steps not a multiple of the validation interval: the last step is validated all the
    same, inside training (its row has the epoch of the training row of that step), and
    last.ckpt holds the final state."""
    config = tiny_config(tmp_path, "trainer.max_steps=7", "trainer.val_every_n_steps=5", "trainer.log_every_n_steps=1")
    assert train(config)["status"] == "completed"
    rows = read_jsonl(run_dir(config) / "metrics.jsonl")
    assert [r["step"] for r in rows if "val/acc" in r] == [5, 7]
    epochs = {(r["step"], r["epoch"]) for r in rows}
    assert len(epochs) == len({step for step, _ in epochs}) == 7  # one epoch per step, val and train rows alike
    assert torch.load(run_dir(config) / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 7


KNOWN_NOISE = ["LeafSpec", "exists and is not empty", "srun", "does not have many workers", "IterableDataset"]


def test_known_noise_is_silenced_and_nothing_else(tmp_path, monkeypatch, recwarn):
    """A run that is not a multiple of its validation interval and its resume (after the final
    checkpoint, before the summary: as if killed there), on a machine with SLURM's ``srun``,
    emit none of the warnings optbench knows to be noise; the resumed run ends with the same
    result and logs nothing twice. A warning that matters still comes through: LARC combined
    with gradient clipping."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = tiny_config(tmp_path / "runs", "trainer.max_steps=7", "trainer.val_every_n_steps=5")
    first = train(config)
    rows = read_jsonl(run_dir(config) / "metrics.jsonl")
    (run_dir(config) / "summary.json").unlink()
    again = train(config)
    assert [str(w.message) for w in recwarn if any(text in str(w.message) for text in KNOWN_NOISE)] == []
    for key in ("status", "global_step", "best", "final", "steps_to_target"):
        assert again[key] == first[key], key
    assert read_jsonl(run_dir(config) / "metrics.jsonl") == rows

    larc = tiny_config(tmp_path / "runs", "optimizer.name=larc_sgd", "trainer.gradient_clip_val=1.0",
                       "trainer.max_steps=1", "trainer.val_every_n_steps=1")
    with pytest.warns(UserWarning, match="LARC"):
        train(larc)
