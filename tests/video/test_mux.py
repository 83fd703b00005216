"""Joining segments and audio (dream_core.video.mux), through the writer."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dream_core import video as vio
from dream_core.video import mux
from video_clips import NTSC, N, index_of, make_clip, audio_seconds, write_all


def _keyframes(path) -> list[int]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        flags = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
    return [k for k, (_, key) in enumerate(sorted(flags)) if key]


def test_output_is_one_encode_without_keyframes_at_the_joins(clip, tmp_path):
    """Segments each start with a keyframe; the output is encoded once, so only its first frame is one."""
    out = tmp_path / "joined.mp4"
    with vio.VideoWriter(out, NTSC, source=clip, segment_frames=5) as writer:
        write_all(writer, vio.read_frames(clip))
        writer.close()  # commit the last, shorter segment and look at the work folder first
        segments = sorted(writer.work_dir.glob("seg_*.mp4"))
        assert [_keyframes(seg) for seg in segments] == [[0], [0], [0]]
    assert _keyframes(out) == [0]
    got = vio.probe_video(out)
    assert got.num_frames == N and got.frame_rate == NTSC and got.has_audio
    assert [index_of(f) for f in vio.read_frames(out)] == list(range(N))


def test_lossless_output_has_the_segments_pictures(clip, tmp_path):
    out = tmp_path / "lossless.mp4"
    writer = vio.VideoWriter(out, NTSC, source=clip, segment_frames=5, crf=0)
    write_all(writer, vio.read_frames(clip))
    writer.close()
    decoded = [f for seg in sorted(writer.work_dir.glob("seg_*.mp4")) for f in vio.read_frames(seg)]
    writer.finish()
    for a, b in zip(decoded, vio.read_frames(out), strict=True):
        np.testing.assert_array_equal(a, b)


def test_segments_are_near_lossless_whatever_the_output_quality():
    from dream_core.video.encoder import SEGMENT_CRF, segment_crf

    assert segment_crf(0) == 0 and segment_crf(4) == 4
    assert segment_crf(18) == segment_crf(35) == SEGMENT_CRF <= 10


def test_a_segment_with_missing_frames_is_reported_as_damage(clip, tmp_path):
    from dream_core.errors import VideoError

    out = tmp_path / "damaged.mp4"
    writer = vio.VideoWriter(out, NTSC, source=clip, segment_frames=6)
    write_all(writer, vio.read_frames(clip))
    writer.close()
    first = sorted(writer.work_dir.glob("seg_*.mp4"))[0]
    with vio.VideoWriter(tmp_path / "short.mp4", NTSC, resume=False, crf=0) as short:
        write_all(short, list(vio.read_frames(first))[:3])
    first.write_bytes((tmp_path / "short.mp4").read_bytes())
    with pytest.raises(VideoError, match="damaged"):
        writer.finish()
    assert not out.exists()


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
    with vio.VideoWriter(out, NTSC, source=src, x264_preset="ultrafast") as writer:
        write_all(writer, vio.read_frames(src))
    got = vio.probe_video(out)
    assert got.num_frames == N and got.has_audio
    assert audio_seconds(out) == pytest.approx(N / float(NTSC), abs=0.05)


def test_audio_the_container_cannot_hold_is_reencoded_to_aac(tmp_path):
    src = make_clip(tmp_path / "ulaw.mov", audio="pcm_mulaw")
    assert vio.probe_video(src).audio_codec == "pcm_mulaw"
    out = tmp_path / "ulaw_out.mp4"
    with vio.VideoWriter(out, NTSC, source=src, x264_preset="ultrafast") as writer:
        write_all(writer, vio.read_frames(src))
    got = vio.probe_video(out)
    assert got.num_frames == N and got.audio_codec == "aac"
    assert audio_seconds(out) == pytest.approx(N / float(NTSC), abs=0.06)
