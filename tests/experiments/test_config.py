"""Configuration: schema defaults, overrides, YAML layering, one-line errors, run_id, batch size."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments.config import (
    ConfigError, OptimizerConfig, RunConfig, effective_batch_size, load_config, run_id, to_yaml,
)
from optimizers import optimizer_names


def test_defaults_load():
    """With no overrides the config equals the dataclass schema and passes validation."""
    config = load_config()
    assert OmegaConf.to_container(config) == OmegaConf.to_container(OmegaConf.structured(RunConfig))
    assert config.task == "vision"
    assert config.optimizer.name == "adamw"
    assert config.optimizer.options == {}
    assert config.out_dir == "runs" and config.study == "default"
    assert config.logger.wandb == "disabled"


@pytest.mark.parametrize(
    "overrides, key, expected",
    [
        (["optimizer.name=novograd"], "optimizer.name", "novograd"),
        (["optimizer.lr=0.05"], "optimizer.lr", 0.05),
        (["data.batch_size=256"], "data.batch_size", 256),
        (["trainer.max_steps=7"], "trainer.max_steps", 7),
        (["seed=3"], "seed", 3),
        (["target=0.5"], "target", 0.5),
        (["logger.wandb=offline"], "logger.wandb", "offline"),
        (["optimizer.weight_decay=0.0"], "optimizer.weight_decay", 0.0),
        # An optimizer option is not an OptimizerConfig field: it is routed into options.
        (["optimizer.name=novograd", "optimizer.betas=[0.9,0.99]"], "optimizer.options.betas", [0.9, 0.99]),
        (["optimizer.name=novograd", "optimizer.grad_averaging=true"], "optimizer.options.grad_averaging", True),
        (["optimizer.name=larc_sgd", "optimizer.eta=0.01"], "optimizer.options.eta", 0.01),
    ],
)
def test_override_applies(overrides, key, expected):
    """Each ``key=value`` override sets that key, with the schema's type."""
    config = load_config(overrides)
    value = OmegaConf.select(config, key)
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    assert value == expected
    assert type(value) is type(expected)


def test_option_override_leaves_fields_alone():
    """Routing options does not touch the OptimizerConfig fields: betas lands only in options."""
    config = load_config(["optimizer.name=novograd", "optimizer.betas=[0.9,0.99]"])
    assert config.optimizer.name == "novograd"
    assert set(config.optimizer.options) == {"betas"}
    assert set(config.optimizer) == set(OptimizerConfig.__dataclass_fields__)


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_yaml_file_then_overrides(tmp_path):
    """Defaults < YAML file < overrides: the file sets what it names, an override wins over it,
    and everything else keeps its default."""
    path = _write(tmp_path / "run.yaml", """\
        seed: 5
        optimizer:
          name: novograd
          lr: 0.01
        trainer:
          max_steps: 7
          val_every_n_steps: 7
    """)
    config = load_config(["optimizer.lr=0.02", "trainer.max_steps=9"], path=path)
    assert config.seed == 5
    assert config.optimizer.name == "novograd"
    assert config.optimizer.lr == 0.02  # the override wins over the file
    assert config.trainer.max_steps == 9
    assert config.trainer.val_every_n_steps == 7  # from the file
    assert config.data.batch_size == 64  # schema default


def test_yaml_options_under_options_key(tmp_path):
    """An ``options:`` mapping inside ``optimizer:`` in the file is kept."""
    path = _write(tmp_path / "run.yaml", """\
        optimizer:
          name: novograd
          options:
            betas: [0.9, 0.99]
    """)
    assert OmegaConf.to_container(load_config(path=path).optimizer.options) == {"betas": [0.9, 0.99]}


def test_yaml_top_level_optimizer_option(tmp_path):
    """``optimizer: {betas: ...}`` in a file is routed into options, as on the command line, and
    an override of another option adds to it."""
    path = _write(tmp_path / "run.yaml", """\
        optimizer:
          name: novograd
          lr: 0.01
          betas: [0.9, 0.99]
          grad_averaging: true
    """)
    config = load_config(["optimizer.eps=1e-6"], path=path)
    assert OmegaConf.to_container(config.optimizer.options) == {
        "betas": [0.9, 0.99], "grad_averaging": True, "eps": 1e-6,
    }
    assert config.optimizer.lr == 0.01


def test_yaml_top_level_unknown_option_is_an_error(tmp_path):
    """A misspelt optimizer option in a file is a ConfigError, as it is on the command line."""
    path = _write(tmp_path / "run.yaml", "optimizer:\n  name: novograd\n  betaz: [0.9, 0.99]\n")
    with pytest.raises(ConfigError, match="betaz"):
        load_config(path=path)


def test_yaml_and_overrides_give_the_same_run_id(tmp_path):
    """The same values through a file or through overrides are the same run."""
    path = _write(tmp_path / "run.yaml", "seed: 2\noptimizer:\n  name: sgd\n  lr: 0.1\n")
    assert run_id(load_config(path=path)) == run_id(load_config(["seed=2", "optimizer.name=sgd", "optimizer.lr=0.1"]))


# (overrides, a regex the message must match); every message is one line.
ERRORS = [
    pytest.param(["trainer.max_step=3"], r"'trainer\.max_step'.*did you mean 'trainer\.max_steps'", id="misspelt-key"),
    pytest.param(["trainer.maxsteps=3"], r"'trainer\.maxsteps'.*'trainer\.max_steps'", id="misspelt-key-2"),
    pytest.param(["bogus=1"], r"unknown config key 'bogus'", id="unknown-top-level-key"),
    pytest.param(["trainer.max_steps=abc"], r"'trainer\.max_steps'.*abc", id="wrong-type-int"),
    pytest.param(["optimizer.lr=fast"], r"'optimizer\.lr'.*fast", id="wrong-type-float"),
    pytest.param(["seed=1.5"], r"'seed'", id="float-for-int"),
    pytest.param(["optimizer.name=bogus"], r"unknown optimizer 'bogus'.*valid names: .*novograd.*larc_sgd", id="unknown-optimizer"),
    pytest.param(["optimizer.lr=-0.1"], r"'optimizer\.lr'.*-0\.1.*>= 0", id="negative-lr"),
    pytest.param(["optimizer.lr=nan"], r"'optimizer\.lr'", id="nan-lr"),
    pytest.param(["data.batch_size=0"], r"'data\.batch_size'.*0", id="zero-batch"),
    pytest.param(["optimizer.name=novograd", "optimizer.betaz=[0.9,0.99]"], r"'betaz'.*valid options:.*betas", id="unknown-option"),
    pytest.param(["optimizer.name=novograd", "optimizer.betas=[1.5,0.98]"], r"[Ii]nvalid beta parameter at index 0: 1\.5", id="bad-beta"),
    pytest.param(["optimizer.name=adam", "optimizer.betas=[0.9,1.0]"], r"[Ii]nvalid beta parameter at index 1", id="bad-beta-2"),
    pytest.param(["optimizer.weight_decay=-1"], r"weight_decay", id="negative-weight-decay"),
    pytest.param(["data.source=cifar10", "data.path=/nonexistent"], r"data\.path.*/nonexistent", id="missing-data-path"),
    pytest.param(["data.source=cifar10"], r"data\.path", id="no-data-path"),
    pytest.param(["data.source=hdf5"], r"'data\.source'.*hdf5.*valid", id="unknown-source"),
    pytest.param(["task=bogus"], r"'task'.*'bogus'.*vision", id="unknown-task"),
    pytest.param(["schedule.name=linear"], r"'schedule\.name'.*linear.*cosine", id="unknown-schedule"),
    pytest.param(["logger.wandb=yes"], r"'logger\.wandb'.*offline", id="bad-wandb-mode"),
    pytest.param(["trainer.max_steps"], r"'trainer\.max_steps'.*key=value", id="no-equals"),
    pytest.param(["trainer.strategy=fsdp", "optimizer.name=larc_sgd"], r"trainer\.strategy=fsdp.*'larc_sgd'", id="fsdp-layer-wise"),
    pytest.param(
        ["optimizer.name=novograd", "optimizer.betas=0.9"], r"betas",
        id="scalar-betas",
    ),
    pytest.param(
        ["trainer=3"], r"'trainer'",
        id="scalar-for-group",
    ),
]


@pytest.mark.parametrize("overrides, pattern", ERRORS)
def test_bad_override_is_one_line_config_error(overrides, pattern):
    """Bad input raises ConfigError whose message is one line that names the key or value."""
    with pytest.raises(ConfigError) as info:
        load_config(overrides)
    message = str(info.value)
    assert "\n" not in message
    assert re.search(pattern, message), message


# (overrides, the one-line message's "did you mean" hint, or None where no name is close)
DID_YOU_MEAN = [
    pytest.param(["optimizer.name=novgrad"], "'novgrad' (did you mean 'novograd'?)", id="optimizer"),
    pytest.param(["optimizer.name=larc_adamw_"], "(did you mean 'larc_adamw'?)", id="larc-optimizer"),
    pytest.param(["optimizer.name=novograd", "optimizer.betaz=[0.9,0.99]"],
                 "'betaz' for optimizer 'novograd' (did you mean 'betas'?)", id="optimizer-option"),
    pytest.param(["task=visoin"], "'visoin' (did you mean 'vision'?)", id="task"),
    pytest.param(["data.source=cifar"], "'cifar' (did you mean 'cifar10'?)", id="data-source"),
    pytest.param(["trainer.max_step=3"], "'trainer.max_step' (did you mean 'trainer.max_steps'?)", id="config-key"),
    pytest.param(["optimizer.name=zzz"], None, id="nothing-close"),
]


@pytest.mark.parametrize("overrides, hint", DID_YOU_MEAN)
def test_unknown_names_suggest_the_closest_valid_one(overrides, hint):
    """Every unknown-name error (optimizer, its options, task, choice, config key) suggests the
    closest valid name, and suggests none when nothing is close."""
    with pytest.raises(ConfigError) as info:
        load_config(overrides)
    message = str(info.value)
    if hint is None:
        assert "did you mean" not in message, message
    else:
        assert hint in message, message


def test_unknown_optimizer_lists_every_name():
    """The unknown-optimizer message lists every registry name."""
    with pytest.raises(ConfigError) as info:
        load_config(["optimizer.name=nadam"])
    listed = str(info.value).split("valid names:")[1]
    assert [name.strip() for name in listed.split(",")] == optimizer_names()


FILE_ERRORS = [
    pytest.param(None, r"config file not found: .*missing\.yaml", id="missing-file"),
    pytest.param("trainer:\n  max_step: 3\n", r"'trainer\.max_step'.*'trainer\.max_steps'", id="misspelt-key-in-file"),
    pytest.param("trainer:\n  max_steps: many\n", r"'trainer\.max_steps'", id="wrong-type-in-file"),
    # Where (1-based line and column), what, and in which construct: as an editor would show it.
    pytest.param(
        "trainer: [1\n", r"cannot parse .*run\.yaml: line 2, column 1: did not find expected ',' or '\]' "
        r"\(while parsing a flow sequence that starts at line 1, column 10\)$",
        id="malformed-yaml",
    ),
    pytest.param("seed: 1\n  study: x\n", r"run\.yaml: line 2, column 8: mapping values are not allowed",
                 id="bad-indent"),
    pytest.param('study: "open\n', r"run\.yaml: line 2, column 1: .*end of stream \(while scanning a quoted scalar "
                 r"that starts at line 1, column 8\)", id="unclosed-quote"),
    pytest.param(
        "optimizer: null\n", r"optimizer",
        id="null-optimizer",
    ),
]


@pytest.mark.parametrize("text, pattern", FILE_ERRORS)
def test_bad_config_file_is_one_line_config_error(tmp_path, text, pattern):
    """A missing or invalid YAML file raises a one-line ConfigError naming the problem."""
    if text is None:
        path = tmp_path / "missing.yaml"
    else:
        path = _write(tmp_path / "run.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path=path)
    message = str(info.value)
    assert "\n" not in message
    assert re.search(pattern, message), message


# -- run_id ---------------------------------------------------------------------------------------

BASE = ["optimizer.name=novograd", "optimizer.lr=0.01", "seed=1", "data.batch_size=32"]


def test_run_id_is_stable_and_short():
    """run_id is 12 lower-case hex digits, equal across calls and across override order."""
    first = run_id(load_config(BASE))
    assert re.fullmatch(r"[0-9a-f]{12}", first)
    assert run_id(load_config(BASE)) == first
    assert run_id(load_config(list(reversed(BASE)))) == first


@pytest.mark.parametrize("extra", [
    "out_dir=/somewhere/else", "study=another", "logger.wandb=offline", "logger.project=x",
    "logger.tags=[a,b]", "data.num_workers=3",
])
def test_run_id_ignores_where_and_how_it_is_logged(extra):
    """Keys that do not change what a run computes leave run_id unchanged."""
    assert run_id(load_config([*BASE, extra])) == run_id(load_config(BASE))


@pytest.mark.parametrize("extra", [
    "optimizer.lr=0.02", "seed=2", "optimizer.name=adamw", "data.batch_size=64",
    "trainer.accumulate_grad_batches=2", "trainer.max_steps=301", "optimizer.betas=[0.9,0.99]",
    "schedule.name=constant", "size=tiny", "task=lm",
])
def test_run_id_changes_with_result_keys(extra):
    """Keys that change results change run_id."""
    assert run_id(load_config([*BASE, extra])) != run_id(load_config(BASE))


def test_to_yaml_round_trips():
    """The YAML written to config.yaml loads back to the same config and the same run_id."""
    config = load_config(BASE)
    again = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.create(to_yaml(config)))
    assert again == config
    assert run_id(again) == run_id(config)


@pytest.mark.parametrize("batch, accumulate, devices, expected", [
    (64, 1, 1, 64), (32, 4, 1, 128), (16, 2, 4, 128), (1, 1, 8, 8),
])
def test_effective_batch_size(batch, accumulate, devices, expected):
    """Samples per optimizer step = batch_size × accumulate_grad_batches × devices."""
    config = load_config([f"data.batch_size={batch}", f"trainer.accumulate_grad_batches={accumulate}",
                          f"trainer.devices={devices}"])
    assert effective_batch_size(config) == expected
