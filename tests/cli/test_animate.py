"""``animate`` and the animation flags of ``video`` (dream_core.cli.animate, .animation_args)."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import panning_clip, textured_image
from dream_core import DreamSettings
from dream_core.animation import FeedbackFrames, MaskSource
from dream_core.clip import ClipPlan
from dream_core.cli import build_parser, main
from dream_core.flow import FlowEstimator
from dream_core.image_io import from_uint8_hwc, save_image, to_uint8_hwc
from dream_core.clip.settings import RECOMMENDED_COLOUR_COHERENCE
from dream_core.video import VideoWriter, probe_video, read_frames
from dream_core.clip import FrameDreamer, VideoSettings, dream_clip

QUICK = ["--octaves", "2", "--iterations", "2", "--crf", "0", "--x264-preset", "ultrafast"]
LOSSLESS = {"crf": 0, "x264_preset": "ultrafast", "resume": False}


def _encode(path, frames, rate):
    with VideoWriter(path, rate, **LOSSLESS) as writer:
        for frame in frames:
            writer.write(to_uint8_hwc(frame))
    return np.stack(list(read_frames(path))).astype(float)


def test_animate_is_the_feedback_loop_and_keeps_the_rate(lite0, tmp_path):
    start = textured_image(48, 64, seed=4)
    save_image(start, tmp_path / "start.png")
    out = tmp_path / "zoom.mp4"
    assert main(["animate", str(tmp_path / "start.png"), str(out), "--frames", "4", "--fps", "30000/1001",
                 "--zoom", "0:(1.0), 3:(1.1)", "--rotate", "2", *QUICK]) == 0
    info = probe_video(out)
    assert info.num_frames == 4 and info.frame_rate == Fraction(30000, 1001) and (info.width, info.height) == (64, 48)

    from dream_core.animation import Motion
    from dream_core.animation import feedback_plan

    raw = from_uint8_hwc(np.asarray(Image.open(tmp_path / "start.png").convert("RGB")))
    settings = DreamSettings(num_octaves=2, num_iterations=2)
    video = VideoSettings(mode="independent", colour_coherence=RECOMMENDED_COLOUR_COHERENCE)  # the CLI's default
    clip_plan = ClipPlan(lite0, settings, video=video, schedules={"zoom": "0:(1.0), 3:(1.1)"}, motion=Motion(rotate=2))
    plan = feedback_plan(clip_plan, 0.3)
    assert plan(2).settings.num_iterations == 1 and plan(0).settings.num_iterations == 2
    with FrameDreamer(lite0, None, settings, video, colour_reference=raw) as dreamer:
        frames = FeedbackFrames(dreamer, raw, 4, lambda k: plan(k).motion)
        loop = torch.cat([d.image for d in dream_clip(dreamer, frames, None, plan=plan)])
    assert np.array_equal(np.stack(list(read_frames(out))).astype(float), _encode(tmp_path / "loop.mp4", loop, 30))


def test_video_with_schedule_cadence_and_mask_is_the_loop_with_that_plan(lite0, tmp_path):
    src = tmp_path / "pan.mp4"
    _encode(src, panning_clip(5, 48, 64, step=3), Fraction(24))
    mask = np.zeros((48, 64, 3), np.uint8)
    mask[:, 32:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.mp4"
    assert main(["video", str(src), str(out), *QUICK, "--lr", "0:(0.005), 4:(0.03)", "--cadence", "2",
                 "--mask", str(tmp_path / "mask.png"), "--carry", "1s:(0.9)"]) == 0

    frames = [from_uint8_hwc(arr) for arr in read_frames(src)]
    settings = DreamSettings(num_octaves=2, num_iterations=2)
    video = VideoSettings(colour_coherence=RECOMMENDED_COLOUR_COHERENCE)  # the CLI's default
    plan = ClipPlan(lite0, settings, schedules={"learning_rate": "0:(0.005), 4:(0.03)", "carry": "1s:(0.9)"},
                    cadence=2, fps=24, video=video)
    masks = MaskSource(torch.from_numpy(mask[..., 0] / 255.0).float())
    with FrameDreamer(lite0, None, settings, video) as dreamer:
        loop = torch.cat([d.image for d in dream_clip(dreamer, enumerate(frames), FlowEstimator("dis"), plan=plan,
                                                      masks=masks)])
    cli = np.stack(list(read_frames(out))).astype(float)
    assert np.array_equal(cli, _encode(tmp_path / "loop.mp4", loop, Fraction(24)))
    # Outside the mask: the input as the same encoder writes it (4:2:0 chroma mixes a few pixels across the edge).
    raw = _encode(tmp_path / "raw.mp4", torch.cat(frames), Fraction(24))
    assert np.array_equal(cli[..., :24, :], raw[..., :24, :]) and not np.array_equal(cli[..., 36:, :], raw[..., 36:, :])


def test_schedule_typos_are_reported_with_the_flag_before_anything_runs(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["video", "a.mp4", "b.mp4", "--lr", "0:(0.01) 48:(0.04)"])
    err = capsys.readouterr().err
    assert "argument --lr" in err and "at character 10" in err and "expected ','" in err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["image", "a.png", "b.png", "--lr", "0:(0.01), 48:(0.04)"])
    assert "apply to the video and animate commands" in capsys.readouterr().err


def test_bad_animation_settings_name_their_flag(tmp_path, caplog):
    start = tmp_path / "s.png"
    save_image(textured_image(48, 64), start)
    out = str(tmp_path / "o.mp4")
    assert main(["animate", str(start), out, "--frames", "3", "--zoom", "0:(1), 2:(0)", *QUICK]) == 2
    assert "zoom must be a positive number" in caplog.text and "Set it with --zoom" in caplog.text
    assert "frame 2" in caplog.text
    assert main(["video", str(start), out, "--cadence", "2", "--mode", "independent"]) == 2
