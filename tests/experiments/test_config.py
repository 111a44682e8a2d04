"""Configuration: schema defaults, overrides, YAML layering, one-line errors, run_id, batch size."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments.config import (
    ConfigError, OptimizerConfig, RunConfig, TrainerConfig, check_environment, effective_batch_size, load_config,
    run_id, to_yaml,
)
from experiments.schedule import LR_SCALINGS, SCHEDULES, lr_multiplier, scaled_lr
from experiments.tasks import task_info
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
    pytest.param(["trainer.num_nodes=0"], r"'trainer\.num_nodes'.*0.*> 0", id="zero-nodes"),
    pytest.param(["size=huge"], r"'size'.*huge.*tiny, default, large", id="unknown-size"),
    pytest.param(["optimizer.name=novograd", "optimizer.betaz=[0.9,0.99]"], r"'betaz'.*valid options:.*betas", id="unknown-option"),
    pytest.param(["optimizer.name=novograd", "optimizer.betas=[1.5,0.98]"], r"[Ii]nvalid beta parameter at index 0: 1\.5", id="bad-beta"),
    pytest.param(["optimizer.name=adam", "optimizer.betas=[0.9,1.0]"], r"[Ii]nvalid beta parameter at index 1", id="bad-beta-2"),
    pytest.param(["optimizer.weight_decay=-1"], r"weight_decay", id="negative-weight-decay"),
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


# Each range: a value just outside it (the exact message) and the values at its edges it accepts.
RANGES = [
    ("optimizer.lr", "-0.1", "-0.1 (must be >= 0)", ["0", "0.5"]),
    ("data.batch_size", "0", "0 (must be > 0)", ["1"]),
    ("trainer.max_steps", "-3", "-3 (must be > 0)", ["1"]),
    ("trainer.gradient_clip_val", "0", "0.0 (must be > 0)", ["null", "0.001"]),
    ("trainer.divergence_factor", "1", "1.0 (must be > 1)", ["1.001"]),
    ("schedule.warmup_steps", "-1", "-1 (must be >= 0)", ["0"]),
    ("schedule.min_lr_ratio", "1.5", "1.5 (must be in [0, 1])", ["0", "1"]),
    ("schedule.min_lr_ratio", "-0.1", "-0.1 (must be in [0, 1])", []),
    ("data.num_workers", "-1", "-1 (must be >= 0)", ["0"]),
]


@pytest.mark.parametrize("key, outside, message, edges", RANGES)
def test_a_range_says_the_bound_it_checks(key, outside, message, edges):
    """A value outside a key's range is refused with a message stating that same range; the
    values at its edges that the range includes are accepted."""
    with pytest.raises(ConfigError) as info:
        load_config([f"{key}={outside}"])
    assert str(info.value) == f"invalid value for {key!r}: {message}"
    for value in edges:
        load_config([f"{key}={value}"])


def test_schedule_choices_are_those_schedule_py_computes():
    """The config accepts exactly the schedules and scaling rules experiments/schedule.py
    computes (in that order: the refusal lists them so)."""
    for name in SCHEDULES:
        config = load_config([f"schedule.name={name}", "schedule.min_lr_ratio=0.5"])
        assert lr_multiplier(10, name=config.schedule.name, max_steps=10, min_lr_ratio=0.5) == (
            1.0 if name == "constant" else 0.5)
    for rule, scaled in zip(LR_SCALINGS, (0.1, 0.4, 0.2)):
        config = load_config([f"optimizer.lr_scaling={rule}"])
        assert scaled_lr(0.1, config.optimizer.lr_scaling, 256, 64) == pytest.approx(scaled)
    for key, names in (("schedule.name", "constant, cosine, polynomial"), ("optimizer.lr_scaling", "none, linear, sqrt")):
        with pytest.raises(ConfigError, match=re.escape(f"'cyclic'; valid: {names}")):
            load_config([f"{key}=cyclic"])


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
        load_config(["optimizer.name=nadamm"])
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


# Pairs of override lists that describe the same computation: equal run_ids.
SAME_RUN = [
    pytest.param([], ["out_dir=/somewhere/else", "study=another"], id="where-it-is-stored"),
    pytest.param([], ["logger.wandb=offline", "logger.project=x", "logger.tags=[a,b]"], id="how-it-is-logged"),
    pytest.param([], ["data.num_workers=3"], id="loader-workers"),
    pytest.param([], ["trainer.log_every_n_steps=7", "trainer.layer_stats_every_n_steps=9"], id="logging-intervals"),
    pytest.param([], ["trainer.accelerator=cpu"], id="accelerator-cpu-vs-auto"),
    pytest.param([], ["target=0.5"], id="target-without-stop-at-target"),
    pytest.param(["trainer.stop_at_target=true"], ["trainer.stop_at_target=true", "target=0.93"],
                 id="task-default-target-spelt-out"),
    pytest.param([], ["optimizer.weight_decay=0.001"], id="explicit-default-weight-decay"),
    pytest.param([], ["optimizer.betas=[0.95,0.98]", "optimizer.eps=1e-8"], id="explicit-default-options"),
    pytest.param(["optimizer.eps=1"], ["optimizer.eps=1.0"], id="int-vs-float"),
    pytest.param([], ["optimizer.foreach=false"], id="implementation-switch"),
    pytest.param(["optimizer.name=novograd_os2s"], ["optimizer.name=novograd_os2s", "optimizer.betas=[0.95,0.5]"],
                 id="option-the-variant-overrides"),
    pytest.param([], ["optimizer.reference_batch_size=256"], id="reference-batch-without-scaling"),
    pytest.param(["task=lm", "size=large"], ["task=lm", "size=large", "trainer.max_steps=20000", "trainer.precision=bf16-mixed"],
                 id="explicit-size-default"),
]

# Pairs that change what is computed: different run_ids.
DIFFERENT_RUN = [
    pytest.param([], [extra], id=extra) for extra in [
        "optimizer.lr=0.02", "seed=2", "optimizer.name=adamw", "data.batch_size=64",
        "trainer.accumulate_grad_batches=2", "trainer.max_steps=301", "optimizer.betas=[0.9,0.99]",
        "optimizer.weight_decay=0", "schedule.name=constant", "size=tiny", "task=lm",
        "trainer.val_every_n_steps=25", "trainer.precision=bf16-mixed", "trainer.stop_at_target=true",
        "trainer.num_nodes=2", "size=large",
    ]
] + [
    pytest.param(["trainer.stop_at_target=true"], ["trainer.stop_at_target=true", "target=0.5"],
                 id="target-with-stop-at-target"),
    pytest.param(["optimizer.lr_scaling=linear"], ["optimizer.lr_scaling=linear", "optimizer.reference_batch_size=256"],
                 id="reference-batch-with-scaling"),
    pytest.param(["optimizer.name=larc_sgd"], ["optimizer.name=larc_sgd", "optimizer.eta=0.01"], id="larc-option"),
]


@pytest.mark.parametrize("first, second", SAME_RUN)
def test_same_computation_same_run_id(first, second):
    """Keys that change no result, explicit defaults and number spellings leave run_id alone."""
    assert run_id(load_config([*BASE, *first])) == run_id(load_config([*BASE, *second]))


@pytest.mark.parametrize("first, second", DIFFERENT_RUN)
def test_different_computation_different_run_id(first, second):
    """Keys that change results change run_id."""
    assert run_id(load_config([*BASE, *first])) != run_id(load_config([*BASE, *second]))


def test_changed_schema_default_never_aliases_old_runs(monkeypatch):
    """A run that relied on a default keeps its id when the default changes: the new default is
    a new computation, the old value spelt out is the old run."""
    from experiments import config as config_module

    @dataclasses.dataclass
    class NewTrainerConfig(TrainerConfig):
        max_steps: int = 500

    @dataclasses.dataclass
    class NewRunConfig(RunConfig):
        trainer: TrainerConfig = dataclasses.field(default_factory=NewTrainerConfig)

    before = run_id(load_config(BASE))
    monkeypatch.setattr(config_module, "RunConfig", NewRunConfig)
    assert load_config(BASE).trainer.max_steps == 500
    assert run_id(load_config(BASE)) != before
    assert run_id(load_config([*BASE, "trainer.max_steps=300"])) == before


def test_changed_optimizer_default_never_aliases_old_runs(monkeypatch):
    """The registry's resolved defaults are hashed, so a changed optimizer default changes ids."""
    from optimizers import registry

    before = run_id(load_config(BASE))
    entry = registry.REGISTRY["novograd"]
    monkeypatch.setitem(registry.REGISTRY, "novograd", dataclasses.replace(entry, defaults={"weight_decay": 0.01}))
    assert run_id(load_config(BASE)) != before
    assert run_id(load_config([*BASE, "optimizer.weight_decay=0.001"])) == before


def test_builtin_data_version_is_part_of_the_run_id(monkeypatch):
    """A new built-in corpus (its task description's data_version) gives its task's runs new ids;
    other tasks and real data keep theirs."""
    from experiments.data import versions

    asr, vision = load_config([*BASE, "task=asr"]), load_config(BASE)
    real = load_config([*BASE, "task=asr", "data.source=manifest", "data.path=train.json"])
    ids = [run_id(config) for config in (asr, vision, real)]
    monkeypatch.setattr(versions, "CORPUS_VERSION", versions.CORPUS_VERSION + 1)
    assert run_id(asr) != ids[0]
    assert run_id(vision) == ids[1]
    assert run_id(real) == ids[2]


def test_run_id_is_salted_with_its_version(monkeypatch):
    """Bumping RUN_ID_VERSION (a change in what is hashed) changes every id."""
    from experiments import config as config_module

    before = run_id(load_config(BASE))
    monkeypatch.setattr(config_module, "RUN_ID_VERSION", config_module.RUN_ID_VERSION + 1)
    assert run_id(load_config(BASE)) != before


ENVIRONMENT_ERRORS = [
    pytest.param(["data.source=cifar10", "data.path=/nonexistent"], r"data\.path does not exist: /nonexistent",
                 id="missing-data-path"),
    pytest.param(["task=asr", "data.source=manifest", "data.path=/etc/hostname", "data.val_path=/nonexistent"],
                 r"data\.val_path does not exist: /nonexistent", id="missing-val-path"),
    pytest.param(["trainer.accelerator=gpu"], r"trainer\.accelerator=gpu but no CUDA device", id="gpu-without-cuda"),
]


@pytest.mark.parametrize("overrides, pattern", ENVIRONMENT_ERRORS)
def test_machine_checks_wait_for_the_run(overrides, pattern):
    """A config for another machine loads (a study is planned on a login node); the run start
    refuses it with a one-line ConfigError."""
    config = load_config(overrides)
    with pytest.raises(ConfigError) as info:
        check_environment(config)
    assert "\n" not in str(info.value)
    assert re.search(pattern, str(info.value)), str(info.value)


def test_to_yaml_round_trips():
    """The YAML written to config.yaml loads back to the same config and the same run_id."""
    config = load_config(BASE)
    again = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.create(to_yaml(config)))
    assert again == config
    assert run_id(again) == run_id(config)


@pytest.mark.parametrize("batch, accumulate, devices, nodes, expected", [
    (64, 1, 1, 1, 64), (32, 4, 1, 1, 128), (16, 2, 4, 1, 128), (1, 1, 8, 1, 8), (16, 2, 4, 2, 256), (8, 1, 1, 4, 32),
])
def test_effective_batch_size(batch, accumulate, devices, nodes, expected):
    """Samples per optimizer step = batch_size × accumulate_grad_batches × devices × num_nodes."""
    config = load_config([f"data.batch_size={batch}", f"trainer.accumulate_grad_batches={accumulate}",
                          f"trainer.devices={devices}", f"trainer.num_nodes={nodes}"])
    assert effective_batch_size(config) == expected


@pytest.mark.parametrize("task", ["vision", "asr", "lm"])
def test_large_size_applies_the_task_defaults_the_user_did_not_set(task, tmp_path):
    """size=large sets what the task declares for it (batch size, bf16-mixed, steps, ...) where
    neither the overrides nor a YAML file set the key; what the user sets wins; config.yaml
    holds the resolved values."""
    declared = task_info(task).size_settings["large"]
    assert {"data.batch_size", "trainer.precision"} <= set(declared)
    config = load_config([f"task={task}", "size=large"])
    assert {key: OmegaConf.select(config, key) for key in declared} == declared
    assert OmegaConf.create(to_yaml(config)).data.batch_size == declared["data.batch_size"]
    overridden = load_config([f"task={task}", "size=large", "data.batch_size=3"])
    assert overridden.data.batch_size == 3 and overridden.trainer.precision == declared["trainer.precision"]
    path = _write(tmp_path / "run.yaml", f"task: {task}\nsize: large\ntrainer:\n  precision: 32-true\n")
    from_file = load_config(path=path)
    assert from_file.trainer.precision == "32-true" and from_file.data.batch_size == declared["data.batch_size"]
    assert "default" not in task_info(task).size_settings and load_config([f"task={task}"]).data.batch_size == 64
