"""The probe check: does a rewritten network compute what the original computes?

The execution copy is only used after :func:`same_features` says so for the
model's own layers on a probe image: every named layer's features, and the
gradient of those features with respect to the probe (which is what a dream
step needs).

The comparison is made at the precision the device computes in at that moment:
on CUDA, float32 convolutions run in TF32 by default (10 mantissa bits), and an
enclosing ``torch.autocast`` runs them in bfloat16 or float16. Two correct
networks that round differently (the copy's folded weights) then differ by about
that precision's rounding, far more than :data:`FEATURE_RTOL`. So under reduced
precision the original is also run in IEEE float32 (:func:`~dream_core.backends.full_precision`):
its own distance to that exact reference is the noise of the precision in use,
and the copy must come within :data:`NOISE_FACTOR` times that noise (plus the
float32 tolerances) of the exact reference. A wrong rewrite is off by far more
than rounding at any precision. In IEEE float32 (the CPU) only the tolerances apply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
from torch import nn

from ..backends import autocast_enabled, conv_tf32, full_precision, matmul_tf32, reduced_precision

if TYPE_CHECKING:  # pragma: no cover
    from ..models.spec import DreamModel

#: Probe features of the copy must match the original within this (relative to the feature's scale).
FEATURE_RTOL = 1e-3
#: Relative L2 tolerance of the probe's input gradient. Looser than the features': a
#: round-off difference can move an activation across a ReLU/ReLU6 kink and switch that
#: unit's gradient on or off (1.5% on a randomly initialised EfficientNet-Lite0, whose
#: ReLU6s saturate often); a wrong gradient is off by O(100%).
GRAD_RTOL = 0.05
#: Under reduced precision, the copy may be this many times as far from the exact (IEEE float32)
#: features and gradient as the original network computed at that precision is.
NOISE_FACTOR = 4.0

Probe = tuple[dict[str, torch.Tensor], Optional[torch.Tensor]]


def _features_and_gradient(model: "DreamModel", net: nn.Module, probe: torch.Tensor) -> Probe:
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
    return {k: v.detach().float() for k, v in store.items()}, grad


def same_features(model: "DreamModel", a: nn.Module, b: nn.Module, probe: torch.Tensor) -> bool:
    """Whether ``b`` gives ``a``'s features of every named layer of ``model`` on ``probe``, and the same
    gradient of those features w.r.t. the probe (:data:`FEATURE_RTOL`, :data:`GRAD_RTOL`), at the
    precision in effect for ``probe``'s device (TF32, autocast; see the module docstring)."""
    (fa, ga), (fb, gb) = _features_and_gradient(model, a, probe), _features_and_gradient(model, b, probe)
    if reduced_precision(probe.device):
        with full_precision(probe.device):
            fe, ge = _features_and_gradient(model, a, probe)
    else:
        fe, ge = fa, ga
    for layer in model.layer_names:
        exact, own, other = fe[layer], fa[layer], fb[layer]
        if other.shape != exact.shape:
            return False
        noise = (own - exact).abs().max()
        if (other - exact).abs().max() > FEATURE_RTOL * (exact.abs().max() + 1e-6) + NOISE_FACTOR * noise:
            return False
    if (ge is None) != (gb is None):
        return False
    if ge is not None and gb is not None and ga is not None:
        noise = (ga - ge).norm()
        return bool((gb - ge).norm() <= GRAD_RTOL * (ge.norm() + 1e-30) + NOISE_FACTOR * noise)
    return True


def precision_regime(device: torch.device) -> tuple[object, ...]:
    """What decides the check's noise on ``device`` now: TF32 flags (CUDA) and the autocast dtype, if any."""
    amp = None
    if device.type in ("cuda", "cpu") and autocast_enabled(device.type):
        amp = torch.get_autocast_dtype(device.type) if hasattr(torch, "get_autocast_dtype") else "on"
    tf32 = (conv_tf32(), matmul_tf32()) if device.type == "cuda" else ()
    return (tf32, amp)
