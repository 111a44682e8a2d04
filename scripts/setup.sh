#!/usr/bin/env bash
# Idempotent setup: create .venv if missing and install optbench editable with the dev extra
# (plus OPTBENCH_EXTRAS, comma-separated, e.g. "bench"). Re-installs when pyproject.toml changes.
# OPTBENCH_TORCH is the torch requirement installed first: by default the CPU build these
# machines carry (torch==2.13.0); on a GPU machine set e.g. OPTBENCH_TORCH=torch.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
extras="dev${OPTBENCH_EXTRAS:+,$OPTBENCH_EXTRAS}"
stamp=".venv/.installed-${extras//,/-}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing optbench[$extras] into .venv" >&2
    pip() { .venv/bin/python -m pip -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
    pip install --upgrade pip
    pip install "${OPTBENCH_TORCH:-torch==2.13.0}"
    pip install -e ".[$extras]"
    touch "$stamp"
fi
