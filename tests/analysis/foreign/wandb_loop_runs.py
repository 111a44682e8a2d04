"""Foreign runs as a bare training loop writes them (never imports optbench): ``wandb.init(config=...)``
with the loop's own names for its hyper-parameters, then ``wandb.log({...}, step=step)``.

    python wandb_loop_runs.py OUT_DIR TRUTH.json

Writes one offline run per (optimizer, learning rate, seed) into OUT_DIR/wandb/: a loss every 5
steps and an accuracy ("accuracy/val") every 10, from a made-up curve that rises faster with the
learning rate. TRUTH.json holds, per wandb run id, the config and every (step, accuracy/val)
logged.
"""

import json
import math
import random
import sys
from pathlib import Path

import wandb

RUNS = [("momentum", 0.1, 1), ("momentum", 0.3, 1), ("rmsprop", 0.01, 1), ("rmsprop", 0.03, 1)]
STEPS = 100


def main(out: Path, truth_path: Path) -> None:
    truth = {}
    for opt, learning_rate, seed in RUNS:
        rng = random.Random(seed)
        config = {"opt": opt, "learning_rate": learning_rate, "bs": 32, "seed": seed, "model": {"width": 16}}
        run = wandb.init(project="foreign-loop", group="sweep", tags=["loop", opt], config=config, dir=str(out))
        accuracy = []
        for step in range(0, STEPS + 1, 5):
            logged = {"loss": math.exp(-learning_rate * step / 10) + rng.random() * 0.01}
            if step % 10 == 0:
                logged["accuracy/val"] = 1 - logged["loss"]
                accuracy.append((step, logged["accuracy/val"]))
            wandb.log(logged, step=step)
        truth[run.id] = {"config": config, "accuracy/val": accuracy}
        run.finish()
    truth_path.write_text(json.dumps(truth))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
