"""A short training demo: every optimizer family on one small classification problem.

A stand-in until the study demo (a small study on all three tasks, with a report) exists: it
needs only torch and runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn

from optimizers import build_optimizer

__all__ = ["DEMO_OPTIMIZERS", "DemoResult", "make_blobs", "train_one", "run_demo"]

# Learning rates that suit this problem for each family (found by a coarse sweep).
DEMO_OPTIMIZERS: dict[str, dict[str, float]] = {
    "sgd": {"lr": 0.1},
    "sgd_nesterov": {"lr": 0.1},
    "adam": {"lr": 3e-3},
    "adamw": {"lr": 3e-3},
    "novograd": {"lr": 0.02},
    "lars": {"lr": 2.0},
    "larc_sgd": {"lr": 0.1},
    "larc_novograd": {"lr": 0.02},
}


@dataclass
class DemoResult:
    optimizer: str
    lr: float
    first_loss: float
    final_loss: float
    val_accuracy: float
    seconds: float


def make_blobs(n: int, generator: torch.Generator, classes: int = 10, dim: int = 32) -> tuple[Tensor, Tensor]:
    """Overlapping Gaussian classes pushed through a fixed random nonlinearity (not separable)."""
    centers = torch.randn(classes, dim, generator=torch.Generator().manual_seed(1234)) * 0.35
    labels = torch.randint(0, classes, (n,), generator=generator)
    points = centers[labels] + torch.randn(n, dim, generator=generator)
    return torch.tanh(points) + 0.1 * points, labels


def train_one(name: str, lr: float, steps: int, batch_size: int = 128, seed: int = 0) -> DemoResult:
    """Train a small MLP with optimizer ``name`` for ``steps`` steps; report loss and accuracy."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train = make_blobs(4096, generator)
    x_val, y_val = make_blobs(1024, generator)
    model = nn.Sequential(nn.Linear(32, 128), nn.LayerNorm(128), nn.GELU(), nn.Linear(128, 10))
    optimizer = build_optimizer(name, model, lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    first = None
    for step in range(steps):
        index = torch.randint(0, len(x_train), (batch_size,), generator=generator)
        optimizer.zero_grad()
        loss = loss_fn(model(x_train[index]), y_train[index])
        loss.backward()
        optimizer.step()
        first = loss.item() if first is None else first
    with torch.no_grad():
        accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
    return DemoResult(name, lr, first, loss.item(), accuracy, time.perf_counter() - start)


def run_demo(steps: int = 300, console: Console | None = None) -> list[DemoResult]:
    """Train with every demo optimizer and print a comparison table."""
    console = console or Console()
    results = []
    for name, options in DEMO_OPTIMIZERS.items():
        with console.status(f"training with {name}"):
            results.append(train_one(name, options["lr"], steps))
    table = Table(title=f"optbench demo: MLP on 10 noisy Gaussian classes, {steps} steps, batch 128")
    for column in ("optimizer", "lr", "first loss", "final loss", "val acc", "seconds"):
        table.add_column(column, justify="left" if column == "optimizer" else "right")
    for r in results:
        table.add_row(r.optimizer, f"{r.lr:g}", f"{r.first_loss:.3f}", f"{r.final_loss:.3f}",
                      f"{r.val_accuracy:.3f}", f"{r.seconds:.1f}")
    console.print(table)
    return results
