"""Reading activations of named layers, and stopping the forward pass early.

:class:`FeatureHooks` registers one forward hook per requested layer and
removes every hook on exit, also when the body raises. The hook on the deepest
requested layer raises :class:`_StopForward` so the rest of the network never
runs (the network is *truncated* after the deepest layer without rewriting
any architecture's ``forward``).

With ``optimize=True`` (what the dream loop uses) the forward runs on an
*execution copy* of the network made for speed (:func:`execution_net`): every
BatchNorm that directly follows a convolution is folded into that
convolution's weights, on CPU and CUDA the convolutions run in
``channels_last`` memory format, local response normalisations get a
closed-form backward (:mod:`dream_core.lrn`) and, on the CPU, the image-reading
strided stem a faster input gradient (:mod:`dream_core.strided_grad`). The copy
computes the same features and image gradient (checked on a probe image when it
is built) and is cached per model until the model's weights, device or dtype change.
"""

from __future__ import annotations

import copy
import logging
import threading
import weakref
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from .lrn import ChannelWindowLRN
from .models.efficientnet_lite import SameConv2d
from .strided_grad import PolyphaseConv2d
from .strided_grad import supports as supports_polyphase

if TYPE_CHECKING:  # pragma: no cover
    from .models.spec import DreamModel

log = logging.getLogger(__name__)


class _StopForward(Exception):
    """Internal signal: the deepest requested layer has been computed."""


class FeatureHooks:
    """Forward hooks capturing the outputs of ``layers`` of ``model``.

    Use as a context manager; run the network with :meth:`run`::

        with FeatureHooks(model, ["block8", "block11"]) as hooks:
            feats = hooks.run(image)   # {"block8": [B,C,h,w], "block11": ...}

    Args:
        model: a loaded :class:`~dream_core.models.spec.DreamModel`.
        layers: friendly layer names (validated; unknown names raise
            :class:`~dream_core.errors.UnknownLayerError`).
        truncate: stop the forward pass right after the deepest layer.
        optimize: run the cached execution copy of the network (BatchNorm folded
            into convolutions, ``channels_last``; see :func:`execution_net`)
            instead of ``model.net``. Same features up to float round-off, faster;
            hooks of your own on ``model.net`` do not see these forwards.
        channels_last: with ``optimize``, force the memory format on (``True``)
            or off (``False``); ``None`` picks it by device (on for CPU and CUDA).
        polyphase: with ``optimize``, force the polyphase input gradient of the
            stem on or off; ``None`` picks it by device (on for CPU).
    """

    def __init__(
        self,
        model: "DreamModel",
        layers: Sequence[str],
        truncate: bool = True,
        *,
        optimize: bool = False,
        channels_last: Optional[bool] = None,
        polyphase: Optional[bool] = None,
    ) -> None:
        if not layers:
            from .errors import InvalidParameterError

            raise InvalidParameterError("At least one layer is needed to read features; none was given.")
        self.model = model
        self.layers = list(dict.fromkeys(layers))
        self.modules = {name: model.module_for(name) for name in self.layers}
        self.deepest = max(self.layers, key=model.layer_depth)
        self.truncate = truncate
        self.optimize = optimize
        self.channels_last = channels_last
        self.polyphase = polyphase
        self._net: nn.Module = model.net
        self._channels_last = False
        self._norm: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        self._handles: list[RemovableHandle] = []
        self._store: dict[str, torch.Tensor] = {}
        self._running = False  # hooks act only during this object's own run()

    def __enter__(self) -> "FeatureHooks":
        if self.optimize:
            cl = _channels_last_pays(self.model) if self.channels_last is None else self.channels_last
            self._net = execution_net(self.model, channels_last=cl, polyphase=self.polyphase)
            self._channels_last = cl
        else:
            self._net, self._channels_last = self.model.net, False
        for name in self.layers:
            module = self._net.get_submodule(self.model.spec.layers[name]) if self.optimize else self.modules[name]
            self._handles.append(module.register_forward_hook(self._make_hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook this object registered (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._store = {}

    def _make_hook(self, name: str):
        def hook(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
            if not self._running:  # another FeatureHooks on the same network is running
                return
            if isinstance(output, (tuple, list)):
                output = output[0]
            self._store[name] = output
            if self.truncate and name == self.deepest and len(self._store) == len(self.layers):
                raise _StopForward()

        return hook

    def _normalize(self, image: torch.Tensor) -> torch.Tensor:
        if not self.optimize:
            return self.model.normalize(image)
        # (x * value_scale - mean) / std as one multiply-add with constants made once.
        norm = self.model.spec.normalization
        if self._norm is None or self._norm[0].device != image.device or self._norm[0].dtype != image.dtype:
            std = torch.tensor(norm.std, dtype=torch.float64)
            scale = (norm.value_scale / std).view(1, 3, 1, 1)
            shift = (-torch.tensor(norm.mean, dtype=torch.float64) / std).view(1, 3, 1, 1)
            self._norm = (scale.to(image.device, image.dtype), shift.to(image.device, image.dtype))
        x = image.flip(1) if norm.bgr else image
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return torch.addcmul(self._norm[1], x, self._norm[0])

    def run(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward RGB ``[B,3,H,W]`` ``0..1`` through the network; return captured features.

        Returns:
            ``{layer: tensor [B,C,h,w]}`` for every requested layer, in request order.
        """
        if not self._handles:
            raise RuntimeError("FeatureHooks.run() called outside its 'with' block")
        self._store = {}
        self._running = True
        try:
            self._net(self._normalize(image))
        except _StopForward:
            pass
        finally:
            self._running = False
        missing = [n for n in self.layers if n not in self._store]
        if missing:
            raise RuntimeError(f"Layers {missing} produced no output in the forward pass")
        out = {n: self._store[n] for n in self.layers}
        self._store = {}
        return out


# --------------------------------------------------------------------------- execution copy

#: model -> {(channels_last, polyphase): (weights key, execution net)}
_EXEC_CACHE: "weakref.WeakKeyDictionary[DreamModel, dict[tuple[bool, bool], tuple[tuple, nn.Module]]]" = weakref.WeakKeyDictionary()
_EXEC_LOCK = threading.Lock()

#: Probe features of the folded copy must match the original within this (relative to the feature's scale).
_FOLD_RTOL = 1e-3
# Relative L2 tolerance of the probe's input gradient. Looser than the features': a
# round-off difference can move an activation across a ReLU/ReLU6 kink and switch that
# unit's gradient on or off (1.5% on a randomly initialised EfficientNet-Lite0, whose
# ReLU6s saturate often); a wrong gradient is off by O(100%).
_GRAD_RTOL = 0.05


def _channels_last_pays(model: "DreamModel") -> bool:
    """``channels_last`` input: measured 1.3x (GoogLeNet) to 2.4x (EfficientNet-Lite0) faster on CPU
    (benchmarks/RESULTS.md); on CUDA it is what cuDNN's tensor-core kernels prefer."""
    return model.device.type in ("cpu", "cuda")


def _weights_key(net: nn.Module) -> tuple:
    """Changes when any parameter or buffer is replaced, moved, cast or modified in place."""
    return tuple((id(t), t._version, t.device, t.dtype) for t in (*net.parameters(), *net.buffers()))


def execution_net(
    model: "DreamModel", *, channels_last: Optional[bool] = None, polyphase: Optional[bool] = None
) -> nn.Module:
    """The network the dream loop runs: a copy of ``model.net`` made for speed.

    The copy has new module objects but shares every tensor it does not change
    (so it costs memory only for the weights it rewrites), and none of the hooks
    registered on ``model.net``. In it:

    * every ``BatchNorm2d`` (eval mode) whose input is exactly the output of a
      ``Conv2d`` run just before it, and whose convolution is not itself a named
      layer (its pre-BatchNorm output would change), is folded into that
      convolution: ``w' = w * s`` with ``s = gamma / sqrt(var + eps)``, bias
      ``(b - mean) * s + beta``; the BatchNorm becomes ``nn.Identity`` (or a bias
      add when the convolution's ``forward`` ignores ``self.bias``), so the same
      module paths still name the same layers;
    * stride-1 ``Conv2d`` subclasses that pad inside their own ``forward``
      (TensorFlow "same", as EfficientNet-Lite's) become plain ``nn.Conv2d`` with
      that padding as a constant (no padded copy of the input, bias foldable);
    * ``nn.LocalResponseNorm`` becomes :class:`~dream_core.lrn.ChannelWindowLRN`
      (window as shifted adds, closed-form backward; same numbers);
    * with ``polyphase`` (``None``: on for CPU), strided convolutions that read the image (at most 4 input
      channels, e.g. GoogLeNet's 7x7 stride-2 stem) compute their input gradient
      as one stride-1 convolution plus a pixel shuffle
      (:class:`~dream_core.strided_grad.PolyphaseConv2d`; 1.9x faster for that stem);
    * with ``channels_last`` (``None``: on for CPU and CUDA), convolution weights
      are stored NHWC so the NHWC kernels run (1.3-2.4x faster on CPU; see
      benchmarks/RESULTS.md).

    The copy is checked against ``model.net`` on a probe image (every named
    layer's features and their gradient w.r.t. the probe, relative tolerance
    1e-3 and 5%); on a mismatch it is rebuilt without the
    padding, LRN and polyphase rewrites, and if that fails too ``model.net`` itself is returned
    with a warning. Cached per model; rebuilt when the model's
    weights, device or dtype change.

    Returns:
        ``nn.Module`` in eval mode with frozen parameters, on the model's device and dtype.
    """
    cl = _channels_last_pays(model) if channels_last is None else bool(channels_last)
    poly = model.device.type == "cpu" if polyphase is None else bool(polyphase)
    key = _weights_key(model.net)
    with _EXEC_LOCK:
        per_model = _EXEC_CACHE.setdefault(model, {})
        cached = per_model.get((cl, poly))
        if cached is not None and cached[0] == key:
            return cached[1]
        with torch.inference_mode(False), torch.no_grad():
            net = _build_execution_net(model, cl, poly)
        per_model[(cl, poly)] = (key, net)
        return net


def _conv_bn_pairs(model: "DreamModel", net: nn.Module, probe: torch.Tensor) -> list[tuple[str, str]]:
    """``(conv path, bn path)`` pairs of ``net`` (a copy of ``model.net``) where the BatchNorm reads
    the convolution's output directly."""
    names = {m: n for n, m in net.named_modules()}
    named_layers = {model.spec.layers[layer] for layer in model.layer_names}
    outputs: dict[int, tuple[str, torch.Tensor]] = {}
    pairs: list[tuple[str, str]] = []
    calls: dict[str, int] = {}

    def on_conv(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        name = names[module]
        calls[name] = calls.get(name, 0) + 1
        outputs[id(output)] = (name, output)

    def on_bn(module: nn.Module, inputs: tuple, _output: torch.Tensor) -> None:
        name = names[module]
        calls[name] = calls.get(name, 0) + 1
        src = outputs.get(id(inputs[0]))
        if src is not None and src[1] is inputs[0]:
            pairs.append((src[0], name))

    handles = []
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(on_conv))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_hook(on_bn))
    try:
        net(model.normalize(probe))
    finally:
        for h in handles:
            h.remove()
    good = []
    for conv_name, bn_name in pairs:
        conv, bn = net.get_submodule(conv_name), net.get_submodule(bn_name)
        if (
            calls.get(conv_name) == 1 and calls.get(bn_name) == 1 and conv_name not in named_layers
            and not bn.training and bn.running_mean is not None and bn.running_var is not None
            and conv.out_channels == bn.num_features
        ):
            good.append((conv_name, bn_name))
    return good


def _set_submodule(net: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, child = path.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, child, module)


class _ChannelBias(nn.Module):
    """What is left of a folded BatchNorm when its convolution's ``forward`` ignores ``self.bias``."""

    def __init__(self, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("bias", bias.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


def _fold_pair(net: nn.Module, conv_name: str, bn_name: str) -> None:
    """Fold BatchNorm ``bn_name`` into convolution ``conv_name`` of ``net`` (in place; ``net`` is a copy)."""
    conv, bn = net.get_submodule(conv_name), net.get_submodule(bn_name)
    assert bn.running_mean is not None and bn.running_var is not None
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    conv.weight = nn.Parameter(conv.weight * scale.view(-1, *[1] * (conv.weight.dim() - 1)), requires_grad=False)
    old_bias = conv.bias
    if type(conv).forward is nn.Conv2d.forward:  # the standard forward adds self.bias
        bias = shift if old_bias is None else old_bias * scale + shift
        conv.bias = nn.Parameter(bias, requires_grad=False)
        _set_submodule(net, bn_name, nn.Identity())
    else:  # e.g. TensorFlow-"same" convolutions that call F.conv2d(x, self.weight, None, ...)
        if old_bias is not None:
            conv.bias = nn.Parameter(old_bias * scale, requires_grad=False)
        _set_submodule(net, bn_name, _ChannelBias(shift))


def _structural_copy(net: nn.Module) -> nn.Module:
    """New module objects sharing ``net``'s tensors, without any hooks (so probing it fires none of the user's)."""
    shared = {id(t): t for t in (*net.parameters(), *net.buffers())}
    twin = copy.deepcopy(net, memo=shared)
    for module in twin.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks, module._backward_pre_hooks):
            hooks.clear()
    return twin


def _static_padding_candidates(net: nn.Module) -> list[str]:
    """Stride-1 ``Conv2d`` subclasses that pad inside their own ``forward`` (e.g. TensorFlow "same").

    For stride 1 and an odd kernel, "same" padding is ``k // 2`` on every side
    whatever the input size, so a plain ``nn.Conv2d`` with that padding computes
    the same thing without copying the input into a padded tensor (and its
    ``forward`` adds ``self.bias``, so a BatchNorm folds away completely). Only
    candidates: the probe comparison decides.
    """
    names = []
    for name, m in net.named_modules():
        if (
            isinstance(m, nn.Conv2d) and type(m).forward is not nn.Conv2d.forward
            and m.stride == (1, 1) and m.dilation == (1, 1) and m.padding == (0, 0)
            and m.padding_mode == "zeros" and m.kernel_size[0] == m.kernel_size[1] and m.kernel_size[0] % 2 == 1
        ):
            names.append(name)
    return names


def _to_static_padding(net: nn.Module, names: list[str]) -> None:
    for name in names:
        old = net.get_submodule(name)
        k = old.kernel_size[0]
        new = nn.Conv2d(old.in_channels, old.out_channels, k, padding=k // 2, groups=old.groups,
                        bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype)
        new.weight = old.weight  # shared, not copied
        if old.bias is not None:
            new.bias = old.bias
        _set_submodule(net, name, new.eval())


def _lrn_candidates(net: nn.Module) -> list[str]:
    return [name for name, m in net.named_modules() if type(m) is nn.LocalResponseNorm]


def _replace_lrn(net: nn.Module, names: list[str]) -> None:
    for name in names:
        _set_submodule(net, name, ChannelWindowLRN.from_module(net.get_submodule(name)))


def _polyphase_candidates(net: nn.Module) -> list[str]:
    """Strided convolutions reading the image (at most 4 input channels) whose input gradient
    :class:`~dream_core.strided_grad.PolyphaseConv2d` computes faster.

    Measured on the CPU only (benchmarks/RESULTS.md): 1.9x for GoogLeNet's 7x7 stride-2 stem
    (forward + input gradient), 1.1-1.2x for 3x3 stride-2 stems; *slower* for convolutions with
    many input channels (depthwise or dense), which therefore keep PyTorch's backward.
    """
    return [
        name for name, m in net.named_modules()
        if supports_polyphase(m) and m.groups == 1 and m.in_channels <= 4
        and (type(m).forward is nn.Conv2d.forward or type(m) is SameConv2d)
    ]


def _to_polyphase(net: nn.Module, names: list[str]) -> None:
    for name in names:
        old = net.get_submodule(name)
        _set_submodule(net, name, PolyphaseConv2d.from_conv(old, tf_same=type(old) is SameConv2d).eval())


def _build_execution_net(model: "DreamModel", channels_last: bool, polyphase: bool) -> nn.Module:
    if model.net.training:
        return model.net
    reference = _structural_copy(model.net)
    size = max(model.spec.min_size, 64)
    gen = torch.Generator().manual_seed(0)
    probe = torch.rand(1, 3, size, size, generator=gen).to(device=model.device, dtype=model.dtype)
    foldable = model.dtype in (torch.float32, torch.float64) and any(isinstance(m, nn.BatchNorm2d) for m in reference.modules())
    pairs = _conv_bn_pairs(model, reference, probe) if foldable else []
    padded, lrns = _static_padding_candidates(reference), _lrn_candidates(reference)
    strided = _polyphase_candidates(reference) if polyphase else []
    if not pairs and not padded and not lrns and not strided and not channels_last:
        return model.net
    # Try everything; if the probe disagrees, try again without the module rewrites, then give up.
    rewrites = (padded, lrns, strided)
    attempts = [rewrites, ([], [], [])] if any(rewrites) else [([], [], [])]
    for pad_names, lrn_names, strided_names in attempts:
        fast = _structural_copy(model.net)
        _to_static_padding(fast, pad_names)
        _replace_lrn(fast, lrn_names)
        for conv_name, bn_name in pairs:
            _fold_pair(fast, conv_name, bn_name)
        _to_polyphase(fast, strided_names)  # after folding: shares the folded weight and bias
        if channels_last:
            # mkldnn/cuDNN pick the NHWC kernels when the weight is NHWC, whatever the
            # input layout (some nets re-pack their input, e.g. GoogLeNet's transform_input).
            for module in fast.modules():
                if isinstance(module, nn.Conv2d):
                    module.weight = nn.Parameter(module.weight.contiguous(memory_format=torch.channels_last),
                                                 requires_grad=False)
        fast.eval()
        if _same_features(model, reference, fast, probe):
            log.debug("Execution copy of %s: %d BatchNorm layers folded, %d convolutions with static padding, "
                      "%d LRN layers with a closed-form backward, %d strided convolutions with polyphase input gradients, "
                      "channels_last=%s", model.name, len(pairs), len(pad_names), len(lrn_names),
                      len(strided_names), channels_last)
            return fast
    log.warning("The optimised copy of %s computes different features; running the original network.", model.name)
    return model.net


def _same_features(model: "DreamModel", a: nn.Module, b: nn.Module, probe: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` give the same features of every named layer on ``probe``, and the
    same gradient of those features w.r.t. the probe (:data:`_FOLD_RTOL`, :data:`_GRAD_RTOL`)."""
    def feats(net: nn.Module) -> tuple[dict[str, torch.Tensor], Optional[torch.Tensor]]:
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

    (fa, ga), (fb, gb) = feats(a), feats(b)
    for layer in model.layer_names:
        x, y = fa[layer].float(), fb[layer].float()
        if x.shape != y.shape or (x - y).abs().max() > _FOLD_RTOL * (x.abs().max() + 1e-6):
            return False
    if (ga is None) != (gb is None):
        return False
    if ga is not None and gb is not None:
        return bool((ga - gb).norm() <= _GRAD_RTOL * (ga.norm() + 1e-30))
    return True


def capture_features(model: "DreamModel", image: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """One-shot helper: features of ``layers`` for ``image`` (hooks removed afterwards)."""
    with FeatureHooks(model, layers) as hooks:
        return hooks.run(image)


def count_hooks(module: torch.nn.Module) -> int:
    """Number of forward hooks registered anywhere in ``module`` (for leak checks).

    For a :class:`~dream_core.models.spec.DreamModel` this includes the hooks on
    its cached execution copy (:func:`execution_net`), where ``FeatureHooks(...,
    optimize=True)`` registers them.
    """
    count = sum(len(m._forward_hooks) for m in module.modules())
    for _key, net in _EXEC_CACHE.get(module, {}).values():  # type: ignore[call-overload]
        if net is not getattr(module, "net", None):
            count += sum(len(m._forward_hooks) for m in net.modules())
    return count


@contextmanager
def grad_enabled_outside_inference() -> Iterator[None]:
    """Leave any enclosing ``torch.inference_mode()`` and enable autograd.

    ComfyUI runs nodes under ``inference_mode``; gradient ascent on the image
    needs normal tensors and autograd, so the dream loop runs inside this.
    """
    with torch.inference_mode(False), torch.enable_grad():
        yield
