#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite; extra arguments go to pytest
# (e.g. `scripts/test.sh -m "not slow"` for the quick subset).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
