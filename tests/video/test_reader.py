"""read_frames (dream_core.video.reader): order, ranges, laziness, colour accuracy."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from dream_core import video as vio
from dream_core.errors import InvalidParameterError, VideoError
from video_clips import W, H, N, index_of


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
    with vio.VideoWriter(out, 30, crf=0, x264_preset="ultrafast") as writer:
        for c in colours:
            writer.write(np.broadcast_to(np.array(c, np.uint8), (32, 48, 3)))
    for c, frame in zip(colours, vio.read_frames(out)):
        assert np.abs(frame.reshape(-1, 3).mean(0) - c).max() <= 1.0


def test_frames_that_do_not_decode_are_an_error_not_a_short_clip(clip, monkeypatch):
    import dream_core.video.reader as reader

    real = reader._decode_range

    def five(*args):  # a file whose packets stop decoding after frame 4
        for i, frame in enumerate(real(*args)):
            if i == 5:
                return
            yield frame

    monkeypatch.setattr(reader, "_decode_range", five)
    with pytest.raises(VideoError, match=r"stops decoding after frame 4, but it holds 12 frames \(frames 5..11"):
        list(vio.read_frames(clip))
    with pytest.raises(VideoError, match=r"stops decoding after frame 4, but it holds 12 frames"):
        list(vio.read_frames(clip, num_frames=vio.probe_video(clip).num_frames))  # the probed count serves too
    assert len(list(vio.read_frames(clip, end=5))) == 5  # a range that ends before the damage is fine


def test_a_read_from_the_start_with_the_probed_count_passes_over_the_file_once(clip, monkeypatch):
    import dream_core.video.reader as reader

    count = vio.probe_video(clip).num_frames
    scans = []
    real = reader.scan_packets
    monkeypatch.setattr(reader, "scan_packets", lambda path: scans.append(path) or real(path))
    assert len(list(vio.read_frames(clip, num_frames=count))) == N and not scans
    assert len(list(vio.read_frames(clip, 3, num_frames=count))) == N - 3 and len(scans) == 1  # seeking needs it
