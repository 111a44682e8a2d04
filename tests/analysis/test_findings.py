"""The report's sentences on hand-built runs with known answers: an ordering only where Welch's
interval excludes 0, ties as ties, no ranking with fewer than 3 seeds, censored runs that could
reverse an ordering, which runs scored each cell, and B_crit beside the measured B_simple."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import frames as F
from analysis.compare import compare
from analysis.findings import findings
from analysis.frames import Frames, typed_runs
from analysis.roles import ROLE, VARIANT
from analysis.scaling import steps_model
from experiments.studies.record import CONFIRMING, SELECTING
from tests.analysis import synthetic

TEST = "(Welch's t-interval of the difference of means, 95%)"


def sentences(records: list[dict], roles: list[str] | None = None) -> list[str]:
    runs = typed_runs([synthetic.run_record(**{F.RUN_ID: f"r{i}", **r}) for i, r in enumerate(records)])
    recorded = None if roles is None else pd.DataFrame({ROLE: roles, VARIANT: ""}, index=runs.index)
    return findings(compare(Frames(runs, synthetic.metrics_frame([]), synthetic.layers_frame([])), recorded))


def cell(optimizer: str, bests: list[float], steps: list[float | None] | None = None, first_seed: int = 0,
         **extra) -> list[dict]:
    steps = steps or [100.0] * len(bests)
    return [{F.OPTIMIZER: optimizer, F.SEED: first_seed + i, F.BEST: best, F.STEPS_TO_TARGET: step, **extra}
            for i, (best, step) in enumerate(zip(bests, steps))]


def interval(a: list[float], b: list[float]) -> str:
    """Welch's interval of mean(a) − mean(b) as the report writes it, from scipy in float64."""
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    return f"difference {np.mean(a) - np.mean(b):.3g}, 95% CI [{ci.low:.3g}, {ci.high:.3g}]"


ADAMW, NOVOGRAD, SGD, LARC = [0.95, 0.96, 0.94], [0.80, 0.81, 0.79], [0.955, 0.935, 0.95], [0.90, 0.91]


def test_quality_ahead_tie_and_too_few_seeds():
    out = sentences(cell("adamw", ADAMW) + cell("novograd", NOVOGRAD) + cell("sgd", SGD) + cell("larc_sgd", LARC))
    assert ("On vision, the best mean val/acc is adamw's (0.950 ± 0.010, 3 seeds, the selecting runs included, "
            "batch 32, lr 0.001).") in out
    assert (f"On vision, adamw is ahead in val/acc of novograd (0.8 ± 0.01; {interval(ADAMW, NOVOGRAD)}, "
            f"3 seeds each) {TEST}.") in out
    assert f"On vision, adamw and sgd are within noise in val/acc: {interval(ADAMW, SGD)}, 3 seeds each." in out
    assert ("On vision, adamw and larc_sgd are not ranked in val/acc: 3 and 2 seeds; an ordering needs 3 seeds "
            "per cell.") in out
    assert not any("sgd" in s and "ahead" in s for s in out)  # neither the tie nor the 2-seed cell is ordered


def test_a_leader_with_two_seeds_claims_no_ordering():
    out = sentences(cell("adamw", ADAMW[:2]) + cell("novograd", NOVOGRAD))
    assert ("On vision, the best mean val/acc is adamw's (0.9550 ± 0.0071, 2 seeds, the selecting runs included, "
            "batch 32, lr 0.001); no ordering is claimed: it has 2 seed(s), and an ordering needs 3 per cell.") in out
    assert not any("ahead" in s or "within noise" in s for s in out)


def test_steps_to_target_with_censored_runs():
    """sgd's unreached run counts at its budget (1000) and cannot hide that novograd is ahead;
    larc_sgd leads with a censored run of its own, so no ordering is claimed against it."""
    quick, slow, unreached = [100.0, 110.0, 120.0], [400.0, 420.0, 440.0], [900.0, 950.0, None]
    out = sentences(cell("novograd", [0.9] * 3, quick) + cell("adamw", [0.9] * 3, slow)
                    + cell("sgd", [0.9] * 3, unreached))
    assert ("On vision, the fewest mean steps to the target 0.9 are novograd's (110, 3 seeds, the selecting runs "
            "included, batch 32, lr 0.001).") in out
    ahead = (f"On vision, novograd is ahead in steps to the target 0.9 of adamw (420; {interval(quick, slow)}, 3 seeds "
             f"each), sgd (950; {interval(quick, [900.0, 950.0, 1000.0])}, 3 seeds each) {TEST}.")
    assert ahead in out

    leading = [50.0, 60.0, None]
    out = sentences(cell("larc_sgd", [0.9] * 3, leading, **{F.MAX_STEPS: 200}) + cell("adamw", [0.9] * 3, slow))
    assert ("On vision, the fewest mean steps to the target 0.9 are larc_sgd's (103, 3 seeds, the selecting runs "
            "included, batch 32, lr 0.001; 1 never reached it and count at their budget).") in out
    assert (f"On vision, larc_sgd and adamw are not ranked in steps to the target 0.9: "
            f"{interval([50.0, 60.0, 200.0], slow)}, 3 seeds each, but 1 run(s) of larc_sgd never reached the target "
            f"and count at their budget, so its true mean may be the larger.") in out
    assert not any("is ahead in steps" in s for s in out)


def test_held_out_cells_are_scored_by_their_confirmation_seeds_and_say_so():
    """The selecting run of each cell is lucky (0.99, 0.97); only the confirmation runs score."""
    records = (cell("adamw", [0.99]) + cell("adamw", ADAMW, first_seed=1)
               + cell("novograd", [0.97]) + cell("novograd", NOVOGRAD, first_seed=1))
    roles = [SELECTING, CONFIRMING, CONFIRMING, CONFIRMING] * 2
    out = sentences(records, roles)
    assert ("On vision, the best mean val/acc is adamw's (0.950 ± 0.010, 3 seeds, held out, batch 32, lr 0.001)."
            in out)
    assert f"of novograd (0.8 ± 0.01; {interval(ADAMW, NOVOGRAD)}, 3 seeds each)" in " ".join(out)


def scaling_runs(noise: list[float]) -> list[dict]:
    batches = (32, 64, 128, 256, 512)
    steps = steps_model(np.array(batches), 100.0, 128.0)
    records = [{F.OPTIMIZER: "sgd", F.BATCH_SIZE: b, F.SEED: seed, F.BEST: 0.9,
                F.STEPS_TO_TARGET: round(s * (1 + 0.01 * seed))} for b, s in zip(batches, steps) for seed in (0, 1, 2)]
    for record, value in zip(records, noise):  # the batch-32 runs measured the gradient noise scale
        record[F.GRAD_NOISE_SCALE] = value
    return records


@pytest.mark.parametrize("noise, verdict", [
    ([120.0, 130.0, 140.0], "consistent with B_crit ≈ B_simple"),
    ([1000.0, 1010.0, 1020.0], "they differ at 95%"),
    ([120.0, 130.0], "not compared: 3 and 2 seeds; an ordering needs 3 seeds per cell"),
])
def test_the_critical_batch_size_beside_the_measured_noise_scale(noise, verdict):
    line = next(s for s in sentences(scaling_runs(noise)) if "critical batch size" in s)
    mean = float(np.mean(noise))
    half = float(stats.t.ppf(0.975, len(noise) - 1) * np.std(noise, ddof=1) / np.sqrt(len(noise)))
    assert line.startswith("On vision, sgd's critical batch size B_crit is 12")  # the law's 128, rounded steps
    assert "fit over 5 batch sizes, 3+ seeds each" in line
    assert (f"the measured gradient noise scale B_simple is {mean:.3g} (95% CI [{mean - half:.3g}, {mean + half:.3g}], "
            f"{len(noise)} runs): B_crit − B_simple = ") in line
    assert line.endswith(f", {verdict}.")
