"""Joining segments and audio (dream_core.video.mux), through the writer."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dream_core import video as vio
from dream_core.video import mux
from video_clips import NTSC, N, index_of, make_clip, audio_seconds, write_all


def test_segments_are_joined_without_reencoding(clip, tmp_path):
    out = tmp_path / "joined.mp4"
    writer = vio.VideoWriter(out, NTSC, source=clip, segment_frames=5)
    write_all(writer, vio.read_frames(clip))
    writer.close()  # commits the last, shorter segment (frames 10-11)
    segments = sorted(writer.work_dir.glob("seg_*.mp4"))
    assert len(segments) == 3
    decoded = [f for seg in segments for f in vio.read_frames(seg)]
    writer.finish()
    for a, b in zip(decoded, vio.read_frames(out), strict=True):
        np.testing.assert_array_equal(a, b)  # same packets: bit-identical pictures


def test_reencode_fallback_when_segments_cannot_be_joined(clip, tmp_path, monkeypatch, caplog):
    def refuse(*_args):
        raise mux.RemuxUnsupported("forced by the test")

    monkeypatch.setattr(mux, "plan_remux", refuse)
    out = tmp_path / "fallback.mp4"
    with caplog.at_level(logging.WARNING, logger="dream_core.video"):
        with vio.VideoWriter(out, NTSC, source=clip, segment_frames=5) as writer:
            write_all(writer, vio.read_frames(clip))
    assert "re-encoding" in caplog.text
    got = vio.probe_video(out)
    assert got.num_frames == N and got.frame_rate == NTSC and got.has_audio
    assert [index_of(f) for f in vio.read_frames(out)] == list(range(N))


def test_no_audio_is_fine(silent_clip, tmp_path):
    out = tmp_path / "silent_out.mkv"
    with vio.VideoWriter(out, NTSC, source=silent_clip, segment_frames=4) as writer:
        write_all(writer, vio.read_frames(silent_clip))
    got = vio.probe_video(out)
    assert got.num_frames == N and got.frame_rate == NTSC and not got.has_audio


def test_start_frame_cuts_audio_to_the_written_window(clip, tmp_path):
    out = tmp_path / "tail.mp4"
    with vio.VideoWriter(out, NTSC, source=clip, start_frame=4, segment_frames=3) as writer:
        write_all(writer, vio.read_frames(clip, start=4))
    got = vio.probe_video(out)
    assert got.num_frames == N - 4 and got.has_audio
    assert audio_seconds(out) == pytest.approx((N - 4) / float(NTSC), abs=0.05)
    assert [index_of(f) for f in vio.read_frames(out)] == list(range(4, N))


def test_pcm_audio_from_mkv(tmp_path):
    src = make_clip(tmp_path / "pcm.mkv", audio="pcm_s16le")
    out = tmp_path / "pcm_out.mp4"
    with vio.VideoWriter(out, NTSC, source=src, preset="ultrafast") as writer:
        write_all(writer, vio.read_frames(src))
    got = vio.probe_video(out)
    assert got.num_frames == N and got.has_audio
    assert audio_seconds(out) == pytest.approx(N / float(NTSC), abs=0.05)


def test_audio_the_container_cannot_hold_is_reencoded_to_aac(tmp_path):
    src = make_clip(tmp_path / "ulaw.mov", audio="pcm_mulaw")
    assert vio.probe_video(src).audio_codec == "pcm_mulaw"
    out = tmp_path / "ulaw_out.mp4"
    with vio.VideoWriter(out, NTSC, source=src, preset="ultrafast") as writer:
        write_all(writer, vio.read_frames(src))
    got = vio.probe_video(out)
    assert got.num_frames == N and got.audio_codec == "aac"
    assert audio_seconds(out) == pytest.approx(N / float(NTSC), abs=0.06)
