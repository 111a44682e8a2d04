"""Parameter-group policy: no weight decay and no layer-wise adaptation on biases and norm layers."""

from __future__ import annotations

from typing import Any, Iterable, Union

import torch
from torch import Tensor, nn

__all__ = ["param_groups", "is_bias_or_norm"]

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


def param_groups(
    model_or_params: Union[nn.Module, Iterable[Tensor], Iterable[tuple[str, Tensor]], Iterable[dict[str, Any]]],
    weight_decay: float,
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
    A single tensor is not an iterable of parameters: ``TypeError``, as ``torch.optim`` raises.
    """
    if isinstance(model_or_params, Tensor):
        raise TypeError(
            "params argument given to the optimizer should be an iterable of Tensors or dicts, "
            f"but got {torch.typename(model_or_params)}"
        )
    # (name, tensor, owning module, in no_weight_decay(), what the group holds)
    if isinstance(model_or_params, nn.Module):
        model = model_or_params
        skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
        owners = {id(p): m for m in model.modules() for p in m.parameters(recurse=False)}
        named = [(n, p, owners.get(id(p)), n in skip, p) for n, p in model.named_parameters()]
    else:
        items = list(model_or_params)
        if items and isinstance(items[0], dict):
            return items
        named = [(*item, None, False, item) if isinstance(item, tuple) else (str(i), item, None, False, item)
                 for i, item in enumerate(items)]
    named = [entry for entry in named if entry[1].requires_grad]
    if not exclude_bias_and_norm:
        return [{"params": [item for *_, item in named], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for name, param, module, skipped, item in named:
        target = no_decay if skipped or is_bias_or_norm(name, param, module) else decay
        target.append(item)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0, "layer_adaptation": False},
    ]
    return [group for group in groups if group["params"]]
