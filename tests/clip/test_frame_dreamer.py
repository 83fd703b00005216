"""FrameDreamer (dream_core.clip.frame_dreamer): the three modes, occlusion handling, hooks, the learned tile size."""

import pytest
import torch

from conftest import panning_clip, textured_image
from dream_core import DreamSettings, count_hooks, dream_image
from dream_core.errors import InvalidImageError, InvalidParameterError
from dream_core.flow.warp import warp
from dream_core.clip import FrameDreamer, VideoSettings, dream_frames

FAST = DreamSettings(num_octaves=2, octave_scale=1.5, num_iterations=4, jitter=4)


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

    def second_frame(reliable: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = list(dream_frames(tiny_model, clip, "conv2", FAST, video, flows=[(zero_flow(48, 64), reliable)]))
        return outs[0], outs[1]

    first, carried = second_frame(torch.ones(48, 64))
    _, restarted = second_frame(torch.zeros(48, 64))  # nothing reliable: frame 1 starts from its raw pixels
    assert (carried - first).abs().mean() < 0.5 * (restarted - first).abs().mean()



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



def test_works_inside_inference_mode(tiny_model):
    clip = panning_clip(2)
    flows = [(zero_flow(48, 64), None)]
    expected = list(dream_frames(tiny_model, clip, "conv2", FAST, VideoSettings(mode="seed"), flows=flows))
    with torch.inference_mode():
        got = list(dream_frames(tiny_model, clip.clone(), "conv2", FAST, VideoSettings(mode="seed"), flows=flows))
    assert all(torch.equal(a, b) for a, b in zip(expected, got))



def test_frames_of_different_sizes(tiny_model):
    frames = [textured_image(48, 64), textured_image(40, 64)]
    with pytest.raises(InvalidImageError, match="same size"):
        list(dream_frames(tiny_model, frames, "conv2", FAST, VideoSettings(mode="independent")))



@pytest.mark.parametrize("change", [{"mode": "wobble"}, {"carry": 1.5}, {"temporal_weight": -0.1}, {"later_iterations": 0}])
def test_bad_video_settings(tiny_model, change):
    with pytest.raises(InvalidParameterError):
        list(dream_frames(tiny_model, panning_clip(2), "conv2", FAST, VideoSettings(**change), flows=[]))




def test_learned_tile_size_is_kept_for_the_rest_of_the_clip(tiny_model, monkeypatch):
    import dream_core.dream as dream_mod

    real = dream_mod._objective_gradient
    tried = []

    def fake(hooks, objective, image, settings, amp_dtype, *shift):  # the device fits tiles of at most 140 px
        tried.append(settings.tile_size)
        if settings.tile_size > 140:
            raise torch.OutOfMemoryError("simulated")
        return real(hooks, objective, image, settings, amp_dtype, *shift)

    monkeypatch.setattr(dream_mod, "_objective_gradient", fake)
    settings = DreamSettings(num_octaves=1, num_iterations=2, jitter=0, tile_size=1024, tile_overlap=64)
    frames = [textured_image(150, 260, seed=t) for t in range(2)]
    with FrameDreamer(tiny_model, "conv2", settings, VideoSettings(mode="independent")) as dreamer:
        for frame in frames:
            dreamer.dream_next(frame)
        assert (dreamer.tiles.tile_size, dreamer.tiles.tile_overlap) == (130, 64)
    # One out-of-memory error for the clip, on the first step of the first frame; every later step and
    # frame starts at the size that fitted (half the longer side, 130 px).
    assert tried == [1024] + [130] * (2 * settings.num_iterations)
