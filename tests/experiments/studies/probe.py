"""A command the warm-worker tests run as ``python -m tests.experiments.studies.probe ACTION ...``,
through the local executor, with or without a warm worker.

Actions, done in order:
- ``state``: print (one JSON line) the process state a run starts from: torch's default dtype,
  threads, seed, grad mode and determinism, the warning filters, Lightning's seed variable,
  ``__name__`` and ``sys.argv``, and who its parent is;
- ``leak``: change all of that, as a careless run would, and print the state again;
- ``kill``: end with SIGKILL; ``kill-parent``: SIGKILL its parent (a warm worker);
- ``sleep-pid FILE``: write its pid to FILE, then sleep (for ``kill-pid`` to kill);
- ``kill-pid FILE``: wait for FILE and SIGKILL the pid in it;
- ``exit N``: exit with status N.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import torch

# What a warm worker preloads, in its order (experiments.studies.warm_worker.PRELOAD): a new
# process of this module then starts from the same imports as a warm one.
import experiments.cli  # noqa: F401,E402
import experiments.commands  # noqa: F401,E402
import experiments.train  # noqa: F401,E402


def state() -> dict:
    return {
        "dtype": str(torch.get_default_dtype()),
        "threads": torch.get_num_threads(),
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "seed": torch.initial_seed(),
        "grad": torch.is_grad_enabled(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "filters": [str(f) for f in warnings.filters[:3]],
        "pl_seed": os.environ.get("PL_GLOBAL_SEED"),
        "leaked_module": "tests.experiments.studies.leaked" in sys.modules,
        "name": __name__,
        "argv": sys.argv[1:],
    }


def leak() -> None:
    import pytorch_lightning as pl

    pl.seed_everything(123, verbose=False)  # sets PL_GLOBAL_SEED and the torch seed
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(3)
    torch.set_grad_enabled(False)
    torch.use_deterministic_algorithms(True)
    warnings.simplefilter("error")
    sys.modules["tests.experiments.studies.leaked"] = sys.modules[__name__]


def main(argv: list[str]) -> None:
    actions = iter(argv)
    for action in actions:
        if action == "state":
            print(json.dumps({"state": state(), "ppid": os.getppid()}), flush=True)
        elif action == "leak":
            leak()
            print(json.dumps({"leaked": state()}), flush=True)
        elif action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "kill-parent":
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(30)
        elif action == "sleep-pid":
            Path(next(actions)).write_text(str(os.getpid()))
            time.sleep(30)
        elif action == "kill-pid":
            path = Path(next(actions))
            while not path.is_file() or not path.read_text():
                time.sleep(0.05)
            os.kill(int(path.read_text()), signal.SIGKILL)
        elif action == "exit":
            sys.exit(int(next(actions)))
        else:
            raise SystemExit(f"probe: unknown action {action!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
