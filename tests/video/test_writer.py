"""VideoWriter (dream_core.video.writer): round trips, parameters, the real clip."""

from __future__ import annotations

from fractions import Fraction

import pytest

from conftest import shared_file
from dream_core import video as vio
from dream_core.errors import InvalidParameterError, VideoError
from video_clips import NTSC, W, H, N, index_of, audio_seconds, write_all


def test_round_trip_keeps_count_rate_size_audio(clip, tmp_path):
    out = tmp_path / "out.mp4"
    info = vio.probe_video(clip)
    with vio.VideoWriter(out, info.frame_rate, source=clip, segment_frames=5) as writer:
        write_all(writer, vio.read_frames(clip))
    got = vio.probe_video(out)
    assert (got.width, got.height, got.num_frames) == (W, H, N)
    assert got.frame_rate == NTSC and not got.is_variable_frame_rate
    assert got.has_audio and got.audio_codec == "aac"
    assert audio_seconds(out) == pytest.approx(audio_seconds(clip), abs=0.05)
    assert [index_of(f) for f in vio.read_frames(out)] == list(range(N))
    assert not writer.work_dir.exists()


def test_finish_without_frames_is_an_error(tmp_path):
    writer = vio.VideoWriter(tmp_path / "empty.mp4", 25)
    with pytest.raises(VideoError, match="No frames"):
        writer.finish()
    assert not (tmp_path / "empty.mp4").exists()


def test_bad_parameters(tmp_path):
    with pytest.raises(InvalidParameterError, match="exact"):
        vio.VideoWriter(tmp_path / "x.mp4", 29.97)
    with pytest.raises(InvalidParameterError, match="crf"):
        vio.VideoWriter(tmp_path / "x.mp4", 25, crf=60)
    with pytest.raises(InvalidParameterError, match="x264_preset"):
        vio.VideoWriter(tmp_path / "x.mp4", 25, x264_preset="warp")
    with pytest.raises(InvalidParameterError, match="JSON"):
        vio.VideoWriter(tmp_path / "x.mp4", 25, settings={"f": object()})


def test_start_frame_past_the_source_is_refused(clip, tmp_path):
    with pytest.raises(InvalidParameterError, match="past the end"):
        vio.VideoWriter(tmp_path / "x.mp4", NTSC, source=clip, start_frame=N)


def test_real_clip_probe_and_copy_with_audio(tmp_path):
    src = shared_file("balcony_view.mp4")
    info = vio.probe_video(src)
    assert (info.width, info.height, info.num_frames) == (1280, 720, 107)
    assert info.frame_rate == Fraction(29) and isinstance(info.frame_rate, Fraction)
    assert info.has_audio and info.audio_codec == "aac" and not info.is_variable_frame_rate
    check = list(vio.read_frames(src, start=100))
    assert len(check) == 7

    out = tmp_path / "balcony_15.mp4"
    with vio.VideoWriter(out, info.frame_rate, source=src, x264_preset="ultrafast", segment_frames=8) as writer:
        for frame in vio.read_frames(src, end=15):
            writer.write(frame)
    got = vio.probe_video(out)
    assert (got.width, got.height, got.num_frames) == (1280, 720, 15)
    assert got.frame_rate == Fraction(29) and got.has_audio and got.audio_codec == "aac"
    assert audio_seconds(out) == pytest.approx(15 / 29, abs=0.05)
