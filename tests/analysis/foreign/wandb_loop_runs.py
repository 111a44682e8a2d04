"""Foreign runs as a bare training loop writes them (never imports optbench): ``wandb.init(config=...)``
with the loop's own names for its hyper-parameters, then ``wandb.log({...}, step=step)``.

    python wandb_loop_runs.py OUT_DIR TRUTH.json

Writes one offline run per (optimizer, learning rate, seed) into OUT_DIR/wandb/: a loss every 5
steps and an accuracy ("accuracy/val") every 10, from a made-up curve that rises faster with the
learning rate; and one more, named "counted", that logs without step= (wandb's _step then counts
its log calls, and nothing says which optimizer step each row was). TRUTH.json holds, per wandb
run id, the config and every (step, accuracy/val) logged (for "counted", the _step wandb gives).
"""

import json
import math
import random
import sys
from pathlib import Path

import wandb

RUNS = [("momentum", 0.1, 1, None), ("momentum", 0.3, 1, None), ("rmsprop", 0.01, 1, None),
        ("rmsprop", 0.03, 1, None), ("momentum", 0.2, 2, "counted")]
STEPS = 100


def main(out: Path, truth_path: Path) -> None:
    truth = {}
    for opt, learning_rate, seed, name in RUNS:
        rng = random.Random(seed)
        config = {"opt": opt, "learning_rate": learning_rate, "bs": 32, "seed": seed, "model": {"width": 16}}
        run = wandb.init(project="foreign-loop", group="sweep", tags=["loop", opt], name=name, config=config,
                         dir=str(out))
        accuracy = []
        for calls, step in enumerate(range(0, STEPS + 1, 5)):
            logged = {"loss": math.exp(-learning_rate * step / 10) + rng.random() * 0.01}
            if step % 10 == 0:
                logged["accuracy/val"] = 1 - logged["loss"]
                accuracy.append((step if name is None else calls, logged["accuracy/val"]))
            if name is None:
                wandb.log(logged, step=step)
            else:
                wandb.log(logged)
        truth[run.id] = {"name": name, "config": config, "accuracy/val": accuracy}
        run.finish()
    truth_path.write_text(json.dumps(truth))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
