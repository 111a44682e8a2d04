"""The value checks of the hyper-parameters torch's optimizers share by name (``lr``, ``betas``,
``eps``, ``weight_decay``, ``momentum``): one rule and one message each, in torch's words.

This package's optimizers check their arguments with them, and ``check_hyperparameters`` lets
a config be checked before any optimizer is built (building one costs the import of
``torch._dynamo``, over a second).
"""

from __future__ import annotations

from numbers import Real
from typing import Any, Callable, Mapping

from .learning_rate import check_lr

__all__ = ["check_hyperparameters", "check_eta"]


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _check_eps(eps: Any) -> None:
    if _is_number(eps) and not 0.0 <= eps:  # Adafactor's eps is a pair: its own business
        raise ValueError(f"Invalid epsilon value: {eps}")


def _check_betas(betas: Any) -> None:
    if isinstance(betas, (tuple, list)):
        for index, beta in enumerate(betas):
            if _is_number(beta) and not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {index}: {beta}")


def _check_weight_decay(weight_decay: Any) -> None:
    if _is_number(weight_decay) and not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


def _check_momentum(momentum: Any) -> None:
    if _is_number(momentum) and not 0.0 <= momentum:
        raise ValueError(f"Invalid momentum value: {momentum}")


def check_eta(eta: float) -> None:
    """The trust coefficient of LARS and LARC: a positive number."""
    if not eta > 0.0:
        raise ValueError(f"Invalid eta value: {eta} (must be > 0)")


_CHECKS: dict[str, Callable[[Any], None]] = {
    "lr": check_lr, "eps": _check_eps, "betas": _check_betas, "weight_decay": _check_weight_decay,
    "momentum": _check_momentum,
}


def check_hyperparameters(options: Mapping[str, Any]) -> None:
    """Raise torch's ``ValueError`` (``Invalid beta parameter at index 0: 1.5``) for the first of
    ``options`` that no ``torch.optim`` optimizer takes under that name; other names pass."""
    for name, value in options.items():
        check = _CHECKS.get(name)
        if check is not None and value is not None:
            check(value)
