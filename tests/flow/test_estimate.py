"""FlowEstimator (dream_core.flow.estimate, .raft): each method recovers a known shift with the documented sign."""

from __future__ import annotations

import pytest
import torch

from conftest import SHIFT_X, SHIFT_Y, multiscale_texture, shared_file, shifted
from dream_core.errors import FlowError, InvalidImageError, InvalidParameterError, WeightsError
from dream_core.flow import (
    DEFAULT_FLOW_METHOD,
    FLOW_METHODS,
    FlowEstimator,
    compute_flow,
    compute_flows,
    flow_size,
    load_raft,
    resize_flow,
)
from dream_core.flow.warp import warp

CV_METHODS = [m for m in FLOW_METHODS if not m.startswith("raft")]


def _photo(h: int, w: int) -> torch.Tensor:
    from PIL import Image

    path = shared_file("tubingen.jpg")
    with Image.open(path) as im:
        im = im.convert("RGB").resize((256, 192))
        data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    img = data.view(192, 256, 3).permute(2, 0, 1).float().div(255.0)
    return img[None, :, 40 : 40 + h, 60 : 60 + w].contiguous()


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
    cur = shifted(prev)
    bw, fw = FlowEstimator(method).bidirectional(prev, cur)
    _check_shift(prev, cur, bw, fw)
    # compute_flow is the same backward flow, and accepts [3,H,W] frames.
    torch.testing.assert_close(compute_flow(prev[0], cur[0], method), bw)


@pytest.mark.parametrize("method", CV_METHODS)
def test_shift_recovered_on_real_photo(method):
    prev = _photo(96, 128)
    cur = shifted(prev)
    _check_shift(prev, cur, compute_flow(prev, cur, method))


@pytest.mark.parametrize("preset", ["ultrafast", "fast"])
def test_dis_presets(preset):
    prev = multiscale_texture(96, 128)
    cur = shifted(prev)
    _check_shift(prev, cur, compute_flow(prev, cur, "dis", dis_preset=preset))


def test_reduced_resolution_rescales_vectors():
    prev = multiscale_texture(96, 128)
    cur = shifted(prev)
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


def test_frames_too_small_for_dis_are_a_clear_error():
    tiny = torch.rand(1, 3, 8, 8)
    with pytest.raises(InvalidImageError, match="at least 12 pixels.*8x8.*farneback") as info:  # was a raw cv2.error
        FlowEstimator("dis")(tiny, tiny)
    assert info.value.parameter == "flow_method"
    assert FlowEstimator("farneback")(tiny, tiny).shape == (8, 8, 2)
    assert FlowEstimator("dis")(torch.rand(1, 3, 8, 12), torch.rand(1, 3, 8, 12)).shape == (8, 12, 2)


# --------------------------------------------------------------------------- reliability


def test_the_default_method_is_what_every_front_end_uses_and_it_recovers_a_shift():
    """FlowEstimator(), compute_flow and the video command's --flow all use DEFAULT_FLOW_METHOD, and it recovers a
    known shift with the documented sign."""
    from dream_core.cli import build_parser

    prev = multiscale_texture(96, 128)
    cur = shifted(prev)
    estimator = FlowEstimator()
    assert estimator.method == DEFAULT_FLOW_METHOD
    _check_shift(prev, cur, *estimator.bidirectional(prev, cur))
    torch.testing.assert_close(compute_flow(prev, cur), estimator(prev, cur))
    assert build_parser().parse_args(["video", "in.mp4", "out.mp4"]).flow == DEFAULT_FLOW_METHOD


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_both_directions_at_once_are_each_direction_alone(method):
    """OpenCV's two directions run on two threads, each with its own DIS object: exactly the flows of two
    separate estimates, and the pair keeps giving them call after call."""
    prev = multiscale_texture(96, 128, seed=4)
    cur = torch.roll(prev, shifts=(2, -3), dims=(2, 3))
    backward_alone, forward_alone = FlowEstimator(method)(prev, cur), FlowEstimator(method)(cur, prev)
    est = FlowEstimator(method)
    for _ in range(2):
        backward, forward = est.bidirectional(prev, cur)
        assert torch.equal(backward, backward_alone) and torch.equal(forward, forward_alone)
    assert backward[20:-20, 20:-20, 0].mean() > 2  # cur(x) = prev(x + (3, -2)): it points back along the shift
