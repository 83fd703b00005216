"""Tests for dream_core.video_io: probing, streaming reads, segment writer with resume, audio copy."""

from __future__ import annotations

import gc
import inspect
import logging
import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import REPO, shared_file
from dream_core import video_io as vio
from dream_core.errors import InvalidImageError, InvalidParameterError, VideoError

NTSC = Fraction(30000, 1001)
W, H, N = 64, 48, 12


def pattern(i: int, w: int = W, h: int = H) -> np.ndarray:
    """Frame ``i``: a solid colour whose red level encodes the index (20 levels apart)."""
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = 10 + 20 * i
    img[..., 1] = 200 - 15 * i
    img[..., 2] = 90
    return img


def index_of(frame: np.ndarray) -> int:
    return int(round((float(frame[..., 0].mean()) - 10) / 20))


def make_clip(
    path: Path,
    n: int = N,
    w: int = W,
    h: int = H,
    rate: Fraction = NTSC,
    audio: str | None = "aac",
    vcodec: str = "libx264",
    pix_fmt: str = "yuv420p",
    pts: list[int] | None = None,
) -> Path:
    """Write a test clip with PyAV: ``n`` pattern frames, optionally a 440 Hz mono tone."""
    with av.open(str(path), "w") as out:
        video = out.add_stream(vcodec, rate=rate)
        video.width, video.height, video.pix_fmt = w, h, pix_fmt
        if pts is not None:
            video.time_base = Fraction(1, 1000)
        sound = None
        if audio:
            sound = out.add_stream(audio, rate=44100)
            sound.layout = "mono"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(pattern(i, w, h), format="rgb24")
            frame.pts = i if pts is None else pts[i]
            if pts is not None:
                frame.time_base = Fraction(1, 1000)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            t = np.arange(int(44100 * n / rate)) / 44100
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            fmt = "fltp"
            if audio.startswith("pcm_"):
                tone, fmt = (tone * 32767).astype(np.int16), "s16"
            samples = av.AudioFrame.from_ndarray(tone, format=fmt, layout="mono")
            samples.sample_rate, samples.pts = 44100, 0
            out.mux(sound.encode(samples))
            out.mux(sound.encode(None))
    return path


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        total = sum(p.duration or 0 for p in container.demux(stream) if p.size)
        return float(total * stream.time_base)


def write_all(writer: vio.VideoWriter, frames) -> None:
    for i, frame in enumerate(frames):
        writer.write(frame, carry={"last": frame, "index": np.array(i)})


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4")


@pytest.fixture(scope="module")
def silent_clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "silent.mp4", audio=None)


# ---------------------------------------------------------------- probe and read


def test_probe_exact_rate_count_size_audio(clip):
    info = vio.probe_video(clip)
    assert (info.width, info.height, info.num_frames) == (W, H, N)
    assert isinstance(info.frame_rate, Fraction) and info.frame_rate == NTSC
    assert info.has_audio and info.audio_codec == "aac" and info.audio_sample_rate == 44100
    assert not info.is_variable_frame_rate
    assert info.pix_fmt == "yuv420p" and info.codec == "h264"
    assert info.duration == pytest.approx(N / float(NTSC), abs=1e-3)


def test_read_frames_order_shape_and_range(clip):
    frames = list(vio.read_frames(clip))
    assert len(frames) == N
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    assert [index_of(f) for f in frames] == list(range(N))
    part = list(vio.read_frames(clip, start=5, end=9))
    assert [index_of(f) for f in part] == [5, 6, 7, 8]
    for a, b in zip(part, frames[5:9]):
        np.testing.assert_array_equal(a, b)  # seeking decodes the very same frames
    assert [index_of(f) for f in vio.read_frames(clip, start=10, end=99)] == [10, 11]
    assert list(vio.read_frames(clip, start=N)) == []
    assert list(vio.read_frames(clip, start=3, end=3)) == []
    with pytest.raises(InvalidParameterError):
        vio.read_frames(clip, start=-1)
    with pytest.raises(InvalidParameterError):
        vio.read_frames(clip, start=4, end=2)


def test_read_frames_streams_lazily(clip):
    gen = vio.read_frames(clip)
    assert inspect.isgenerator(gen)
    first = next(gen)
    kept = first.copy()
    second = next(gen)
    rest = list(gen)
    assert index_of(second) == 1 and len(rest) == N - 2
    np.testing.assert_array_equal(first, kept)  # later frames never overwrite earlier arrays


def test_decoded_colours_are_unbiased(tmp_path):
    """A lossless round trip returns the colours written (swscale's default path is ~1 level dark)."""
    out = tmp_path / "lossless.mp4"
    colours = [(200, 50, 30), (128, 128, 128), (20, 180, 240), (255, 255, 255), (0, 0, 0)]
    with vio.VideoWriter(out, 30, crf=0, preset="ultrafast") as writer:
        for c in colours:
            writer.write(np.broadcast_to(np.array(c, np.uint8), (32, 48, 3)))
    for c, frame in zip(colours, vio.read_frames(out)):
        assert np.abs(frame.reshape(-1, 3).mean(0) - c).max() <= 1.0


# ---------------------------------------------------------------- write round trips


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


def test_reencode_fallback_when_segments_cannot_be_joined(clip, tmp_path, monkeypatch, caplog):
    def refuse(self):
        raise vio._RemuxUnsupported("forced by the test")

    monkeypatch.setattr(vio.VideoWriter, "_plan_remux", refuse)
    out = tmp_path / "fallback.mp4"
    with caplog.at_level(logging.WARNING, logger="dream_core.video_io"):
        with vio.VideoWriter(out, NTSC, source=clip, segment_frames=5) as writer:
            write_all(writer, vio.read_frames(clip))
    assert "re-encoding" in caplog.text
    got = vio.probe_video(out)
    assert got.num_frames == N and got.frame_rate == NTSC and got.has_audio
    assert [index_of(f) for f in vio.read_frames(out)] == list(range(N))


def test_odd_size_is_padded_by_one_pixel(tmp_path, caplog):
    src = make_clip(tmp_path / "odd.mkv", w=63, h=47, audio=None, vcodec="ffv1", pix_fmt="yuv444p")
    info = vio.probe_video(src)
    assert (info.width, info.height) == (63, 47)
    out = tmp_path / "odd_out.mp4"
    with caplog.at_level(logging.WARNING, logger="dream_core.video_io"):
        with vio.VideoWriter(out, info.frame_rate, source=src) as writer:
            write_all(writer, vio.read_frames(src))
    assert "padded to 64x48" in caplog.text
    got = vio.probe_video(out)
    assert (got.width, got.height, got.num_frames) == (64, 48, N)
    assert [index_of(f) for f in vio.read_frames(out)] == list(range(N))


def test_variable_frame_rate_is_detected_and_count_kept(tmp_path, caplog):
    stamps = [0, 33, 67, 100, 200, 233, 267, 300, 500, 533, 567, 600]
    src = make_clip(tmp_path / "vfr.mkv", audio=None, pts=stamps)
    with caplog.at_level(logging.WARNING, logger="dream_core.video_io"):
        info = vio.probe_video(src)
    assert info.is_variable_frame_rate and info.num_frames == N
    assert "variable frame rate" in caplog.text
    assert isinstance(info.frame_rate, Fraction)
    out = tmp_path / "vfr_out.mp4"
    with vio.VideoWriter(out, info.frame_rate, source=src) as writer:
        write_all(writer, vio.read_frames(src))
    assert vio.probe_video(out).num_frames == N


# ---------------------------------------------------------------- resume and failure


def test_resume_after_dropped_writer(clip, tmp_path):
    out = tmp_path / "resumed.mp4"
    frames = list(vio.read_frames(clip))
    writer = vio.VideoWriter(out, NTSC, source=clip, segment_frames=4, settings={"lr": 0.1})
    assert writer.resume_point().next_frame == 0 and writer.resume_point().carry is None
    write_all(writer, frames[:10])  # two committed segments (0-3, 4-7) + 2 frames in flight
    work = writer.work_dir
    del writer  # "crash": no finish, no close
    gc.collect()
    assert not out.exists()

    again = vio.VideoWriter(out, NTSC, source=clip, segment_frames=4, settings={"lr": 0.1})
    point = again.resume_point()
    assert point.next_frame == 8 and point.frames_done == 8
    assert int(point.carry["index"]) == 7
    np.testing.assert_array_equal(point.carry["last"], frames[7])
    expected = ["carry_00001.npz", "manifest.json", "seg_00000.mp4", "seg_00001.mp4"]
    assert sorted(p.name for p in work.iterdir()) == expected  # the in-flight segment is gone
    for i, frame in enumerate(vio.read_frames(clip, start=point.next_frame), start=point.next_frame):
        again.write(frame, carry={"last": frame, "index": np.array(i)})
    again.finish()
    got = vio.probe_video(out)
    assert got.num_frames == N and got.frame_rate == NTSC and got.has_audio
    assert [index_of(f) for f in vio.read_frames(out)] == list(range(N))
    assert not work.exists()


def test_resume_after_killed_process(clip, tmp_path):
    out = tmp_path / "killed.mp4"
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from dream_core import video_io as vio
        w = vio.VideoWriter({str(out)!r}, "30000/1001", source={str(clip)!r}, segment_frames=3)
        for i, f in enumerate(vio.read_frames({str(clip)!r})):
            w.write(f, carry={{"index": np.array(i)}})
            if i == 6:
                os._exit(3)  # hard crash: no cleanup at all
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert not out.exists()
    writer = vio.VideoWriter(out, NTSC, source=clip, segment_frames=3)
    point = writer.resume_point()
    assert point.next_frame == 6 and int(point.carry["index"]) == 5
    with writer:
        for i, frame in enumerate(vio.read_frames(clip, start=6), start=6):
            writer.write(frame, carry={"index": np.array(i)})
    assert [index_of(f) for f in vio.read_frames(out)] == list(range(N))


def test_exception_keeps_progress_and_leaves_no_output(clip, tmp_path):
    out = tmp_path / "failed.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with vio.VideoWriter(out, NTSC, source=clip, segment_frames=4) as writer:
            for i, frame in enumerate(vio.read_frames(clip)):
                if i == 6:
                    raise RuntimeError("boom")
                writer.write(frame, carry={"index": np.array(i)})
    assert not out.exists()
    assert not list(tmp_path.glob("failed*.mp4"))
    point = vio.VideoWriter(out, NTSC, source=clip, segment_frames=4).resume_point()
    assert point.next_frame == 6 and int(point.carry["index"]) == 5  # the short segment was committed


def test_interrupt_inside_write_drops_the_open_segment(clip, tmp_path, monkeypatch):
    out = tmp_path / "interrupted.mp4"
    out.write_bytes(b"an older result")
    real_encode = vio._Encoder.encode

    def encode(self, rgb):
        if index_of(rgb) == 6:
            raise KeyboardInterrupt
        return real_encode(self, rgb)

    monkeypatch.setattr(vio._Encoder, "encode", encode)
    with pytest.raises(KeyboardInterrupt):
        with vio.VideoWriter(out, NTSC, source=clip, segment_frames=4) as writer:
            write_all(writer, vio.read_frames(clip))
    assert out.read_bytes() == b"an older result"  # untouched until a finish succeeds
    monkeypatch.setattr(vio._Encoder, "encode", real_encode)
    point = vio.VideoWriter(out, NTSC, source=clip, segment_frames=4).resume_point()
    assert point.next_frame == 4 and int(point.carry["index"]) == 3


def test_resume_with_other_settings_is_refused_or_restarted(clip, tmp_path):
    out = tmp_path / "settings.mp4"
    writer = vio.VideoWriter(out, NTSC, source=clip, segment_frames=2, settings={"layer": "a", "lr": 0.1})
    write_all(writer, list(vio.read_frames(clip, end=4)))
    writer.close()
    with pytest.raises(InvalidParameterError, match="lr"):
        vio.VideoWriter(out, NTSC, source=clip, segment_frames=2, settings={"layer": "a", "lr": 0.2})
    with pytest.raises(InvalidParameterError, match="crf"):
        vio.VideoWriter(out, NTSC, source=clip, segment_frames=2, settings={"layer": "a", "lr": 0.1}, crf=23)
    fresh = vio.VideoWriter(out, NTSC, source=clip, settings={"lr": 0.2}, resume=False)
    assert fresh.resume_point().next_frame == 0 and not fresh.work_dir.exists()


def test_finish_without_frames_is_an_error(tmp_path):
    writer = vio.VideoWriter(tmp_path / "empty.mp4", 25)
    with pytest.raises(VideoError, match="No frames"):
        writer.finish()
    assert not (tmp_path / "empty.mp4").exists()


# ---------------------------------------------------------------- bad input


def test_writer_rejects_bad_frames(tmp_path):
    writer = vio.VideoWriter(tmp_path / "bad.mp4", 25)
    writer.write(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(InvalidImageError, match="same size"):
        writer.write(np.zeros((16, 18, 3), np.uint8))
    with pytest.raises(InvalidImageError, match="uint8"):
        writer.write(np.zeros((16, 16, 3), np.float32))
    with pytest.raises(InvalidImageError, match=r"\(H, W, 3\)"):
        writer.write(np.zeros((16, 16), np.uint8))
    writer.close()


def test_bad_parameters(tmp_path):
    with pytest.raises(InvalidParameterError, match="exact"):
        vio.VideoWriter(tmp_path / "x.mp4", 29.97)
    with pytest.raises(InvalidParameterError, match="crf"):
        vio.VideoWriter(tmp_path / "x.mp4", 25, crf=60)
    with pytest.raises(InvalidParameterError, match="preset"):
        vio.VideoWriter(tmp_path / "x.mp4", 25, preset="warp")
    with pytest.raises(InvalidParameterError, match="JSON"):
        vio.VideoWriter(tmp_path / "x.mp4", 25, settings={"f": object()})


def test_start_frame_past_the_source_is_refused(clip, tmp_path):
    with pytest.raises(InvalidParameterError, match="past the end"):
        vio.VideoWriter(tmp_path / "x.mp4", NTSC, source=clip, start_frame=N)


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


def test_output_checks_happen_before_any_work(clip, tmp_path):
    with pytest.raises(VideoError, match="does not exist"):
        vio.check_output_writable(tmp_path / "no" / "such" / "dir" / "out.mp4")
    with pytest.raises(InvalidParameterError, match="input"):
        vio.VideoWriter(clip, NTSC, source=clip)
    with pytest.raises(InvalidParameterError, match="extension"):
        vio.check_output_writable(tmp_path / "out.gif")
    with pytest.raises(VideoError, match="folder"):
        vio.check_output_writable(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(VideoError, match="does not exist"):
        vio.VideoWriter(blocker / "out.mp4", NTSC, source=clip)


def test_unwritable_folder_is_refused_before_any_work(clip, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        # root ignores permission bits; /proc refuses new files even to root
        folder = locked if not os.access(locked, os.W_OK) else Path("/proc")
        if not folder.is_dir():
            pytest.skip("no unwritable folder available")
        with pytest.raises(VideoError, match="not writable"):
            vio.VideoWriter(folder / "out.mp4", NTSC, source=clip)
        assert not (folder / "out.mp4.dream-work").exists()
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


# ---------------------------------------------------------------- the real clip


def test_real_clip_probe_and_copy_with_audio(tmp_path):
    src = shared_file("balcony_view.mp4")
    info = vio.probe_video(src)
    assert (info.width, info.height, info.num_frames) == (1280, 720, 107)
    assert info.frame_rate == Fraction(29) and isinstance(info.frame_rate, Fraction)
    assert info.has_audio and info.audio_codec == "aac" and not info.is_variable_frame_rate
    check = list(vio.read_frames(src, start=100))
    assert len(check) == 7

    out = tmp_path / "balcony_15.mp4"
    with vio.VideoWriter(out, info.frame_rate, source=src, preset="ultrafast", segment_frames=8) as writer:
        for frame in vio.read_frames(src, end=15):
            writer.write(frame)
    got = vio.probe_video(out)
    assert (got.width, got.height, got.num_frames) == (1280, 720, 15)
    assert got.frame_rate == Fraction(29) and got.has_audio and got.audio_codec == "aac"
    assert audio_seconds(out) == pytest.approx(15 / 29, abs=0.05)
