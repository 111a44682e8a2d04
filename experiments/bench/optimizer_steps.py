"""Optimizer step-time and state-memory benchmark on a ResNet-50-shaped parameter set.

Every row is timed in this one process, round-robin over ``rounds`` so that drift of a shared
machine falls on all rows alike; ratios are to torch's fused Adam and to Adam's state bytes. On
CUDA each step is timed with CUDA events, and two bandwidth-floor rows turn a device-to-device
copy's bandwidth into the time of a step moving 24 (NovoGrad: g twice, w and m read and written)
or 28 (fused Adam) bytes per value.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn
from torch.optim import Optimizer

from experiments.optimizer_state import optimizer_state_bytes
from optimizers import REGISTRY, build_optimizer, optimizer_names
from optimizers.behaviour import set_mode
from optimizers.did_you_mean import did_you_mean
from optimizers.registry import is_installed

__all__ = [
    "BenchRow", "resnet50_shapes", "bench_rows", "bandwidth_floor_rows", "time_optimizer_steps", "missing_peers", "PEERS",
    "REFERENCE_ROW", "ADAM_STATE_ROW", "FLOOR_BYTES_PER_VALUE",
]

REFERENCE_ROW = "torch Adam (fused)"  # step-time ratios are to this row
ADAM_STATE_ROW = "torch Adam (foreach)"  # state-byte ratios are to this row
FLOOR_BYTES_PER_VALUE = (24, 28)  # NovoGrad's two passes; fused Adam's one


def resnet50_shapes(small: bool = False) -> list[tuple[int, ...]]:
    """Parameter shapes of torchvision's ResNet-50 (161 tensors, 25,557,032 values).

    ``small`` divides every channel count by 8 (same 161 tensors, ~0.4M values): a quick run.
    """
    div = 8 if small else 1
    shapes: list[tuple[int, ...]] = [(64 // div, 3, 7, 7), (64 // div,), (64 // div,)]
    inplanes = 64 // div
    for planes, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        planes //= div
        for block in range(blocks):
            shapes += [(planes, inplanes, 1, 1), (planes,), (planes,)]
            shapes += [(planes, planes, 3, 3), (planes,), (planes,)]
            shapes += [(planes * 4, planes, 1, 1), (planes * 4,), (planes * 4,)]
            if block == 0:  # the downsample projection
                shapes += [(planes * 4, inplanes, 1, 1), (planes * 4,), (planes * 4,)]
            inplanes = planes * 4
    shapes += [(1000, inplanes), (1000,)]
    return shapes


@dataclass
class BenchRow:
    """One benchmarked optimizer: how to build it, and what was measured."""

    name: str
    build: Optional[Callable[[list[nn.Parameter]], Optimizer]]  # None: a bandwidth-floor row
    ms: list[float]
    state_bytes: Optional[int] = 0  # None: not an optimizer
    first_step_s: Optional[float] = None  # where compiled: includes building/compiling the kernel
    compiles: bool = False  # its first step builds or compiles a kernel: first_step_s is measured
    round_ms: list[float] = field(default_factory=list)  # the median step of each round

    @property
    def median_ms(self) -> float:
        return statistics.median(self.ms)

    def round_ratios(self, reference: "BenchRow") -> list[float]:
        """This row's median step over ``reference``'s, round by round (empty where the two were
        not timed in the same rounds: a bandwidth floor is timed once)."""
        if len(self.round_ms) != len(reference.round_ms):
            return []
        return [a / b for a, b in zip(self.round_ms, reference.round_ms)]

    def ratio_to(self, reference: "BenchRow") -> float:
        """This row's step time over ``reference``'s, paired by round: the median of the rounds'
        ratios, so that the machine's drift between rounds (±20% here) cancels in each ratio. A
        row timed once (a bandwidth floor) is divided by the reference's median."""
        ratios = self.round_ratios(reference)
        return statistics.median(ratios) if ratios else self.median_ms / reference.median_ms


# The peer implementations: (module, the package's name on PyPI), installed by the ``bench`` extra.
PEERS = (("torch_optimizer", "torch-optimizer"), ("pytorch_optimizer", "pytorch-optimizer"))


def missing_peers() -> list[str]:
    """What is not installed, as ``package (optbench[extra])``: the bench extra's peer packages
    and the registry's peers (``lamb``, ``schedule_free_adamw``...). Their rows are left out."""
    missing = [f"{label} (optbench[bench])" for module_name, label in PEERS
               if importlib.util.find_spec(module_name) is None]
    for entry in REGISTRY.values():
        if entry.extra is not None and not is_installed(entry.name):
            missing.append(f"{entry.name} (optbench[{entry.extra}])")
    return missing


def _peer_rows(device: str) -> list[tuple[str, Callable[[list[nn.Parameter]], Optimizer], bool]]:
    """NovoGrad and LARS of torch-optimizer and pytorch-optimizer (``bench`` extra), timm's
    NvNovoGrad, and on CUDA apex's FusedNovoGrad and FusedLAMB: those that import here. Each with
    whether its first step compiles on CUDA (timm's and apex's: kernels built on first use)."""
    rows = []
    for module_name, label in PEERS:
        module = _optional_module(module_name)
        if module is not None:
            rows.append((f"{label} NovoGrad",
                         lambda p, m=module: m.NovoGrad(p, lr=1e-3, betas=(0.95, 0.98), weight_decay=1e-3), False))
            rows.append((f"{label} LARS", lambda p, m=module: m.LARS(p, lr=1e-3, weight_decay=1e-4), False))
    timm_optim = _optional_module("timm.optim")
    if timm_optim is not None:
        rows.append(("timm NvNovoGrad",
                     lambda p: timm_optim.NvNovoGrad(p, lr=1e-3, betas=(0.95, 0.98), weight_decay=1e-3), True))
    apex_optimizers = _optional_module("apex.optimizers") if device == "cuda" else None
    if apex_optimizers is not None:
        rows.append(("apex FusedNovoGrad",
                     lambda p: apex_optimizers.FusedNovoGrad(p, lr=1e-3, betas=(0.95, 0.98), weight_decay=1e-3), True))
        rows.append(("apex FusedLAMB", lambda p: apex_optimizers.FusedLAMB(p, lr=1e-3), True))
    return rows


def _optional_module(name: str) -> Optional[object]:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def bench_rows(include_peers: bool = True, device: str = "cpu") -> list[BenchRow]:
    """The rows: every registry name (the device's default path), fused NovoGrad, torch's own, the
    peers; on CUDA also the ``foreach`` path of the four layer-wise targets, for comparison."""
    def registry(name: str, **options) -> Callable[[list[nn.Parameter]], Optimizer]:
        return lambda params: build_optimizer(name, params, lr=1e-3, exclude_bias_and_norm=False, **options)

    rows: list[BenchRow] = []
    for impl in ("foreach", "fused"):
        rows += [
            BenchRow(f"torch SGD ({impl})", lambda p, i=impl: torch.optim.SGD(p, lr=1e-3, momentum=0.9, **{i: True}), []),
            BenchRow(f"torch Adam ({impl})", lambda p, i=impl: torch.optim.Adam(p, lr=1e-3, **{i: True}), []),
            BenchRow(f"torch AdamW ({impl})", lambda p, i=impl: torch.optim.AdamW(p, lr=1e-3, **{i: True}), []),
        ]
    # On CUDA a registry row may run optbench's Triton kernels (compiled on its first step).
    rows += [BenchRow(name, registry(name), [], compiles=device == "cuda")
             for name in optimizer_names(installed=True)]
    rows += [
        BenchRow("novograd (fused)", registry("novograd", fused=True), [], compiles=True),
        BenchRow("larc_novograd (fused)", registry("larc_novograd", fused=True), [], compiles=True),
    ]
    if device == "cuda":
        rows += [
            BenchRow("novograd (foreach)", registry("novograd", foreach=True), []),
            BenchRow("larc_novograd (foreach)", registry("larc_novograd", foreach=True), []),
            BenchRow("lars (foreach)", registry("lars", fused=False), []),
            BenchRow("larc_sgd (foreach)", registry("larc_sgd", foreach=True), []),
        ]
    if include_peers:
        rows += [BenchRow(name, build, [], compiles=device == "cuda" and compiles)
                 for name, build, compiles in _peer_rows(device)]
    return rows


def bandwidth_floor_rows(values: int, device: str, repeats: int = 10) -> list[BenchRow]:
    """Rows "bandwidth floor (B B/value)": the time to move B bytes per value of ``values`` at the
    bandwidth of a ``values``-float32 device-to-device copy (which reads and writes 8 bytes per
    value), median over ``repeats``. No optimizer reaches it; it says how far each row is from
    what the memory allows."""
    src = torch.randn(values, device=device)
    dst = torch.empty_like(src)
    copy_ms = statistics.median(_timed_ms(lambda: dst.copy_(src), device) for _ in range(repeats + 1))
    bytes_per_ms = 8 * values / copy_ms
    return [
        BenchRow(f"bandwidth floor ({b} B/value)", None, [b * values / bytes_per_ms], state_bytes=None)
        for b in FLOOR_BYTES_PER_VALUE
    ]


def _timed_ms(work: Callable[[], object], device: str) -> float:
    """Wall time of ``work`` in ms: CUDA events on CUDA (the device's time), else perf_counter."""
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        work()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    start_s = time.perf_counter()
    work()
    return (time.perf_counter() - start_s) * 1e3


def _time_row(row: BenchRow, shapes: list[tuple[int, ...]], steps: int, warmup: int, device: str) -> None:
    generator = torch.Generator().manual_seed(0)
    params = [nn.Parameter((torch.randn(s, generator=generator) * 0.05).to(device)) for s in shapes]
    grads = [(torch.randn(s, generator=generator) * 1e-3).to(device) for s in shapes]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    optimizer = row.build(params)
    set_mode(optimizer, training=True)  # Schedule-Free steps in training mode only

    def one_step() -> float:
        for p, g in zip(params, grads):  # LARC may rewrite p.grad: restore it, untimed
            p.grad.copy_(g)
        return _timed_ms(optimizer.step, device)

    first = one_step()
    if row.first_step_s is None and row.compiles:
        row.first_step_s = first / 1e3
    for _ in range(warmup - 1):
        one_step()
    timed = [one_step() for _ in range(steps)]
    row.ms += timed
    row.round_ms.append(statistics.median(timed))
    row.state_bytes = optimizer_state_bytes(optimizer)


def time_optimizer_steps(
    small: bool = False,
    steps: int = 10,
    warmup: int = 3,
    rounds: int = 3,
    threads: int = 2,
    only: Optional[list[str]] = None,
    include_peers: bool = True,
    progress: Optional[Callable[[str], None]] = None,
    device: str = "cpu",
) -> list[BenchRow]:
    """Time every row ``rounds`` times, round-robin; the per-row figure is the median step. The
    bandwidth-floor rows come last."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible")
    torch.set_num_threads(threads)
    shapes = resnet50_shapes(small)
    rows = bench_rows(include_peers, device)
    if only:
        unknown = sorted(set(only) - {r.name for r in rows})
        if unknown:
            names = [r.name for r in rows]
            raise ValueError(f"Unknown benchmark row {unknown[0]!r}{did_you_mean(unknown[0], names)}; "
                             f"valid rows: {', '.join(names)}")
        rows = [r for r in rows if r.name in only or r.name in (REFERENCE_ROW, ADAM_STATE_ROW)]
    for round_index in range(rounds):
        for row in rows:
            if progress:
                progress(f"round {round_index + 1}/{rounds}: {row.name}")
            _time_row(row, shapes, steps, warmup, device)
            gc.collect()  # that row's 25.6M-parameter tensors go before the next row builds its own
            if device == "cuda":
                torch.cuda.empty_cache()
    values = sum(torch.Size(shape).numel() for shape in shapes)
    return rows + bandwidth_floor_rows(values, device)
