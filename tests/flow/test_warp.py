"""Pins the flow convention of dream_core.warp: zero flow, integer shifts, sub-pixel, masks."""

from __future__ import annotations

import pytest
import torch

from dream_core.errors import FlowError, InvalidImageError, InvalidParameterError
from dream_core.flow.warp import check_flow, inside_mask, warp, warp_with_mask


def _image(b: int = 2, c: int = 3, h: int = 20, w: int = 24, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, c, h, w, generator=g, dtype=dtype)


def _const_flow(h: int, w: int, u: float, v: float, n: int | None = None, dtype=torch.float32) -> torch.Tensor:
    flow = torch.empty(h, w, 2, dtype=dtype)
    flow[..., 0] = u
    flow[..., 1] = v
    return flow if n is None else flow.expand(n, -1, -1, -1).clone()


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_zero_flow_is_identity(dtype, atol):
    # float32 grid_sample un-normalises sample positions in float32, which costs
    # about W * 6e-8 px of position (1.3e-6 in value here); float64 is exact.
    img = _image(dtype=dtype)
    for flow in (_const_flow(20, 24, 0, 0), _const_flow(20, 24, 0, 0, n=2)):
        out, valid = warp_with_mask(img, flow)
        torch.testing.assert_close(out, img, atol=atol, rtol=0)
        assert valid.shape == (2, 20, 24) and bool((valid == 1).all())


@pytest.mark.parametrize("u,v", [(3, 0), (0, -2), (3, -2), (-4, 5)])
def test_integer_flow_equals_roll_in_interior(u, v):
    # Convention: out(x, y) = in(x + u, y + v), so u = +3 is torch.roll by -3 along x.
    img = _image(h=30, w=32)
    out, valid = warp_with_mask(img, _const_flow(30, 32, u, v))
    rolled = torch.roll(img, shifts=(-v, -u), dims=(-2, -1))
    ys = slice(max(0, -v), 30 - max(0, v))
    xs = slice(max(0, -u), 32 - max(0, u))
    torch.testing.assert_close(out[..., ys, xs], rolled[..., ys, xs], atol=1e-5, rtol=0)
    assert bool((valid[:, ys, xs] == 1).all())
    # Everything outside that interior sampled outside the image.
    assert int(valid.sum()) == 2 * (ys.stop - ys.start) * (xs.stop - xs.start)


def test_positive_u_moves_picture_left():
    img = torch.zeros(1, 1, 5, 9)
    img[..., 6] = 1.0  # bright column at x = 6
    out = warp(img, _const_flow(5, 9, 3, 0))
    assert int(out[0, 0, 0].argmax()) == 3  # out(3) = in(6)


def test_subpixel_bilinear_on_linear_ramp():
    h, w = 16, 20
    xs = torch.arange(w, dtype=torch.float64)
    ys = torch.arange(h, dtype=torch.float64)
    ramp = (0.5 * xs[None, :] + 0.25 * ys[:, None]).expand(1, 1, h, w).contiguous()
    flow = _const_flow(h, w, 0.3, -0.7, dtype=torch.float64)
    out, valid = warp_with_mask(ramp, flow)
    expected = ramp + 0.5 * 0.3 + 0.25 * -0.7
    inner = valid[0].bool()
    torch.testing.assert_close(out[0, 0][inner], expected[0, 0][inner], atol=1e-10, rtol=0)
    # Row 0 samples y = -0.7: outside, and flagged so.
    assert bool((valid[0, 0] == 0).all()) and bool((valid[0, 1:, :-1] == 1).all())


def test_per_pixel_flow_reads_the_right_source():
    img = _image(b=1, c=1, h=6, w=7)
    flow = torch.zeros(6, 7, 2)
    flow[2, 3] = torch.tensor([2.0, 1.0])  # out(3, 2) = in(5, 3)
    out = warp(img, flow)
    assert float(out[0, 0, 2, 3]) == pytest.approx(float(img[0, 0, 3, 5]), abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_and_dtype_follow_image(dtype):
    img = _image(dtype=dtype)
    flow = _const_flow(20, 24, 1.5, 0.5)  # float32 flow on purpose
    out, valid = warp_with_mask(img, flow)
    assert out.dtype == dtype and valid.dtype == dtype
    assert out.device == img.device and out.shape == img.shape


@pytest.mark.cuda
def test_cuda_stays_on_device():
    img = _image().cuda()
    out = warp(img, _const_flow(20, 24, 1.0, 0.0))
    assert out.device == img.device


def test_mask_zero_where_samples_fall_outside():
    flow = torch.zeros(10, 12, 2)
    flow[..., 0] = torch.linspace(-15, 15, 12)  # left pixels look left of 0, right pixels past W-1
    mask = inside_mask(flow)
    assert mask.shape == (10, 12)
    xs = torch.arange(12.0) + flow[0, :, 0]
    expected = ((xs >= 0) & (xs <= 11)).float()
    torch.testing.assert_close(mask[0], expected)
    _, valid = warp_with_mask(_image(b=1, h=10, w=12), flow)
    torch.testing.assert_close(valid[0], mask)


def test_border_padding_repeats_edge():
    img = _image(b=1, h=8, w=8)
    out_zero = warp(img, _const_flow(8, 8, 2, 0), padding_mode="zeros")
    out_border = warp(img, _const_flow(8, 8, 2, 0), padding_mode="border")
    assert bool((out_zero[..., -1] == 0).all())
    torch.testing.assert_close(out_border[..., -1], img[..., -1])


def test_batch_broadcast():
    img = _image(b=1)
    flows = torch.stack([_const_flow(20, 24, 0, 0), _const_flow(20, 24, 1, 0)])
    out = warp(img, flows)
    assert out.shape == (2, 3, 20, 24)
    torch.testing.assert_close(out[0], img[0])


def test_errors():
    img = _image()
    with pytest.raises(FlowError, match="24x20"):
        warp(img, torch.zeros(10, 10, 2))
    with pytest.raises(FlowError, match=r"\[H,W,2\]"):
        warp(img, torch.zeros(2, 20, 24))
    with pytest.raises(FlowError, match="fields"):
        warp(img, torch.zeros(3, 20, 24, 2))
    with pytest.raises(InvalidImageError):
        warp(img[0], torch.zeros(20, 24, 2))
    with pytest.raises(InvalidImageError):
        warp((img * 255).to(torch.uint8), torch.zeros(20, 24, 2))
    with pytest.raises(InvalidParameterError):
        warp(img, torch.zeros(20, 24, 2), padding_mode="wrap")
    with pytest.raises(FlowError):
        check_flow(torch.zeros(20, 24, 2, dtype=torch.int64))
