"""The probe check: does a rewritten network compute what the original computes?

The execution copy is only used after :func:`same_features` says so for the
model's own layers on a probe image: every named layer's features, and the
gradient of those features with respect to the probe (which is what a dream
step needs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from ..models.spec import DreamModel

#: Probe features of the copy must match the original within this (relative to the feature's scale).
FEATURE_RTOL = 1e-3
#: Relative L2 tolerance of the probe's input gradient. Looser than the features': a
#: round-off difference can move an activation across a ReLU/ReLU6 kink and switch that
#: unit's gradient on or off (1.5% on a randomly initialised EfficientNet-Lite0, whose
#: ReLU6s saturate often); a wrong gradient is off by O(100%).
GRAD_RTOL = 0.05


def _features_and_gradient(
    model: "DreamModel", net: nn.Module, probe: torch.Tensor
) -> tuple[dict[str, torch.Tensor], Optional[torch.Tensor]]:
    store: dict[str, torch.Tensor] = {}
    handles = []
    for layer in model.layer_names:
        def hook(_m: nn.Module, _i: object, out: object, layer: str = layer) -> None:
            store.setdefault(layer, out[0] if isinstance(out, (tuple, list)) else out)
        handles.append(net.get_submodule(model.spec.layers[layer]).register_forward_hook(hook))
    x = probe.detach().clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            net(model.normalize(x))
            outputs = [f for f in store.values() if f.requires_grad]
            grad = None
            if outputs:
                total = sum(f.float().square().mean() for f in outputs)
                (grad,) = torch.autograd.grad(total, x, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    return {k: v.detach() for k, v in store.items()}, grad


def same_features(model: "DreamModel", a: nn.Module, b: nn.Module, probe: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` give the same features of every named layer of ``model`` on ``probe``,
    and the same gradient of those features w.r.t. the probe (:data:`FEATURE_RTOL`, :data:`GRAD_RTOL`)."""
    (fa, ga), (fb, gb) = _features_and_gradient(model, a, probe), _features_and_gradient(model, b, probe)
    for layer in model.layer_names:
        x, y = fa[layer].float(), fb[layer].float()
        if x.shape != y.shape or (x - y).abs().max() > FEATURE_RTOL * (x.abs().max() + 1e-6):
            return False
    if (ga is None) != (gb is None):
        return False
    if ga is not None and gb is not None:
        return bool((ga - gb).norm() <= GRAD_RTOL * (ga.norm() + 1e-30))
    return True
