"""Multi-tensor Triton kernels: NovoGrad (LARC's factor folded in), LARS, and LARC over SGD.

The design is apex's ``multi_tensor_apply``, written anew in Triton. Every tensor of a call is
cut into chunks of ``CHUNK`` values, and one packed int64 table on the device names, per tensor,
the addresses of its weight, gradient and state and its size, and per chunk its tensor and
index; so each pass over all tensors of a parameter group is one launch, whatever their number:

1. ``_chunk_sq_norms`` (one program per chunk): partial sums Σg² (and Σw² where a layer-wise
   factor needs ‖w‖), in float32.
2. ``_tensor_coefficients`` (one program per tensor): adds its chunks' partial sums, computes the
   layer factor (LARC clip/scale, LARS trust ratio) and, for NovoGrad, updates v (and its max)
   and turns it into the element-wise update's per-tensor coefficients.
3. ``_novograd_update`` / ``_momentum_update`` (one program per chunk): the element-wise update,
   reading g, w and the state once and writing w and the state once.

So a NovoGrad step moves about 24 bytes per float32 value (g twice, w and m read and written),
the same passes as the fused CPU kernel. Nothing is read back to the host: ``step()`` never
synchronises. Kernels compile once per signature (dtypes, flags), never per tensor list.
Weights may be float32, bfloat16 or float16; the arithmetic and NovoGrad's state are float32.
A learning rate given as a tensor on the tensors' device is read by the kernels from memory
(``LR_IN_MEMORY``), as compiled training loops and CUDA-graph capture pass it.

Where ``TRITON_INTERPRET=1`` was set before ``triton`` was imported, the same kernels run on CPU
tensors in Triton's interpreter (how they are tested without a GPU).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["CHUNK", "LAYER_RULES", "dtype_groups", "novograd_step", "momentum_step"]

CHUNK = 16384  # values per program of the chunked passes
_BLOCK = 1024  # values per iteration inside a chunk
_PARTIALS_BLOCK = 128  # partial sums added per iteration in the per-tensor pass

# Columns of the per-tensor table (the kernels index them by number): 0 w's address, 1 g's,
# 2 the moment's (m, or the momentum buffer: 0 if none), 3 v's (NovoGrad) or the first-step flag
# (SGD), 4 max v's (NovoGrad with amsgrad, else 0), 5 the value count, 6 where the tensor's chunks
# start in the chunk table, 7 how many there are. A chunk row is (tensor, chunk index), padded.
_COLUMNS = 8

# Layer factor rules (constexpr RULE): none, LARC clip, LARC scale, LARS trust ratio.
LAYER_RULES = {"none": 0, "clip": 1, "scale": 2, "lars": 3}

_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


def dtype_groups(*tensor_lists: Optional[Sequence[Tensor]]) -> list[list[int]]:
    """Indices of the tensors, grouped so that within a group every list has one dtype (a
    launch takes one dtype per operand; a model usually gives one group)."""
    groups: dict[tuple, list[int]] = {}
    for i in range(len(tensor_lists[0])):
        key = tuple(tensors[i].dtype for tensors in tensor_lists if tensors is not None)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


# --- kernels ---------------------------------------------------------------------------------


@triton.jit
def _chunk_prologue(table, chunks, W_DTYPE: tl.constexpr, G_DTYPE: tl.constexpr,
                    CHUNK: tl.constexpr):
    """What every per-chunk kernel starts from: this program's chunk c, its tensor t, that
    tensor's table row (columns as described at ``_COLUMNS``), the chunk's first value index, the
    tensor's value count n, and w's and g's addresses as pointers of their dtypes."""
    c = tl.program_id(0)
    t = tl.load(chunks + 2 * c)
    start = tl.load(chunks + 2 * c + 1) * CHUNK
    row = table + t * 8
    n = tl.load(row + 5)
    w_ptr = tl.load(row + 0).to(tl.pointer_type(W_DTYPE))
    g_ptr = tl.load(row + 1).to(tl.pointer_type(G_DTYPE))
    return c, t, row, start, n, w_ptr, g_ptr


@triton.jit
def _chunk_sq_norms(table, chunks, partials, n_chunks_total, W_DTYPE: tl.constexpr,
                    G_DTYPE: tl.constexpr, WITH_W: tl.constexpr, CHUNK: tl.constexpr,
                    BLOCK: tl.constexpr):
    """partials[c] = Σ g² over chunk c; partials[n_chunks_total + c] = Σ w² (if WITH_W)."""
    c, _, _, start, n, w_ptr, g_ptr = _chunk_prologue(table, chunks, W_DTYPE, G_DTYPE, CHUNK)
    offsets = tl.arange(0, BLOCK)
    g_acc = tl.zeros([BLOCK], dtype=tl.float32)
    w_acc = tl.zeros([BLOCK], dtype=tl.float32)
    for off in range(0, CHUNK, BLOCK):
        idx = start + off + offsets
        mask = idx < n
        g = tl.load(g_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        g_acc += g * g
        if WITH_W:
            w = tl.load(w_ptr + idx, mask=mask, other=0.0).to(tl.float32)
            w_acc += w * w
    tl.store(partials + c, tl.sum(g_acc, axis=0))
    if WITH_W:
        tl.store(partials + n_chunks_total + c, tl.sum(w_acc, axis=0))


@triton.jit
def _load_lr(lr, LR_IN_MEMORY: tl.constexpr):
    """The learning rate: an argument, or read from the 1-element tensor it points to."""
    if LR_IN_MEMORY:
        value = tl.load(lr).to(tl.float32)
    else:
        value = lr
    return value


@triton.jit
def _sum_partials(values, count, PARTIALS_BLOCK: tl.constexpr):
    """Σ values[0:count] in float32, PARTIALS_BLOCK at a time (one tensor's chunk partial sums)."""
    offsets = tl.arange(0, PARTIALS_BLOCK)
    acc = tl.zeros([PARTIALS_BLOCK], dtype=tl.float32)
    for j in range(0, count, PARTIALS_BLOCK):
        acc += tl.load(values + j + offsets, mask=j + offsets < count, other=0.0)
    return tl.sum(acc, axis=0)


@triton.jit
def _tensor_coefficients(
    table, partials, n_chunks_total, given_sq, given_scales, out,
    lr, beta2_t, beta3, bias_correction1, bias_correction2, eps, weight_decay,
    eta, factor_eps, min_update,
    RULE: tl.constexpr, NOVOGRAD: tl.constexpr, GIVEN_SQ: tl.constexpr, GIVEN_SCALES: tl.constexpr,
    AMSGRAD: tl.constexpr, EPS_INSIDE_SQRT: tl.constexpr, REG_INSIDE_MOMENT: tl.constexpr,
    LR_IN_MEMORY: tl.constexpr, PARTIALS_BLOCK: tl.constexpr,
):
    """Per tensor t: ‖g‖² and ‖w‖² from the partial sums, the layer factor f (1 if RULE is 0, or
    where a norm is 0), then out[4t:4t+4]:

    - NovoGrad: v ← β2ₜ v + (1−β2ₜ) f²‖g‖² (stored, and its max with AMSGRAD), d = √v̂ + ε (or
      √(v̂+ε)); paper mode (c_g, c_w, step, decay) = (β3 f / d, β3 λ, α / b1, 0), decoupled mode
      (β3 f, 0, α / (b1 d), α λ), for m ← β1 m + c_g g + c_w w, w ← w − step·m − decay·w.
    - otherwise out[4t] = f.
    """
    t = tl.program_id(0)
    row = table + t * 8
    first = tl.load(row + 6)
    count = tl.load(row + 7)
    lr = _load_lr(lr, LR_IN_MEMORY)
    if GIVEN_SQ:
        g_sq = tl.load(given_sq + t).to(tl.float32)
    else:
        g_sq = _sum_partials(partials + first, count, PARTIALS_BLOCK)
    factor = 1.0
    if GIVEN_SCALES:
        factor = tl.load(given_scales + t).to(tl.float32)
    if RULE != 0:
        w_norm = tl.sqrt(_sum_partials(partials + n_chunks_total + first, count, PARTIALS_BLOCK))
        g_norm = tl.sqrt(g_sq)
        if RULE == 3:  # LARS: η‖w‖ / (‖g‖ + β‖w‖ + ε)
            ratio = eta * w_norm / (g_norm + weight_decay * w_norm + factor_eps)
        else:  # LARC: η‖w‖ / (‖g‖ + ε), divided by the rate in clip mode
            ratio = eta * w_norm / (g_norm + factor_eps)
        if RULE == 1:  # clip: min(1, max(ratio/γ, min_update)); γ = 0 gives 1
            ratio = tl.where(ratio >= lr, 1.0, tl.maximum(ratio / lr, min_update))
        if RULE == 2:
            ratio = tl.maximum(ratio, min_update)
        factor = tl.where((w_norm > 0) & (g_norm > 0), ratio, 1.0)
    if NOVOGRAD:
        v_ptr = tl.load(row + 3).to(tl.pointer_type(tl.float32))
        v = beta2_t * tl.load(v_ptr) + (1.0 - beta2_t) * (g_sq * factor * factor)
        tl.store(v_ptr, v)
        if AMSGRAD:
            v_max_ptr = tl.load(row + 4).to(tl.pointer_type(tl.float32))
            v = tl.maximum(tl.load(v_max_ptr), v)
            tl.store(v_max_ptr, v)
        v_hat = v / bias_correction2
        if EPS_INSIDE_SQRT:
            denom = tl.sqrt(v_hat + eps)
        else:
            denom = tl.sqrt(v_hat) + eps
        if REG_INSIDE_MOMENT:
            tl.store(out + 4 * t, beta3 * factor / denom)
            tl.store(out + 4 * t + 1, beta3 * weight_decay)
            tl.store(out + 4 * t + 2, lr / bias_correction1)
            tl.store(out + 4 * t + 3, 0.0)
        else:
            tl.store(out + 4 * t, beta3 * factor)
            tl.store(out + 4 * t + 1, 0.0)
            tl.store(out + 4 * t + 2, lr / (bias_correction1 * denom))
            tl.store(out + 4 * t + 3, lr * weight_decay)
    else:
        tl.store(out + 4 * t, factor)


@triton.jit
def _novograd_update(table, chunks, coefficients, beta1, W_DTYPE: tl.constexpr,
                     G_DTYPE: tl.constexpr, CHUNK: tl.constexpr, BLOCK: tl.constexpr):
    """m ← β1 m + c_g g + c_w w; w ← w − step·m − decay·w, with the tensor's coefficients."""
    _, t, row, start, n, w_ptr, g_ptr = _chunk_prologue(table, chunks, W_DTYPE, G_DTYPE, CHUNK)
    m_ptr = tl.load(row + 2).to(tl.pointer_type(tl.float32))
    c_g = tl.load(coefficients + 4 * t)
    c_w = tl.load(coefficients + 4 * t + 1)
    step = tl.load(coefficients + 4 * t + 2)
    decay = tl.load(coefficients + 4 * t + 3)
    offsets = tl.arange(0, BLOCK)
    for off in range(0, CHUNK, BLOCK):
        idx = start + off + offsets
        mask = idx < n
        g = tl.load(g_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        m = beta1 * tl.load(m_ptr + idx, mask=mask, other=0.0) + c_g * g + c_w * w
        tl.store(m_ptr + idx, m, mask=mask)
        tl.store(w_ptr + idx, (w - step * m - decay * w).to(W_DTYPE), mask=mask)


@triton.jit
def _momentum_update(table, chunks, factors, lr, momentum, buffer_rate, weight_decay,
                     W_DTYPE: tl.constexpr, G_DTYPE: tl.constexpr, B_DTYPE: tl.constexpr,
                     HAS_FACTORS: tl.constexpr, FACTOR_ON_GRAD: tl.constexpr,
                     HAS_MOMENTUM: tl.constexpr, NESTEROV: tl.constexpr, LR_ON_BUFFER: tl.constexpr,
                     LR_IN_MEMORY: tl.constexpr, CHUNK: tl.constexpr, BLOCK: tl.constexpr):
    """SGD-family update with a per-tensor factor f and rate γ: d = f_g·g + λw, where f_g = f if
    FACTOR_ON_GRAD (LARC) else 1; buf ← d on a tensor's first step (SGD), else μ buf + a·d with
    a = buffer_rate, times f if the factor is on the step (LARS) and times γ if LR_ON_BUFFER
    (LARS); w ← w − s·(d + μ buf if NESTEROV else buf), or w − s·d without momentum, with
    s = 1 if LR_ON_BUFFER else γ (SGD)."""
    _, t, row, start, n, w_ptr, g_ptr = _chunk_prologue(table, chunks, W_DTYPE, G_DTYPE, CHUNK)
    b_ptr = tl.load(row + 2).to(tl.pointer_type(B_DTYPE))
    is_first = tl.load(row + 3) != 0
    lr = _load_lr(lr, LR_IN_MEMORY)
    grad_factor = 1.0
    rate = buffer_rate
    step_rate = lr
    if LR_ON_BUFFER:
        rate = buffer_rate * lr
        step_rate = 1.0
    if HAS_FACTORS:
        f = tl.load(factors + 4 * t)
        if FACTOR_ON_GRAD:
            grad_factor = f
        else:
            rate = rate * f
    offsets = tl.arange(0, BLOCK)
    for off in range(0, CHUNK, BLOCK):
        idx = start + off + offsets
        mask = idx < n
        g = tl.load(g_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        d = grad_factor * g + weight_decay * w
        if HAS_MOMENTUM:
            old = tl.load(b_ptr + idx, mask=mask, other=0.0).to(tl.float32)
            buf = tl.where(is_first, d, momentum * old + rate * d)
            buf = buf.to(B_DTYPE)  # the stored value is what later steps and Nesterov read
            tl.store(b_ptr + idx, buf, mask=mask)
            buf = buf.to(tl.float32)
            if NESTEROV:
                d = d + momentum * buf
            else:
                d = buf
        tl.store(w_ptr + idx, (w - step_rate * d).to(W_DTYPE), mask=mask)


# --- host side -------------------------------------------------------------------------------


@dataclass
class _Tables:
    """The device tables of one tensor list, and scratch buffers sized for it."""

    table: Tensor  # [T, 8] int64
    chunks: Tensor  # [C, 2] int64: tensor index, chunk index within the tensor
    n_chunks: int
    partials: Tensor  # [2C] float32
    coefficients: Tensor  # [4T] float32


_cache: dict[tuple, _Tables] = {}
_CACHE_SIZE = 16


def _tables(columns: Sequence[Sequence[int]], numels: Sequence[int], device: torch.device) -> _Tables:
    """Build (or reuse) the tables for tensors whose per-column addresses are ``columns``.

    Keyed by every address and size, so a new gradient allocation or a missing gradient builds
    new tables (one small pinned host-to-device copy, asynchronous) instead of reading stale ones.
    """
    key = (device, tuple(numels), *map(tuple, columns))
    cached = _cache.get(key)
    if cached is not None:
        return cached
    rows, chunk_rows = [], []
    for t, numel in enumerate(numels):
        count = max(1, -(-numel // CHUNK))
        rows.append([*(column[t] for column in columns), numel, len(chunk_rows), count])
        chunk_rows.extend([t, k] for k in range(count))
    host = torch.tensor(rows + [_pad(row) for row in chunk_rows], dtype=torch.int64)
    if device.type == "cuda":
        host = host.pin_memory()
    packed = host.to(device, non_blocking=True)
    n_tensors = len(rows)
    tables = _Tables(
        table=packed[:n_tensors].contiguous(),
        chunks=packed[n_tensors:, :2].contiguous(),
        n_chunks=len(chunk_rows),
        partials=torch.empty(2 * len(chunk_rows), dtype=torch.float32, device=device),
        coefficients=torch.empty(4 * n_tensors, dtype=torch.float32, device=device),
    )
    if len(_cache) >= _CACHE_SIZE:
        _cache.pop(next(iter(_cache)))
    _cache[key] = tables
    return tables


def _addresses(tensors: Optional[Sequence[Tensor]], n: int) -> list[int]:
    return [t.data_ptr() for t in tensors] if tensors is not None else [0] * n


def _on(device: torch.device) -> contextlib.AbstractContextManager:
    """Launch on the tensors' own GPU (Triton launches on the current device)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _pad(row: list[int]) -> list[int]:
    """A chunk row padded to the table's width (the packed tensor is one rectangle)."""
    return row + [0] * (_COLUMNS - len(row))


def _lr_argument(lr: Union[float, Tensor], device: torch.device) -> tuple[Union[float, Tensor], bool]:
    """The learning rate as the kernels take it, and whether they read it from memory: a tensor on
    the tensors' device stays there (no synchronisation), anything else is passed by value."""
    if isinstance(lr, Tensor) and lr.device == device:
        return lr.reshape(()).to(torch.float32), True
    return float(lr), False


def novograd_step(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    max_exp_avg_sqs: Optional[Sequence[Tensor]],
    grad_scales: Optional[Sequence[Tensor]],
    grad_sq_norms: Optional[Sequence[Tensor]],
    *,
    rule: str,
    eta: float,
    factor_eps: float,
    min_update: float,
    lr: Union[float, Tensor],
    beta1: float,
    beta2_t: float,
    beta3: float,
    bias_correction1: float,
    bias_correction2: float,
    eps: float,
    weight_decay: float,
    eps_inside_sqrt: bool,
    reg_inside_moment: bool,
) -> None:
    """One NovoGrad step (coefficients as ``optimizers.novograd.novograd`` computes them) over
    tensors of one weight dtype and one gradient dtype, in three launches; ``rule`` "clip" or
    "scale" computes LARC's factor from ‖w‖ and ‖g‖ in the norm pass (see ``LARC``)."""
    n = len(params)
    device = params[0].device
    tables = _tables(
        [_addresses(params, n), _addresses(grads, n), _addresses(exp_avgs, n), _addresses(exp_avg_sqs, n),
         _addresses(max_exp_avg_sqs, n)],
        [p.numel() for p in params], device,
    )
    w_dtype, g_dtype = _TL_DTYPES[params[0].dtype], _TL_DTYPES[grads[0].dtype]
    rule_id = LAYER_RULES[rule]
    given_sq = grad_sq_norms is not None and rule_id == 0
    lr, lr_in_memory = _lr_argument(lr, device)
    with _on(device):
        if not given_sq:
            _chunk_sq_norms[(tables.n_chunks,)](
                tables.table, tables.chunks, tables.partials, tables.n_chunks,
                W_DTYPE=w_dtype, G_DTYPE=g_dtype, WITH_W=rule_id != 0, CHUNK=CHUNK, BLOCK=_BLOCK,
            )
        _tensor_coefficients[(n,)](
            tables.table, tables.partials, tables.n_chunks,
            _stacked(grad_sq_norms) if given_sq else tables.partials,
            _stacked(grad_scales) if grad_scales is not None else tables.partials,
            tables.coefficients, lr, beta2_t, beta3, bias_correction1, bias_correction2, eps, weight_decay,
            eta, factor_eps, min_update,
            RULE=rule_id, NOVOGRAD=True, GIVEN_SQ=given_sq, GIVEN_SCALES=grad_scales is not None,
            AMSGRAD=max_exp_avg_sqs is not None, EPS_INSIDE_SQRT=eps_inside_sqrt,
            REG_INSIDE_MOMENT=reg_inside_moment, LR_IN_MEMORY=lr_in_memory, PARTIALS_BLOCK=_PARTIALS_BLOCK,
        )
        _novograd_update[(tables.n_chunks,)](
            tables.table, tables.chunks, tables.coefficients, beta1,
            W_DTYPE=w_dtype, G_DTYPE=g_dtype, CHUNK=CHUNK, BLOCK=_BLOCK,
        )


def momentum_step(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    buffers: Optional[Sequence[Tensor]],
    first: Sequence[bool],
    *,
    rule: str,
    eta: float,
    factor_eps: float,
    min_update: float,
    lr: Union[float, Tensor],
    momentum: float,
    buffer_rate: float,
    lr_on_buffer: bool,
    weight_decay: float,
    nesterov: bool,
) -> None:
    """One SGD-family step over tensors of one weight, gradient and buffer dtype (see
    ``_momentum_update``): LARS with ``rule="lars"``, ``buffer_rate=1``, ``lr_on_buffer=True``;
    LARC over torch's SGD with ``rule`` "clip"/"scale", ``buffer_rate=1-dampening``,
    ``lr_on_buffer=False`` and ``first`` marking tensors whose buffer this step creates;
    ``buffers=None`` without momentum. ``rule="none"`` skips the norm passes (groups without
    layer adaptation)."""
    n = len(params)
    device = params[0].device
    tables = _tables(
        [_addresses(params, n), _addresses(grads, n), _addresses(buffers, n), [int(f) for f in first], [0] * n],
        [p.numel() for p in params], device,
    )
    w_dtype, g_dtype = _TL_DTYPES[params[0].dtype], _TL_DTYPES[grads[0].dtype]
    b_dtype = _TL_DTYPES[buffers[0].dtype] if buffers is not None else tl.float32
    rule_id = LAYER_RULES[rule]
    lr, lr_in_memory = _lr_argument(lr, device)
    with _on(device):
        if rule_id != 0:
            _chunk_sq_norms[(tables.n_chunks,)](
                tables.table, tables.chunks, tables.partials, tables.n_chunks,
                W_DTYPE=w_dtype, G_DTYPE=g_dtype, WITH_W=True, CHUNK=CHUNK, BLOCK=_BLOCK,
            )
            _tensor_coefficients[(n,)](
                tables.table, tables.partials, tables.n_chunks, tables.partials, tables.partials,
                tables.coefficients, lr, 0.0, 0.0, 1.0, 1.0, 0.0, weight_decay, eta, factor_eps, min_update,
                RULE=rule_id, NOVOGRAD=False, GIVEN_SQ=False, GIVEN_SCALES=False, AMSGRAD=False,
                EPS_INSIDE_SQRT=False, REG_INSIDE_MOMENT=False, LR_IN_MEMORY=lr_in_memory,
                PARTIALS_BLOCK=_PARTIALS_BLOCK,
            )
        _momentum_update[(tables.n_chunks,)](
            tables.table, tables.chunks, tables.coefficients, lr, momentum, buffer_rate, weight_decay,
            W_DTYPE=w_dtype, G_DTYPE=g_dtype, B_DTYPE=b_dtype, HAS_FACTORS=rule_id != 0,
            FACTOR_ON_GRAD=rule_id in (1, 2), HAS_MOMENTUM=buffers is not None, NESTEROV=nesterov,
            LR_ON_BUFFER=lr_on_buffer, LR_IN_MEMORY=lr_in_memory, CHUNK=CHUNK, BLOCK=_BLOCK,
        )


def _stacked(scalars: Sequence[Tensor]) -> Tensor:
    """0-dim per-tensor values as one float32 vector the kernels index (one small launch)."""
    return torch.stack([s.float() for s in scalars])
