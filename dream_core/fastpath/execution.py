"""The execution copy: the network the dream loop runs, made for speed and checked against the original.

:func:`execution_net` builds (once per model, weights, device and dtype) a copy
of ``model.net`` with new module objects that share every tensor they do not
change, applies the rewrites of :mod:`dream_core.fastpath.rewrites`, and keeps
the copy only when the probe check (:mod:`dream_core.fastpath.check`) finds the
same features and image gradient. Whether a dream runs the copy is the caller's
choice (``DreamSettings.fast_path``, :mod:`dream_core.fastpath.switch`).
"""

from __future__ import annotations

import copy
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Optional

import torch
from torch import nn

from ..backends import dream_flags
from . import rewrites
from .check import precision_regime, same_features

if TYPE_CHECKING:  # pragma: no cover
    from ..models.spec import DreamModel

log = logging.getLogger(__name__)

#: model -> {(channels_last, polyphase, depthwise, precision regime): (weights key, execution net)}
_CACHE: "weakref.WeakKeyDictionary[DreamModel, dict[tuple, tuple[tuple, nn.Module]]]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def channels_last_pays(model: "DreamModel") -> bool:
    """``channels_last`` input: measured 1.3x (GoogLeNet) to 2.4x (EfficientNet-Lite0) faster on CPU
    (benchmarks/RESULTS.md); on CUDA it is what cuDNN's tensor-core kernels prefer."""
    return model.device.type in ("cpu", "cuda")


def _weights_key(net: nn.Module) -> tuple:
    """Changes when any parameter or buffer is replaced, moved, cast or modified in place."""
    return tuple((id(t), t._version, t.device, t.dtype) for t in (*net.parameters(), *net.buffers()))


def execution_net(
    model: "DreamModel", *, channels_last: Optional[bool] = None, polyphase: Optional[bool] = None,
    depthwise: Optional[bool] = None,
) -> nn.Module:
    """The network the dream loop runs: a copy of ``model.net`` made for speed.

    The copy has new module objects but shares every tensor it does not change
    (so it costs memory only for the weights it rewrites), and none of the hooks
    registered on ``model.net``. In it:

    * every ``BatchNorm2d`` (eval mode) whose input is exactly the output of a
      ``Conv2d`` run just before it, and whose convolution is not itself a named
      layer (its pre-BatchNorm output would change), is folded into that
      convolution; the BatchNorm becomes ``nn.Identity`` (or a bias add when the
      convolution's ``forward`` ignores ``self.bias``), so the same module paths
      still name the same layers;
    * stride-1 ``Conv2d`` subclasses that pad inside their own ``forward``
      (TensorFlow "same", as EfficientNet-Lite's) become plain ``nn.Conv2d`` with
      that padding as a constant (no padded copy of the input, bias foldable);
    * ``nn.LocalResponseNorm`` becomes :class:`~dream_core.fastpath.lrn.ChannelWindowLRN`
      (window as shifted adds, closed-form backward; same numbers);
    * with ``polyphase`` (``None``: on for CPU), strided convolutions that read the image (at most 4 input
      channels, e.g. GoogLeNet's 7x7 stride-2 stem) compute their input gradient
      as one stride-1 convolution plus a pixel shuffle
      (:class:`~dream_core.fastpath.polyphase.PolyphaseConv2d`; 1.9x faster for that stem);
    * with ``depthwise`` (``None``: on for CUDA), depthwise convolutions run ATen's
      native kernels instead of cuDNN's, forward and backward
      (:class:`~dream_core.fastpath.depthwise.NativeDepthwiseConv2d`: no per-shape engine setup);
    * with ``channels_last`` (``None``: on for CPU and CUDA), convolution weights
      are stored NHWC so the NHWC kernels run (1.3-2.4x faster on CPU; see
      benchmarks/RESULTS.md).

    The copy is checked against ``model.net`` on a probe image (every named
    layer's features and their gradient w.r.t. the probe, relative tolerance
    1e-3 and 5%, widened by the rounding noise of TF32 or an enclosing autocast
    when the device computes at that precision: :mod:`dream_core.fastpath.check`);
    on a mismatch it is rebuilt without the padding, LRN, polyphase and depthwise
    rewrites, and if that fails too ``model.net`` itself is returned
    with a warning. Cached per model and precision in effect; rebuilt when the model's
    weights, device or dtype change. The probe runs with cuDNN's benchmark mode off
    (:func:`dream_core.backends.dream_flags`).

    Returns:
        ``nn.Module`` in eval mode with frozen parameters, on the model's device and dtype.
    """
    device = model.device
    cl = channels_last_pays(model) if channels_last is None else bool(channels_last)
    poly = device.type == "cpu" if polyphase is None else bool(polyphase)
    dw = device.type == "cuda" if depthwise is None else bool(depthwise)
    key = _weights_key(model.net)
    options = (cl, poly, dw, precision_regime(device))
    with _LOCK:
        per_model = _CACHE.setdefault(model, {})
        cached = per_model.get(options)
        if cached is not None and cached[0] == key:
            return cached[1]
        with torch.inference_mode(False), torch.no_grad(), dream_flags(device):
            net = _build(model, cl, poly, dw)
        per_model[options] = (key, net)
        return net


def forget_execution_copies(model: nn.Module) -> None:
    """Drop ``model``'s cached execution copies (e.g. after moving the model off a GPU, so the copies'
    rewritten weights do not keep device memory; the next :func:`execution_net` builds a new one)."""
    with _LOCK:
        _CACHE.pop(model, None)  # type: ignore[call-overload]


def execution_copies(model: nn.Module) -> list[nn.Module]:
    """The cached execution copies of ``model`` other than ``model.net`` itself (for hook leak checks)."""
    own = getattr(model, "net", None)
    return [net for _key, net in _CACHE.get(model, {}).values() if net is not own]  # type: ignore[call-overload]


def _structural_copy(net: nn.Module) -> nn.Module:
    """New module objects sharing ``net``'s tensors, without any hooks (so probing it fires none of the user's)."""
    shared = {id(t): t for t in (*net.parameters(), *net.buffers())}
    twin = copy.deepcopy(net, memo=shared)
    for module in twin.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks, module._backward_pre_hooks):
            hooks.clear()
    return twin


def _build(model: "DreamModel", channels_last: bool, polyphase: bool, depthwise: bool) -> nn.Module:
    if model.net.training:
        return model.net
    reference = _structural_copy(model.net)
    size = max(model.spec.min_size, 64)
    gen = torch.Generator().manual_seed(0)
    probe = torch.rand(1, 3, size, size, generator=gen).to(device=model.device, dtype=model.dtype)
    foldable = model.dtype in (torch.float32, torch.float64) and any(isinstance(m, nn.BatchNorm2d) for m in reference.modules())
    pairs = rewrites.conv_bn_pairs(model, reference, probe) if foldable else []
    padded, lrns = rewrites.static_padding_candidates(reference), rewrites.lrn_candidates(reference)
    strided = rewrites.polyphase_candidates(reference) if polyphase else []
    depthwise_convs = rewrites.depthwise_candidates(reference) if depthwise else []
    if not pairs and not padded and not lrns and not strided and not depthwise_convs and not channels_last:
        return model.net
    # Try everything; if the probe disagrees, try again without the module rewrites, then give up.
    module_rewrites = (padded, lrns, strided, depthwise_convs)
    attempts = [module_rewrites, ([], [], [], [])] if any(module_rewrites) else [([], [], [], [])]
    for pad_names, lrn_names, strided_names, depthwise_names in attempts:
        fast = _structural_copy(model.net)
        rewrites.to_static_padding(fast, pad_names)
        rewrites.replace_lrn(fast, lrn_names)
        for conv_name, bn_name in pairs:
            rewrites.fold_pair(fast, conv_name, bn_name)
        rewrites.to_polyphase(fast, strided_names)  # after folding: shares the folded weight and bias
        rewrites.to_native_depthwise(fast, depthwise_names)  # after folding, like the polyphase stems
        if channels_last:
            rewrites.to_channels_last(fast)
        fast.eval()
        if same_features(model, reference, fast, probe):
            log.debug("Execution copy of %s: %d BatchNorm layers folded, %d convolutions with static padding, "
                      "%d LRN layers with a closed-form backward, %d strided convolutions with polyphase input gradients, "
                      "%d depthwise convolutions on native kernels, channels_last=%s", model.name, len(pairs),
                      len(pad_names), len(lrn_names), len(strided_names), len(depthwise_names), channels_last)
            return fast
    log.warning("The optimised copy of %s computes different features; running the original network.", model.name)
    return model.net
