"""Benchmarks behind ``optbench bench``: the optimizer step (``optimizer_steps``), the harness
against a bare loop (``harness``) and the analysis pipeline (``analysis_speed``). Each prints
ratios measured side by side in one process; ``commands`` holds the three commands."""
