"""Per-tensor norms as the layer-wise optimizers need them: many tensors, one stacked result."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["stacked_norms"]


def stacked_norms(tensors: list[Tensor]) -> Tensor:
    """‖t‖₂ of each tensor, stacked into one 1-D tensor by one multi-tensor reduction.

    float32 for float32 and lower-precision tensors (fp16 squares overflow past 256), float64
    when any tensor is float64 or complex128: a norm is never computed narrower than its tensor.
    A complex tensor's norm is its real view's, √Σ|tᵢ|².
    """
    tensors = [torch.view_as_real(t) if t.is_complex() else t for t in tensors]
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    return torch.stack(torch._foreach_norm(tensors, 2, dtype=dtype))
