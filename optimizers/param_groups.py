"""Parameter-group policy: no weight decay and no layer-wise adaptation on biases and norm layers."""

from __future__ import annotations

from typing import Any, Iterable, Optional, Union

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

__all__ = ["param_groups", "is_bias_or_norm", "exempt_bias_and_norm", "ParameterHolder"]

_NORM_LAYERS = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)


def is_bias_or_norm(name: str, param: Tensor, module: nn.Module | None = None) -> bool:
    """True for biases, normalisation weights and any other tensor with ``ndim <= 1``.

    Such tensors are scale-free or offsets: decaying them, or giving them a layer-wise trust
    ratio, only harms (Goyal et al., 2017; You et al., 2017).
    """
    return param.ndim <= 1 or name.endswith(".bias") or name == "bias" or isinstance(module, _NORM_LAYERS)


def _no_decay_ids(model: nn.Module) -> set[int]:
    """The ids of ``model``'s parameters that the policy exempts: biases, norm weights, ``ndim <= 1``
    and the names in ``model.no_weight_decay()``."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    owners = {id(p): m for m in model.modules() for p in m.parameters(recurse=False)}
    return {id(p) for n, p in model.named_parameters() if n in skip or is_bias_or_norm(n, p, owners.get(id(p)))}


def param_groups(
    model_or_params: Union[nn.Module, Iterable[Tensor], Iterable[tuple[str, Tensor]], Iterable[dict[str, Any]]],
    weight_decay: Optional[float],
    *,
    exclude_bias_and_norm: bool = True,
) -> list[dict[str, Any]]:
    """Split parameters into a decayed, adapted group and a group of biases and norm weights.

    The second group gets ``weight_decay=0`` and ``layer_adaptation=False`` (read by LARC and
    LARS). A module's ``no_weight_decay()`` (timm's convention: a set of parameter names) joins it.
    Named parameters (``(name, tensor)`` pairs, as ``named_parameters()`` yields them) are sorted
    into groups by their names and stay pairs there, so that ``torch.optim`` records the names.
    Explicit parameter groups (dicts) are returned unchanged; with ``exclude_bias_and_norm=False``
    everything lands in one group. Parameters that do not require gradients are left out.
    ``weight_decay=None`` (an optimizer without that option) sets no ``weight_decay`` in the groups.
    A single tensor is not an iterable of parameters: ``TypeError``, as ``torch.optim`` raises.
    """
    if isinstance(model_or_params, Tensor):
        raise TypeError(
            "params argument given to the optimizer should be an iterable of Tensors or dicts, "
            f"but got {torch.typename(model_or_params)}"
        )
    # (tensor, exempt by the policy, what the group holds)
    if isinstance(model_or_params, nn.Module):
        exempt = _no_decay_ids(model_or_params)
        named = [(p, id(p) in exempt, p) for p in model_or_params.parameters()]
    else:
        items = list(model_or_params)
        if items and isinstance(items[0], dict):
            return items
        named = [(item[1], is_bias_or_norm(*item), item) if isinstance(item, tuple)
                 else (item, is_bias_or_norm(str(i), item), item) for i, item in enumerate(items)]
    named = [entry for entry in named if entry[0].requires_grad]
    decay_option = {} if weight_decay is None else {"weight_decay": weight_decay}
    if not exclude_bias_and_norm:
        return [{"params": [item for *_, item in named], **decay_option}]
    decay = [item for _, exempt, item in named if not exempt]
    no_decay = [item for _, exempt, item in named if exempt]
    groups = [
        {"params": decay, **decay_option},
        {"params": no_decay, **({} if weight_decay is None else {"weight_decay": 0.0}), "layer_adaptation": False},
    ]
    return [group for group in groups if group["params"]]


class ParameterHolder(nn.Module):
    """A model of bare parameters, for a factory that takes a model when only tensors are given:
    it has no layer to single out as an embedding or a head."""

    def __init__(self, params: Iterable[Tensor]) -> None:
        super().__init__()
        self.weights = nn.ParameterList(params)


def exempt_bias_and_norm(optimizer: Optimizer, model: nn.Module) -> None:
    """Apply the policy to an optimizer that made its own parameter groups from ``model`` (a
    factory taking the model): in each group with weight decay, the exempt parameters move to a
    twin group with ``weight_decay=0`` and ``layer_adaptation=False``. Call it before any step.
    A ``CombinedOptimizer`` gets the twin groups in its inner optimizers."""
    exempt = _no_decay_ids(model)
    for inner in getattr(optimizer, "optimizers", [optimizer]):
        for group in list(inner.param_groups):
            moved = [p for p in group["params"] if id(p) in exempt]
            if not group.get("weight_decay") or not moved:
                continue
            group["params"] = [p for p in group["params"] if id(p) not in exempt]
            twin = {**{k: v for k, v in group.items() if k != "params"}, "params": moved,
                    "weight_decay": 0.0, "layer_adaptation": False}
            if not group["params"]:
                inner.param_groups[:] = [g for g in inner.param_groups if g is not group]
            inner.add_param_group(twin)
    if hasattr(optimizer, "optimizers"):
        optimizer.param_groups[:] = [g for inner in optimizer.optimizers for g in inner.param_groups]
