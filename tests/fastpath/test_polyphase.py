"""Polyphase input gradients of strided convolutions: same numbers as PyTorch's backward."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import textured_image
from dream_core.fastpath import execution_net
from dream_core.fastpath.polyphase import PolyphaseConv2d, phase_kernel, polyphase_input_grad, supports
from dream_core.features import FeatureHooks
from dream_core.models import get_spec
from dream_core.models.same_conv import SameConv2d
from dream_core.models.spec import DreamModel


def _reference_grad(x, weight, grad_out, stride, pads, groups):
    x = x.detach().clone().requires_grad_(True)
    y = F.conv2d(F.pad(x, pads), weight, None, stride, 0, 1, groups)
    assert y.shape == grad_out.shape
    (g,) = torch.autograd.grad(y, x, grad_out)
    return g


@pytest.mark.parametrize(
    "channels, out_channels, kernel, stride, pads, groups, size",
    [
        (3, 64, 7, 2, (3, 3, 3, 3), 1, (37, 50)),      # GoogLeNet / ResNet stem
        (3, 32, 3, 2, (0, 1, 0, 1), 1, (40, 41)),      # TF "same", extra pixel right/bottom
        (3, 32, 3, 2, (0, 0, 0, 0), 1, (31, 29)),      # Inception v3 stem, no padding
        (4, 6, (5, 3), 2, (2, 1, 1, 2), 1, (23, 18)),  # rectangular kernel, asymmetric pads
        (6, 6, 5, 2, (1, 2, 1, 2), 6, (21, 22)),       # depthwise
        (4, 8, 3, 2, (1, 1, 1, 1), 2, (16, 16)),       # grouped
        (2, 5, 4, 3, (1, 1, 1, 1), 1, (17, 20)),       # stride 3, even kernel
        (3, 4, 1, 2, (0, 0, 0, 0), 1, (9, 12)),        # 1x1: taps never reach odd rows
        (3, 4, 2, 2, (0, 0, 0, 0), 1, (10, 10)),       # kernel == stride
    ],
)
def test_polyphase_gradient_equals_pytorch_backward(channels, out_channels, kernel, stride, pads, groups, size):
    gen = torch.Generator().manual_seed(0)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    weight = torch.randn(out_channels, channels // groups, kh, kw, generator=gen, dtype=torch.float64)
    x = torch.randn(2, channels, *size, generator=gen, dtype=torch.float64)
    y = F.conv2d(F.pad(x, pads), weight, None, stride, 0, 1, groups)
    grad_out = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    expected = _reference_grad(x, weight, grad_out, stride, pads, groups)
    got = polyphase_input_grad(grad_out, phase_kernel(weight, stride, groups), stride, pads, size, groups)
    assert got.shape == x.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_gradient_keeps_the_channels_last_layout_of_the_output_gradient():
    weight = torch.randn(8, 3, 3, 3)
    grad_out = torch.randn(1, 8, 10, 12).contiguous(memory_format=torch.channels_last)
    got = polyphase_input_grad(grad_out, phase_kernel(weight, 2, 1), 2, (1, 1, 1, 1), (20, 24), 1)
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_module_matches_the_convolution_it_replaces_forward_and_backward():
    torch.manual_seed(0)
    for conv, tf_same in [(nn.Conv2d(3, 16, 7, stride=2, padding=3, bias=True), False), (SameConv2d(3, 8, 3, stride=2), True)]:
        conv.requires_grad_(False)
        poly = PolyphaseConv2d.from_conv(conv, tf_same=tf_same)
        assert poly.weight is conv.weight  # shared, not copied
        for size in [(33, 47), (32, 48)]:
            x = torch.randn(1, 3, *size, requires_grad=True)
            y_ref, y = conv(x), poly(x)
            torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
            g = torch.randn_like(y)
            (gx_ref,) = torch.autograd.grad(y_ref, x, g)
            (gx,) = torch.autograd.grad(y, x, g)
            torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-5)


def test_weight_gradients_still_come_from_pytorch_when_asked_for():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    poly = PolyphaseConv2d.from_conv(conv, tf_same=False)
    x = torch.randn(2, 3, 11, 13, requires_grad=True)
    refs = torch.autograd.grad(conv(x).square().sum(), (x, conv.weight, conv.bias))
    gots = torch.autograd.grad(poly(x).square().sum(), (x, poly.weight, poly.bias))
    for got, ref in zip(gots, refs):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_gradient_under_bf16_autocast_has_the_input_dtype():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False).requires_grad_(False)
    poly = PolyphaseConv2d.from_conv(conv, tf_same=False)
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = poly(x)
    assert y.dtype == torch.bfloat16
    (gx,) = torch.autograd.grad(y.float().sum(), x)
    (gx_ref,) = torch.autograd.grad(conv(x).sum(), x)
    assert gx.dtype == torch.float32
    assert (gx - gx_ref).abs().max() < 0.05 * gx_ref.abs().max()


def test_supports_only_square_strided_undilated_zero_padded_convolutions():
    assert supports(nn.Conv2d(3, 8, 3, stride=2))
    assert not supports(nn.Conv2d(3, 8, 3, stride=1))
    assert not supports(nn.Conv2d(3, 8, 3, stride=(2, 1)))
    assert not supports(nn.Conv2d(3, 8, 3, stride=2, dilation=2))
    assert not supports(nn.Conv2d(3, 8, 3, stride=2, padding=1, padding_mode="reflect"))
    assert not supports(nn.Conv2d(3, 8, 3, stride=2, padding="valid"))
    with pytest.raises(ValueError, match="square stride >= 2"):
        PolyphaseConv2d.from_conv(nn.Conv2d(3, 8, 3), tf_same=False)


@pytest.mark.parametrize("name", ["googlenet", "efficientnet_lite0", "bvlc_googlenet"])
def test_execution_copy_uses_it_for_the_stem_only_and_keeps_the_image_gradient(name):
    spec = get_spec(name)
    torch.manual_seed(0)
    with torch.no_grad():
        model = DreamModel(spec, spec.build(), "random init")
    fast = execution_net(model)
    replaced = [n for n, m in fast.named_modules() if isinstance(m, PolyphaseConv2d)]
    assert len(replaced) == 1  # the stem; the deeper strided convolutions keep PyTorch's backward
    assert next(m for m in fast.modules() if isinstance(m, PolyphaseConv2d)).in_channels == 3
    x = textured_image(96, 120)
    layer = spec.default_objective

    def image_grad(optimize: bool) -> torch.Tensor:
        xg = x.clone().requires_grad_(True)
        with FeatureHooks(model, [layer], optimize=optimize) as hooks:
            value = hooks.run(xg)[layer].square().mean()
        return torch.autograd.grad(value, xg)[0]

    plain, opt = image_grad(False), image_grad(True)
    assert (opt - plain).norm() <= 0.02 * plain.norm()


def test_execution_copy_refuses_the_rewrite_when_the_probe_gradient_disagrees(monkeypatch, caplog):
    import dream_core.fastpath.polyphase as strided

    def shifted(*args, **kwargs):  # a plausible bug: the gradient one pixel off
        return torch.roll(polyphase_input_grad(*args, **kwargs), 1, dims=-1)

    monkeypatch.setattr(strided, "polyphase_input_grad", shifted)
    spec = get_spec("googlenet")
    torch.manual_seed(0)
    with torch.no_grad():
        model = DreamModel(spec, spec.build(), "random init")
    fast = execution_net(model)
    assert fast is not model.net  # the other rewrites (BatchNorm folding, channels_last) stay ...
    assert not any(isinstance(m, PolyphaseConv2d) for m in fast.modules())  # ... the polyphase one is dropped


def test_stem_used_under_inference_mode_first_still_dreams_afterwards():
    """ComfyUI runs nodes under inference_mode: a feature read there must not spoil later dream steps."""
    from dream_core.dream import DreamSettings, dream_image

    spec = get_spec("googlenet")
    torch.manual_seed(0)
    with torch.no_grad():
        model = DreamModel(spec, spec.build(), "random init")
    x = textured_image(96, 96)
    with torch.inference_mode():
        with FeatureHooks(model, ["inception4c"], optimize=True) as hooks:
            hooks.run(x)
        out = dream_image(model, x, None, DreamSettings(num_octaves=1, num_iterations=2, jitter=0))
    assert out.shape == x.shape and torch.isfinite(out).all()
