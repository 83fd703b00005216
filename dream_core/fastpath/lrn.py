"""Local response normalisation with a hand-written backward pass.

BVLC GoogLeNet (the original tool's model) normalises across channels twice,
``y_c = x_c * (k + alpha/n * sum_{j in W(c)} x_j**2) ** -beta`` with a window
``W(c) = [c - n//2, c + (n-1)//2]`` zero-padded at the ends (PyTorch's
``nn.LocalResponseNorm``). PyTorch computes the window with ``avg_pool3d`` and
differentiates through every intermediate; on the CPU the two LRN layers were
about 40% of a BVLC GoogLeNet dream step (benchmarks/RESULTS.md).

:class:`ChannelWindowLRN` computes the window as ``n`` shifted adds along the
channel axis (any memory format) and its gradient in closed form::

    dL/dx_j = g_j p_j - (2 beta alpha / n) x_j * sum_{c: j in W(c)} g_c x_c p_c / s_c

with ``s = k + alpha/n * window_sum(x**2)`` and ``p = s**-beta`` saved from the
forward, so one ``pow`` per step instead of several, and no autograd graph
through the intermediates. Half-precision inputs (autocast) are computed in
float32 and returned in their own dtype.
"""

from __future__ import annotations

import torch
from torch import nn


def window_sum(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """``out[:, c] = sum(x[:, c - before : c + after + 1])`` along dim 1, zeros past the ends.

    Args:
        x: ``[N, C, ...]`` in any memory format.
        before, after: window reach towards lower and higher channel indices.

    Returns:
        A new tensor like ``x`` (same layout).
    """
    out = x.clone()
    c = x.shape[1]
    for d in range(1, min(before, c - 1) + 1):  # channel i also sums channel i - d
        out[:, d:] += x[:, : c - d]
    for d in range(1, min(after, c - 1) + 1):  # ... and channel i + d
        out[:, : c - d] += x[:, d:]
    return out


class _LRNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):  # type: ignore[override]
        work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        before, after = size // 2, (size - 1) // 2
        s = window_sum(work * work, before, after)
        s.mul_(alpha / size).add_(k)
        p = s.pow(-beta)
        ctx.save_for_backward(work, s, p)
        ctx.size, ctx.alpha, ctx.beta, ctx.window, ctx.dtype = size, alpha, beta, (before, after), x.dtype
        return (work * p).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, s, p = ctx.saved_tensors
        g = grad_out.to(x.dtype)
        before, after = ctx.window
        t = (g * x).mul_(p).div_(s)
        reach = window_sum(t, after, before)  # the adjoint window: c such that j is in W(c)
        grad = torch.addcmul(g * p, x, reach, value=-2.0 * ctx.beta * ctx.alpha / ctx.size)
        return grad.to(ctx.dtype), None, None, None, None


class ChannelWindowLRN(nn.Module):
    """Drop-in for ``nn.LocalResponseNorm`` (same parameters, same output), faster forward and backward.

    Input and output ``[N, C, *]``; the normalisation runs along dim 1.
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    @classmethod
    def from_module(cls, lrn: nn.LocalResponseNorm) -> "ChannelWindowLRN":
        return cls(lrn.size, lrn.alpha, lrn.beta, lrn.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LRNFunction.apply(x, self.size, float(self.alpha), float(self.beta), float(self.k))

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
