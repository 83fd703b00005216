"""Flow estimation pinned to the documented sign, reliability masks, FlowSet, previews."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import multiscale_texture, shared_file
from dream_core.errors import FlowError, InvalidImageError, InvalidParameterError, WeightsError
from dream_core.flow import (
    DEFAULT_FLOW_METHOD,
    FLOW_METHODS,
    FlowEstimator,
    FlowSet,
    compute_flow,
    compute_flows,
    flow_size,
    flow_to_color,
    load_raft,
    motion_edges,
    reliability_mask,
    resize_flow,
)
from dream_core.warp import warp

SHIFT_X, SHIFT_Y = 3, -2  # content moves 3 px right and 2 px up from prev to cur
CV_METHODS = [m for m in FLOW_METHODS if not m.startswith("raft")]


def _photo(h: int, w: int) -> torch.Tensor:
    from PIL import Image

    path = shared_file("tubingen.jpg")
    with Image.open(path) as im:
        im = im.convert("RGB").resize((256, 192))
        data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    img = data.view(192, 256, 3).permute(2, 0, 1).float().div(255.0)
    return img[None, :, 40 : 40 + h, 60 : 60 + w].contiguous()


def _shifted(prev: torch.Tensor) -> torch.Tensor:
    # cur(x, y) = prev(x - 3, y + 2)  =>  backward flow (u, v) = (-3, +2).
    return torch.roll(prev, shifts=(SHIFT_Y, SHIFT_X), dims=(-2, -1))


def _interior(t: torch.Tensor, m: int = 12) -> torch.Tensor:
    return t[..., m:-m, m:-m] if t.dim() == 4 else t[m:-m, m:-m]


def _check_shift(prev: torch.Tensor, cur: torch.Tensor, bw: torch.Tensor, fw: torch.Tensor | None = None) -> None:
    assert bw.shape == (*prev.shape[-2:], 2) and bw.dtype == torch.float32
    med = _interior(bw).reshape(-1, 2).median(dim=0).values
    assert abs(float(med[0]) - (-SHIFT_X)) < 0.5 and abs(float(med[1]) - (-SHIFT_Y)) < 0.5, med
    if fw is not None:
        med_fw = _interior(fw).reshape(-1, 2).median(dim=0).values
        assert abs(float(med_fw[0]) - SHIFT_X) < 0.5 and abs(float(med_fw[1]) - SHIFT_Y) < 0.5, med_fw
    err_flow = (_interior(warp(prev, bw)) - _interior(cur)).abs().mean()
    err_none = (_interior(prev) - _interior(cur)).abs().mean()
    assert err_flow < 0.25 * err_none, (float(err_flow), float(err_none))


@pytest.mark.parametrize("method", CV_METHODS)
def test_synthetic_shift_recovered_with_documented_sign(method):
    prev = multiscale_texture(96, 128)
    cur = _shifted(prev)
    bw, fw = FlowEstimator(method).bidirectional(prev, cur)
    _check_shift(prev, cur, bw, fw)
    # compute_flow is the same backward flow, and accepts [3,H,W] frames.
    torch.testing.assert_close(compute_flow(prev[0], cur[0], method), bw)


@pytest.mark.parametrize("method", CV_METHODS)
def test_shift_recovered_on_real_photo(method):
    prev = _photo(96, 128)
    cur = _shifted(prev)
    _check_shift(prev, cur, compute_flow(prev, cur, method))


@pytest.mark.parametrize("preset", ["ultrafast", "fast"])
def test_dis_presets(preset):
    prev = multiscale_texture(96, 128)
    cur = _shifted(prev)
    _check_shift(prev, cur, compute_flow(prev, cur, "dis", dis_preset=preset))


def test_reduced_resolution_rescales_vectors():
    prev = multiscale_texture(96, 128)
    cur = _shifted(prev)
    est = FlowEstimator("farneback", max_side=64)  # estimated at 64x48, upsampled
    bw = est(prev, cur)
    assert bw.shape == (96, 128, 2)
    _check_shift(prev, cur, bw)
    assert flow_size(720, 1280, max_side=640) == (360, 640)
    assert flow_size(720, 1280, scale=0.25) == (180, 320)
    assert flow_size(100, 100, max_side=640) == (100, 100)


def test_resize_flow():
    flow = torch.zeros(2, 32, 48, 2)
    flow[..., 0], flow[..., 1] = 2.0, -1.0
    up = resize_flow(flow, (64, 96))
    assert up.shape == (2, 64, 96, 2)
    torch.testing.assert_close(up[..., 0], torch.full((2, 64, 96), 4.0))
    torch.testing.assert_close(up[..., 1], torch.full((2, 64, 96), -2.0))
    down = resize_flow(up[0], (32, 48))
    torch.testing.assert_close(down, flow[0])


@pytest.mark.parametrize("arch", ["raft_small", "raft_large"])
def test_raft_random_weights_pad_and_crop(arch):
    from torchvision.models import optical_flow as tvof

    torch.manual_seed(0)
    est = FlowEstimator(arch, raft_model=getattr(tvof, arch)(weights=None), raft_iters=2)
    # not multiples of 8: padded then cropped
    prev, cur = multiscale_texture(75, 70), multiscale_texture(75, 70, seed=1)
    bw = est(prev, cur)
    assert bw.shape == (75, 70, 2) and bw.dtype == torch.float32 and bool(torch.isfinite(bw).all())
    bw2, fw = est.bidirectional(prev, cur)
    assert bw2.shape == fw.shape == (75, 70, 2)
    torch.testing.assert_close(bw2, bw, atol=1e-4, rtol=1e-4)  # batched pair == single pair
    flows = compute_flows(torch.cat([prev, cur, prev]), estimator=est)
    assert flows.method == arch and flows.backward.shape == (2, 75, 70, 2)


def test_raft_weights_from_file(tmp_path):
    from torchvision.models.optical_flow import raft_large, raft_small

    torch.manual_seed(0)
    net = raft_small(weights=None)
    path = tmp_path / "raft_small.pth"
    torch.save(net.state_dict(), path)
    loaded = load_raft("raft_small", path)
    for (k, a), b in zip(net.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    est = FlowEstimator("raft_small", weights=path)
    assert not est._raft.training  # type: ignore[union-attr]
    other = tmp_path / "raft_large.pth"
    torch.save(raft_large(weights=None).state_dict(), other)
    with pytest.raises(WeightsError, match="raft_small"):
        load_raft("raft_small", other)
    with pytest.raises(WeightsError, match="not found"):
        FlowEstimator("raft_large", weights=tmp_path / "missing.pth")


def test_raft_download_failure_names_the_url(monkeypatch):
    from torchvision.models.optical_flow import Raft_Small_Weights

    def offline(*_args, **_kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(Raft_Small_Weights, "get_state_dict", offline)
    with pytest.raises(WeightsError) as info:
        FlowEstimator("raft_small")
    assert Raft_Small_Weights.DEFAULT.url in str(info.value) and "dis" in str(info.value)


def test_estimator_errors():
    with pytest.raises(FlowError, match="farneback"):
        FlowEstimator("farnback")
    with pytest.raises(FlowError, match="RAFT"):
        FlowEstimator("dis", weights="x.pth")
    with pytest.raises(InvalidParameterError):
        FlowEstimator("dis", dis_preset="slow")
    with pytest.raises(InvalidParameterError):
        FlowEstimator("dis", max_side=64, scale=0.5)
    with pytest.raises(InvalidParameterError):
        FlowEstimator("dis", scale=1.5)
    est = FlowEstimator("dis")
    with pytest.raises(InvalidImageError, match="same size"):
        est(multiscale_texture(32, 32), multiscale_texture(32, 40))
    with pytest.raises(InvalidImageError, match="permute"):
        est(torch.rand(32, 32, 3), torch.rand(32, 32, 3))
    with pytest.raises(InvalidImageError, match="same size"):
        compute_flows([torch.rand(3, 32, 32), torch.rand(3, 32, 40)])
    with pytest.raises(InvalidImageError, match="No frames"):
        compute_flows([])
    with pytest.raises(InvalidParameterError, match="estimator"):
        compute_flows(torch.rand(2, 3, 32, 32), estimator=est, max_side=16)


# --------------------------------------------------------------------------- reliability


def _const(h: int, w: int, u: float, v: float) -> torch.Tensor:
    flow = torch.zeros(h, w, 2)
    flow[..., 0], flow[..., 1] = u, v
    return flow


def test_consistent_motion_is_reliable_except_entering_border():
    bw, fw = _const(40, 50, -3, 2), _const(40, 50, 3, -2)
    rel = reliability_mask(bw, fw)
    assert rel.shape == (40, 50) and rel.dtype == torch.float32
    # x + u < 0 for the first 3 columns, y + v > H-1 for the last 2 rows.
    assert bool((rel[:-2, 3:] == 1).all())
    assert bool((rel[:, :3] == 0).all()) and bool((rel[-2:] == 0).all())
    assert bool((reliability_mask(bw.expand(3, -1, -1, -1), fw.expand(3, -1, -1, -1)) == rel).all())


def test_occluding_square_exact_flows_trailing_region_unreliable():
    h, w, x_prev, x_cur, top, side = 64, 80, 20, 26, 20, 24  # square moves 6 px right
    bw = torch.zeros(h, w, 2)
    bw[top : top + side, x_cur : x_cur + side, 0] = -(x_cur - x_prev)
    fw = torch.zeros(h, w, 2)
    fw[top : top + side, x_prev : x_prev + side, 0] = x_cur - x_prev
    rel = reliability_mask(bw, fw)
    trailing = rel[top : top + side, x_prev:x_cur]  # background revealed behind the square
    assert bool((trailing == 0).all())
    assert bool((rel[:, 60:] == 1).all()) and bool((rel[:12] == 1).all())
    assert bool((rel[top + 3 : top + side - 3, x_cur + 3 : x_cur + side - 3] == 1).all())


def _occlusion_clip(n: int = 3, speed: int = 6) -> tuple[torch.Tensor, int]:
    bg, square = multiscale_texture(96, 128, seed=2), multiscale_texture(32, 32, seed=3)
    frames = []
    for t in range(n):
        frame = bg.clone()
        x0 = 40 + speed * t
        frame[..., 32:64, x0 : x0 + 32] = square
        frames.append(frame[0])
    return torch.stack(frames), speed


def test_occluding_square_estimated_flow_dis():
    frames, speed = _occlusion_clip()
    flows = compute_flows(frames, "dis")
    rel = flows.reliable[0]  # frame 1: square at x 46..78, was at 40..72
    assert float(rel[32:64, 40 : 40 + speed].mean()) < 0.3
    assert float(rel[:, :24].mean()) > 0.95 and float(rel[72:].mean()) > 0.95
    assert float(rel[38:58, 52:72].mean()) > 0.9


def test_without_consistency_only_boundaries_and_border():
    frames, _ = _occlusion_clip()
    flows = compute_flows(frames, "dis", consistency=False)
    assert flows.forward is None and flows.reliable.shape == (2, 96, 128)
    bw = flows.backward
    expected = reliability_mask(bw)
    assert torch.equal(flows.reliable, expected)


def test_motion_edges_zero_for_constant_flow():
    assert float(motion_edges(_const(10, 12, 4.0, -1.0)).abs().max()) == 0.0
    ramp = torch.zeros(1, 10, 12, 2)
    ramp[..., 0] = torch.arange(12.0)  # du/dx = 1
    expected = torch.ones(1, 10, 12)
    expected[..., [0, 11]] = 0.25  # replicated border: half the central difference
    torch.testing.assert_close(motion_edges(ramp), expected)


# --------------------------------------------------------------------------- FlowSet


def test_compute_flows_flowset_and_streaming():
    prev = multiscale_texture(48, 64)
    clip = torch.cat([prev, _shifted(prev), _shifted(_shifted(prev))])
    calls = []
    flows = compute_flows(clip, "dis", on_pair=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]
    assert len(flows) == 2 and flows.num_frames == 3 and flows.size == (48, 64)
    assert flows.method == "dis"
    for t in (flows.backward, flows.forward, flows.reliable):
        assert t is not None and t.dtype == torch.float32 and t.device.type == "cpu"
    assert flows.backward.shape == (2, 48, 64, 2) and flows.reliable.shape == (2, 48, 64)
    assert flows.nbytes == 2 * 48 * 64 * (8 + 8 + 4)
    # A generator of [3,H,W] frames streams to the same result.
    streamed = compute_flows((f for f in clip), "dis", keep_forward=False)
    assert streamed.forward is None
    torch.testing.assert_close(streamed.backward, flows.backward)
    torch.testing.assert_close(streamed.reliable, flows.reliable)
    bw2, rel2 = flows.for_frame(2)
    assert torch.equal(bw2, flows.backward[1]) and torch.equal(rel2, flows.reliable[1])
    with pytest.raises(FlowError, match="frame 0"):
        flows.for_frame(0)
    assert flows.to("cpu") is flows
    single = compute_flows(clip[:1])
    assert len(single) == 0 and single.num_frames == 1 and single.size == (48, 64)


def test_flowset_check_matches_and_validation():
    flows = FlowSet(torch.zeros(11, 64, 64, 2), None, torch.ones(11, 64, 64), method="dis")
    flows.check_matches(12, 64, 64)
    with pytest.raises(FlowError) as info:
        flows.check_matches(10, 64, 64, producer="the DeepDream Optical Flow node")
    assert str(info.value) == (
        "flow was computed for 12 frames of 64x64 but 10 frames of 64x64 were given; "
        "recompute it with the DeepDream Optical Flow node on these frames"
    )
    with pytest.raises(FlowError, match="80x64"):
        flows.check_matches(12, 64, 80)
    with pytest.raises(FlowError, match="reliable"):
        FlowSet(torch.zeros(11, 64, 64, 2), None, torch.ones(10, 64, 64))
    with pytest.raises(FlowError, match="forward"):
        FlowSet(torch.zeros(11, 64, 64, 2), torch.zeros(11, 64, 32, 2), torch.ones(11, 64, 64))
    with pytest.raises(FlowError, match="backward"):
        FlowSet(torch.zeros(11, 64, 64, 3), None, torch.ones(11, 64, 64))
    with pytest.raises(FlowError, match="size"):
        FlowSet(torch.zeros(11, 64, 64, 2), None, torch.ones(11, 64, 64), size=(32, 32))


# --------------------------------------------------------------------------- preview


def test_flow_to_color_shape_range_and_hues():
    flow = torch.zeros(2, 8, 10, 2)
    flow[0, :, :5, 0] = 4.0  # right
    flow[0, :, 5:, 0] = -4.0  # left
    flow[1, :4, :, 1] = 4.0  # down
    flow[1, 4:, :, 1] = -4.0  # up
    rgb = flow_to_color(flow)
    assert rgb.shape == (2, 8, 10, 3) and float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0
    right, left, down, up = rgb[0, 0, 0], rgb[0, 0, 9], rgb[1, 0, 0], rgb[1, 7, 0]
    torch.testing.assert_close(right, torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(left, torch.tensor([0.0, 1.0, 1.0]))
    for a, b in ((right, left), (down, up), (right, down)):
        assert float((a - b).abs().max()) > 0.5
    white = flow_to_color(torch.zeros(5, 6, 2))
    assert white.shape == (5, 6, 3) and bool((white == 1).all())
    half = flow_to_color(flow[0], max_magnitude=8.0)[0, 0]
    torch.testing.assert_close(half, torch.tensor([1.0, 0.5, 0.5]))
    with pytest.raises(InvalidParameterError):
        flow_to_color(flow, max_magnitude=0)
    assert not math.isnan(float(flow_to_color(torch.randn(4, 4, 2)).sum()))


def test_default_method_is_known():
    assert DEFAULT_FLOW_METHOD in FLOW_METHODS
