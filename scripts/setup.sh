#!/usr/bin/env bash
# Idempotent setup: create .venv if missing and install optbench editable with dev extras.
# OPTBENCH_TORCH overrides the torch requirement installed first (default: the CPU build
# torch==2.13.0 that these machines carry; on a GPU box set e.g. OPTBENCH_TORCH=torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.optbench-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q "${OPTBENCH_TORCH:-torch==2.13.0}"
    .venv/bin/python -m pip install -q -e ".[dev${OPTBENCH_EXTRAS:+,$OPTBENCH_EXTRAS}]"
    touch "$stamp"
fi
