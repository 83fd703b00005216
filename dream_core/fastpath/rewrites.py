"""The module rewrites of the execution copy, each a pair: find the candidates, rewrite them in place.

Every function here works on a *copy* of a network (see
:func:`dream_core.fastpath.execution.execution_net`), never on ``model.net``;
whether a rewrite is kept is decided afterwards by comparing features and image
gradients on a probe (:mod:`dream_core.fastpath.check`).

* BatchNorm folding: a ``BatchNorm2d`` that reads a convolution's output directly
  becomes part of that convolution's weights and bias.
* Static padding: stride-1 TensorFlow-"same" convolutions become plain ``nn.Conv2d``.
* LRN: ``nn.LocalResponseNorm`` becomes :class:`~dream_core.fastpath.lrn.ChannelWindowLRN`.
* Polyphase: strided convolutions reading the image become
  :class:`~dream_core.fastpath.polyphase.PolyphaseConv2d`.
* Native depthwise: depthwise convolutions become
  :class:`~dream_core.fastpath.depthwise.NativeDepthwiseConv2d` (CUDA: no cuDNN per-shape setup).
* ``channels_last``: convolution weights stored NHWC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..models.same_conv import SameConv2d
from .depthwise import NativeDepthwiseConv2d
from .depthwise import supports as supports_native_depthwise
from .lrn import ChannelWindowLRN
from .polyphase import PolyphaseConv2d
from .polyphase import supports as supports_polyphase

if TYPE_CHECKING:  # pragma: no cover
    from ..models.spec import DreamModel


def set_submodule(net: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at dotted ``path`` of ``net`` by ``module``."""
    parent, _, child = path.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, child, module)


# --------------------------------------------------------------------------- BatchNorm folding


def conv_bn_pairs(model: "DreamModel", net: nn.Module, probe: torch.Tensor) -> list[tuple[str, str]]:
    """``(conv path, bn path)`` pairs of ``net`` (a copy of ``model.net``) where the BatchNorm reads
    the convolution's output directly, runs once per forward, and the convolution is not a named layer."""
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


class ChannelBias(nn.Module):
    """What is left of a folded BatchNorm when its convolution's ``forward`` ignores ``self.bias``."""

    def __init__(self, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("bias", bias.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


def fold_pair(net: nn.Module, conv_name: str, bn_name: str) -> None:
    """Fold BatchNorm ``bn_name`` into convolution ``conv_name`` of ``net`` (in place; ``net`` is a copy).

    ``w' = w * s`` with ``s = gamma / sqrt(var + eps)``, bias ``(b - mean) * s + beta``;
    the BatchNorm becomes ``nn.Identity`` (or a :class:`ChannelBias` when the
    convolution's ``forward`` ignores ``self.bias``).
    """
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
        set_submodule(net, bn_name, nn.Identity())
    else:  # e.g. TensorFlow-"same" convolutions that call F.conv2d(x, self.weight, None, ...)
        if old_bias is not None:
            conv.bias = nn.Parameter(old_bias * scale, requires_grad=False)
        set_submodule(net, bn_name, ChannelBias(shift))


# --------------------------------------------------------------------------- static padding


def static_padding_candidates(net: nn.Module) -> list[str]:
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


def to_static_padding(net: nn.Module, names: list[str]) -> None:
    for name in names:
        old = net.get_submodule(name)
        k = old.kernel_size[0]
        new = nn.Conv2d(old.in_channels, old.out_channels, k, padding=k // 2, groups=old.groups,
                        bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype)
        new.weight = old.weight  # shared, not copied
        if old.bias is not None:
            new.bias = old.bias
        set_submodule(net, name, new.eval())


# --------------------------------------------------------------------------- LRN


def lrn_candidates(net: nn.Module) -> list[str]:
    return [name for name, m in net.named_modules() if type(m) is nn.LocalResponseNorm]


def replace_lrn(net: nn.Module, names: list[str]) -> None:
    for name in names:
        set_submodule(net, name, ChannelWindowLRN.from_module(net.get_submodule(name)))


# --------------------------------------------------------------------------- polyphase stems


def polyphase_candidates(net: nn.Module) -> list[str]:
    """Strided convolutions reading the image (at most 4 input channels) whose input gradient
    :class:`~dream_core.fastpath.polyphase.PolyphaseConv2d` computes faster.

    Measured on the CPU only (benchmarks/RESULTS.md): 1.9x for GoogLeNet's 7x7 stride-2 stem
    (forward + input gradient), 1.1-1.2x for 3x3 stride-2 stems; *slower* for convolutions with
    many input channels (depthwise or dense), which therefore keep PyTorch's backward.
    """
    return [
        name for name, m in net.named_modules()
        if supports_polyphase(m) and m.groups == 1 and m.in_channels <= 4
        and (type(m).forward is nn.Conv2d.forward or type(m) is SameConv2d)
    ]


def to_polyphase(net: nn.Module, names: list[str]) -> None:
    for name in names:
        old = net.get_submodule(name)
        set_submodule(net, name, PolyphaseConv2d.from_conv(old, tf_same=type(old) is SameConv2d).eval())


# --------------------------------------------------------------------------- native depthwise


def depthwise_candidates(net: nn.Module) -> list[str]:
    """Depthwise convolutions :class:`~dream_core.fastpath.depthwise.NativeDepthwiseConv2d` can run."""
    return [name for name, m in net.named_modules() if supports_native_depthwise(m)]


def to_native_depthwise(net: nn.Module, names: list[str]) -> None:
    for name in names:
        set_submodule(net, name, NativeDepthwiseConv2d.from_conv(net.get_submodule(name)).eval())


# --------------------------------------------------------------------------- memory format


def to_channels_last(net: nn.Module) -> None:
    """Store every convolution weight NHWC: mkldnn/cuDNN then pick their NHWC kernels, whatever the
    input layout (some nets re-pack their input, e.g. GoogLeNet's transform_input)."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            module.weight = nn.Parameter(module.weight.contiguous(memory_format=torch.channels_last),
                                         requires_grad=False)
