"""Pure-PyTorch optimizers for optbench: NovoGrad, LARC, LARS and the registry that names them
(with the peers a reader expects beside them, and optimizers from outside: import paths and plugins).

Depends on torch only; nothing here imports Lightning.
"""

from .combined import CombinedOptimizer
from .larc import LARC, warn_if_clipping_with_larc
from .lars import LARS
from .novograd import NovoGrad
from .param_groups import exempt_bias_and_norm, is_bias_or_norm, param_groups
from .registry import REGISTRY, OptimInfo, build_optimizer, check_options, optimizer_names, resolved_defaults

__all__ = [
    "LARC", "LARS", "NovoGrad", "CombinedOptimizer", "OptimInfo", "REGISTRY", "build_optimizer", "check_options",
    "optimizer_names", "resolved_defaults", "param_groups", "is_bias_or_norm", "exempt_bias_and_norm",
    "warn_if_clipping_with_larc",
]
