"""probe_video and check_frame_count (dream_core.video.probe): exact counts and rates, broken files."""

from __future__ import annotations

import logging
from fractions import Fraction

import av
import numpy as np
import pytest

from dream_core import video as vio
from dream_core.errors import VideoError
from video_clips import NTSC, W, H, N, faststart_copy, index_of, make_clip, make_turned_clip, marked, write_all


def test_probe_exact_rate_count_size_audio(clip):
    info = vio.probe_video(clip)
    assert (info.width, info.height, info.num_frames) == (W, H, N)
    assert isinstance(info.frame_rate, Fraction) and info.frame_rate == NTSC
    assert info.has_audio and info.audio_codec == "aac" and info.audio_sample_rate == 44100
    assert not info.is_variable_frame_rate
    assert info.pix_fmt == "yuv420p" and info.codec == "h264"
    assert info.duration == pytest.approx(N / float(NTSC), abs=1e-3)


def test_variable_frame_rate_is_detected_and_count_kept(tmp_path, caplog):
    stamps = [0, 33, 67, 100, 200, 233, 267, 300, 500, 533, 567, 600]
    src = make_clip(tmp_path / "vfr.mkv", audio=None, pts=stamps)
    with caplog.at_level(logging.WARNING, logger="dream_core.video"):
        info = vio.probe_video(src)
    assert info.is_variable_frame_rate and info.num_frames == N
    assert "variable frame rate" in caplog.text
    assert isinstance(info.frame_rate, Fraction)
    out = tmp_path / "vfr_out.mp4"
    with vio.VideoWriter(out, info.frame_rate, source=src) as writer:
        write_all(writer, vio.read_frames(src))
    assert vio.probe_video(out).num_frames == N


def test_variable_frame_rate_is_written_at_its_average_rate_keeping_the_duration(tmp_path, caplog):
    # Six frames at 30 fps, then six at 10 fps: the container's rate (20) would make the output 18% shorter
    # (the audit's clip: 38%). The average over the clip's own duration keeps it.
    stamps = [0, 33, 67, 100, 133, 167, 200, 300, 400, 500, 600, 700]
    src = make_clip(tmp_path / "vfr.mp4", audio=None, pts=stamps, rate=Fraction(30))
    with caplog.at_level(logging.WARNING, logger="dream_core.video"):
        info = vio.probe_video(src)
    assert info.is_variable_frame_rate and info.num_frames == N
    assert abs(float(N / info.frame_rate) - info.duration) < 1e-3 and info.duration == pytest.approx(0.733, abs=2e-3)
    assert "keeps its duration (0.733 s)" in caplog.text and "ms earlier or later" in caplog.text
    out = tmp_path / "out.mp4"
    with vio.VideoWriter(out, info.frame_rate, source=src) as writer:
        write_all(writer, vio.read_frames(src))
    written = vio.probe_video(out)
    assert written.num_frames == N and written.duration == pytest.approx(info.duration, abs=2e-3)


@pytest.mark.parametrize("degrees, hflip", [(90, False), (-90, False), (180, False), (90, True)])
def test_rotated_clip_is_read_upright(tmp_path, degrees, hflip):
    src = make_turned_clip(tmp_path / "phone.mp4", degrees, hflip)
    info = vio.probe_video(src)
    turned = degrees % 180 != 0
    assert (info.width, info.height) == ((H, W) if turned else (W, H))
    assert info.rotation == degrees % 360 and info.mirrored == hflip
    frames = list(vio.read_frames(src))
    # What a player shows: the picture turned counter-clockwise (np.rot90), mirrored after it.
    expected = np.rot90(marked(0), k=degrees // 90)
    expected = expected[:, ::-1] if hflip else expected
    assert frames[0].shape == (info.height, info.width, 3)
    assert np.abs(frames[0].astype(int) - expected).mean() < 3
    assert index_of(frames[2]) == 2


def test_upright_output_of_a_rotated_clip(tmp_path):
    src = make_turned_clip(tmp_path / "phone.mp4", 90)
    out = tmp_path / "out.mp4"
    with vio.VideoWriter(out, vio.probe_video(src).frame_rate, source=src) as writer:
        write_all(writer, vio.read_frames(src))
    info = vio.probe_video(out)
    assert (info.width, info.height, info.rotation) == (H, W, 0)  # written upright, no rotation to apply
    assert np.abs(next(iter(vio.read_frames(out))).astype(int) - np.rot90(marked(0))).mean() < 3


def test_corrupt_and_non_video_files(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match="junk.mp4"):
        vio.probe_video(junk)
    with pytest.raises(VideoError, match="junk.mp4"):
        list(vio.read_frames(junk))
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 50)
    with pytest.raises(VideoError, match="notes.mp4"):
        vio.probe_video(text)
    with pytest.raises(VideoError, match="does not exist"):
        vio.probe_video(tmp_path / "missing.mp4")
    with pytest.raises(VideoError, match="does not exist"):
        vio.read_frames(tmp_path / "missing.mp4")


def test_truncated_file(clip, tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    with pytest.raises(VideoError, match="cut.mp4"):
        vio.probe_video(cut)


def test_truncated_file_with_its_index_first_is_refused(clip, tmp_path):
    # Index first (phones, downloads): the cut file opens and used to give its first frames with no word.
    data = faststart_copy(clip, tmp_path / "fast.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match=r"is truncated: its index lists 12 frames but the file holds only the "
                                         r"first \d.*-c copy"):
        vio.probe_video(cut)
    assert vio.probe_video(tmp_path / "fast.mp4").num_frames == N  # the whole file is fine


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=44100)
        stream.layout = "mono"
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 4410), np.float32), format="fltp", layout="mono")
        samples.sample_rate, samples.pts = 44100, 0
        out.mux(stream.encode(samples))
        out.mux(stream.encode(None))
    with pytest.raises(VideoError, match="no video stream"):
        vio.probe_video(path)


def test_one_frame_video_reads_but_is_too_short_for_flow(tmp_path):
    src = make_clip(tmp_path / "one.mp4", n=1, audio=None)
    info = vio.probe_video(src)
    assert info.num_frames == 1
    assert len(list(vio.read_frames(src))) == 1
    with pytest.raises(VideoError, match="at least 2 frames"):
        vio.check_frame_count(info)
    vio.check_frame_count(vio.probe_video(make_clip(tmp_path / "two.mp4", n=2, audio=None)))
