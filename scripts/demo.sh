#!/usr/bin/env bash
# Set up (if needed) and run the main job: the demo study (NovoGrad, AdamW, SGD, LARC-SGD on all
# three tasks, a batch-size slice on vision) into runs/demo/, then its report in report/demo/.
# Arguments go to `optbench demo` (e.g. out_dir=elsewhere --max-parallel 1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/optbench demo "$@"
