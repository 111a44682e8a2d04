"""Per-tensor norms as the layer-wise optimizers need them: many tensors, one stacked result."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["stacked_norms", "stacked_sq_norms"]

_DOT_DTYPES = (torch.float32, torch.float64)


def stacked_sq_norms(tensors: list[Tensor]) -> Tensor:
    r""":math:`\lVert t \rVert_2^2 = \sum_i t_i^2` of each tensor, stacked into one 1-D tensor.

    float32 for float32 and lower-precision tensors (fp16 squares overflow past 256), float64
    when any tensor is float64 or complex128: a norm is never computed narrower than its tensor.
    A complex tensor's norm is its real view's, :math:`\sum_i |t_i|^2`.

    On the CPU a contiguous float32/float64 tensor's sum is ``torch.dot`` of its flat view with
    itself: the BLAS dot runs on all of torch's threads and accumulates in blocked partial sums,
    where ``torch._foreach_norm`` reduces each tensor on one thread in one float32 accumulator.
    The dot is faster (the optimizer benchmark's NovoGrad and LARC rows), and closer to a float64
    sum: within 1e-6 relative over 2M elements, where the norm's square is off by ~7e-5
    (``tests/optimizers/test_norms.py`` holds it to 1e-5). Elsewhere (GPUs, other dtypes, strided
    tensors) one multi-tensor ``torch._foreach_norm`` does it.
    """
    if not tensors:
        return torch.empty(0)
    tensors = [torch.view_as_real(t) if t.is_complex() else t for t in tensors]
    if all(t.device.type == "cpu" and t.dtype in _DOT_DTYPES and t.is_contiguous() for t in tensors):
        flat = [t.view(-1) for t in tensors]
        return torch.stack([torch.dot(f, f) for f in flat])  # stacking promotes to float64 if any is
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    return torch.stack(torch._foreach_norm(tensors, 2, dtype=dtype)).square_()


def stacked_norms(tensors: list[Tensor]) -> Tensor:
    """‖t‖₂ of each tensor, stacked (see ``stacked_sq_norms`` for dtypes and how it is summed)."""
    return stacked_sq_norms(tensors).sqrt_()
