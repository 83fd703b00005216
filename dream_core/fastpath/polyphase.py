"""Strided convolutions whose input gradient runs as one stride-1 convolution.

DeepDream needs the gradient of the objective with respect to the *image*, so
every convolution's input gradient is computed, including the first one's.
For stride-2 convolutions PyTorch computes it as a transposed convolution, and
on the CPU (oneDNN) that is slow exactly where a dream spends time: GoogLeNet's
7x7 stride-2 stem (3 output channels of gradient) took 4.6x its forward, and
EfficientNet-Lite0's stride-2 depthwise convolutions up to 20x (benchmarks/RESULTS.md).

The same gradient can be written as ``stride**2`` *phases*: the gradient at
input row ``s*q + a`` (``a < s``) only sees kernel taps ``u = s*t + a``. Each
phase is an ordinary stride-1 correlation of the output gradient with a
flipped sub-kernel, and all phases together are one stride-1 convolution with
``C * s**2`` output channels followed by :func:`torch.nn.functional.pixel_shuffle`,
which interleaves the phases back into full resolution. That convolution is a
*forward* kernel, which oneDNN runs at full speed.

:class:`PolyphaseConv2d` is a drop-in ``nn.Conv2d`` (same weights, same forward)
using this for its input gradient. Weights are expected to be frozen (the dream
loop's execution copy); their gradients, if asked for, come from PyTorch's own
``convolution_backward``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..models.same_conv import tf_same_pads

Pads = tuple[int, int, int, int]  # (left, right, top, bottom), as F.pad takes them


def phase_kernel(weight: torch.Tensor, stride: int, groups: int) -> torch.Tensor:
    """The stride-1 kernel that computes all ``stride**2`` input-gradient phases at once.

    Args:
        weight: ``[O, C/groups, kh, kw]``, the strided convolution's weight.
        stride: ``s`` (the same along both axes).
        groups: the convolution's ``groups``.

    Returns:
        ``[C * s * s, O/groups, Th, Tw]`` with ``Th = ceil(kh / s)``: output
        channel ``c*s*s + a*s + b`` holds, flipped, the taps ``u = s*t + a``,
        ``v = s*t' + b`` of input channel ``c`` (``pixel_shuffle``'s order).
    """
    o, cg, kh, kw = weight.shape
    th, tw = -(-kh // stride), -(-kw // stride)
    padded = F.pad(weight, (0, tw * stride - kw, 0, th * stride - kh))  # zero taps past the kernel
    og = o // groups
    k = padded.reshape(groups, og, cg, th, stride, tw, stride)  # [G, Og, Cg, t, a, t', b]
    k = k.permute(0, 2, 4, 6, 1, 3, 5)  # [G, Cg, a, b, Og, t, t']
    k = k.flip(-2, -1)  # correlation with the flipped sub-kernel = the transposed convolution's sum
    return k.reshape(groups * cg * stride * stride, og, th, tw).contiguous()


def polyphase_input_grad(
    grad_out: torch.Tensor,
    kernel: torch.Tensor,
    stride: int,
    pads: Pads,
    input_hw: tuple[int, int],
    groups: int,
) -> torch.Tensor:
    """Gradient w.r.t. the input of ``conv2d(pad(x, pads), weight, stride=stride, groups=groups)``.

    Args:
        grad_out: ``[N, O, Ho, Wo]``, gradient w.r.t. the convolution's output.
        kernel: :func:`phase_kernel` of the weight (any memory format; cast to
            ``grad_out``'s dtype here).
        stride: ``s``.
        pads: ``(left, right, top, bottom)`` zero padding applied before the convolution.
        input_hw: ``(H, W)`` of the unpadded input.
        groups: the convolution's ``groups``.

    Returns:
        ``[N, C, H, W]`` in ``grad_out``'s dtype and memory format.
    """
    left, _, top, _ = pads
    h, w = input_hw
    th, tw = kernel.shape[-2:]
    ho, wo = grad_out.shape[-2:]
    qh, qw = -(-(top + h) // stride), -(-(left + w) // stride)  # phase rows/cols covering the input
    # Row q of a phase reads grad rows q-t for t < Th: Th-1 zero rows before, and enough after (or fewer rows).
    g = F.pad(grad_out, (tw - 1, qw - wo, th - 1, qh - ho))
    phases = F.conv2d(g, kernel.to(dtype=grad_out.dtype), None, 1, 0, 1, groups)  # [N, C*s*s, qh, qw]
    full = F.pixel_shuffle(phases, stride)  # [N, C, s*qh, s*qw]: padded-input rows 0 .. s*qh-1
    grad = full[:, :, top : top + h, left : left + w]
    fmt = torch.channels_last if grad_out.is_contiguous(memory_format=torch.channels_last) and grad_out.shape[1] > 1 \
        else torch.contiguous_format
    # A dense result in the layout the rest of the backward pass uses (mixed layouts make
    # the next elementwise backward several times slower).
    return grad.contiguous(memory_format=fmt)


class _PolyphaseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, kernel, stride, pads, groups):  # type: ignore[override]
        left, right, top, bottom = pads
        if left == right == top == bottom:
            out = F.conv2d(x, weight, bias, stride, left, 1, groups)
        else:
            out = F.conv2d(F.pad(x, pads), weight, bias, stride, 0, 1, groups)
        ctx.stride, ctx.pads, ctx.groups = stride, pads, groups
        ctx.input_hw, ctx.input_dtype = tuple(x.shape[-2:]), x.dtype
        ctx.params_need_grad = weight.requires_grad or (bias is not None and bias.requires_grad)
        ctx.save_for_backward(kernel, x if ctx.params_need_grad else None, weight if ctx.params_need_grad else None)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        kernel, x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = polyphase_input_grad(grad_out, kernel, ctx.stride, ctx.pads, ctx.input_hw, ctx.groups)
            grad_x = grad_x.to(ctx.input_dtype)
        if ctx.params_need_grad:
            xp = F.pad(x, ctx.pads)
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad_out, xp.to(grad_out.dtype), weight.to(grad_out.dtype), [weight.shape[0]] if ctx.has_bias else None,
                [ctx.stride] * 2, [0, 0], [1, 1], False, [0, 0], ctx.groups,
                [False, ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]],
            )
        return grad_x, grad_w, grad_b, None, None, None, None


class PolyphaseConv2d(nn.Conv2d):
    """A strided ``nn.Conv2d`` (optionally with TensorFlow "same" padding) whose input
    gradient is computed by :func:`polyphase_input_grad`.

    The forward is the convolution it replaces; build it with :meth:`from_conv`,
    which shares the original's weight and bias tensors.
    """

    tf_same: bool
    _kernel_cache: Optional[tuple[tuple, torch.Tensor]]  # (weight key, phase_kernel) made once per weight version

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, *, tf_same: bool) -> "PolyphaseConv2d":
        """Wrap ``conv`` (stride ``s >= 2`` equal on both axes, dilation 1, zero padding).

        ``tf_same``: pad like TensorFlow "same" (computed from the input size at run
        time, extra pixel bottom/right) instead of ``conv.padding``.
        """
        if not supports(conv):
            raise ValueError(f"PolyphaseConv2d needs a square stride >= 2, dilation 1 and zero padding; got {conv}.")
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                  padding=0 if tf_same else conv.padding, groups=conv.groups, bias=conv.bias is not None,
                  device="meta")
        new.weight = conv.weight  # shared, not copied
        new.bias = conv.bias
        new.tf_same = tf_same
        new._kernel_cache = None
        return new.train(conv.training)

    def _pads(self, h: int, w: int) -> Pads:
        if not self.tf_same:
            ph, pw = self.padding  # type: ignore[misc]
            return (pw, pw, ph, ph)
        return tf_same_pads(h, w, self.kernel_size, self.stride[0])

    def _kernel(self) -> torch.Tensor:
        weight = self.weight
        key = (id(weight), weight._version, weight.device, weight.dtype)
        cached = self._kernel_cache
        if cached is None or cached[0] != key:
            with torch.no_grad():
                kernel = phase_kernel(weight.detach(), self.stride[0], self.groups)
            fmt = torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
            cached = (key, kernel.contiguous(memory_format=fmt))
            self._kernel_cache = cached
        return cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = self._pads(*x.shape[-2:])
        return _PolyphaseConv.apply(x, self.weight, self.bias, self._kernel(), self.stride[0], pads, self.groups)


def supports(conv: nn.Module) -> bool:
    """Whether ``conv`` is a convolution :class:`PolyphaseConv2d` can stand in for."""
    return (
        isinstance(conv, nn.Conv2d) and not isinstance(conv, PolyphaseConv2d)
        and conv.stride[0] == conv.stride[1] and conv.stride[0] >= 2
        and conv.dilation == (1, 1) and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)
    )
