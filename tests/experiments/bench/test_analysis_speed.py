"""``optbench bench analysis``: the pipeline timed stage by stage on a generated store."""

from __future__ import annotations

import re
import subprocess

from tests.experiments.support import REPO, optbench_command, subprocess_env

STAGES = ("generate the store", "naive read", "load, cold", "load, cached", "comparisons", "tables", "figures")


def test_bench_analysis_times_every_stage(tmp_path):
    """A small store: every stage gets a row with its seconds, the load rows their ratio to the
    naive read; --dir keeps the generated store, in the store's own layout."""
    result = subprocess.run([*optbench_command(), "bench", "analysis", "--runs", "8", "--steps", "100",
                             "--dir", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=REPO,
                            env={**subprocess_env(), "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for stage in STAGES:
        assert re.search(rf"│ {re.escape(stage)}[^│]*│\s+[0-9]+\.[0-9]+ │", result.stdout), (stage, result.stdout)
    assert re.search(r"load, cold.*[0-9.]+x naive \(goal <= 2\)", result.stdout)
    assert len(list((tmp_path / "store" / "bench").glob("*/summary.json"))) == 8
