#!/usr/bin/env bash
# Set up (if needed) with the `bench` extra (peer NovoGrad/LARS implementations) and run the
# optimizer step benchmark; arguments go to `optbench bench optimizers` (e.g. --small).
set -euo pipefail
cd "$(dirname "$0")/.."
OPTBENCH_EXTRAS=bench bash scripts/setup.sh
exec .venv/bin/optbench bench optimizers "$@"
