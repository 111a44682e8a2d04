"""The run store: one directory per run, written so that a killed run loses nothing it logged.

```
<out_dir>/<study>/<run_id>/
  config.yaml     resolved config, written first
  meta.json       versions, git commit, host, device, start time
  metrics.jsonl   append-only rows {step, epoch, wall_time, <metric>: value, ...}, flushed per row
  layers.jsonl    append-only per-layer rows {step, layer, grad_norm, weight_norm, ...}
  summary.json    written atomically last: status, final/best metrics, steps_to_target, ...
  checkpoints/    last.ckpt, for resume
```
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

__all__ = ["RunStore", "STATUSES", "write_json_atomic", "collect_meta", "is_rank_zero", "finite_or_none"]

STATUSES = ("completed", "diverged", "failed", "interrupted")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` via a temporary file and ``os.replace``: never half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=_json_default)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def finite_or_none(value: Any) -> Optional[float]:
    """The number, or None for NaN/inf/non-numbers (JSON has no NaN)."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def is_rank_zero() -> bool:
    """Whether this process is the global rank 0 of a launch, before any process group exists:
    Lightning's DDP launcher, torchrun and SLURM's srun each set some of these variables."""
    return all(int(os.environ.get(name, 0)) == 0 for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"))


def collect_meta() -> dict[str, Any]:
    """Versions, git commit, host and device: enough to say where a number came from."""
    import torch

    def version(module: str) -> Optional[str]:
        try:
            return __import__(module).__version__
        except Exception:  # an optional package may be absent or broken: record that, go on
            return None

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "pytorch_lightning": version("pytorch_lightning"),
        "torchmetrics": version("torchmetrics"),
        "git_commit": commit,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(),
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    @property
    def last_checkpoint(self) -> Optional[Path]:
        path = self.checkpoints / "last.ckpt"
        return path if path.is_file() else None

    def summary(self) -> Optional[dict[str, Any]]:
        if not self.summary_path.is_file():
            return None
        return json.loads(self.summary_path.read_text())

    def status(self) -> Optional[str]:
        """The recorded status, or None for a run never finished (not started or killed)."""
        summary = self.summary()
        return summary["status"] if summary else None

    def is_finished(self) -> bool:
        """Completed and diverged runs are results; failed and interrupted ones are retried."""
        return self.status() in ("completed", "diverged")

    def begin(self, config_yaml: str, meta: dict[str, Any], resume: bool) -> None:
        """Create the directory; write config.yaml (first) and meta.json.

        The directory's name is the run_id, so a config.yaml already there describes the same
        run (it may differ in keys that do not change results, e.g. ``data.num_workers``): the
        first one is kept. On resume meta.json gains a restart entry.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.config_path.is_file():
            tmp = self.root / ".config.yaml.tmp"
            tmp.write_text(config_yaml)
            os.replace(tmp, self.config_path)
        meta_path = self.root / "meta.json"
        if resume and meta_path.is_file():
            previous = json.loads(meta_path.read_text())
            meta = {**previous, "restarts": previous.get("restarts", []) + [meta]}
        write_json_atomic(meta_path, meta)
        if self.summary_path.is_file():  # a failed/interrupted run being retried
            self.summary_path.unlink()

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (a resumed run logs them again from its checkpoint)."""
        for name in ("metrics.jsonl", "layers.jsonl"):
            path = self.root / name
            if not path.is_file():
                continue
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
            tmp = path.with_name(f".{name}.tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, path)

    def append(self, name: str, rows: Iterable[dict[str, Any]]) -> None:
        """Append rows to ``name`` (metrics.jsonl or layers.jsonl) and flush them to the OS."""
        with open(self.root / name, "a") as handle:
            for row in rows:
                handle.write(json.dumps(row, default=_json_default) + "\n")
            handle.flush()

    def rows(self, name: str = "metrics.jsonl") -> Iterator[dict[str, Any]]:
        path = self.root / name
        if path.is_file():
            for line in path.read_text().splitlines():
                if line:
                    yield json.loads(line)

    def finish(self, summary: dict[str, Any]) -> dict[str, Any]:
        if summary.get("status") not in STATUSES:
            raise ValueError(f"invalid run status {summary.get('status')!r} (valid: {', '.join(STATUSES)})")
        write_json_atomic(self.summary_path, summary)
        return summary
