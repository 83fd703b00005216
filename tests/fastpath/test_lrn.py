"""ChannelWindowLRN (dream_core.fastpath.lrn): PyTorch's LocalResponseNorm with a closed-form backward."""

import pytest
import torch
from torch import nn

from dream_core.fastpath.lrn import ChannelWindowLRN


@pytest.mark.parametrize("size", [1, 2, 4, 5, 7])
@pytest.mark.parametrize("channels_last", [False, True])
def test_channel_window_lrn_matches_pytorchs_forward_and_gradient(size, channels_last):
    torch.manual_seed(size)
    lrn = nn.LocalResponseNorm(size, alpha=1e-2, beta=0.75, k=2.0)
    for shape in [(2, 3, 5, 6), (1, 16, 7, 9)]:
        x = torch.randn(*shape, dtype=torch.float64) * 3
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        ref, fast = lrn(x), ChannelWindowLRN.from_module(lrn)(x)
        torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-12)
        g = torch.randn_like(ref)
        (g_ref,) = torch.autograd.grad(ref, x, g)
        (g_fast,) = torch.autograd.grad(fast, x, g)
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-9, atol=1e-12)


def test_channel_window_lrn_computes_half_precision_in_float32():
    lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
    x = (torch.rand(1, 8, 6, 6) * 40).requires_grad_(True)
    fast = ChannelWindowLRN.from_module(lrn)
    y = fast(x.bfloat16())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), lrn(x), rtol=2e-2, atol=1e-2)
    (g,) = torch.autograd.grad(y.float().sum(), x)
    (g_ref,) = torch.autograd.grad(lrn(x).sum(), x)
    assert g.dtype == torch.float32 and (g - g_ref).abs().max() < 0.05 * g_ref.abs().max()
