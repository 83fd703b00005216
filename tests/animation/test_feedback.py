"""Feedback animation (dream_core.animation.feedback) through the one frame loop."""

import pytest
import torch

from conftest import textured_image
from dream_core import DreamSettings, dream_image
from dream_core.animation import FeedbackFrames, Motion, apply_motion
from dream_core.clip import ClipPlan
from dream_core.errors import InvalidParameterError
from dream_core.clip import FrameDreamer, VideoSettings, dream_clip

FAST = DreamSettings(num_octaves=2, octave_scale=1.5, num_iterations=3, jitter=4)
INDEPENDENT = VideoSettings(mode="independent")


def animate(model, start, count, plan, **kwargs):
    with FrameDreamer(model, "conv2", FAST, INDEPENDENT) as dreamer:
        frames = FeedbackFrames(dreamer, start, count, lambda k: plan(k).motion, **kwargs)
        return [d.image for d in dream_clip(dreamer, frames, None, plan=plan)]


def test_no_motion_is_plain_re_dreaming(tiny_model):
    start = textured_image(40, 48)
    outs = animate(tiny_model, start, 3, ClipPlan(tiny_model, FAST, objective="conv2", video=INDEPENDENT))
    expected = start
    for out in outs:
        expected = dream_image(tiny_model, expected, "conv2", FAST)
        assert torch.equal(out, expected)


def test_each_frame_is_the_previous_dream_moved_then_dreamed(tiny_model):
    start = textured_image(40, 48)
    plan = ClipPlan(tiny_model, FAST, objective="conv2", video=INDEPENDENT,
                    schedules={"zoom": "0:(1.1), 2:(1.2)", "rotate": "3"})
    outs = animate(tiny_model, start, 3, plan)
    for k in (1, 2):
        moved = apply_motion(outs[k - 1], Motion(zoom=plan(k).motion.zoom, rotate=3.0)).clamp(0, 1)
        assert torch.equal(outs[k], dream_image(tiny_model, moved, "conv2", FAST))
    assert plan(1).motion.zoom == pytest.approx(1.15)


def test_resume_continues_from_the_saved_dream(tiny_model):
    start = textured_image(40, 48)
    plan = ClipPlan(tiny_model, FAST, objective="conv2", video=INDEPENDENT, motion=Motion(zoom=1.05))
    whole = animate(tiny_model, start, 4, plan)
    resumed = animate(tiny_model, start, 4, plan, first=2, previous=whole[1])
    assert len(resumed) == 2 and torch.equal(resumed[0], whole[2]) and torch.equal(resumed[1], whole[3])


def test_bad_uses_are_refused(tiny_model):
    start = textured_image(40, 48)
    with FrameDreamer(tiny_model, "conv2", FAST, VideoSettings()) as dreamer:
        with pytest.raises(InvalidParameterError, match="independent"):
            FeedbackFrames(dreamer, start, 3, lambda k: Motion())
    with FrameDreamer(tiny_model, "conv2", FAST, INDEPENDENT) as dreamer:
        with pytest.raises(InvalidParameterError, match="at least 1 frame"):
            FeedbackFrames(dreamer, start, 0, lambda k: Motion())
        with pytest.raises(InvalidParameterError, match="previous frame"):
            FeedbackFrames(dreamer, start, 3, lambda k: Motion(), first=1)
