"""Excess-flicker metrics: zero for identity, small for scene-locked effects, large for boiling noise."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import multiscale_texture
from dream_core.errors import FlowError, InvalidImageError
from dream_core.flow import FlowEstimator, compute_flows
from dream_core.stability import StabilityMetrics, stability_metrics

H, W, N = 64, 80, 5
STEP = (-2, 3)  # per frame: content moves 3 px right, 2 px up (torch.roll shifts for dims H, W)


def _moving(base: torch.Tensor, n: int = N) -> torch.Tensor:
    return torch.cat([torch.roll(base, shifts=(STEP[0] * t, STEP[1] * t), dims=(-2, -1)) for t in range(n)])


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return _moving(multiscale_texture(H, W, seed=0))


@pytest.fixture(scope="module")
def flows(clip):
    return compute_flows(clip, "dis")


def test_identity_has_no_excess_and_no_strength(clip, flows):
    m = stability_metrics(clip, clip.clone(), flows)
    assert isinstance(m, StabilityMetrics)
    assert m.num_pairs == N - 1 and 0.5 < m.reliable_fraction <= 1.0
    assert m.warp_err_in == pytest.approx(m.warp_err_out, abs=1e-9)
    assert m.excess_flicker == pytest.approx(0.0, abs=1e-9)
    assert m.strength == 0.0 and m.ratio == 0.0  # documented: ratio 0 when nothing changed
    assert set(m.as_dict()) >= {"warp_err_in", "warp_err_out", "excess_flicker", "strength", "ratio"}


def test_scene_locked_pattern_small_excess_random_noise_large(clip, flows):
    pattern = _moving(multiscale_texture(H, W, seed=7) - 0.5)  # moves exactly with the scene
    locked = (clip + 0.4 * pattern).clamp(0, 1)
    g = torch.Generator().manual_seed(3)
    noise = (torch.rand(clip.shape, generator=g) - 0.5) * 0.4  # independent per frame
    boiling = (clip + noise).clamp(0, 1)
    m_locked = stability_metrics(clip, locked, flows)
    m_noise = stability_metrics(clip, boiling, flows)
    assert m_locked.strength > 0.03 and m_noise.strength > 0.03
    assert abs(m_locked.excess_flicker) < 0.05 * m_locked.strength
    assert m_noise.excess_flicker > 0.5 * m_noise.strength
    assert m_noise.ratio > 3 * max(m_locked.ratio, 0.05)
    assert m_locked.ratio == pytest.approx(m_locked.excess_flicker / m_locked.strength)
    # Twice the noise: about twice the excess, similar ratio.
    m_double = stability_metrics(clip, (clip + 2 * noise).clamp(0, 1), flows)
    assert m_double.excess_flicker > 1.5 * m_noise.excess_flicker
    assert m_double.ratio == pytest.approx(m_noise.ratio, rel=0.35)


def test_streaming_and_estimated_flow_match_precomputed(clip, flows):
    outputs = (clip + 0.1 * (torch.rand(clip.shape, generator=torch.Generator().manual_seed(1)) - 0.5)).clamp(0, 1)
    given = stability_metrics(clip, outputs, flows)
    streamed = stability_metrics((f for f in clip), (f for f in outputs), estimator=FlowEstimator("dis"))
    for key, value in given.as_dict().items():
        assert streamed.as_dict()[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


def test_float64_frames(clip, flows):
    m = stability_metrics(clip.double(), clip.double(), flows)
    assert m.excess_flicker == pytest.approx(0.0, abs=1e-12) and not math.isnan(m.ratio)


def test_errors(clip, flows):
    with pytest.raises(InvalidImageError, match="frames"):
        stability_metrics(clip, clip[:-1], flows)
    with pytest.raises(InvalidImageError, match="outputs ended"):
        stability_metrics((f for f in clip), (f for f in clip[:-1]), flows)
    with pytest.raises(InvalidImageError, match="size"):
        stability_metrics(clip, clip[..., :32], flows)
    with pytest.raises(FlowError, match="recompute"):
        stability_metrics(clip[:3], clip[:3], flows)
    with pytest.raises(FlowError, match="recompute"):
        stability_metrics(clip[..., :32, :], clip[..., :32, :], flows)
    with pytest.raises(InvalidImageError, match="No frames"):
        stability_metrics([], [], flows)


def test_per_pair_errors_find_the_pair_that_jumps_and_per_frame_strength_the_pop(clip, flows):
    out = clip.clone()
    out[3] = (out[3] + 0.2 * torch.rand(out[3].shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    out[0] = (out[0] + 0.3).clamp(0, 1)
    m = stability_metrics(clip, out, flows)
    assert len(m.pair_warp_err_out) == N - 1 and len(m.frame_strength) == N
    worst = max(range(N - 1), key=lambda k: m.pair_warp_err_out[k])
    assert worst + 1 in (1, 3, 4)  # pairs (0,1), (2,3), (3,4) touch a changed frame
    assert m.pair_warp_err_out[1] < m.pair_warp_err_out[2]  # pair (1,2) is clean, (2,3) is not
    assert m.frame_strength[0] > m.frame_strength[3] > m.frame_strength[1] == 0.0
    assert sum(m.pair_warp_err_out) / (N - 1) == pytest.approx(m.warp_err_out, rel=1e-6)
