"""Depthwise convolutions on ATen's own CUDA kernels instead of cuDNN's.

On an H200 the first EfficientNet-Lite0 720p frame took 12.5-16.8 s, paid once per
process and per new octave shape, while GoogLeNet's took about 1 s
(docs: gpu-facts). Lite0 is built of depthwise convolutions, and with
``channels_last`` tensors (the execution copy's layout) PyTorch hands every
depthwise convolution to cuDNN, whose engine choice (and runtime-compiled
engines) is made per shape. ATen's native depthwise kernels have no per-shape
setup.

:class:`NativeDepthwiseConv2d` runs its forward *and* its backward with cuDNN
switched off for that one call (:func:`~dream_core.backends.cudnn_disabled`,
restored right after), so PyTorch picks the native depthwise kernels for both;
every other convolution keeps cuDNN. On the CPU the flag means nothing and the
module computes exactly what ``nn.Conv2d`` computes (the tests compare them there).
``benchmarks/gpu_check.py`` measures both choices on a GPU (first frame and steady
speed); :func:`dream_core.fastpath.execution_net` takes ``depthwise=``.

Half-precision inputs (autocast) are convolved in the dtype autocast picks; the
input gradient comes back in the input's own dtype.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..backends import cudnn_disabled
from ..models.same_conv import SameConv2d, tf_same_pads


class _NativeDepthwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, groups):  # type: ignore[override]
        with cudnn_disabled():
            out = F.conv2d(x, weight, bias, stride, padding, 1, groups)
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.groups, ctx.has_bias = stride, padding, groups, bias is not None
        ctx.x_dtype = x.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        dtype = grad_out.dtype
        need_x, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]
        if not (need_x or need_w or need_b):
            return None, None, None, None, None, None
        with cudnn_disabled():
            gx, gw, gb = torch.ops.aten.convolution_backward(
                grad_out, x.to(dtype), weight.to(dtype), [weight.shape[0]] if ctx.has_bias else None,
                list(ctx.stride), list(ctx.padding), [1, 1], False, [0, 0], ctx.groups, [need_x, need_w, need_b],
            )
        gx = gx.to(ctx.x_dtype) if gx is not None else None
        gw = gw.to(weight.dtype) if gw is not None else None
        gb = gb.to(weight.dtype) if gb is not None else None
        return gx, gw, gb, None, None, None


def supports(conv: nn.Module) -> bool:
    """Whether ``conv`` is a depthwise convolution :class:`NativeDepthwiseConv2d` can stand in for:
    a plain ``nn.Conv2d`` or a :class:`~dream_core.models.same_conv.SameConv2d`, one group per input
    channel (more than one), dilation 1, zero padding."""
    return (
        isinstance(conv, nn.Conv2d) and not isinstance(conv, NativeDepthwiseConv2d)
        and (type(conv).forward is nn.Conv2d.forward or type(conv) is SameConv2d)
        and conv.groups > 1 and conv.groups == conv.in_channels and conv.out_channels % conv.groups == 0
        and conv.dilation == (1, 1) and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)
    )


class NativeDepthwiseConv2d(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` (optionally with TensorFlow "same" padding) run on ATen's native kernels.

    Build it with :meth:`from_conv`, which shares the original's weight and bias tensors.
    Input ``[N,C,H,W]`` (any memory format), output as the convolution it replaces.
    """

    tf_same: bool

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "NativeDepthwiseConv2d":
        """Wrap ``conv`` (see :func:`supports`); TensorFlow "same" padding is kept for a ``SameConv2d``."""
        if not supports(conv):
            raise ValueError(f"NativeDepthwiseConv2d needs a depthwise convolution with dilation 1 and zero padding; "
                             f"got {conv}.")
        tf_same = type(conv) is SameConv2d
        bias = None if tf_same else conv.bias  # SameConv2d's forward ignores self.bias
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                  padding=0 if tf_same else conv.padding, groups=conv.groups, bias=bias is not None,
                  device="meta")
        new.weight = conv.weight  # shared, not copied
        new.bias = bias
        new.tf_same = tf_same
        return new.train(conv.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding: tuple[int, int] = self.padding  # type: ignore[assignment]
        if self.tf_same:
            pads = tf_same_pads(x.shape[-2], x.shape[-1], self.kernel_size, self.stride[0])
            if any(pads):
                x = F.pad(x, pads)
            padding = (0, 0)
        bias: Optional[torch.Tensor] = self.bias
        return _NativeDepthwise.apply(x, self.weight, bias, tuple(self.stride), tuple(padding), self.groups)
