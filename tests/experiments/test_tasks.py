"""The built-in tasks end to end: ``train(load_config([...]))`` on every task's built-in tiny data
and on every real-data source (files written here), their descriptions, and what a wrong or
unusable ``data.*`` setting tells the user. Users' tasks: test_outside_tasks.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from experiments.cli import main
from experiments.config import ConfigError, RunConfig, load_config
from experiments.store import RunStore
from experiments.import_path import load_object
from experiments.tasks import BUILTIN, build_task, task_info, task_names
from experiments.tasks.info import SIZES
from optimizers import build_optimizer
from experiments.train import run_dir, train
from tests.experiments.test_data import (
    VALID_TEXT, write_cifar10, write_image_folder, write_manifest, write_speech_manifests, write_text_dir,
)

STEPS, VAL_EVERY = 30, 5
BATCH = {"vision": 32, "lm": 16, "asr": 16}
# The natural range of each metric: accuracy in [0, 1]; perplexity >= 1; WER >= 0 (insertions
# can take it above 1).
RANGE = {"acc": (0.0, 1.0), "ppl": (1.0, math.inf), "wer": (0.0, math.inf)}
VALID_SOURCES = {"vision": ("builtin", "cifar10", "imagefolder"), "lm": ("builtin", "text"),
                 "asr": ("builtin", "manifest")}


def overrides(task: str, out_dir: Path, *extra: str, steps: int = STEPS, batch: int | None = None) -> list[str]:
    return [f"task={task}", "size=tiny", f"out_dir={out_dir}", f"trainer.max_steps={steps}",
            f"trainer.val_every_n_steps={VAL_EVERY}", "trainer.log_every_n_steps=5",
            f"data.batch_size={batch or BATCH[task]}", *extra]


def validations(root: Path, metric: str) -> list[dict]:
    """The metrics.jsonl rows holding a validation result."""
    rows = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines() if line]
    return [row for row in rows if metric in row]


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------


def test_registry_holds_the_contract_tasks():
    assert set(BUILTIN) == {"vision", "asr", "lm"}
    assert task_names()[:3] == list(BUILTIN)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_task_declares_metric_direction_and_targets(name):
    """Every task names itself, its metric (logged as val/<metric>), its direction, and a
    steps-to-target threshold for every size, inside the metric's natural range."""
    info = task_info(name)
    assert info.name == name
    assert isinstance(info.metric, str) and info.metric in RANGE
    assert isinstance(info.higher_is_better, bool)
    assert info.higher_is_better == (info.metric == "acc")
    assert set(info.targets) == set(SIZES)
    low, high = RANGE[info.metric]
    for size in SIZES:
        target = info.targets[size]
        assert isinstance(target, float) and low <= target <= high, (size, target)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_task_declares_the_sources_its_data_reads(name):
    """The description's sources are the built-in data and the task's real-data sources."""
    assert task_info(name).sources == ("builtin", *VALID_SOURCES[name][1:])


def test_build_task_with_an_unknown_name_lists_the_valid_tasks():
    config = OmegaConf.structured(RunConfig)
    config.task = "speech"  # load_config refuses it; build_task is the last line of defence
    for call in (lambda: build_task(config, lambda model: None, lambda step: 1.0), lambda: task_info("speech")):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert "'speech'" in message and "\n" not in message
        assert all(name in message for name in BUILTIN)


# --------------------------------------------------------------------------------------------
# Built-in data, every task
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=sorted(BUILTIN))
def builtin_run(request, tmp_path_factory):
    """One tiny run of each task on its built-in data: (task, summary, run directory)."""
    task = request.param
    config = load_config(overrides(task, tmp_path_factory.mktemp(f"runs-{task}")))
    return task, train(config), run_dir(config)


@pytest.mark.slow
def test_builtin_run_completes_and_reports_its_metric(builtin_run):
    task, summary, _ = builtin_run
    info = task_info(task)
    assert summary["status"] == "completed", summary["error"]
    assert summary["error"] is None
    assert summary["task"] == task and summary["global_step"] == STEPS
    assert summary["metric"] == f"val/{info.metric}"
    assert summary["higher_is_better"] is info.higher_is_better
    assert summary["target"] == info.targets["tiny"]


def test_builtin_run_counts_its_trainable_parameters(builtin_run, tmp_path):
    """summary.json's num_parameters is the number of trainable values of the run's model."""
    task, summary, _ = builtin_run
    module, _ = build_task(load_config(overrides(task, tmp_path)), lambda model: None, lambda step: 1.0)
    assert summary["num_parameters"] == sum(p.numel() for p in module.model.parameters()) > 0


def test_builtin_run_logs_its_metric_in_range(builtin_run):
    """val/<metric> every VAL_EVERY steps, finite and inside the metric's natural range."""
    task, summary, root = builtin_run
    metric = summary["metric"]
    rows = validations(root, metric)
    assert [row["step"] for row in rows] == list(range(VAL_EVERY, STEPS + 1, VAL_EVERY))
    low, high = RANGE[task_info(task).metric]
    for row in rows:
        assert math.isfinite(row[metric]) and low <= row[metric] <= high, row
    assert summary["final"][metric] == rows[-1][metric]


def test_builtin_run_best_follows_the_direction(builtin_run):
    """best = max (accuracy) or min (perplexity, WER) of the logged values; the running best
    logged beside each value and steps_to_target agree with that direction."""
    task, summary, root = builtin_run
    metric, higher = summary["metric"], summary["higher_is_better"]
    values = [row[metric] for row in validations(root, metric)]
    pick = max if higher else min
    assert summary["best"] == {metric: pick(values)}
    running = [row[f"{metric}_best"] for row in validations(root, metric)]
    assert running == pytest.approx([pick(values[: i + 1]) for i in range(len(values))])
    reached = [(v >= summary["target"]) if higher else (v <= summary["target"]) for v in values]
    expected = VAL_EVERY * (reached.index(True) + 1) if any(reached) else None
    assert summary["steps_to_target"] == expected


# --------------------------------------------------------------------------------------------
# Real-data sources, with files written here
# --------------------------------------------------------------------------------------------


def cifar10_source(root: Path) -> tuple[list[str], dict]:
    written = write_cifar10(root / "cifar-10-batches-py", sizes=(12, 12), n_test=8)
    labels = [y for _, ys in written.values() for y in ys]
    return ([f"data.path={root / 'cifar-10-batches-py'}"],
            {"in_channels": 3, "classes": max(labels) + 1})


def imagefolder_source(root: Path) -> tuple[list[str], dict]:
    write_image_folder(root / "images")
    return [f"data.path={root / 'images'}"], {"in_channels": 3, "classes": 3}


def text_source(root: Path) -> tuple[list[str], dict]:
    write_text_dir(root / "wikitext", "wikitext")
    return [f"data.path={root / 'wikitext'}"], {}


def manifest_source(root: Path) -> tuple[list[str], dict]:
    train_path, val_path = write_speech_manifests(root / "speech")
    return [f"data.path={train_path}", f"data.val_path={val_path}"], {}


SOURCES = {  # source: (task, writer, per-device batch)
    "cifar10": ("vision", cifar10_source, 8),
    "imagefolder": ("vision", imagefolder_source, 8),
    "text": ("lm", text_source, 8),
    "manifest": ("asr", manifest_source, 4),
}


@pytest.mark.parametrize("source", SOURCES)
def test_train_on_real_data_source(tmp_path, source):
    """Each real-data source trains end to end on files in its real format: completed, the
    metric logged in range, the config recorded; vision sizes its model from the data."""
    task, writer, batch = SOURCES[source]
    extra, expect = writer(tmp_path)
    config = load_config(overrides(task, tmp_path / "runs", f"data.source={source}", *extra, steps=10, batch=batch))
    summary = train(config)
    assert summary["status"] == "completed", summary["error"]
    assert summary["global_step"] == 10
    root = run_dir(config)
    metric = summary["metric"]
    values = [row[metric] for row in validations(root, metric)]
    low, high = RANGE[task_info(task).metric]
    assert len(values) == 2 and all(math.isfinite(v) and low <= v <= high for v in values)
    recorded = OmegaConf.load(root / "config.yaml")
    assert recorded.data.source == source and recorded.data.path == config.data.path
    if expect:
        state = torch.load(RunStore(root).resume_checkpoint(), weights_only=False)["state_dict"]
        assert state["model.stem.0.weight"].shape[1] == expect["in_channels"]
        assert state["model.head.weight"].shape[0] == expect["classes"]


# --------------------------------------------------------------------------------------------
# Wrong or unusable data settings: one clear line, nothing written
# --------------------------------------------------------------------------------------------


def first_error(args: list[str]) -> tuple[str, Exception]:
    """Where a config fails, load_config or train, and with what."""
    try:
        config = load_config(args)
    except Exception as error:  # noqa: BLE001 - the test inspects it
        return "load_config", error
    try:
        summary = train(config)
    except Exception as error:  # noqa: BLE001
        return "train", error
    pytest.fail(f"no error: the run ended {summary['status']} ({summary['error']})")


WRONG = [(task, source) for task in sorted(BUILTIN) for source in ("cifar10", "imagefolder", "manifest", "text")
         if source not in VALID_SOURCES[task]]


@pytest.mark.parametrize("task,source", WRONG)
def test_wrong_source_for_the_task_is_one_clear_line(tmp_path, task, source):
    """A source of another task (with an existing data.path) is refused before anything is
    written, in one line that names the source and the task's valid sources (load_config
    refuses it: the task's description says which sources it reads)."""
    (tmp_path / "data").mkdir()
    out_dir = tmp_path / "runs"
    stage, error = first_error(overrides(task, out_dir, f"data.source={source}", f"data.path={tmp_path / 'data'}"))
    assert isinstance(error, ValueError), f"{stage}: {type(error).__name__}: {error}"
    message = str(error)
    assert "\n" not in message and source in message, message
    assert all(valid in message for valid in VALID_SOURCES[task]), message
    assert not out_dir.exists()


def empty_dir(root: Path) -> tuple[list[str], str]:
    (root / "data").mkdir()
    return [f"data.path={root / 'data'}"], str(root / "data")


def folder_without_val(root: Path) -> tuple[list[str], str]:
    write_image_folder(root / "images", {"train": 1})
    return [f"data.path={root / 'images'}"], str(root / "images" / "val")


def manifest_is_a_directory(root: Path) -> tuple[list[str], str]:
    write_speech_manifests(root / "speech")
    return [f"data.path={root / 'speech'}"], str(root / "speech")


def manifest_missing_audio(root: Path) -> tuple[list[str], str]:
    train_path, val_path = write_speech_manifests(root / "speech", n_train=2)
    write_manifest(val_path, [{"audio_filepath": "audio/missing.wav", "duration": 1.0, "text": "one"}])
    return [f"data.path={train_path}", f"data.val_path={val_path}"], "missing.wav"


def missing_val_manifest(root: Path) -> tuple[list[str], str]:
    train_path, _ = write_speech_manifests(root / "speech", n_train=2)
    return [f"data.path={train_path}", f"data.val_path={root / 'nowhere.json'}"], "nowhere.json"


def manifest_line_not_an_object(root: Path) -> tuple[list[str], str]:
    train_path, _ = write_speech_manifests(root / "speech", n_train=2)
    train_path.write_text(train_path.read_text() + "[1, 2]\n")
    return [f"data.path={train_path}"], f"{train_path}:3"


BAD_DATA = [  # (task, source, writer), by case
    pytest.param("vision", "cifar10", empty_dir, id="cifar10-empty-dir"),
    pytest.param("vision", "imagefolder", folder_without_val, id="imagefolder-no-val"),
    pytest.param("lm", "text", empty_dir, id="text-empty-dir"),
    pytest.param("asr", "manifest", manifest_is_a_directory, id="manifest-is-a-directory"),
    pytest.param("asr", "manifest", manifest_missing_audio, id="manifest-missing-audio"),
    pytest.param("asr", "manifest", missing_val_manifest, id="manifest-missing-val-path"),
    pytest.param("asr", "manifest", manifest_line_not_an_object, id="manifest-line-not-an-object",
),
]


@pytest.mark.parametrize("task,source,writer", BAD_DATA)
def test_unusable_data_is_one_line_error(tmp_path, capsys, task, source, writer):
    """Data that exists but cannot be read as the source says: ``optbench train`` exits 2 with
    one line on stderr naming what is wrong, and writes no run directory."""
    extra, named = writer(tmp_path)
    out_dir = tmp_path / "runs"
    code = main(["train", *overrides(task, out_dir, f"data.source={source}", *extra)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("optbench: error:"), err
    assert named in err
    assert not out_dir.exists()


def test_lm_validation_text_shorter_than_a_window_is_refused(tmp_path):
    """Validation text shorter than one sequence is a one-line error naming both sizes."""
    root = tmp_path / "text"
    root.mkdir()
    (root / "train.txt").write_text(VALID_TEXT * 10, encoding="utf-8")
    (root / "valid.txt").write_text("too short", encoding="utf-8")
    args = overrides("lm", tmp_path / "runs", "data.source=text", f"data.path={root}", steps=5, batch=4)
    with pytest.raises(ConfigError, match=r"LM text too short: \d+ training and 9 validation bytes"):
        train(load_config(args))


# --------------------------------------------------------------------------------------------
# The large sizes: the papers' models, one step each on the CPU
# --------------------------------------------------------------------------------------------

LARGE = {  # task: (model options, a small batch: short images, clips and sequences, at least this many parameters)
    "vision": ({"in_channels": 3, "num_classes": 10}, lambda: (torch.randn(2, 3, 32, 32), torch.tensor([3, 7])), 10_000_000),
    "asr": ({}, lambda: (torch.randn(2, 64, 120), torch.tensor([120, 90]), torch.tensor([[8, 5, 12], [15, 1, 0]]),
                         torch.tensor([3, 2])), 5_000_000),
    "lm": ({}, lambda: (torch.randint(0, 256, (2, 64)), torch.randint(0, 256, (2, 64))), 80_000_000),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(LARGE))
def test_large_model_takes_one_optimizer_step_on_cpu(task):
    """ResNet-50, QuartzNet 5x5 and GPT-2 small (over bytes) have at least the papers' scale of
    parameters, and one NovoGrad step on a small batch moves every parameter that has a gradient."""
    model_options, batch, at_least = LARGE[task]
    info = task_info(task)
    module = load_object(info.module)(info, "large", lambda model: build_optimizer("novograd", model, lr=0.01),
                                      lambda step: 1.0, **model_options)
    params = list(module.model.parameters())
    assert sum(p.numel() for p in params) >= at_least
    optimizer = module.configure_optimizers()["optimizer"]
    before = [p.detach().clone() for p in params]
    loss = module.loss(batch())
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    moved = [not torch.equal(p, b) for p, b in zip(params, before) if p.grad is not None and p.grad.abs().sum() > 0]
    assert moved and all(moved)
