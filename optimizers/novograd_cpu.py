"""NovoGrad's fused CPU kernel: a C++ extension built on first use (about 20 s, then cached).

Per tensor it makes one pass reading g (the norm) and one pass reading g, w, m and writing w, m;
the second read of g mostly hits the cache, so a step moves about 20 bytes per parameter against
Adam's 28. Needs a C++ compiler with OpenMP and ``ninja``; where the build fails, ``load()``
returns None and ``NovoGrad(fused=True)`` falls back to its ``torch.compile`` path.
"""

from __future__ import annotations

import functools
import hashlib
import platform
import warnings
from pathlib import Path
from typing import Any, Optional

__all__ = ["load", "supports"]

_SOURCE = r"""
#include <torch/extension.h>
#include <cmath>
#include <vector>

using torch::Tensor;

// The update of NovoGrad's docstring, for float32 contiguous CPU tensors that share one step.
// larc_mode 1 (clip) or 2 (scale) computes LARC's factor s from |w| and |g| in the norm pass
// (LARC's docstring has the formula); 0 takes s from grad_scales, or 1.
void novograd_step(
    std::vector<Tensor> params, std::vector<Tensor> grads, std::vector<Tensor> exp_avgs,
    std::vector<Tensor> exp_avg_sqs, std::vector<Tensor> max_exp_avg_sqs,
    std::vector<Tensor> grad_scales, std::vector<Tensor> grad_sq_norms,
    double lr, double beta1, double beta2_t, double beta3, double bias_correction1,
    double bias_correction2, double eps, double weight_decay, bool eps_inside_sqrt,
    bool reg_inside_moment, int64_t larc_mode, double larc_eta, double larc_eps,
    double larc_min_update, int64_t threads) {
  const bool amsgrad = !max_exp_avg_sqs.empty();
  for (size_t t = 0; t < params.size(); ++t) {
    TORCH_CHECK(params[t].is_contiguous() && grads[t].is_contiguous() && exp_avgs[t].is_contiguous(),
                "novograd_step: tensor ", t, " is not contiguous");
    float* w = params[t].data_ptr<float>();
    const float* g = grads[t].data_ptr<float>();
    float* m = exp_avgs[t].data_ptr<float>();
    const int64_t n = params[t].numel();
    double scale = grad_scales.empty() ? 1.0 : grad_scales[t].item<double>();
    // float partial sums, one per SIMD lane and thread: accurate enough, and double accumulation
    // measured ~1.3x slower (the reduction stops vectorising)
    float partial = 0.0f, w_partial = 0.0f;
    double sq;
    if (larc_mode != 0) {
      #pragma omp parallel for simd reduction(+:partial, w_partial) if (n > 65536) num_threads(threads) schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        partial += g[i] * g[i];
        w_partial += w[i] * w[i];
      }
      sq = partial;
      const double g_norm = std::sqrt(sq), w_norm = std::sqrt(static_cast<double>(w_partial));
      if (g_norm > 0 && w_norm > 0) {
        const double ratio = larc_eta * w_norm / (g_norm + larc_eps);
        scale = larc_mode == 1 ? std::min(std::max(ratio / lr, larc_min_update), 1.0)
                               : std::max(ratio, larc_min_update);
      }
    } else if (grad_sq_norms.empty()) {
      #pragma omp parallel for simd reduction(+:partial) if (n > 65536) num_threads(threads) schedule(static)
      for (int64_t i = 0; i < n; ++i) partial += g[i] * g[i];
      sq = partial;
    } else {
      sq = grad_sq_norms[t].item<double>();
    }
    sq *= scale * scale;
    float* v = exp_avg_sqs[t].data_ptr<float>();
    *v = static_cast<float>(beta2_t * *v + (1.0 - beta2_t) * sq);
    double v_used = *v;
    if (amsgrad) {
      float* v_max = max_exp_avg_sqs[t].data_ptr<float>();
      *v_max = std::max(*v_max, *v);
      v_used = *v_max;
    }
    const double v_hat = v_used / bias_correction2;
    const double denom = eps_inside_sqrt ? std::sqrt(v_hat + eps) : std::sqrt(v_hat) + eps;
    const float b1 = beta1;
    if (reg_inside_moment) {
      const float c = beta3 * scale / denom, cd = beta3 * weight_decay, step = lr / bias_correction1;
      #pragma omp parallel for simd if (n > 65536) num_threads(threads) schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        const float mi = b1 * m[i] + c * g[i] + cd * w[i];
        m[i] = mi;
        w[i] -= step * mi;
      }
    } else {
      const float c = beta3 * scale, step = lr / (bias_correction1 * denom), decay = lr * weight_decay;
      #pragma omp parallel for simd if (n > 65536) num_threads(threads) schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        const float mi = b1 * m[i] + c * g[i];
        m[i] = mi;
        w[i] -= step * mi + decay * w[i];
      }
    }
  }
}
"""


def supports(params: list[Any], grads: list[Any]) -> bool:
    """Whether the kernel handles these tensors: float32, contiguous, on the CPU (NovoGrad's
    moment buffers then are too: float32, laid out like their parameters)."""
    import torch

    return all(
        t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous()
        for tensors in (params, grads) for t in tensors
    )


def _isa_tag() -> str:
    """A short hash of this CPU's instruction-set flags: the build uses -march=native, so a cache
    directory shared between different machines must not hand one CPU another's binary."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "") \
        if cpuinfo.is_file() else ""
    return hashlib.sha256(f"{platform.machine()} {flags}".encode()).hexdigest()[:8]


@functools.cache
def load() -> Optional[Any]:
    """The compiled extension module, or None (with a warning) where it cannot be built."""
    try:
        from torch.utils.cpp_extension import load_inline

        return load_inline(
            f"optbench_novograd_cpu_{_isa_tag()}", cpp_sources=_SOURCE, functions=["novograd_step"],
            extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"],
        )
    except Exception as error:  # no compiler, no ninja, no headers: fall back, but say so
        warnings.warn(f"NovoGrad's fused CPU kernel could not be built ({error}); using torch.compile")
        return None
