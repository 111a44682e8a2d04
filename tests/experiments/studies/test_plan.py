"""Expansion of a spec into runs: cells, per-optimizer spaces, micro-batches, and run identity
shared with ``optbench train``."""

from __future__ import annotations

import copy

import pytest

from experiments.config import load_config, run_id
from experiments.studies.plan import plan_study
from experiments.studies.spec import load_spec, parse_spec
from experiments.train import run_dir
from tests.experiments.studies.conftest import TINY_SPEC


def plan(spec: dict, *overrides: str):
    return plan_study(parse_spec(copy.deepcopy(spec)), overrides)


def test_cells_are_the_grid_product_and_each_optimizer_gets_its_own_space() -> None:
    study = plan({**TINY_SPEC, "grid": {"optimizer.name": ["adamw", "sgd"], "data.batch_size": [16, 32, 64]}})
    assert [dict(cell.key) for cell in study.cells] == [
        {"optimizer.name": name, "data.batch_size": batch} for name in ("adamw", "sgd") for batch in (16, 32, 64)]
    adamw, sgd = study.cells[0], study.cells[3]
    assert [dict(t.point) for t in adamw.trials] == [{"optimizer.lr": 0.003}, {"optimizer.lr": 0.03}]
    assert [dict(t.point) for t in sgd.trials] == [
        {"optimizer.lr": lr, "optimizer.momentum": m} for lr in (0.003, 0.03) for m in (0.99, 0.9)]
    assert sgd.trials[1].config.optimizer.options.momentum == 0.9
    assert len(study.search_runs()) == 3 * 2 + 3 * 4
    assert {t.phase for t in study.search_runs()} == {"search"}


def test_per_optimizer_and_per_task_base_keys_and_command_line_overrides() -> None:
    spec = {**TINY_SPEC, "grid": {"task": ["vision", "lm"], "optimizer.name": ["adamw", "sgd"]},
            "optimizers": {"sgd": {"base": {"optimizer": {"nesterov": True}}}},
            "tasks": {"lm": {"base": {"trainer.max_steps": 7}}}}
    study = plan(spec, "trainer.val_every_n_steps=5", "out_dir=elsewhere")
    by_cell = {dict(cell.key)["task"] + "/" + dict(cell.key)["optimizer.name"]: cell.trials[0].config
               for cell in study.cells}
    assert by_cell["vision/sgd"].optimizer.options.nesterov is True
    assert "nesterov" not in by_cell["vision/adamw"].optimizer.options
    assert [c.trainer.max_steps for c in by_cell.values()] == [30, 30, 7, 7]
    assert all(c.trainer.val_every_n_steps == 5 and c.out_dir == "elsewhere" and c.study == "tiny"
               for c in by_cell.values())
    assert str(study.study_dir) == "elsewhere/tiny"


def test_quasi_random_search_draws_trials_points_per_cell() -> None:
    spec = {**TINY_SPEC, "optimizers": None,
            "search": {"method": "sobol", "trials": 4, "space": {"optimizer.lr": {"log_range": [1e-4, 1]}}}}
    spec.pop("optimizers")
    study = plan(spec)
    lrs = [[dict(t.point)["optimizer.lr"] for t in cell.trials] for cell in study.cells]
    assert len(lrs[0]) == 4 and lrs[0] == lrs[1]  # the same points in every cell with the same space
    assert all(1e-4 <= lr <= 1 for lr in lrs[0])


def test_large_batches_become_accumulated_micro_batches() -> None:
    spec = {**TINY_SPEC, "grid": {"data.batch_size": [32, 64, 256]}, "max_micro_batch": 64,
            "search": None, "seeds": None, "optimizers": None}
    study = plan({k: v for k, v in spec.items() if v is not None})
    configs = [cell.trials[0].config for cell in study.cells]
    assert [(c.data.batch_size, c.trainer.accumulate_grad_batches) for c in configs] == [(32, 1), (64, 1), (64, 4)]
    assert [dict(cell.key)["data.batch_size"] for cell in study.cells] == [32, 64, 256]  # swept as written
    assert {t.phase for t in study.search_runs()} == {"grid"}


def test_linked_grid_keys_vary_together() -> None:
    study = plan({**TINY_SPEC, "grid": {"data.batch_size,trainer.max_steps": [[16, 40], [64, 10]]}})
    assert [(c.trials[0].config.data.batch_size, c.trials[0].config.trainer.max_steps) for c in study.cells] == [
        (16, 40), (64, 10)]


def test_a_run_has_the_id_and_directory_optbench_train_gives_it_by_hand() -> None:
    """What a user types for one run of the study names the same run (and the other way round)."""
    study = plan(TINY_SPEC, "out_dir=runs")
    trial = study.cells[1].trials[1]  # sgd, lr 0.003, momentum 0.9
    typed = load_config(["study=tiny", "out_dir=runs", "task=vision", "size=tiny", "target=0.2",
                         "trainer.max_steps=30", "trainer.val_every_n_steps=10", "trainer.stop_at_target=true",
                         "optimizer.name=sgd", "optimizer.lr=0.003", "optimizer.momentum=0.9"])
    assert trial.run_id == run_id(typed)
    assert trial.root == run_dir(typed)


def test_seed_runs_rerun_the_selected_point_with_each_seed() -> None:
    spec = {**TINY_SPEC, "seeds": [0, 1, 2]}  # 0 is the search's own seed: that run is the trial itself
    study = plan(spec)
    chosen = study.cells[0].trials[1]
    seeds = study.seed_runs(study.cells[0], chosen)
    assert [r.config.seed for r in seeds] == [1, 2]
    assert all(r.phase == "seeds" and dict(r.point) == dict(chosen.point) for r in seeds)
    assert seeds[0].swept == {"optimizer.name": "adamw", "optimizer.lr": 0.03, "seed": 1}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["quick", "bs-scaling-vision", "bs-scaling-asr", "bs-scaling-lm", "stability",
                                  "paper-table", "demo", "claims-lr", "claims-scaling"])
def test_builtin_studies_plan(name: str) -> None:
    study = plan_study(load_spec(name))
    assert study.search_runs()
    if name.startswith("bs-scaling"):
        assert len(study.cells) == 20 and {dict(c.key)["optimizer.name"] for c in study.cells} == {
            "novograd", "adamw", "sgd", "larc_sgd"}
        assert len({dict(c.key)["data.batch_size"] for c in study.cells}) >= 5 and len(study.spec.seeds) >= 2
    if study.spec.seeds:  # a built-in that compares confirms each selected point with the 3 seeds an ordering needs
        assert len(study.spec.seeds) >= 3 and (study.spec.search.extend or name == "demo")
    if name.startswith(("bs-scaling", "claims-scaling")):
        assert study.spec.measure_noise_scale


def test_search_seeds_run_every_point_once_per_seed() -> None:
    study = plan({**TINY_SPEC, "search": {**TINY_SPEC["search"], "seeds": [0, 1, 2]}, "seeds": [3, 4, 5]})
    adamw = study.cells[0]
    assert [(dict(t.point)["optimizer.lr"], t.config.seed) for t in adamw.trials] == [
        (lr, seed) for lr in (0.003, 0.03) for seed in (0, 1, 2)]
    assert adamw.trials[1].swept == {"optimizer.name": "adamw", "optimizer.lr": 0.003, "seed": 1}
    assert [r.config.seed for r in study.seed_runs(adamw, adamw.trials[0])] == [3, 4, 5]


def test_a_noise_scale_run_splits_its_batch_in_two_micro_batches() -> None:
    study = plan({**TINY_SPEC, "measure_noise_scale": True, "grid": {"data.batch_size": [32, 256]},
                  "max_micro_batch": 128, "optimizers": None})
    small, large = study.cells
    (noise,) = study.noise_runs(small, small.trials[0])
    config = noise.config
    assert (config.data.batch_size, config.trainer.accumulate_grad_batches, config.trainer.grad_noise_scale) == (16, 2, True)
    assert noise.phase == "noise" and noise.swept["trainer.grad_noise_scale"] is True
    (noise,) = study.noise_runs(large, large.trials[0])  # 2 x 128 already: nothing more to split
    assert (noise.config.data.batch_size, noise.config.trainer.accumulate_grad_batches) == (128, 2)
    assert plan(TINY_SPEC).noise_runs(small, small.trials[0]) == []


def test_an_extension_tries_two_values_beyond_the_edge_at_the_searchs_spacing() -> None:
    """lr in 0.003..0.03 with 2 points: one decade per spacing; momentum 1 − {0.01, 0.1}."""
    study = plan(TINY_SPEC)
    sgd = study.cells[1]
    tried = [dict(t.point) for t in sgd.trials]
    chosen = {"optimizer.lr": 0.03, "optimizer.momentum": 0.99}
    runs = study.extension_runs(sgd, tried, chosen, ["optimizer.lr", "optimizer.momentum"])
    assert [dict(r.point) for r in runs] == [
        {"optimizer.lr": 0.3, "optimizer.momentum": 0.99}, {"optimizer.lr": 3.0, "optimizer.momentum": 0.99},
        {"optimizer.lr": 0.03, "optimizer.momentum": 0.999}, {"optimizer.lr": 0.03, "optimizer.momentum": 0.9999}]
    assert {r.phase for r in runs} == {"extend"}
