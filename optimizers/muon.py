"""Muon as it is used: ``torch.optim.Muon`` on a model's hidden weight matrices, AdamW on the rest.

Muon orthogonalises each matrix's momentum (Newton–Schulz iterations), which is meaningful for
the 2-D weights between hidden layers only; embeddings, the output layer, biases and norm
weights go to AdamW (Jordan et al., 2024). With ``adjust_lr_fn="match_rms_adamw"`` (Liu et al.,
2025, the default here) Muon's update has AdamW's RMS, so one learning rate serves both.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from .combined import CombinedOptimizer

__all__ = ["muon", "hidden_matrices"]


def hidden_matrices(model: nn.Module) -> list[Tensor]:
    """The 2-D parameters of ``model`` that are neither an embedding nor the output layer (the
    last ``nn.Linear`` registered): the weights Muon is meant for."""
    outside = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears:
        outside |= {id(p) for p in linears[-1].parameters()}
    return [p for p in model.parameters() if p.requires_grad and p.ndim == 2 and id(p) not in outside]


def muon(
    model: nn.Module,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_steps: int = 5,
    adjust_lr_fn: Optional[str] = "match_rms_adamw",
    adamw_betas: tuple[float, float] = (0.9, 0.95),
    adamw_eps: float = 1e-8,
) -> Optimizer:
    """``torch.optim.Muon`` over ``hidden_matrices(model)`` and ``torch.optim.AdamW`` (with
    ``adamw_betas``, ``adamw_eps``) over every other parameter, both at ``lr`` and
    ``weight_decay``, as one optimizer. A model without hidden matrices gets AdamW alone."""
    muon_class = getattr(torch.optim, "Muon", None)
    if muon_class is None:
        raise ValueError(f"torch {torch.__version__} has no torch.optim.Muon (torch >= 2.9 has)")
    matrices = hidden_matrices(model)
    chosen = {id(p) for p in matrices}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in chosen]
    optimizers: list[Optimizer] = []
    if matrices:
        optimizers.append(muon_class(matrices, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                                     ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn))
    if rest:
        optimizers.append(torch.optim.AdamW(rest, lr=lr, betas=adamw_betas, eps=adamw_eps, weight_decay=weight_decay))
    if not optimizers:
        raise ValueError("got no parameters that require gradients")
    return CombinedOptimizer(optimizers)
