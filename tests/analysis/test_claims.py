"""The paper-claims check on hand-built runs: every claim's supported, contradicted and
inconclusive paths, and ``optbench claims`` end to end on a written store."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from analysis import frames as F
from analysis.claims import CONTRADICTED, INCONCLUSIVE, SUPPORTED, paper_claims
from analysis.claims_check import check_claims
from analysis.compare import compare
from analysis.frames import Frames, typed_runs
from analysis.scaling import steps_model
from experiments.cli import main
from tests.analysis import synthetic

SEEDS = (0, 1, 2)


def verdict(records: list[dict], key: str) -> tuple[str, str]:
    runs = typed_runs([synthetic.run_record(**{F.RUN_ID: f"r{i}", **r}) for i, r in enumerate(records)])
    claims = {c.key: c for c in paper_claims(compare(Frames(runs, synthetic.metrics_frame([]), synthetic.layers_frame([]))))}
    return claims[key].verdict, claims[key].evidence


def quality(optimizer: str, values: list[float], **extra) -> list[dict]:
    return [{F.OPTIMIZER: optimizer, F.SEED: seed, F.BEST: value, F.STEPS_TO_TARGET: 100, **extra}
            for seed, value in enumerate(values)]


@pytest.mark.slow
@pytest.mark.parametrize("novograd, expected", [(4000, SUPPORTED), (6000, CONTRADICTED), (None, INCONCLUSIVE)])
def test_novograd_state(novograd, expected):
    records = quality("adamw", [0.9] * 3, **{F.STATE_BYTES: 8000})
    if novograd:
        records += quality("novograd", [0.9] * 3, **{F.STATE_BYTES: novograd})
    assert verdict(records, "novograd-state")[0] == expected


@pytest.mark.slow
@pytest.mark.parametrize("novograd, expected", [
    ([0.95, 0.96, 0.94], SUPPORTED),       # within noise of adamw: not worse
    ([0.80, 0.81, 0.79], CONTRADICTED),    # significantly worse
    ([0.80, 0.81], INCONCLUSIVE),          # two seeds: no test
])
def test_novograd_at_least_as_good(novograd, expected):
    records = quality("adamw", [0.95, 0.955, 0.945]) + quality("novograd", novograd)
    result, evidence = verdict(records, "novograd-as-good")
    assert result == expected
    assert evidence.startswith("vision (val/acc): novograd ") and "95% CI [" in evidence


def lr_sweep(optimizer: str, reaching: set[float], lrs=(1e-3, 1e-2, 1e-1, 1.0)) -> list[dict]:
    return [{F.OPTIMIZER: optimizer, F.LR: lr, F.SEED: seed, F.BEST: 0.9,
             F.STEPS_TO_TARGET: 200 if lr in reaching else None} for lr in lrs for seed in SEEDS]


@pytest.mark.slow
@pytest.mark.parametrize("novograd, adamw, expected", [
    ({1e-3, 1e-2, 1e-1}, {1e-3}, SUPPORTED), ({1e-2}, {1e-2, 1e-1}, CONTRADICTED), ({1e-2}, {1e-1}, INCONCLUSIVE),
])
def test_novograd_lr_robustness(novograd, adamw, expected):
    result, evidence = verdict(lr_sweep("novograd", novograd) + lr_sweep("adamw", adamw), "novograd-lr-robust")
    assert result == expected
    if expected == SUPPORTED:
        assert evidence == ("vision batch 32: novograd 2.00 decades reached it (of 4 lrs with 3+ seeds), adamw 0.00 "
                            "decades reached it (of 4 lrs with 3+ seeds)")


def divergence(optimizer: str, diverging: set[float], lrs=(0.1, 1.0, 3.0)) -> list[dict]:
    return [{F.OPTIMIZER: optimizer, F.LR: lr, F.SEED: seed, F.BEST: 0.5,
             F.STATUS: "diverged" if lr in diverging else "completed",
             F.STEPS_TO_TARGET: None if lr in diverging else 300} for lr in lrs for seed in SEEDS]


@pytest.mark.slow
@pytest.mark.parametrize("sgd, larc, expected", [
    ({1.0, 3.0}, set(), SUPPORTED), ({1.0, 3.0}, {1.0, 3.0}, CONTRADICTED), (set(), set(), INCONCLUSIVE),
    ({3.0}, set(), INCONCLUSIVE),  # 3 of 3 against 0 of 3: Fisher's p = 0.1
])
def test_larc_trains_where_sgd_diverges(sgd, larc, expected):
    result, evidence = verdict(divergence("sgd", sgd) + divergence("larc_sgd", larc), "larc-trains")
    assert result == expected
    if expected == SUPPORTED:
        assert evidence == ("at lr 1, 3, where SGD diverged in all 6 runs, LARC-SGD diverged in 0 of 6 and reached "
                            "the target in 6 (Fisher's exact test p = 0.00216)")  # 2 / C(12, 6)


def scaling(optimizer: str, b_crit: float, batches=(32, 64, 128, 256, 512), s_min: float = 100.0,
            **extra) -> list[dict]:
    steps = steps_model(np.array(batches), s_min, b_crit)
    return [{F.OPTIMIZER: optimizer, F.BATCH_SIZE: b, F.SEED: seed, F.BEST: 0.9,
             F.STEPS_TO_TARGET: round(s * (1 + 0.01 * seed)), **extra} for b, s in zip(batches, steps) for seed in SEEDS]


@pytest.mark.slow
@pytest.mark.parametrize("records, expected, why", [
    (scaling("sgd", 128.0), SUPPORTED, ""),
    (scaling("sgd", 100_000.0, s_min=0.005), INCONCLUSIVE, "one regime seen"),  # perfect scaling throughout
    ([{**r, F.STEPS_TO_TARGET: 1100 - r[F.STEPS_TO_TARGET]} for r in scaling("sgd", 128.0)], CONTRADICTED, ""),
], ids=["both-regimes", "no-flattening", "steps-rise"])
def test_perfect_scaling_then_diminishing_returns(records, expected, why):
    result, evidence = verdict(records, "perfect-scaling")
    assert result == expected and why in evidence


def momentum(value: float) -> dict:
    return {f"{F.CONFIG_PREFIX}optimizer.name": "sgd", f"{F.CONFIG_PREFIX}optimizer.options.momentum": value}


@pytest.mark.slow
@pytest.mark.parametrize("with_momentum, without, expected", [
    (256.0, 32.0, SUPPORTED), (32.0, 256.0, CONTRADICTED), (128.0, 128.0, INCONCLUSIVE),
])
def test_momentum_extends_perfect_scaling(with_momentum, without, expected):
    records = scaling("sgd (momentum=0.9)", with_momentum, **momentum(0.9)) + \
        scaling("sgd (momentum=0)", without, **momentum(0.0))
    result, evidence = verdict(records, "scaling-extended")
    assert result == expected and evidence.startswith("vision, momentum: B_crit ")


def test_no_pair_to_compare_is_inconclusive():
    assert verdict(scaling("sgd", 128.0), "scaling-extended")[0] == INCONCLUSIVE


@pytest.mark.slow
def test_optbench_claims_end_to_end(tmp_path, capsys):
    store, out = tmp_path / "runs", tmp_path / "claims"
    synthetic.write_store(store, synthetic.frames(tasks=("vision",), seeds=3))
    console = Console(file=io.StringIO(), width=300)
    claims = check_claims([store], out, cache=False, console=console)
    assert [c.key for c in claims] == ["novograd-state", "novograd-as-good", "novograd-lr-robust", "larc-trains",
                                       "perfect-scaling", "scaling-extended"]
    table = pd.read_csv(out / "claims.csv")
    assert table["verdict"].tolist() == [c.verdict for c in claims] and set(table["studies"]) <= {"synthetic", "–"}
    assert (out / "claims.md").read_text().startswith("- **supported**: NovoGrad keeps half of Adam's optimizer state.")
    assert "paper claims" in console.file.getvalue()
    assert main(["claims", str(tmp_path / "missing"), "--out", str(tmp_path / "x"), "--no-cache"]) == 2
    assert capsys.readouterr().err.startswith("optbench: error: no such source: ")
