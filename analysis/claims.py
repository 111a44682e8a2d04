"""The paper-claims check: each claim of the NovoGrad and LARC papers and of Shallue et al. that a
set of runs can test, with a verdict — supported, contradicted or inconclusive — the numbers and
intervals behind it, and the studies whose runs produced them.

Verdicts follow from the tests over seeds of ``analysis.significance`` (never from one run):

- **NovoGrad keeps half of Adam's optimizer state** (Ginsburg et al. 2019): NovoGrad's state
  bytes over Adam's (else AdamW's: the same state) in every task × batch size both ran; supported
  when every ratio is within 0.01 of 0.5 (one moment per tensor and a scalar per layer, against
  Adam's two moments), contradicted otherwise. State size does not vary with the seed.
- **NovoGrad is at least as good as Adam/AdamW at its best point** (Ginsburg et al.): on every
  task, NovoGrad's best cell against the better of Adam's and AdamW's (Welch, 95%, over the seeds
  that score each); contradicted if it is significantly worse on a task, supported if it is not
  on any task with ``MIN_SEEDS`` seeds per cell, else inconclusive.
- **NovoGrad is robust to the learning rate** (Ginsburg et al.): per task × batch size, the span
  in decades of the learning rates at which every one of ≥ ``MIN_SEEDS`` runs reached the target,
  NovoGrad's against Adam's or AdamW's (the wider); supported if NovoGrad's is wider on every
  task × batch size compared, contradicted if narrower on one, else inconclusive.
- **LARC lets SGD train at learning rates where plain SGD diverges** (You et al. 2017; the
  OpenSeq2Seq LARC): at the learning rates where SGD diverged in every one of ≥ ``MIN_SEEDS`` runs,
  LARC-SGD's divergences against SGD's (Fisher's exact test, 95%); supported if LARC-SGD diverged
  significantly less, contradicted if it diverged in every run too, else inconclusive.
- **Steps to target fall as 1/B up to a critical batch size, then flatten** (Shallue et al. 2018;
  McCandlish et al. 2018): per task × optimizer with a critical-batch fit, the steps at the
  largest batch size against the smallest (Welch, censoring handled) and the fitted B_crit's 95%
  interval; supported if the steps fall and the interval lies within the batch sizes tried (both
  regimes seen), contradicted if the steps rise with the batch, else inconclusive.
- **Momentum and layer-wise methods extend the perfect-scaling region** (Shallue et al.; You et
  al.): the fitted B_crit of an optimizer with momentum against the same without it
  (``momentum=0``), and of ``larc_<x>`` against ``<x>``; supported if larger at 95%,
  contradicted if smaller, else inconclusive.

Where a claim has several instances (tasks, batch sizes, optimizers), it is supported only if
every tested instance supports it, contradicted if one contradicts it, and inconclusive otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pandas as pd
from scipy import stats

from analysis import frames as F
from analysis.cells import finished
from analysis.compare import Comparison
from analysis.memory import REFERENCES
from analysis.paper_table import format_mean_std
from analysis.significance import MIN_SEEDS, Difference, estimate_difference, welch_stats

__all__ = ["Claim", "paper_claims", "claims_table", "claims_markdown", "VERDICTS", "SUPPORTED", "CONTRADICTED",
           "INCONCLUSIVE"]

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)
_NAME, _MOMENTUM = f"{F.CONFIG_PREFIX}optimizer.name", f"{F.CONFIG_PREFIX}optimizer.options.momentum"


@dataclass(frozen=True)
class Claim:
    """One claim, its verdict and what it rests on."""

    key: str
    source: str
    statement: str
    verdict: str
    evidence: str  # the numbers and intervals, one instance per "; "-separated part
    studies: str  # the studies whose runs the evidence comes from


def _overall(verdicts: list[str]) -> str:
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    return SUPPORTED if verdicts and all(v == SUPPORTED for v in verdicts) else INCONCLUSIVE


def _studies(c: Comparison, optimizers: set[str]) -> str:
    runs = c.runs[c.runs[F.OPTIMIZER].isin(optimizers)]
    return ", ".join(sorted(runs[F.STUDY].dropna().unique())) or "–"


def _state(c: Comparison) -> Claim:
    rows = c.memory[(c.memory[F.OPTIMIZER] == "novograd") & (c.memory["reference"] != "")].dropna(subset=["state_ratio"])
    statement = "NovoGrad keeps half of Adam's optimizer state."
    if rows.empty:
        return Claim("novograd-state", "NovoGrad (Ginsburg et al. 2019)", statement, INCONCLUSIVE,
                     "no task and batch size where NovoGrad and Adam or AdamW both recorded their state", "–")
    ratios = rows["state_ratio"].to_numpy(float)
    verdict = SUPPORTED if np.all(np.abs(ratios - 0.5) <= 0.01) else CONTRADICTED
    evidence = "; ".join(f"{r[F.TASK]} batch {int(r[F.BATCH_SIZE])}: {r['state_ratio']:.4f}× {r['reference']}'s "
                         f"({int(r['n_runs'])} runs)" for _, r in rows.iterrows())
    return Claim("novograd-state", "NovoGrad (Ginsburg et al. 2019)", statement, verdict, evidence,
                 _studies(c, {"novograd", *rows["reference"]}))


def _worse(d: Difference, higher_is_better: bool) -> bool:
    """d = novograd − reference is significantly in the worse direction."""
    return d.a_smaller if higher_is_better else d.a_larger


def _as_good(c: Comparison) -> Claim:
    statement = "NovoGrad is at least as good as Adam/AdamW at its best point (not significantly worse on any task)."
    verdicts, parts = [], []
    for task, rows in c.paper.groupby(F.TASK, sort=True):
        rows = rows.set_index(F.OPTIMIZER)
        references = [r for r in REFERENCES if r in rows.index]
        if "novograd" not in rows.index or not references:
            continue
        up = bool(rows[F.HIGHER_IS_BETTER].iloc[0])
        ref = max(references, key=lambda r: rows.at[r, "mean"] if up else -rows.at[r, "mean"])
        n, a = rows.loc["novograd"], rows.loc[ref]
        d = welch_stats(n["mean"], n["std"], n["n_seeds"], a["mean"], a["std"], a["n_seeds"])
        verdict = CONTRADICTED if _worse(d, up) else SUPPORTED if d.testable else INCONCLUSIVE
        verdicts.append(verdict)
        scored = "held-out seeds" if n["held_out"] and a["held_out"] else "scores include the selecting runs"
        parts.append(f"{task} ({rows[F.METRIC].iloc[0]}): novograd {format_mean_std(n['mean'], n['std'])} against "
                     f"{ref} {format_mean_std(a['mean'], a['std'])}, {d.interval()}, {d.seeds()}, {scored}"
                     + ("" if d.testable else f" ({d.needs()})"))
    evidence = "; ".join(parts) or "no task where NovoGrad and Adam or AdamW both have a best cell"
    return Claim("novograd-as-good", "NovoGrad (Ginsburg et al. 2019)", statement, _overall(verdicts), evidence,
                 _studies(c, {"novograd", *REFERENCES}))


def _reaching_span(runs: pd.DataFrame) -> tuple[Optional[float], int]:
    """(span in decades of the lrs at which every one of ≥ MIN_SEEDS runs reached the target, or
    None if none did; the number of lrs with ≥ MIN_SEEDS runs)."""
    per_lr = runs.groupby(F.LR).agg(n=(F.STATUS, "size"), reached=("_reached", "all"))
    tested = per_lr[per_lr["n"] >= MIN_SEEDS]
    good = tested.index[tested["reached"]]
    return (math.log10(good.max() / good.min()) if len(good) else None), len(tested)


def _lr_robust(c: Comparison) -> Claim:
    statement = ("NovoGrad is robust to the learning rate: the range of learning rates that reaches the target is "
                 "wider than Adam's.")
    runs = finished(c.runs).dropna(subset=[F.TARGET])
    runs = runs.assign(_reached=runs[F.STEPS_TO_TARGET].notna() & ~runs["diverged"])
    verdicts, parts = [], []
    for (task, batch), group in runs.groupby([F.TASK, F.BATCH_SIZE], sort=True):
        spans = {name: _reaching_span(rows) for name, rows in group.groupby(F.OPTIMIZER)
                 if name in ("novograd", *REFERENCES)}
        references = [r for r in REFERENCES if spans.get(r, (None, 0))[1] >= 2]
        if spans.get("novograd", (None, 0))[1] < 2 or not references:
            continue
        ref = max(references, key=lambda r: -1.0 if spans[r][0] is None else spans[r][0])
        mine, theirs = (-1.0 if spans[n][0] is None else spans[n][0] for n in ("novograd", ref))
        verdict = SUPPORTED if mine > theirs else CONTRADICTED if mine < theirs else INCONCLUSIVE
        verdicts.append(verdict)
        parts.append(f"{task} batch {int(batch)}: novograd {_decades(spans['novograd'])}, {ref} {_decades(spans[ref])}")
    evidence = "; ".join(parts) or (f"no task and batch size where NovoGrad and Adam or AdamW ran at 2 or more "
                                    f"learning rates with {MIN_SEEDS} seeds each")
    return Claim("novograd-lr-robust", "NovoGrad (Ginsburg et al. 2019)", statement, _overall(verdicts), evidence,
                 _studies(c, {"novograd", *REFERENCES}))


def _decades(span: tuple[Optional[float], int]) -> str:
    width, tested = span
    reach = "no lr reached it" if width is None else f"{width:.2f} decades reached it"
    return f"{reach} (of {tested} lrs with {MIN_SEEDS}+ seeds)"


def _larc(c: Comparison) -> Claim:
    statement = "LARC lets SGD train at learning rates where plain SGD diverges."
    results = finished(c.runs)
    sgd, larc = (results[results[F.OPTIMIZER] == name] for name in ("sgd", "larc_sgd"))
    by = [F.TASK, F.BATCH_SIZE, F.LR]
    plain = sgd.groupby(by).agg(n=("diverged", "size"), k=("diverged", "sum"))
    layer = larc.groupby(by).agg(n=("diverged", "size"), k=("diverged", "sum"), reached=(F.STEPS_TO_TARGET, "count"))
    both = plain.merge(layer, left_index=True, right_index=True, suffixes=("_sgd", "_larc"))
    both = both[(both["n_sgd"] >= MIN_SEEDS) & (both["k_sgd"] == both["n_sgd"]) & (both["n_larc"] >= MIN_SEEDS)]
    if both.empty:
        evidence = (f"no learning rate at which SGD diverged in every one of {MIN_SEEDS}+ runs and LARC-SGD ran "
                    f"{MIN_SEEDS}+ times: extend the learning rates upwards")
        return Claim("larc-trains", "LARC (You et al. 2017)", statement, INCONCLUSIVE, evidence,
                     _studies(c, {"sgd", "larc_sgd"}))
    k_larc, n_larc, n_sgd = int(both["k_larc"].sum()), int(both["n_larc"].sum()), int(both["n_sgd"].sum())
    p = stats.fisher_exact([[k_larc, n_larc - k_larc], [n_sgd, 0]]).pvalue
    verdict = CONTRADICTED if k_larc == n_larc else SUPPORTED if p < 0.05 else INCONCLUSIVE
    lrs = ", ".join(f"{lr:g}" for lr in sorted(both.index.get_level_values(F.LR).unique()))
    evidence = (f"at lr {lrs}, where SGD diverged in all {n_sgd} runs, LARC-SGD diverged in {k_larc} of {n_larc} "
                f"and reached the target in {int(both['reached'].sum())} (Fisher's exact test p = {p:.3g})")
    return Claim("larc-trains", "LARC (You et al. 2017)", statement, verdict, evidence, _studies(c, {"sgd", "larc_sgd"}))


def _scaling_rows(c: Comparison, task: str, optimizer: str) -> pd.DataFrame:
    rows = c.scaling[(c.scaling[F.TASK] == task) & (c.scaling[F.OPTIMIZER] == optimizer)]
    return rows.dropna(subset=[F.STEPS_TO_TARGET]).sort_values(F.BATCH_SIZE)


def _perfect_scaling(c: Comparison) -> Claim:
    statement = ("Steps to target fall as 1/B up to a critical batch size and flatten after it (perfect scaling, "
                 "then diminishing returns).")
    verdicts, parts = [], []
    for _, fit in c.critical_batch.iterrows():
        rows = _scaling_rows(c, fit[F.TASK], fit[F.OPTIMIZER])
        small, large = rows.iloc[0], rows.iloc[-1]
        d = welch_stats(large[F.STEPS_TO_TARGET], large["steps_std"], large["n_scored"], small[F.STEPS_TO_TARGET],
                        small["steps_std"], small["n_scored"], int(large["censored"]), int(small["censored"]))
        inside = small[F.BATCH_SIZE] <= fit["b_crit_low"] and fit["b_crit_high"] <= large[F.BATCH_SIZE]
        verdict = (SUPPORTED if d.a_smaller and inside else CONTRADICTED if d.a_larger else INCONCLUSIVE)
        verdicts.append(verdict)
        why = ("" if verdict != INCONCLUSIVE else " (steps do not fall significantly)" if not d.a_smaller
               else " (B_crit's interval reaches beyond the batch sizes tried: one regime seen)")
        parts.append(f"{fit[F.TASK]} {fit[F.OPTIMIZER]}: steps {small[F.STEPS_TO_TARGET]:.0f} at batch "
                     f"{int(small[F.BATCH_SIZE])} → {large[F.STEPS_TO_TARGET]:.0f} at {int(large[F.BATCH_SIZE])} "
                     f"({d.interval()}, {d.seeds()}); B_crit {fit['b_crit']:.3g}, 95% CI [{fit['b_crit_low']:.3g}, "
                     f"{fit['b_crit_high']:.3g}]{why}")
    evidence = "; ".join(parts) or "no optimizer reached the target at 3 or more batch sizes: no fit"
    return Claim("perfect-scaling", "Shallue et al. 2018; McCandlish et al. 2018", statement, _overall(verdicts),
                 evidence, _studies(c, set(c.critical_batch[F.OPTIMIZER])))


def _identity(c: Comparison) -> pd.DataFrame:
    """Per optimizer label: its registry name and momentum (NaN: the optimizer's default)."""
    runs = c.runs
    names = runs[_NAME] if _NAME in runs else runs[F.OPTIMIZER]
    momentum = runs[_MOMENTUM] if _MOMENTUM in runs else pd.Series(np.nan, index=runs.index)
    frame = pd.DataFrame({F.OPTIMIZER: runs[F.OPTIMIZER], "name": names,
                          "momentum": pd.to_numeric(momentum, errors="coerce")})
    return frame.groupby(F.OPTIMIZER).agg(name=("name", "first"), momentum=("momentum", "first"))


def _pairs(c: Comparison) -> list[tuple[str, str, str]]:
    """(what, with, without) pairs of fitted optimizers: momentum against none, larc_<x> against <x>."""
    fitted = _identity(c).loc[lambda frame: frame.index.isin(c.critical_batch[F.OPTIMIZER])]
    pairs = []
    for label, row in fitted.iterrows():
        same = lambda other: (fitted.loc[other, "momentum"] == row["momentum"]) or (  # noqa: E731
            math.isnan(fitted.loc[other, "momentum"]) and math.isnan(row["momentum"]))
        if row["momentum"] == 0:
            pairs += [("momentum", other, label) for other in fitted.index
                      if other != label and fitted.loc[other, "name"] == row["name"] and fitted.loc[other, "momentum"] != 0]
        pairs += [("layer-wise", other, label) for other in fitted.index
                  if fitted.loc[other, "name"] == f"larc_{row['name']}" and same(other)]
    return pairs


def _extends(c: Comparison) -> Claim:
    statement = "Momentum and layer-wise methods extend the perfect-scaling region (a larger critical batch size)."
    fits = c.critical_batch.set_index([F.TASK, F.OPTIMIZER])
    verdicts, parts, involved = [], [], set()
    for what, with_, without in _pairs(c):
        for task in sorted(c.critical_batch[F.TASK].unique()):
            if (task, with_) not in fits.index or (task, without) not in fits.index:
                continue
            a, b = fits.loc[(task, with_)], fits.loc[(task, without)]
            d = estimate_difference(a["b_crit"], a["b_crit_se"], a["n_batch_sizes"] - 2, b["b_crit"], b["b_crit_se"],
                                    b["n_batch_sizes"] - 2, int(a["min_seeds"]), int(b["min_seeds"]))
            verdicts.append(SUPPORTED if d.a_larger else CONTRADICTED if d.a_smaller else INCONCLUSIVE)
            involved |= {with_, without}
            parts.append(f"{task}, {what}: B_crit {a['b_crit']:.3g} ({with_}) against {b['b_crit']:.3g} ({without}), "
                         f"{d.interval()}" + ("" if d.testable else f" ({d.needs()})"))
    evidence = "; ".join(parts) or ("no pair of fitted critical batch sizes to compare: an optimizer with and "
                                    "without momentum (momentum=0), or larc_<x> and <x>")
    return Claim("scaling-extended", "Shallue et al. 2018; LARC (You et al. 2017)", statement, _overall(verdicts),
                 evidence, _studies(c, involved))


CHECKS: tuple[Callable[[Comparison], Claim], ...] = (_state, _as_good, _lr_robust, _larc, _perfect_scaling, _extends)


def paper_claims(c: Comparison) -> list[Claim]:
    """Every claim the module lists, checked against ``c``."""
    return [check(c) for check in CHECKS]


def claims_table(claims: list[Claim]) -> pd.DataFrame:
    """The claims as a frame: key, source, statement, verdict, evidence, studies."""
    return pd.DataFrame([vars(claim) for claim in claims], columns=list(Claim.__dataclass_fields__))


def claims_markdown(claims: list[Claim]) -> str:
    """The claims as a Markdown list: the statement, its verdict in bold, the evidence, the studies."""
    return "".join(f"- **{claim.verdict}**: {claim.statement} *{claim.source}.* Evidence: {claim.evidence}. "
                   f"Studies: {claim.studies}.\n" for claim in claims)
