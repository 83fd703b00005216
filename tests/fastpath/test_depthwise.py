"""Depthwise convolutions on ATen's native kernels (dream_core.fastpath.depthwise): same numbers as nn.Conv2d."""

import pytest
import torch
from torch import nn

from conftest import textured_image
from dream_core.fastpath import execution_net
from dream_core.fastpath.depthwise import NativeDepthwiseConv2d, supports
from dream_core.features import FeatureHooks
from dream_core.models.same_conv import SameConv2d

from .test_execution import _zoo_model


def _depthwise(kind: str, dtype=torch.float64) -> nn.Conv2d:
    torch.manual_seed(0)
    if kind == "same stride 2":
        return SameConv2d(6, 6, 5, stride=2, groups=6).to(dtype)
    if kind == "multiplier":
        return nn.Conv2d(4, 8, 3, padding=1, groups=4, bias=True).to(dtype)
    return nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=True).to(dtype)


@pytest.mark.parametrize("kind", ["plain", "same stride 2", "multiplier"])
def test_forward_and_input_gradient_are_the_convolutions(kind):
    conv = _depthwise(kind)
    native = NativeDepthwiseConv2d.from_conv(conv)
    assert native.weight is conv.weight  # shared, not copied
    x = torch.rand(2, conv.in_channels, 11, 14, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(native(x), conv(x))
    small = torch.rand(1, conv.in_channels, 6, 7, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(native, (small,), fast_mode=True)
    g = torch.rand_like(conv(x))
    (want,) = torch.autograd.grad(conv(x), x, g)
    (got,) = torch.autograd.grad(native(x), x, g)
    torch.testing.assert_close(got, want)


def test_weight_and_bias_gradients_when_asked():
    conv = _depthwise("plain")
    native = NativeDepthwiseConv2d.from_conv(conv)
    x = torch.rand(1, 6, 9, 9, dtype=torch.float64)
    got = torch.autograd.grad(native(x).square().sum(), (native.weight, native.bias))
    want = torch.autograd.grad(conv(x).square().sum(), (conv.weight, conv.bias))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_forward_and_backward_run_with_cudnn_off_and_the_flag_comes_back():
    """What makes PyTorch pick its native depthwise kernels on CUDA: cuDNN off at both convolutions, and only there."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class FlagAtConvolutions(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[str, bool]] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten.convolution, torch.ops.aten.convolution_backward):
                self.seen.append((func.overloadpacket.__name__, torch.backends.cudnn.enabled))
            return func(*args, **(kwargs or {}))

    native = NativeDepthwiseConv2d.from_conv(_depthwise("plain", torch.float32))
    x = torch.rand(1, 6, 9, 9, requires_grad=True)
    with FlagAtConvolutions() as mode:
        (grad,) = torch.autograd.grad(native(x).sum(), x)
    assert mode.seen == [("convolution", False), ("convolution_backward", False)]
    assert torch.backends.cudnn.enabled


def test_autocast_keeps_the_input_gradient_in_the_input_dtype():
    conv = _depthwise("plain", torch.float32)
    native = NativeDepthwiseConv2d.from_conv(conv)
    x = torch.rand(1, 6, 16, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = native(x)
        ref = conv(x)
    assert out.dtype == ref.dtype == torch.bfloat16
    (g,) = torch.autograd.grad(out.float().sum(), x)
    (want,) = torch.autograd.grad(ref.float().sum(), x)
    assert g.dtype == torch.float32
    torch.testing.assert_close(g, want, rtol=2e-2, atol=2e-2)


def test_only_depthwise_convolutions_are_taken():
    assert supports(_depthwise("plain")) and supports(_depthwise("same stride 2"))
    assert not supports(nn.Conv2d(6, 6, 3, groups=3))  # grouped, not depthwise
    assert not supports(nn.Conv2d(6, 6, 3, groups=6, dilation=2))
    assert not supports(nn.Conv2d(6, 6, 3, groups=6, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="depthwise convolution"):
        NativeDepthwiseConv2d.from_conv(nn.Conv2d(3, 8, 3))


def test_lite0_copy_with_native_depthwise_matches_and_is_off_by_default_on_the_cpu():
    model = _zoo_model("efficientnet_lite0")
    native = execution_net(model, depthwise=True)
    count = sum(isinstance(m, NativeDepthwiseConv2d) for m in native.modules())
    assert count == 16  # every MBConv block's depthwise convolution
    assert not any(isinstance(m, NativeDepthwiseConv2d) for m in execution_net(model).modules())
    x = textured_image(80, 96)
    layer = model.spec.default_objective
    feats = []
    for depthwise in (False, True):
        with torch.no_grad(), FeatureHooks(model, [layer], optimize=True, depthwise=depthwise) as hooks:
            feats.append(hooks.run(x)[layer])
    assert (feats[1] - feats[0]).abs().max() <= 1e-4 * feats[0].abs().max()


@pytest.mark.cuda
def test_on_cuda_the_native_kernels_match_cudnns():
    conv = _depthwise("same stride 2", torch.float32).cuda()
    native = NativeDepthwiseConv2d.from_conv(conv)
    x = torch.rand(1, 6, 64, 80, device="cuda").contiguous(memory_format=torch.channels_last).requires_grad_(True)
    a, b = native(x), conv(x)
    torch.testing.assert_close(a, b, rtol=2e-3, atol=2e-3)  # cuDNN may round in TF32
    g = torch.rand_like(a)
    torch.testing.assert_close(torch.autograd.grad(a, x, g)[0], torch.autograd.grad(b, x, g)[0], rtol=2e-3, atol=2e-3)
    assert torch.backends.cudnn.enabled


@pytest.mark.cuda
def test_lite0_execution_copy_on_cuda_runs_depthwise_natively():
    model = _zoo_model("efficientnet_lite0", "cuda")
    net = execution_net(model)
    assert net is not model.net
    assert sum(isinstance(m, NativeDepthwiseConv2d) for m in net.modules()) == 16
