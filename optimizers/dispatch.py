"""Which implementation an optimizer step runs: the fastest correct one for the device and dtype.

The rule, for ``fused`` and ``foreach`` as the optimizers take them (None = not set):

========================================  ==============================================
``foreach=True``, or ``fused=False``        ``foreach``
``foreach=False`` (fused not True)          ``single``: the readable reference
CUDA, float32/bfloat16/float16, contiguous  ``triton``: the multi-tensor Triton kernels
CPU float32, ``fused=True``                 ``cpu_kernel`` where one exists and builds
``fused=True`` otherwise                    ``compiled`` where the optimizer has it, else ``foreach``
CPU float32, contiguous, neither set        ``sgd_kernel`` where the optimizer has it
anything else (float64, say)                ``foreach``
========================================  ==============================================

``fused=True`` wins over ``foreach=False``, as in ``torch.optim`` (whose tests spell the fused
configuration ``foreach=False, fused=True``); both True is refused when the optimizer is built.

Where a fast path was expected but is unavailable (CUDA without an importable Triton, ``fused=True``
without a kernel for the tensors) the step warns once, in one line, saying why. The CPU default
is not the C++ kernel: that costs a ~20 s compiler run the first time on every machine and needs
a compiler, and a default must not depend on whether a build succeeded. It is ``sgd_kernel``
where the optimizer can write its step as SGD's momentum step with per-tensor coefficients
(NovoGrad; LARC over SGD): torch's own fused SGD kernel (``torch._fused_sgd_``, built into every
torch wheel), one call per tensor with that tensor's coefficients, which reads and writes each
value once where the ``foreach`` ops take a pass each. Elsewhere it is ``foreach``.

``OPTBENCH_TRITON_ON_CPU=1`` (with ``TRITON_INTERPRET=1`` set before ``triton`` is imported) makes
CPU tensors take the ``triton`` path in Triton's interpreter: how the kernels are tested here.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

__all__ = ["PATHS", "check_fused", "choose", "implementation", "sgd_kernel_tensors", "triton_importable"]

PATHS = ("triton", "cpu_kernel", "compiled", "sgd_kernel", "foreach", "single")
_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_FUSED_DEVICES = ("cpu", "cuda")


@functools.cache
def triton_importable() -> bool:
    """Whether ``triton`` imports here (it ships with torch's CUDA wheels on Linux)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _triton_on_cpu() -> bool:
    return os.environ.get("OPTBENCH_TRITON_ON_CPU") == "1" and os.environ.get("TRITON_INTERPRET") == "1"


def choose(
    device: str,
    kernel_tensors: bool,
    *,
    fused: Optional[bool],
    foreach: Optional[bool],
    triton: bool,
    triton_on_cpu: bool = False,
    cpu_kernel: bool = False,
    compiled: bool = False,
    sgd_kernel: bool = False,
) -> tuple[str, Optional[str]]:
    """The path (one of ``PATHS``) and, where a fast path was expected but is not taken, why.

    ``device``: the tensors' device type; ``kernel_tensors``: all float32/bfloat16/float16 and
    contiguous; ``triton``: Triton imports; ``cpu_kernel``: a C++ kernel exists for these tensors
    (float32 CPU) and builds; ``compiled``: the optimizer has a ``torch.compile`` fallback;
    ``sgd_kernel``: the optimizer can step these tensors (float32 CPU, contiguous) through torch's
    fused SGD kernel.
    """
    if not fused:
        if foreach is False:
            return "single", None
        if foreach or fused is False:
            return "foreach", None
    triton_device = device == "cuda" or (device == "cpu" and triton_on_cpu)
    if triton_device and kernel_tensors and triton:
        return "triton", None
    if device == "cpu" and fused and cpu_kernel:
        return "cpu_kernel", None
    if device == "cpu" and fused is None and foreach is None and sgd_kernel:
        return "sgd_kernel", None
    why = None
    if triton_device and kernel_tensors:
        why = "triton is not importable"
    elif fused:
        why = f"no fused kernel for these tensors ({device}, or a dtype/layout the kernels do not take)"
    if fused and compiled:
        return "compiled", (f"{why}: using the torch.compile path" if why else None)
    return "foreach", (f"{why}: using the foreach path" if why else None)


def sgd_kernel_tensors(tensors: Sequence[Tensor]) -> bool:
    """Whether torch's fused SGD kernel can step these tensors: float32 CPU and contiguous (the
    CPU kernel walks raw pointers as if every tensor were contiguous), none sparse."""
    return hasattr(torch, "_fused_sgd_") and all(
        t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() and not t.is_sparse
        for t in tensors
    )


def check_fused(tensors: Sequence[Tensor]) -> None:
    """torch's ``RuntimeError`` where ``fused=True`` meets a device without a fused path (``meta``,
    say); optimizers ask before they make any state, so that the tensors can move and step."""
    devices = {t.device.type for t in tensors}
    if not devices <= set(_FUSED_DEVICES):
        raise RuntimeError(
            f"`fused=True` requires all the params to be floating point Tensors of supported devices: "
            f"{list(_FUSED_DEVICES)} (got {', '.join(sorted(devices))})"
        )


def implementation(
    tensors: Sequence[Tensor],
    *,
    fused: Optional[bool],
    foreach: Optional[bool],
    cpu_kernel: Optional[Callable[[], bool]] = None,
    compiled: bool = False,
    sgd_kernel: bool = False,
    name: str = "optimizer",
    warn: bool = True,
) -> str:
    """``choose`` for these tensors (all on one device), warning (unless ``warn=False``) where it
    says why. ``sgd_kernel``: the optimizer has that path for these options (the tensors' part of
    the condition is checked here).

    ``cpu_kernel`` is asked only where the rule would take that path (it may build the kernel).
    ``fused=True`` on another device than the CPU or CUDA (``meta``, say) raises torch's error.
    """
    device = tensors[0].device.type if tensors else "cpu"
    if fused:
        check_fused(tensors)
    kernel_tensors = all(t.dtype in _KERNEL_DTYPES and t.is_contiguous() and not t.is_sparse for t in tensors)
    wants_cpu_kernel = device == "cpu" and bool(fused) and cpu_kernel is not None
    path, why = choose(
        device, kernel_tensors, fused=fused, foreach=foreach,
        triton=(device == "cuda" or _triton_on_cpu()) and triton_importable(),
        triton_on_cpu=_triton_on_cpu(),
        cpu_kernel=wants_cpu_kernel and not _triton_on_cpu() and cpu_kernel(),
        compiled=compiled,
        sgd_kernel=sgd_kernel and sgd_kernel_tensors(tensors),
    )
    if why and warn:
        warnings.warn(f"{name}: {why}", UserWarning, stacklevel=3)
    return path
