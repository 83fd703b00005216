"""``animate`` and the animation flags of ``video`` (dream_core.cli.animate, .animation_args)."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import panning_clip, textured_image
from dream_core.cli import build_parser, main
from dream_core.image_io import from_uint8_hwc, save_image, to_uint8_hwc
from dream_core.video import VideoWriter, probe_video, read_frames

QUICK = ["--octaves", "2", "--iterations", "2", "--crf", "0", "--x264-preset", "ultrafast"]
LOSSLESS = {"crf": 0, "x264_preset": "ultrafast", "resume": False}


def _encode(path, frames, rate):
    with VideoWriter(path, rate, **LOSSLESS) as writer:
        for frame in frames:
            writer.write(to_uint8_hwc(frame))
    return np.stack(list(read_frames(path))).astype(float)


def _mean_error(a: torch.Tensor, b: torch.Tensor, margin: int = 6) -> float:
    return float((a - b)[..., margin:-margin, margin:-margin].abs().mean())


def test_animate_moves_each_dream_by_the_scheduled_motion_and_keeps_the_rate(tmp_path):
    """Each frame is the previous dreamed frame moved by that frame's motion (a zoom schedule and a rotation),
    then dreamed: it is much closer to that than to the previous frame unmoved, or moved without the schedule."""
    from dream_core.flow.motion import Motion, apply_motion

    start = textured_image(48, 64, seed=4)
    save_image(start, tmp_path / "start.png")
    out = tmp_path / "zoom.mp4"
    assert main(["animate", str(tmp_path / "start.png"), str(out), "--frames", "4", "--fps", "30000/1001",
                 "--zoom", "0:(1.0), 3:(1.1)", "--rotate", "2", *QUICK]) == 0
    info = probe_video(out)
    assert info.num_frames == 4 and info.frame_rate == Fraction(30000, 1001) and (info.width, info.height) == (64, 48)
    frames = [from_uint8_hwc(arr) for arr in read_frames(out)]
    raw = from_uint8_hwc(np.asarray(Image.open(tmp_path / "start.png").convert("RGB")))
    assert _mean_error(frames[0], raw) > 0.01  # frame 0: the start image, dreamed
    for k in range(1, 4):
        zoom = 1.0 + 0.1 * k / 3  # the schedule, linear between its keys
        moved = apply_motion(frames[k - 1], Motion(zoom=zoom, rotate=2), padding_mode="reflection").clamp(0, 1)
        unscheduled = apply_motion(frames[k - 1], Motion(rotate=2), padding_mode="reflection").clamp(0, 1)
        err = _mean_error(frames[k], moved)
        assert err < 0.7 * min(_mean_error(frames[k], frames[k - 1]), _mean_error(frames[k], unscheduled)), k


def test_video_with_schedule_cadence_and_mask(tmp_path):
    """The flags reach the frames: outside the mask the frames are the input; an in-between frame of the cadence
    is the cross-fade of its neighbours' dreams carried along the pan (not either one alone); the learning-rate
    schedule makes the last frame's dream stronger than the first's."""
    src = tmp_path / "pan.mp4"
    _encode(src, panning_clip(5, 48, 64, step=3), Fraction(24))
    mask = np.zeros((48, 64, 3), np.uint8)
    mask[:, 32:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.mp4"
    assert main(["video", str(src), str(out), *QUICK, "--lr", "0:(0.005), 4:(0.03)", "--cadence", "2",
                 "--mask", str(tmp_path / "mask.png"), "--carry", "1s:(0.9)"]) == 0
    cli = np.stack(list(read_frames(out))).astype(float)
    frames = [from_uint8_hwc(arr) for arr in read_frames(src)]
    # Outside the mask: the input as the same encoder writes it (4:2:0 chroma mixes a few pixels across the edge).
    raw = _encode(tmp_path / "raw.mp4", torch.cat(frames), Fraction(24))
    assert np.array_equal(cli[..., :24, :], raw[..., :24, :]) and not np.array_equal(cli[..., 36:, :], raw[..., 36:, :])
    dream = cli - raw  # content moves 3 px left per frame (conftest.panning_clip)
    inside = (slice(4, -4), slice(40, -6))
    for k in (1, 3):
        earlier, later = np.roll(dream[k - 1], -3, axis=1), np.roll(dream[k + 1], 3, axis=1)
        err = np.abs(dream[k] - (earlier + later) / 2)[inside].mean()
        assert err < 0.5 * min(np.abs(dream[k] - earlier)[inside].mean(), np.abs(dream[k] - later)[inside].mean()), k
    assert np.abs(dream[4][:, 36:]).mean() > 1.8 * np.abs(dream[0][:, 36:]).mean()


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
