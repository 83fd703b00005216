"""TensorFlow "same" convolutions, as networks ported from TensorFlow use them.

:func:`tf_same_pads` is the one place that computes TensorFlow's "same" padding;
:class:`SameConv2d` (EfficientNet-Lite's convolutions) and the execution copy's
polyphase stems (:mod:`dream_core.fastpath.polyphase`) both use it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def tf_same_pads(h: int, w: int, kernel: tuple[int, int], stride: int) -> tuple[int, int, int, int]:
    """TensorFlow "same" padding of an ``h x w`` input as ``(left, right, top, bottom)`` (``F.pad`` order).

    Output size is ``ceil(input / stride)``; when the total padding is odd the
    extra pixel goes to the bottom/right.
    """
    kh, kw = kernel
    ph = max((math.ceil(h / stride) - 1) * stride + kh - h, 0)
    pw = max((math.ceil(w / stride) - 1) * stride + kw - w, 0)
    return (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "same" padding computed from the input size.

    Output size is ``ceil(input / stride)``; when the total padding is odd the
    extra pixel goes to the bottom/right, as in TensorFlow.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = tf_same_pads(x.shape[-2], x.shape[-1], self.kernel_size, self.stride[0])
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)
