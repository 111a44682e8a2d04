#!/usr/bin/env bash
# What NovoGrad, AdamW and SGD reach on each built-in task (default size) within a CPU budget of
# about five minutes per run, one learning rate each (not tuned per task beyond a guess): the
# "task budgets" of docs/measurements.md. Runs land in OUT_DIR/task-budgets/ (default: runs/).
# Usage: scripts/task_budgets.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir="${1:-runs}"
bash scripts/setup.sh
run() {  # task steps warmup optimizer lr
    .venv/bin/optbench train task="$1" trainer.max_steps="$2" schedule.warmup_steps="$3" \
        optimizer.name="$4" optimizer.lr="$5" trainer.val_every_n_steps=100 study=task-budgets \
        out_dir="$out_dir" "${@:6}"
}
for spec in "novograd 0.02" "adamw 0.003" "sgd 0.1"; do run vision 1500 75 $spec; done
for spec in "novograd 0.02" "adamw 0.003" "sgd 0.05"; do run asr 1500 75 $spec data.batch_size=32; done
for spec in "novograd 0.01" "adamw 0.003" "sgd 0.3"; do run lm 500 25 $spec; done
.venv/bin/python - "$out_dir" <<'PY'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1], "task-budgets").glob("*/summary.json")):
    s = json.loads(path.read_text())
    print(f"{s['task']:7s} {s['optimizer']:9s} lr={s['lr']:<6g} steps={s['global_step']:5d} "
          f"{s['metric']} best={s['best'][s['metric']]:.4f} steps_to_target({s['target']})={s['steps_to_target']} "
          f"wall={s['wall_time_s']:.0f}s {s['throughput_samples_per_s']:.0f} samples/s status={s['status']}")
PY
