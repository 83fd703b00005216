"""reliability_mask and flow_pair (dream_core.flow.reliability): occlusions, motion edges, borders."""

from __future__ import annotations

import torch

from conftest import multiscale_texture, occlusion_clip, shifted
from dream_core.flow import FlowEstimator, compute_flows, flow_pair, motion_edges, reliability_mask


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


def test_occluding_square_estimated_flow_dis():
    frames, speed = occlusion_clip()
    flows = compute_flows(frames, "dis")
    rel = flows.reliable[0]  # frame 1: square at x 46..78, was at 40..72
    assert float(rel[32:64, 40 : 40 + speed].mean()) < 0.3
    assert float(rel[:, :24].mean()) > 0.95 and float(rel[72:].mean()) > 0.95
    assert float(rel[38:58, 52:72].mean()) > 0.9


def test_without_consistency_only_boundaries_and_border():
    frames, _ = occlusion_clip()
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


def test_flow_pair_is_bidirectional_flow_and_its_mask():
    prev = multiscale_texture(48, 64)
    cur = shifted(prev)
    est = FlowEstimator("dis")
    pair = flow_pair(est, prev, cur)
    bw, fw = est.bidirectional(prev, cur)
    assert torch.equal(pair.backward, bw) and torch.equal(pair.forward, fw)
    assert torch.equal(pair.reliable, reliability_mask(bw, fw))
    single = flow_pair(est, prev, cur, consistency=False)
    assert single.forward is None and torch.equal(single.reliable, reliability_mask(single.backward))
