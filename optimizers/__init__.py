"""Pure-PyTorch optimizers for optbench: NovoGrad, LARC, LARS and the registry that names them.

Depends on torch only; nothing here imports Lightning.
"""

from .larc import LARC, warn_if_clipping_with_larc
from .lars import LARS
from .novograd import NovoGrad
from .param_groups import is_bias_or_norm, param_groups
from .registry import REGISTRY, OptimInfo, build_optimizer, optimizer_names, resolved_defaults

__all__ = [
    "LARC", "LARS", "NovoGrad", "OptimInfo", "REGISTRY", "build_optimizer",
    "optimizer_names", "resolved_defaults", "param_groups", "is_bias_or_norm",
    "warn_if_clipping_with_larc",
]
