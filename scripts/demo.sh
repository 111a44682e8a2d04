#!/usr/bin/env bash
# Set up (if needed) and run the main job: the optbench demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/optbench demo "$@"
