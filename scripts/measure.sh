#!/usr/bin/env bash
# Measure the numbers the docs quote and write them into docs/measurements.md: one section per
# measurement, each stamped with the commit, date, torch version, machine and load it ran at.
#
#   scripts/measure.sh                  every CPU section, one after another (hours)
#   scripts/measure.sh tests harness    only these sections; the others keep their text and stamps
#   scripts/measure.sh --list           the sections and what each measures
#   scripts/measure.sh gpu              on a GPU machine, after OPTBENCH_TORCH=torch scripts/setup.sh
#
# Timings are worth recording only on a machine with nothing else running: each stamp says the
# load average when its section started. Sections run in temporary directories (removed at the
# end), never in runs/ or report/, so nothing already there is reused.
set -euo pipefail
cd "$(dirname "$0")/.."

page=docs/measurements.md
# name|title (the section's heading: docs link to its anchor)|what it measures
sections=(
    "tests|Tests|the number of tests, from pytest's collection (seconds)"
    "test-suite|Test suite on a fresh clone|scripts/setup.sh and scripts/test.sh on a fresh clone of HEAD (~10 min)"
    "test-parts|Triton and SLURM tests|the Triton-interpreter and SLURM-cluster tests on their own (~2 min)"
    "optimizers|Optimizer step on a CPU|optbench bench optimizers with the peers, 5 rounds, the goals (also into the README; MEASURE_OTHER_TORCH=PYTHON: again on that torch), the fused kernel's cold build (~8 min)"
    "gpu|GPU|the CUDA optimizer step and each large task against a bare loop (needs a CUDA device; not in the default set)"
    "harness|Harness|optbench bench harness, default vision and tiny lm/asr; foreach for the torch baselines on a CPU (~25 min)"
    "analysis|Analysis speed|optbench bench analysis, 1000 runs x 5000 logged steps: stages, the whole optbench analyze command, foreign wandb runs (~8 min)"
    "first-run|The default run|optbench train with no arguments (~5 min)"
    "demo|The demo|optbench demo: time, runs, findings, paper table (~7 min)"
    "task-budgets|Task budgets|scripts/task_budgets.sh: NovoGrad, AdamW, SGD on each default-size task (~25 min)"
    "studies|Built-in studies|wall time of quick, stability, paper-table, bs-scaling-lm, bs-scaling-asr (~30 min)"
    "fixed-cost|Per-run fixed cost|quick with and without warm workers, 3 paired rounds; demo, 1 round (~26 min; MEASURE_BEFORE=COMMIT: also that commit's optbench, ~20 min more)"
    "bs-scaling-vision|bs-scaling-vision|wall time and the steps-to-target table of bs-scaling-vision (~8 min)"
    "claims|Paper claims|claims-lr and claims-scaling, then optbench claims: wall times and verdicts, also into the README (~45 min)"
)
field() { local entry; for entry in "${sections[@]}"; do [ "${entry%%|*}" = "$1" ] && { cut -d'|' -f"$2" <<<"$entry"; return; }; done; }

if [ "${1:-}" = "--list" ]; then
    for entry in "${sections[@]}"; do printf '%-18s %s\n' "${entry%%|*}" "${entry##*|}"; done
    exit 0
fi
requested=("$@")
if [ ${#requested[@]} -eq 0 ]; then
    for entry in "${sections[@]}"; do [ "${entry%%|*}" = gpu ] || requested+=("${entry%%|*}"); done
fi
for name in "${requested[@]}"; do
    if [ -z "$(field "$name" 1)" ]; then
        echo "measure.sh: unknown section '$name' (sections: $(printf '%s\n' "${sections[@]}" | cut -d'|' -f1 | paste -sd' '))" >&2
        exit 2
    fi
done

bash scripts/setup.sh
py=.venv/bin/python
optbench=$PWD/.venv/bin/optbench
work=$(mktemp -d)
trap 'rm -rf "$work"; git worktree prune' EXIT
export COLUMNS=150  # rich tables at full width in a pipe

human() { printf '%d min %02d s' $(($1 / 60)) $(($1 % 60)); }
timed() {  # run a command with its output in $work/out; print its wall time
    local start; start=$(date +%s)
    "$@" > "$work/out" 2>&1 || { tail -n 20 "$work/out" >&2; return 1; }
    human $(($(date +%s) - start))
}
fenced() { echo '```text'; cat; echo '```'; }

stamp() {  # the line under a section's title: when, at which commit, on what
    local commit dirty="" gpu=""
    commit=$(git rev-parse --short=12 HEAD)
    git diff --quiet HEAD -- . ":(exclude)$page" || dirty=" plus uncommitted changes"
    command -v nvidia-smi > /dev/null && gpu=", $(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)"
    echo "Measured by \`scripts/measure.sh $1\` at commit \`$commit\`$dirty on $(date -u +%Y-%m-%d):" \
         "torch $("$py" -c 'import torch; print(torch.__version__)'), $(nproc) cores" \
         "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))$gpu," \
         "load average $(cut -d' ' -f1 /proc/loadavg) at the start."
}

section_tests() {
    local all quick
    all=$("$py" -m pytest --collect-only -q -p no:cacheprovider | tail -n 1)
    quick=$("$py" -m pytest --collect-only -q -p no:cacheprovider -m "not slow" | tail -n 1)
    echo "$(grep -o '^[0-9]*' <<<"$all") tests, $(grep -o '^[0-9]*' <<<"$quick") of them not marked slow" \
         "(the quick subset, \`scripts/test.sh -m \"not slow\"\`)."
}

section_test_suite() {  # what CI's scripts/test.sh does, less installing SLURM's packages
    local clone="$work/clone" install suite
    git clone -q . "$clone"
    install=$(timed bash "$clone/scripts/setup.sh")
    suite=$(cd "$clone" && timed bash scripts/test.sh -q -p no:cacheprovider)
    echo "- \`scripts/setup.sh\` (a new \`.venv\`; pip's cache as this machine has it): $install"
    echo "- \`scripts/test.sh\`: $suite; pytest says \`$(tail -n 1 "$work/out" | tr -d '=' | sed 's/^ *//;s/ *$//')\`"
}

section_test_parts() {
    local file took
    for file in tests/optimizers/test_triton.py tests/experiments/studies/test_slurm.py; do
        took=$(timed "$py" -m pytest "$file" -q -p no:cacheprovider --durations=3)
        echo "- \`$file\`: $took; pytest says \`$(tail -n 1 "$work/out" | tr -d '=' | sed 's/^ *//;s/ *$//')\`"
    done
    echo
    echo "The SLURM tests' slowest steps (the cluster starts in the setup of the first):"
    echo
    grep -E '^[0-9.]+s +(setup|call|teardown) ' "$work/out" | fenced
}

section_optimizers() {
    bash scripts/bench_optimizers.sh --rounds 5 --markdown > "$work/bench"
    echo "\`scripts/bench_optimizers.sh --rounds 5 --markdown\` (5 rounds × 10 steps after 3 warm-up steps, 2 threads;" \
         "ratios paired by round: the median of the rounds' ratios):"
    echo
    grep '^|' "$work/bench" | sed '/^| goal |/,$d'
    grep '^peer rows left out' "$work/bench" || true
    echo
    echo "Goals (what the ratios mean: [Benchmarks](benchmarks.md#goals-on-a-cpu)):"
    echo
    sed -n '/^| goal |/,$p' "$work/bench" | grep '^|' > "$work/goals.md"
    cat "$work/goals.md"
    if [ -n "${MEASURE_OTHER_TORCH:-}" ]; then  # a Python with another torch and optbench's requirements
        local other
        other=$("$MEASURE_OTHER_TORCH" -c 'import torch; print(torch.__version__)')
        PYTHONPATH="$PWD" "$MEASURE_OTHER_TORCH" -m experiments.cli bench optimizers --rounds 5 --no-peers \
            --markdown > "$work/other"
        { echo; echo "The same goals on torch $other (\`MEASURE_OTHER_TORCH=PYTHON\`, without the peer rows):"; echo
          sed -n '/^| goal |/,$p' "$work/other" | grep '^|'; } | tee -a "$work/goals.md"
    fi
    { echo "On torch $("$py" -c 'import torch; print(torch.__version__)'):"; echo; cat "$work/goals.md"; } > "$work/readme-goals.md"
    write_block README.md optimizer-goals "$work/readme-goals.md"
    TORCH_EXTENSIONS_DIR="$work/extensions" "$optbench" bench optimizers --rounds 1 --steps 2 --warmup 1 \
        --only "novograd (fused)" --no-peers --markdown > "$work/cold"
    echo
    echo "The fused NovoGrad kernel's cold build (its first step with an empty \`TORCH_EXTENSIONS_DIR\`):" \
         "$(grep '^| novograd (fused)' "$work/cold" | awk -F'|' '{gsub(/ /, "", $7); print $7}') s."
}

section_gpu() {
    "$py" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' \
        || { echo "measure.sh: the gpu section needs a CUDA device" >&2; return 1; }
    "$optbench" bench optimizers --device cuda --rounds 3 --steps 20 --warmup 3 --markdown > "$work/bench"
    echo "\`optbench bench optimizers --device cuda --rounds 3 --steps 20 --warmup 3\`:"
    echo
    grep '^|' "$work/bench"
    local task
    for task in vision lm asr; do
        echo
        echo "\`optbench bench harness task=$task size=large trainer.accelerator=gpu trainer.precision=bf16-mixed trainer.max_steps=60 data.num_workers=4 --rounds 1\`:"
        echo
        "$optbench" bench harness task="$task" size=large trainer.accelerator=gpu trainer.precision=bf16-mixed \
            trainer.max_steps=60 data.num_workers=4 --rounds 1 | fenced
    done
}

section_harness() {
    echo "\`optbench bench harness\` (vision, default size, AdamW, 300 steps, 5 rounds):"
    echo
    "$optbench" bench harness | fenced
    local task
    for task in lm asr; do
        echo
        echo "A tiny model, where the fixed per-step cost weighs more: \`optbench bench harness task=$task size=tiny trainer.max_steps=30 --rounds 1\`:"
        echo
        "$optbench" bench harness task="$task" size=tiny trainer.max_steps=30 --rounds 1 | fenced
    done
    echo
    baselines_foreach
}

section_analysis() {
    echo "\`optbench bench analysis\` (1000 runs × 5000 logged steps: each stage, the whole \`optbench analyze\` command cold and cached, and the runs as foreign wandb runs loaded with a map):"
    echo
    "$optbench" bench analysis | fenced
}

section_first_run() {
    local took
    took=$(cd "$work" && timed "$optbench" train)
    echo "\`optbench train\` (vision, default size, AdamW, 300 steps) took $took; what it printed, the middle left out:"
    echo
    { head -n 2 "$work/out"; echo "..."; tail -n 3 "$work/out"; } | fenced
}

section_demo() {
    local took
    took=$(timed "$optbench" demo out_dir="$work/runs" --out "$work/report")
    echo "\`optbench demo\` (\`--max-parallel 2\`, install already done): $(find "$work/runs/demo" -name summary.json | wc -l) runs" \
         "and the report in **$took**; the report has $(find "$work/report/figures" -name '*.png' | wc -l) figures."
    echo
    echo "Its findings (tiny models, two learning rates per cell, 3 confirmation seeds per selected point: a"
    echo "smoke-scale study, not a tuned comparison):"
    echo
    "$py" - "$work/runs/demo" <<'PY'
import sys
from analysis.compare import compare
from analysis.findings import findings
from analysis.load import load
from analysis.roles import read_roles
frames = load([sys.argv[1]], cache_dir=None)
for sentence in findings(compare(frames, read_roles(frames.runs))):
    print(f"- {sentence}")
PY
    echo
    echo "Its paper table (the runs stop at the target, so \"best\" is the best value until the target):"
    echo
    cat "$work/report/tables/paper.md"
}

section_task_budgets() {
    local took
    took=$(timed bash scripts/task_budgets.sh "$work/runs")
    echo "\`scripts/task_budgets.sh\` (cosine schedule with 5% warm-up, seed 0, one learning rate each), $took in all:"
    echo
    grep -E '^(vision|asr|lm) ' "$work/out" | fenced
}

section_studies() {
    local study took
    echo "\`optbench study run NAME --max-parallel 2\`, one after another:"
    echo
    echo "| study | runs | wall time |"
    echo "|---|---:|---:|"
    for study in quick stability paper-table bs-scaling-lm bs-scaling-asr; do
        took=$(timed "$optbench" study run "$study" out_dir="$work/runs" --max-parallel 2)
        echo "| \`$study\` | $(find "$work/runs/$study" -name summary.json | wc -l) | $took |"
    done
}

section_fixed_cost() {  # a study with and without warm workers: what a run costs besides training
    echo "Each study run with warm workers (the"
    echo "default) and with \`--executor-options warm=false\` (every run a new process), alternating which goes"
    echo "first, each time into a new directory, \`--max-parallel 2\`. Fixed cost per run = (2 × the study's wall"
    echo "time − Σ its runs' \`wall_time_s\`) / runs: what a run costs besides its training (starting,"
    echo "importing, building, exiting)."
    local before=""
    if [ -n "${MEASURE_BEFORE:-}" ]; then  # an older optbench to compare with: a commit
        before="$work/before"
        git worktree add -q --detach "$before" "$MEASURE_BEFORE"
        echo "With \`MEASURE_BEFORE=$MEASURE_BEFORE\`, each study is also run by optbench at commit" \
             "\`$(git rev-parse --short=12 "$MEASURE_BEFORE")\` (its own code on \`PYTHONPATH\`, this" \
             "environment), in the same rounds. Its studies may plan other runs than today's, so the" \
             "comparison is per run: (its wall time / its runs) / (the warm wall time / the warm runs)."
    fi
    echo
    "$py" - "$optbench" "$work/fixed-cost" "$before" <<'PY'
import json, os, pathlib, statistics, subprocess, sys, time
optbench, work, before = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
studies = [("quick", ["trainer.max_steps=15"], 3), ("demo", [], 1)]  # (study, overrides, rounds)
modes = ("warm", "cold", "before") if before else ("warm", "cold")
print("| study | round | warm: wall | warm: fixed cost / run | cold: wall | cold: fixed cost / run | cold / warm |"
      + (" before: runs, wall | before: fixed cost / run | before / warm, per run |" if before else ""))
print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if before else ""))
summary = []
for study, overrides, rounds in studies:
    speedups, costs, from_before = [], {mode: [] for mode in modes}, []
    for round in range(rounds):
        measured = {}  # mode -> (wall, fixed cost per run, runs)
        for mode in (modes if round % 2 == 0 else modes[::-1]):
            out = work / f"{study}-{round}-{mode}"
            options = [] if mode == "warm" else ["--executor-options", "warm=false"]
            command, env, cwd = [optbench], None, None
            if mode == "before":  # that commit's CLI, which had no warm workers; -m imports from cwd first
                command, options, cwd = [sys.executable, "-m", "experiments.cli"], [], before
                env = {**os.environ, "PYTHONPATH": before}
            start = time.perf_counter()
            subprocess.run([*command, "study", "run", study, f"out_dir={out}", *overrides, "--max-parallel", "2",
                            *options], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                           cwd=cwd)
            wall = time.perf_counter() - start
            trained = [json.loads(p.read_text())["wall_time_s"] for p in out.glob(f"{study}/*/summary.json")]
            measured[mode] = (wall, (2 * wall - sum(trained)) / len(trained), len(trained))
            costs[mode].append(measured[mode][1])
        warm, cold = measured["warm"], measured["cold"]
        speedups.append(cold[0] / warm[0])
        row = (f"| `{study}` ({warm[2]} runs) | {round + 1} | {warm[0]:.1f} s | {warm[1]:.2f} s | {cold[0]:.1f} s | "
               f"{cold[1]:.2f} s | {speedups[-1]:.2f}× |")
        if before:  # that commit's study may plan other runs: compare the wall time per run
            old = measured["before"]
            from_before.append((old[0] / old[2]) / (warm[0] / warm[2]))
            row += f" {old[2]}, {old[0]:.1f} s | {old[1]:.2f} s | {from_before[-1]:.2f}× |"
        print(row)
    summary.append(f"- `{study}`: warm workers **{statistics.median(speedups):.2f}×** faster (median of the rounds); "
                   f"fixed cost per run {statistics.median(costs['warm']):.2f} s warm, "
                   f"{statistics.median(costs['cold']):.2f} s cold"
                   + (f"; **{statistics.median(from_before):.2f}×** faster per run than the optbench before, whose fixed "
                      f"cost per run was {statistics.median(costs['before']):.2f} s." if before else "."))
print()
print("\n".join(summary))
PY
}

baselines_foreach() {  # the torch baselines' step time with foreach=true over torch's CPU default
    echo "**\`foreach\` for the torch baselines on a CPU.** The training step time (\`train_step_time_s\`) of"
    echo "AdamW and SGD with \`optimizer.foreach=true\` over torch's CPU default (one tensor at a time), 60"
    echo "steps, 1 thread, in one process; 5 rounds, each running both, alternating which goes first; the"
    echo "ratio per round, then the median (< 1: foreach is faster)."
    echo
    "$py" - "$work/foreach" <<'PY'
import statistics, sys
import torch
from experiments.config import load_config
from experiments.train import train
torch.set_num_threads(1)
tasks = [("vision (default size)", ["task=vision"]), ("vision tiny", ["task=vision", "size=tiny"]),
         ("lm tiny", ["task=lm", "size=tiny"]), ("asr tiny", ["task=asr", "size=tiny"])]
print("| optimizer | task | foreach / default, per round | median |")
print("|---|---|---|---:|")
for optimizer in ("adamw", "sgd"):
    for name, overrides in tasks:
        ratios = []
        for round in range(5):
            step = {}
            for foreach in ((False, True) if round % 2 == 0 else (True, False)):
                config = load_config([*overrides, f"optimizer.name={optimizer}", "trainer.max_steps=60",
                                      "trainer.val_every_n_steps=1000", f"out_dir={sys.argv[1]}",
                                      *(["optimizer.foreach=true"] if foreach else [])])
                step[foreach] = train(config, force=True)["train_step_time_s"]
            ratios.append(step[True] / step[False])
        print(f"| {optimizer} | {name} | {', '.join(f'{r:.2f}' for r in ratios)} | **{statistics.median(ratios):.2f}** |")
PY
}

section_bs_scaling_vision() {
    local took
    took=$(timed "$optbench" study run bs-scaling-vision out_dir="$work/runs" --max-parallel 2)
    echo "\`optbench study run bs-scaling-vision --max-parallel 2\`:" \
         "$(find "$work/runs/bs-scaling-vision" -name summary.json | wc -l) runs in $took."
    echo "Steps to 60% accuracy at each cell's selected point (its search run), by batch size:"
    echo
    "$optbench" study status "$work/runs/bs-scaling-vision" --json > "$work/status.json"
    "$py" - "$work/status.json" <<'PY'
import json, sys
cells = json.load(open(sys.argv[1]))["cells"]
batches = sorted({cell["cell"]["data.batch_size"] for cell in cells})
steps = {(cell["cell"]["optimizer.name"], cell["cell"]["data.batch_size"]): cell.get("steps_to_target") for cell in cells}
print("| optimizer | " + " | ".join(map(str, batches)) + " |\n|---" + "|---:" * len(batches) + "|")
for name in dict.fromkeys(cell["cell"]["optimizer.name"] for cell in cells):
    print(f"| {name} | " + " | ".join(str(steps.get((name, b)) or "not reached") for b in batches) + " |")
edge = sum(bool(cell.get("warning")) for cell in cells)
print(f"\n{edge} of {sum('selected' in cell for cell in cells)} selected points lie on the edge of the values tried,"
      " after extending each search past an edge up to search.extend times.")
PY
}

section_claims() {
    local study took
    echo "\`optbench study run NAME --max-parallel 2\`, one after the other, then \`optbench claims\` on both:"
    echo
    echo "| study | runs | wall time |"
    echo "|---|---:|---:|"
    for study in claims-lr claims-scaling; do
        took=$(timed "$optbench" study run "$study" out_dir="$work/runs" --max-parallel 2)
        echo "| \`$study\` | $(find "$work/runs/$study" -name summary.json | wc -l) | $took |"
    done
    "$optbench" claims "$work/runs/claims-lr" "$work/runs/claims-scaling" --out "$work/claims" --no-cache > /dev/null
    echo
    echo "The verdicts (tiny vision models: what these runs support, not what the papers found at scale):"
    echo
    cat "$work/claims/claims.md"
    write_block README.md claims "$work/claims/claims.md"
}

write_block() {  # PAGE NAME BODY_FILE: replace the text between PAGE's <!-- measure:begin NAME --> markers
    "$py" - "$1" "$2" "$(cat "$work/stamp")" "$3" <<'PY'
import pathlib, re, sys
page, name, stamp, body = sys.argv[1:]
begin, end = f"<!-- measure:begin {name} -->", f"<!-- measure:end {name} -->"
text = pathlib.Path(page).read_text()
pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
assert pattern.search(text), f"{page} has no {begin} block"
block = f"{begin}\n{stamp}\n\n{pathlib.Path(body).read_text().strip()}\n{end}"
pathlib.Path(page).write_text(pattern.sub(lambda _: block, text))
PY
}

write_section() {  # NAME BODY_FILE: replace the section's block in the page (or add it at the end)
    "$py" - "$page" "$1" "$(field "$1" 2)" "$(cat "$work/stamp")" "$2" <<'PY'
import pathlib, re, sys
page, name, title, stamp, body = sys.argv[1:]
begin, end = f"<!-- measure:begin {name} -->", f"<!-- measure:end {name} -->"
block = f"{begin}\n## {title}\n\n{stamp}\n\n{pathlib.Path(body).read_text().strip()}\n{end}"
text = pathlib.Path(page).read_text()
pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + f"\n\n{block}\n"
pathlib.Path(page).write_text(text)
PY
}

for name in "${requested[@]}"; do
    echo "measure.sh: $name ($(field "$name" 3))" >&2
    stamp "$name" > "$work/stamp"
    "section_${name//-/_}" > "$work/section.md"
    write_section "$name" "$work/section.md"
done
