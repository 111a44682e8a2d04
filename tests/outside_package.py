"""A user's optimizer package outside the repository, written by the tests that need one: a
``SignSGD`` class, two optimizers whose step ignores the closure, factories, and an installed distribution's metadata (a ``*.dist-info`` with
``entry_points.txt``, which ``importlib.metadata`` reads from any ``sys.path`` entry) that
registers the plugin ``signsgd`` in the group ``optbench.optimizers``."""

from __future__ import annotations

import textwrap
from pathlib import Path

PACKAGE = "signsgd_pkg"

SOURCE = '''\
"""A user's optimizers, outside optbench's repository."""
import torch
from torch.optim import Optimizer

__version__ = "{version}"


class SignSGD(Optimizer):
    """SignSGD with momentum: m <- momentum * m + g + weight_decay * w, w <- w - lr * sign(m)."""

    def __init__(self, params, lr=0.01, momentum={momentum}, weight_decay=0.0):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {{lr}}")
        if momentum > 1.0:
            raise ValueError(f"SignSGD wants momentum <= 1, got {{momentum}}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(p.grad).add_(p, alpha=group["weight_decay"])
                p.add_(buf.sign(), alpha=-group["lr"])
        return loss


class NoClosureSGD(Optimizer):
    """Plain SGD whose step ignores the closure it is given: Lightning cannot train with it."""

    def __init__(self, params, lr=0.01):
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])


class NoClosureArgument(NoClosureSGD):
    """The same with a step that takes no closure at all."""

    def step(self):
        super().step()


def one_group(model, lr=0.01, weight_decay=0.1):
    """A factory taking the model: SGD with every parameter in one decayed group."""
    return torch.optim.SGD([{{"params": list(model.parameters())}}], lr=lr, weight_decay=weight_decay)


def not_an_optimizer(params, lr=0.01):
    """A factory that returns something else."""
    return "not an optimizer"


HELPER = 3

try:  # the plugin's entry: optbench is importable wherever the plugin is used
    from optimizers import OptimInfo

    SIGNSGD = OptimInfo("signsgd", SignSGD, "SignSGD with momentum (a plugin)", defaults={{"momentum": 0.8}})
except ImportError:
    SIGNSGD = None
'''


def write_user_package(root: Path, *, version: str = "1.0", momentum: float = 0.9, metadata: bool = True) -> Path:
    """Write ``signsgd_pkg`` (``__version__`` = ``version``, SignSGD's default ``momentum``) into
    ``root`` and, with ``metadata``, its distribution's ``signsgd_pkg-<version>.dist-info``
    registering the plugin ``signsgd``. Returns ``root``, the directory to put on ``sys.path``."""
    package = root / PACKAGE
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(SOURCE.format(version=version, momentum=momentum))
    if metadata:
        info = root / f"{PACKAGE}-{version}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(textwrap.dedent(f"""\
            [optbench.optimizers]
            signsgd = {PACKAGE}:SIGNSGD
        """))
    return root
