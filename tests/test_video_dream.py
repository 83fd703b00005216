"""Flow-warped dreaming of frame sequences: the three modes, occlusion handling, state, errors."""

import pytest
import torch

from conftest import textured_image
from dream_core import DreamSettings, count_hooks, dream_image
from dream_core.errors import FlowError, InvalidImageError, InvalidParameterError
from dream_core.flow import FlowEstimator, compute_flows
from dream_core.stability import stability_metrics
from dream_core.video_dream import FrameDreamer, VideoSettings, dream_frames
from dream_core.flow.warp import warp

FAST = DreamSettings(num_octaves=2, octave_scale=1.5, num_iterations=4, jitter=4)


def panning_clip(frames: int = 5, h: int = 48, w: int = 64, step: int = 2) -> torch.Tensor:
    """Frames of a wide texture panning left by ``step`` px per frame: ``[N,3,h,w]``."""
    wide = textured_image(h, w + step * frames, seed=5)
    return torch.cat([wide[..., step * t: step * t + w] for t in range(frames)])


def zero_flow(h: int, w: int) -> torch.Tensor:
    return torch.zeros(h, w, 2)


def test_independent_mode_dreams_each_frame_alone(tiny_model):
    clip = panning_clip(3)
    outs = list(dream_frames(tiny_model, clip, "conv2", FAST, VideoSettings(mode="independent")))
    for t in range(3):
        assert torch.equal(outs[t], dream_image(tiny_model, clip[t:t + 1], "conv2", FAST))


def test_seed_mode_is_the_original_rule(tiny_model):
    clip = panning_clip(2)
    flow = torch.zeros(48, 64, 2)
    flow[..., 0] = 2.0  # frame1(x) = frame0(x + 2): the pan, as backward flow
    outs = list(dream_frames(tiny_model, clip, "conv2", FAST, VideoSettings(mode="seed"), flows=[(flow, None)]))
    dream0 = dream_image(tiny_model, clip[:1], "conv2", FAST)
    start1 = (clip[1:2] + warp(dream0 - clip[:1], flow, padding_mode="zeros")).clamp(0, 1)
    assert torch.equal(outs[0], dream0)
    assert torch.equal(outs[1], dream_image(tiny_model, start1, "conv2", FAST))


def test_stable_mode_starts_unreliable_pixels_from_the_raw_frame(tiny_model):
    clip = panning_clip(2)
    video = VideoSettings(mode="stable", later_iterations=0.5)
    nothing_reliable = torch.zeros(48, 64)
    outs = list(dream_frames(tiny_model, clip, "conv2", FAST, video, flows=[(zero_flow(48, 64), nothing_reliable)]))
    lighter = FAST.with_(num_iterations=2)
    assert torch.equal(outs[1], dream_image(tiny_model, clip[1:2], "conv2", lighter))


def test_stable_mode_carries_the_dream_where_reliable(tiny_model):
    clip = torch.cat([panning_clip(1)] * 2)  # a still scene
    video = VideoSettings(mode="stable", carry=1.0, temporal_weight=0.5)
    outs = list(dream_frames(tiny_model, clip, "conv2", FAST, video, flows=[(zero_flow(48, 64), torch.ones(48, 64))]))
    fresh = dream_image(tiny_model, clip[1:2], "conv2", FAST.with_(seed=1))
    carried_change = (outs[1] - outs[0]).abs().mean()
    assert carried_change < 0.5 * (fresh - outs[0]).abs().mean()


def test_stable_flickers_less_than_independent_on_real_model(lite0):
    clip = panning_clip(5, 64, 64, step=2)
    flows = compute_flows(clip, estimator=FlowEstimator("dis"))
    settings = DreamSettings(num_octaves=2, num_iterations=5, jitter=8)
    results = {}
    for mode in ("stable", "independent"):
        out = torch.cat(list(dream_frames(lite0, clip, "block5_dw", settings, VideoSettings(mode=mode),
                                          flows=zip(flows.backward, flows.reliable))))
        results[mode] = stability_metrics(clip, out, flows=flows)
    assert results["stable"].ratio < 0.6 * results["independent"].ratio
    assert results["stable"].strength > 0.5 * results["independent"].strength


def test_start_image_is_the_first_frame_resized_with_warning(tiny_model, caplog):
    clip = panning_clip(2)
    start = torch.full((1, 3, 24, 32), 0.5)
    outs = list(dream_frames(tiny_model, clip, "conv2", FAST, VideoSettings(mode="independent"), start_image=start))
    assert torch.allclose(outs[0], torch.full((1, 3, 48, 64), 0.5))
    assert "resizing" in caplog.text


def test_hooks_registered_once_and_removed(tiny_model):
    clip = panning_clip(3)
    seen = []
    gen = dream_frames(tiny_model, clip, "conv1, conv2", FAST, VideoSettings(mode="independent"))
    for _ in gen:
        seen.append(count_hooks(tiny_model))
    assert seen == [2, 2, 2]
    assert count_hooks(tiny_model) == 0


def test_resume_from_state_matches_uninterrupted(tiny_model):
    clip = panning_clip(3)
    flows = [(zero_flow(48, 64), torch.ones(48, 64))] * 2
    full = list(dream_frames(tiny_model, clip, "conv2", FAST, VideoSettings(), flows=flows))
    with FrameDreamer(tiny_model, "conv2", FAST, VideoSettings()) as fd:
        fd.restore(clip[1:2], full[1])
        resumed = fd.dream_next(clip[2:3], *flows[1])
    assert torch.equal(resumed, full[2])


def test_works_inside_inference_mode(tiny_model):
    clip = panning_clip(2)
    flows = [(zero_flow(48, 64), None)]
    expected = list(dream_frames(tiny_model, clip, "conv2", FAST, VideoSettings(mode="seed"), flows=flows))
    with torch.inference_mode():
        got = list(dream_frames(tiny_model, clip.clone(), "conv2", FAST, VideoSettings(mode="seed"), flows=flows))
    assert all(torch.equal(a, b) for a, b in zip(expected, got))


def test_flow_needed_for_flow_modes(tiny_model):
    with pytest.raises(FlowError, match="needs optical flow"):
        list(dream_frames(tiny_model, panning_clip(2), "conv2", FAST, VideoSettings(mode="stable")))


def test_flow_running_out_is_an_error(tiny_model):
    with pytest.raises(FlowError, match="fewer entries than frames"):
        list(dream_frames(tiny_model, panning_clip(3), "conv2", FAST, VideoSettings(), flows=[(zero_flow(48, 64), None)]))


def test_frames_of_different_sizes(tiny_model):
    frames = [textured_image(48, 64), textured_image(40, 64)]
    with pytest.raises(InvalidImageError, match="same size"):
        list(dream_frames(tiny_model, frames, "conv2", FAST, VideoSettings(mode="independent")))


@pytest.mark.parametrize("change", [{"mode": "wobble"}, {"carry": 1.5}, {"temporal_weight": -0.1}, {"later_iterations": 0}])
def test_bad_video_settings(tiny_model, change):
    with pytest.raises(InvalidParameterError):
        list(dream_frames(tiny_model, panning_clip(2), "conv2", FAST, VideoSettings(**change), flows=[]))
